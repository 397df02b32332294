# Voxel-wise encoding models: each feature -> every voxel of the encoding ROI, joint z + zc
# models, the best U-Net block per voxel, and per-ROI summaries.


rule encode_feature:
    input:
        betas=encoding_betas,
        feature="results/{subject}/features_pca/{feature}.h5",
        reference=streams_reference,
    output:
        **{name: f"results/{{subject}}/encoding/maps/{{feature}}_{name}.nii.gz" for name in FEATURE_MAPS},
        result="results/{subject}/encoding/{feature}.h5",
    log:
        "logs/encoding/encode_feature/{subject}_{feature}.log",
    benchmark:
        "benchmarks/encoding/encode_feature/{subject}_{feature}.tsv"
    conda:
        "../envs/cpu.yaml"
    threads: measured_threads("encode_feature", 4)
    resources:
        **measured_resources("encode_feature", mem_mb=16000, runtime=240),
    params:
        settings=single_model_settings(),
        map_names=FEATURE_MAPS,
    script:
        "../workflow_scripts/encode_feature.py"


rule encode_banded:
    input:
        betas=encoding_betas,
        z="results/{subject}/features_pca/z.h5",
        zc="results/{subject}/features_pca/{zc}.h5",
        z_alone="results/{subject}/encoding/z.h5",
        zc_alone="results/{subject}/encoding/{zc}.h5",
        reference=streams_reference,
    output:
        **{name: f"results/{{subject}}/encoding/maps/z+{{zc}}_{name}.nii.gz" for name in BANDED_MAPS},
        result="results/{subject}/encoding/banded/z+{zc}.h5",
    log:
        "logs/encoding/encode_banded/{subject}_{zc}.log",
    benchmark:
        "benchmarks/encoding/encode_banded/{subject}_{zc}.tsv"
    conda:
        "../envs/cpu.yaml"
    threads: measured_threads("encode_banded", 4)
    resources:
        **measured_resources("encode_banded", mem_mb=16000, runtime=480),
    params:
        settings=without_runtime(config["encoding"], "encoding"),
        bands=BANDS,
        map_names=BANDED_MAPS,
    script:
        "../workflow_scripts/encode_banded.py"


rule map_best_unet_layer:
    input:
        results=unet_results,
        reference=streams_reference,
    output:
        map="results/{subject}/encoding/maps/best_unet_layer_t{stage}_label.nii.gz",
        labels="results/{subject}/encoding/best_unet_layer_t{stage}.tsv",
    log:
        "logs/encoding/map_best_unet_layer/{subject}_t{stage}.log",
    conda:
        "../envs/cpu.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        settings=without_runtime(config["encoding"], "encoding"),
    script:
        "../workflow_scripts/map_best_unet_layer.py"


rule summarize_encoding_by_roi:
    input:
        results=encoding_results,
        streams=streams_reference,
    output:
        report(
            "results/{subject}/encoding/roi_summary.tsv",
            caption="../report/roi_summary.rst",
            category="Encoding",
            subcategory="{subject}",
        ),
    log:
        "logs/encoding/summarize_encoding_by_roi/{subject}.log",
    conda:
        "../envs/cpu.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        settings=without_runtime(config["encoding"], "encoding"),
    script:
        "../workflow_scripts/summarize_encoding_by_roi.py"
