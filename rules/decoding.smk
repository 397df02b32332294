# Decoders from ROI betas to z and c, and the images reconstructed from them. Priority 1: this chain
# (decoders, reconstructions, evaluation) is the longest after the features, so it starts first.


rule decode_latent:
    input:
        betas=lambda wildcards: f"results/{wildcards.subject}/betas/{DECODING_TARGETS[wildcards.target]}.h5",
        feature="results/features/{target}.h5",
    output:
        "results/{subject}/decoding/{target}.h5",
    log:
        "logs/decoding/decode_latent/{subject}_{target}.log",
    benchmark:
        "benchmarks/decoding/decode_latent/{subject}_{target}.tsv"
    priority: 1
    conda:
        "../envs/cpu.yaml"
    threads: measured_threads("decode_latent", 4)
    resources:
        **measured_resources("decode_latent", mem_mb=16000, runtime=240),
    params:
        decoding=without_runtime(config["decoding"], "decoding"),
        roi=lambda wildcards: DECODING_TARGETS[wildcards.target],
    script:
        "../workflow_scripts/decode_latent.py"


rule reconstruct_images:
    input:
        z="results/{subject}/decoding/z.h5",
        c="results/{subject}/decoding/c.h5",
        model=model_input(),
    output:
        "results/{subject}/reconstruction/parts/part{part}_of_{parts}.json",
    log:
        "logs/decoding/reconstruct_images/{subject}_part{part}_of_{parts}.log",
    benchmark:
        "benchmarks/decoding/reconstruct_images/{subject}_part{part}_of_{parts}.tsv"
    priority: 1
    conda:
        "../envs/gpu.yaml"
    threads: shared_threads(4, len(SUBJECTS) * config["reconstruction"]["jobs"])
    resources:
        mem_mb=16000,
        runtime=720,
    params:
        model=model_location,
        settings=without_runtime(config["reconstruction"], "reconstruction"),
        model_loading=config["model_loading"],
        shard_dir=reconstruction_shards,
    script:
        "../workflow_scripts/reconstruct_images.py"


rule gather_reconstructions:
    input:
        parts=reconstruction_parts,
        z="results/{subject}/decoding/z.h5",
        stimuli="results/stimuli/stimuli.h5",
    output:
        images=directory("results/{subject}/reconstruction/images"),
        latents="results/{subject}/reconstruction/latents.h5",
        sheet=report(
            "results/{subject}/reconstruction/contact_sheet.png",
            caption="../report/contact_sheet.rst",
            category="Reconstruction",
            subcategory="{subject}",
        ),
    log:
        "logs/decoding/gather_reconstructions/{subject}.log",
    priority: 1
    conda:
        "../envs/cpu.yaml"
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        settings=without_runtime(config["reconstruction"], "reconstruction"),
    script:
        "../workflow_scripts/gather_reconstructions.py"
