# NSD ingestion: trials and split, ROI betas streamed per session, stimuli and captions.


rule split_trials:
    input:
        expdesign=nsd_inputs()["expdesign"],
        subject_files=all_subjects_nsd_files,
    output:
        trials=trials_tables(),
        test_images="results/split/test_images.tsv",
        summary=report(
            "results/split/split_summary.tsv",
            caption="../report/split_summary.rst",
            category="Ingestion",
        ),
    params:
        root=lambda wildcards, input: layout.root_from_expdesign(input.expdesign),
        subjects=SUBJECTS,
        ingestion=config["ingestion"],
    log:
        "logs/ingestion/split_trials.log",
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../envs/cpu.yaml"
    script:
        "../workflow_scripts/split_trials.py"


rule extract_roi_betas:
    input:
        expdesign=nsd_inputs()["expdesign"],
        trials="results/{subject}/trials.tsv",
        subject_files=lambda wildcards: subject_nsd_files(wildcards.subject),
    output:
        roi_betas("{subject}"),
    params:
        root=lambda wildcards, input: layout.root_from_expdesign(input.expdesign),
        ingestion=config["ingestion"],
        rois=config["rois"],
    log:
        "logs/ingestion/extract_roi_betas/{subject}.log",
    benchmark:
        "benchmarks/ingestion/extract_roi_betas/{subject}.tsv"
    resources:
        mem_mb=8000,
        runtime=120,
    conda:
        "../envs/cpu.yaml"
    script:
        "../workflow_scripts/extract_roi_betas.py"


rule extract_stimuli:
    input:
        expdesign=nsd_inputs()["expdesign"],
        trials=trials_tables(),
        stim_info=nsd_inputs()["stim_info"],
        stimuli=nsd_inputs()["stimuli"],
        captions=nsd_inputs()["captions"],
    output:
        "results/stimuli/stimuli.h5",
    params:
        root=lambda wildcards, input: layout.root_from_expdesign(input.expdesign),
        captions_dir=config["ingestion"]["captions_dir"],
    log:
        "logs/ingestion/extract_stimuli.log",
    benchmark:
        "benchmarks/ingestion/extract_stimuli.tsv"
    resources:
        mem_mb=4000,
        runtime=60,
    conda:
        "../envs/cpu.yaml"
    script:
        "../workflow_scripts/extract_stimuli.py"
