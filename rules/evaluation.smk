# Scores of the reconstructions: the paper's identification (Figure 5) and the community table.


rule evaluate_subject:
    input:
        stimuli="results/stimuli/stimuli.h5",
        test_images="results/split/test_images.tsv",
        images="results/{subject}/reconstruction/images",
    output:
        paper="results/{subject}/evaluation/identification.tsv",
        community="results/{subject}/evaluation/community.tsv",
        best="results/{subject}/evaluation/best_samples.tsv",
        sheet=report(
            "results/{subject}/evaluation/best_samples.png",
            caption="../report/evaluation_best_samples.rst",
            category="Evaluation",
            subcategory="{subject}",
        ),
    log:
        "logs/evaluation/evaluate_subject/{subject}.log",
    benchmark:
        "benchmarks/evaluation/evaluate_subject/{subject}.tsv"
    priority: 1
    conda:
        "../envs/gpu.yaml"
    threads: shared_threads(2, len(SUBJECTS))
    resources:
        mem_mb=16000,
        runtime=240,
    params:
        n_samples=config["reconstruction"]["n_samples"],
        settings=without_runtime(config["evaluation"], "evaluation"),
    script:
        "../workflow_scripts/evaluate_subject.py"


rule evaluate_pooled:
    input:
        paper=expand("results/{subject}/evaluation/identification.tsv", subject=SUBJECTS),
        community=expand("results/{subject}/evaluation/community.tsv", subject=SUBJECTS),
    output:
        identification=report(
            "results/evaluation/identification.tsv",
            caption="../report/evaluation_identification.rst",
            category="Evaluation",
            subcategory="pooled",
        ),
        plot=report(
            "results/evaluation/identification.png",
            caption="../report/evaluation_identification.rst",
            category="Evaluation",
            subcategory="pooled",
        ),
        community=report(
            "results/evaluation/community.tsv",
            caption="../report/evaluation_community.rst",
            category="Evaluation",
            subcategory="pooled",
        ),
    log:
        "logs/evaluation/evaluate_pooled.log",
    conda:
        "../envs/cpu.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        subjects=SUBJECTS,
        n_samples=config["reconstruction"]["n_samples"],
        settings=without_runtime(config["evaluation"], "evaluation"),
    script:
        "../workflow_scripts/evaluate_pooled.py"
