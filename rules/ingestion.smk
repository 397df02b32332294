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
    log:
        "logs/ingestion/split_trials.log",
    conda:
        "../envs/cpu.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        root=lambda wildcards, input: layout.root_from_expdesign(input.expdesign),
        subjects=SUBJECTS,
        ingestion=ingestion_settings(),
    script:
        "../workflow_scripts/split_trials.py"


rule extract_roi_betas:
    input:
        expdesign=nsd_inputs()["expdesign"],
        trials="results/{subject}/trials.tsv",
        subject_files=lambda wildcards: subject_nsd_files(wildcards.subject),
    output:
        roi_betas("{subject}"),
    log:
        "logs/ingestion/extract_roi_betas/{subject}.log",
    benchmark:
        "benchmarks/ingestion/extract_roi_betas/{subject}.tsv"
    conda:
        "../envs/cpu.yaml"
    resources:
        **measured_resources("extract_roi_betas", mem_mb=8000, runtime=120),
    params:
        root=lambda wildcards, input: layout.root_from_expdesign(input.expdesign),
        ingestion=ingestion_settings(),
        rois=config["rois"],
    script:
        "../workflow_scripts/extract_roi_betas.py"


rule extract_stimuli:
    input:
        trials=trials_tables(),
        stim_info=nsd_inputs()["stim_info"],
        stimuli=nsd_inputs()["stimuli"],
        captions=nsd_inputs()["captions"],
    output:
        "results/stimuli/stimuli.h5",
    log:
        "logs/ingestion/extract_stimuli.log",
    benchmark:
        "benchmarks/ingestion/extract_stimuli.tsv"
    conda:
        "../envs/cpu.yaml"
    resources:
        mem_mb=4000,
        runtime=60,
    script:
        "../workflow_scripts/extract_stimuli.py"
