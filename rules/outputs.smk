# Per-subject targets: a manifest of every output with its checksum.
# `snakemake results/subj01/outputs.tsv` builds one subject; add `--forcerun <rule>` to rebuild it.


rule write_subject_manifest:
    input:
        subject_outputs,
    output:
        "results/{subject}/outputs.tsv",
    log:
        "logs/outputs/write_subject_manifest/{subject}.log",
    conda:
        "../envs/cpu.yaml"
    resources:
        mem_mb=1000,
        runtime=10,
    script:
        "../workflow_scripts/write_subject_manifest.py"


rule summarize_job_benchmarks:
    input:
        # after every subject's outputs, so that every heavy job has written its benchmark
        [subject_manifest(subject) for subject in SUBJECTS],
    output:
        report(
            "results/job_benchmarks.tsv",
            caption="../report/job_benchmarks.rst",
            category="Benchmarks",
        ),
    log:
        "logs/outputs/summarize_job_benchmarks.log",
    conda:
        "../envs/cpu.yaml"
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        benchmark_dir="benchmarks",
    script:
        "../workflow_scripts/summarize_job_benchmarks.py"
