# Stable Diffusion features per image, and their PCA per subject.


rule extract_features:
    input:
        stimuli="results/stimuli/stimuli.h5",
        model=model_input(),
    output:
        feature_files(),
    log:
        "logs/features/extract_features.log",
    benchmark:
        "benchmarks/features/extract_features.tsv"
    conda:
        "../envs/gpu.yaml"
    threads: 4
    resources:
        mem_mb=16000,
        runtime=720,
    params:
        model=model_location,
        names=FEATURE_NAMES,
        features=without_runtime(config["features"], "features"),
        model_loading=config["model_loading"],
        shard_dir=lambda wildcards, output: os.path.join(os.path.dirname(output[0]), "shards"),
    script:
        "../workflow_scripts/extract_features.py"


rule reduce_features:
    input:
        features=feature_files(),
        trials="results/{subject}/trials.tsv",
    output:
        [f"results/{{subject}}/features_pca/{name}.h5" for name in FEATURE_NAMES],
    log:
        "logs/features/reduce_features/{subject}.log",
    benchmark:
        "benchmarks/features/reduce_features/{subject}.tsv"
    conda:
        "../envs/cpu.yaml"
    threads: 2
    resources:
        mem_mb=16000,
        runtime=120,
    params:
        names=FEATURE_NAMES,
        n_components=config["pca"]["n_components"],
    script:
        "../workflow_scripts/reduce_features.py"
