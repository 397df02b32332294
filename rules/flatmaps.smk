# pycortex flatmaps of the encoding maps: the paper's Figures 6-9 and one PNG per map.
# They only draw: the NIfTI maps come from rules/encoding.smk, so with --keep-going a failed flatmap
# leaves every other output (the default profile stops at the first failed job).


rule draw_paper_figure:
    input:
        maps=figure_maps,
        transform=flatmap_transform(),
    output:
        report(
            "results/{subject}/flatmaps/{figure}.png",
            caption="../report/flatmap_figure.rst",
            category="Encoding flatmaps",
            subcategory="{subject}",
            labels={"subject": "{subject}", "figure": "{figure}"},
        ),
    log:
        "logs/flatmaps/draw_paper_figure/{subject}_{figure}.log",
    conda:
        "../envs/cpu.yaml"
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        spec=lambda wildcards: figure_spec(wildcards.subject, wildcards.figure),
        settings=config["flatmaps"],
        transform_dir=lambda wildcards, input: input.transform[0] if len(input.transform) else None,
    script:
        "../workflow_scripts/draw_paper_figure.py"


rule draw_map_flatmaps:
    input:
        maps=per_map_inputs,
        transform=flatmap_transform(),
    output:
        directory("results/{subject}/flatmaps/maps"),
    log:
        "logs/flatmaps/draw_map_flatmaps/{subject}.log",
    benchmark:
        "benchmarks/flatmaps/draw_map_flatmaps/{subject}.tsv"
    conda:
        "../envs/cpu.yaml"
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        maps=per_map_flatmaps,
        settings=config["flatmaps"],
        transform_dir=lambda wildcards, input: input.transform[0] if len(input.transform) else None,
    script:
        "../workflow_scripts/draw_map_flatmaps.py"
