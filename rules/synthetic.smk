# The embedded default: a synthetic NSD tree with planted ground truth.


rule build_synthetic_anatomy:
    output:
        labels=f"{SYNTHETIC_TRUTH}/anatomy_streams.nii.gz",
        transform=directory(f"{SYNTHETIC_TRUTH}/pycortex_transform"),
    log:
        "logs/synthetic/build_synthetic_anatomy.log",
    conda:
        "../envs/cpu.yaml"
    resources:
        mem_mb=2000,
        runtime=15,
    params:
        synthetic=config["synthetic"],
    script:
        "../workflow_scripts/build_synthetic_anatomy.py"


rule build_synthetic_stimuli:
    output:
        expdesign=layout.expdesign(SYNTHETIC_NSD),
        stim_info=layout.stim_info(SYNTHETIC_NSD),
        stimuli=layout.stimuli(SYNTHETIC_NSD),
        captions=[layout.captions(SYNTHETIC_NSD, s) for s in layout.CAPTION_SPLITS],
        scenes=f"{SYNTHETIC_TRUTH}/scenes.h5",
    log:
        "logs/synthetic/build_synthetic_stimuli.log",
    benchmark:
        "benchmarks/synthetic/build_synthetic_stimuli.tsv"
    conda:
        "../envs/cpu.yaml"
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        root=lambda wildcards, output: layout.root_from_expdesign(output.expdesign),
        synthetic=config["synthetic"],
    script:
        "../workflow_scripts/build_synthetic_stimuli.py"


rule build_synthetic_subject:
    input:
        expdesign=layout.expdesign(SYNTHETIC_NSD),
        stimuli=layout.stimuli(SYNTHETIC_NSD),
        scenes=f"{SYNTHETIC_TRUTH}/scenes.h5",
        labels=f"{SYNTHETIC_TRUTH}/anatomy_streams.nii.gz",
    output:
        files=synthetic_subject_files("{subject}"),
        truth=f"{SYNTHETIC_TRUTH}/{{subject}}.h5",
    log:
        "logs/synthetic/build_synthetic_subject/{subject}.log",
    benchmark:
        "benchmarks/synthetic/build_synthetic_subject/{subject}.tsv"
    conda:
        "../envs/cpu.yaml"
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        root=lambda wildcards, input: layout.root_from_expdesign(input.expdesign),
        synthetic=config["synthetic"],
    script:
        "../workflow_scripts/build_synthetic_subject.py"
