# Randomly initialised Stable Diffusion presets in diffusers layout.


rule build_model:
    input:
        captions=nsd_inputs()["captions"],
    output:
        directory(f"{MODELS}/{{preset}}"),
    log:
        "logs/models/build_model/{preset}.log",
    benchmark:
        "benchmarks/models/build_model/{preset}.tsv"
    conda:
        "../envs/gpu.yaml"
    resources:
        mem_mb=8000,
        runtime=30,
    params:
        seed=config["model_build"]["seed"],
    script:
        "../workflow_scripts/build_model.py"
