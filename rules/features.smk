# Stable Diffusion features per image, and their PCA per subject.


rule extract_features:
    input:
        stimuli="results/stimuli/stimuli.h5",
        model=model_input(),
    output:
        "results/features/parts/part{part}_of_{parts}.json",
    log:
        "logs/features/extract_features/part{part}_of_{parts}.log",
    benchmark:
        "benchmarks/features/extract_features/part{part}_of_{parts}.tsv"
    conda:
        "../envs/gpu.yaml"
    threads: shared_threads(4, config["features"]["jobs"])
    resources:
        mem_mb=16000,
        runtime=720,
    params:
        model=model_location,
        features=without_runtime(config["features"], "features"),
        model_loading=config["model_loading"],
        shard_dir=FEATURE_SHARDS,
    script:
        "../workflow_scripts/extract_features.py"


rule gather_features:
    input:
        parts=feature_parts(),
        stimuli="results/stimuli/stimuli.h5",
    output:
        feature_files(),
    log:
        "logs/features/gather_features.log",
    benchmark:
        "benchmarks/features/gather_features.tsv"
    conda:
        "../envs/cpu.yaml"
    resources:
        **measured_resources("gather_features", mem_mb=4000, runtime=120),
    params:
        names=FEATURE_NAMES,
        features=without_runtime(config["features"], "features"),
    script:
        "../workflow_scripts/gather_features.py"


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
    threads: measured_threads("reduce_features", 2)
    resources:
        **measured_resources("reduce_features", mem_mb=16000, runtime=120),
    params:
        names=FEATURE_NAMES,
        n_components=config["pca"]["n_components"],
    script:
        "../workflow_scripts/reduce_features.py"
