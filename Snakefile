# brainldm: Takagi & Nishimoto (CVPR 2023) on the Natural Scenes Dataset, as one DAG.
# Rules live in rules/*.smk, their logic in src/brainldm; see README.md.
import re

from snakemake.utils import min_version

min_version("9.0")


configfile: "config.yaml"


report: "report/workflow.rst"


include: "rules/common.smk"


wildcard_constraints:
    subject="|".join(layout.NSD_SUBJECTS),
    preset="|".join(MODEL_PRESETS),
    target="|".join(DECODING_TARGETS),
    feature="|".join(re.escape(name) for name in FEATURE_NAMES),
    zc="|".join(re.escape(name) for name in BANDED_ZC),
    stage="|".join(re.escape(stage) for stage in UNET_STAGES),
    figure="|".join(PAPER_FIGURES),
    part=r"\d+",
    parts=r"\d+",


include: "rules/synthetic.smk"
include: "rules/models.smk"
include: "rules/ingestion.smk"
include: "rules/features.smk"
include: "rules/decoding.smk"
include: "rules/evaluation.smk"
include: "rules/encoding.smk"
include: "rules/flatmaps.smk"
include: "rules/outputs.smk"


rule all:
    default_target: True
    input:
        all_targets(),
