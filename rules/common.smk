# Configuration checks, paths and input functions.
import json
import os
import sys

from brainldm.config import ConfigError, validate_config, without_runtime
from brainldm.files import stable_link
from brainldm.nsd import layout
from brainldm.encoding import FEATURE_MAPS, banded_map_names
from brainldm.ldm.model_folder import ModelFolderError, check_model_folder
from brainldm.flatmaps import figure_spec as flatmap_figure_spec
from brainldm.ldm.names import banded_zc, feature_names, feature_specs, format_number, unet_stages
from brainldm.nsd.betas import roi_path, sessions_on_disk
from brainldm.synthetic.nsd_tree import subject_sessions

# Built by this workflow when the configuration points at them.
SYNTHETIC_NSD = "resources/synthetic_nsd"
SYNTHETIC_TRUTH = "resources/synthetic_nsd_truth"
MODELS = "resources/models"
MODEL_PRESETS = ("tiny", "sd14")
MODEL_BUILT = [f"{MODELS}/{preset}" for preset in MODEL_PRESETS]

config.update(
    validate_config(
        config,
        base_dir=os.getcwd(),
        built_by_workflow={
            "nsd_root": [SYNTHETIC_NSD],
            "model": MODEL_BUILT,
        },
    )
)
NSD_ROOT = os.path.normpath(config["nsd_root"])
MODEL = os.path.normpath(config["model"]) if os.path.exists(config["model"]) else config["model"]
if MODEL not in MODEL_BUILT and os.path.isdir(MODEL):
    # A folder without unet/ or without weights of the variant stops here, not after hours of ingestion.
    try:
        check_model_folder(MODEL, config["model_loading"]["variant"])
    except ModelFolderError as exc:
        raise ConfigError(f"config key 'model': {exc}") from None
SUBJECTS = config["subjects"]
FEATURE_NAMES = feature_names(config["features"])
FEATURE_SPECS = feature_specs(config["features"])
# Joint z + zc models as in the paper: over noise levels at the final stage, and over denoising
# stages at the largest noise level (brainldm.ldm.names).
BANDED_ZC = banded_zc(FEATURE_SPECS)
UNET_STAGES = unet_stages(FEATURE_SPECS)
ENCODING_ROI = config["encoding"]["roi"]
# The two bands of the joint z + zc models, and the maps each writes.
BANDS = ("z", "zc")
BANDED_MAPS = banded_map_names(BANDS)
PAPER_FIGURES = ("figure6", "figure7", "figure8", "figure9")
DECODING_TARGETS = config["decoding"]["targets"]
USES_SYNTHETIC_NSD = NSD_ROOT == SYNTHETIC_NSD
CAPTION_FILES = [
    layout.captions(NSD_ROOT, split, config["ingestion"]["captions_dir"]) for split in layout.CAPTION_SPLITS
]
# Rules name a user's NSD tree and caption folder through links of fixed path, so that pointing
# nsd_root at a copy (same files and times, e.g. `cp -a`, `rsync -a`) reruns nothing.
NSD_LINK = "resources/nsd"
CAPTIONS_LINK = "resources/coco_annotations"
if USES_SYNTHETIC_NSD:
    NSD_FILES = NSD_ROOT
    CAPTION_INPUTS = CAPTION_FILES
else:
    # Not part of NSD's download: say where they come from instead of a bare missing-input error.
    for path in CAPTION_FILES:
        if not os.path.isfile(path):
            raise ConfigError(f"config key 'ingestion.captions_dir': {path} not found. {layout.CAPTIONS_SOURCE}")
    for link, target in ((NSD_LINK, NSD_ROOT), (CAPTIONS_LINK, os.path.dirname(CAPTION_FILES[0]))):
        previous = stable_link(target, link)
        if previous is not None and previous != os.path.realpath(target):
            print(f"{link} now points to {os.path.realpath(target)} (was {previous})", file=sys.stderr)
    NSD_FILES = NSD_LINK
    CAPTION_INPUTS = [os.path.join(CAPTIONS_LINK, os.path.basename(path)) for path in CAPTION_FILES]


def nsd_file(path):
    """A path of the configured NSD tree as rules name it (through :data:`NSD_LINK` for a user's tree)."""
    return os.path.join(NSD_FILES, os.path.relpath(path, NSD_ROOT))


def synthetic_betas(subject):
    """Betas files the synthetic tree holds for one subject."""
    return [
        layout.betas(SYNTHETIC_NSD, subject, session, fmt)
        for session in range(1, subject_sessions(config["synthetic"], subject) + 1)
        for fmt in config["synthetic"]["betas_formats"]
    ]


def synthetic_subject_files(subject):
    """Every file of the synthetic tree that belongs to one subject."""
    return [
        layout.responses(SYNTHETIC_NSD, subject),
        *synthetic_betas(subject),
        layout.ncsnr(SYNTHETIC_NSD, subject),
        *(layout.roi(SYNTHETIC_NSD, subject, name) for name in layout.ROI_FILES),
        layout.brainmask(SYNTHETIC_NSD, subject),
    ]


def ingestion_settings():
    """``config["ingestion"]`` without where the captions are (inputs, not parameters, of the rules)."""
    return {key: value for key, value in config["ingestion"].items() if key != "captions_dir"}


def nsd_inputs():
    """The subject-independent NSD files."""
    return {
        "expdesign": layout.expdesign(NSD_FILES),
        "stim_info": layout.stim_info(NSD_FILES),
        "stimuli": layout.stimuli(NSD_FILES),
        "captions": CAPTION_INPUTS,
    }


def model_input():
    """The model folder as an input when it is local (built here or on disk); nothing for a hub id."""
    return [MODEL] if MODEL in MODEL_BUILT or os.path.isdir(MODEL) else []


def model_location(wildcards, input):
    """The model to load: the local input folder, or the hub id."""
    local = input.model
    if isinstance(local, str):
        return local
    return local[0] if len(local) else MODEL


def feature_files():
    return [f"results/features/{name}.h5" for name in FEATURE_NAMES]


FEATURE_SHARDS = "results/features/shards"


def feature_parts():
    """The manifests of the feature jobs: ``features.jobs`` of them, each its own (GPU) job."""
    parts = config["features"]["jobs"]
    return [f"results/features/parts/part{part}_of_{parts}.json" for part in range(parts)]


def reconstruction_shards(wildcards):
    return f"results/{wildcards.subject}/reconstruction/shards"


def reconstruction_parts(wildcards):
    """The manifests of a subject's reconstruction jobs: ``reconstruction.jobs`` of them, each its own (GPU) job."""
    parts = config["reconstruction"]["jobs"]
    return [f"results/{wildcards.subject}/reconstruction/parts/part{part}_of_{parts}.json" for part in range(parts)]


def all_targets():
    """Targets of the default run: every stage that exists, for the configured subjects."""
    targets = [*trials_tables(), "results/stimuli/stimuli.h5"]
    targets += [subject_manifest(subject) for subject in SUBJECTS]
    targets.append("results/job_benchmarks.tsv")
    targets += POOLED_EVALUATION
    if USES_SYNTHETIC_NSD:
        targets += [f"{SYNTHETIC_TRUTH}/{subject}.h5" for subject in SUBJECTS]
    return targets


# Evaluation: per-subject files (results/{subject}/evaluation/) and the tables over subjects.
EVALUATION_FILES = ("identification.tsv", "community.tsv", "best_samples.tsv", "best_samples.png")
POOLED_EVALUATION = [
    f"results/evaluation/{name}" for name in ("identification.tsv", "identification.png", "community.tsv")
]


def subject_manifest(subject):
    """The target that builds (or, with --forcerun, rebuilds) everything of one subject."""
    return f"results/{subject}/outputs.tsv"


def subject_outputs(wildcards):
    """Every output of one subject (the files its manifest lists)."""
    subject = wildcards.subject
    out = [f"results/{subject}/trials.tsv", *roi_betas(subject)]
    out += [f"results/{subject}/features_pca/{name}.h5" for name in FEATURE_NAMES]
    out += [f"results/{subject}/decoding/{target}.h5" for target in DECODING_TARGETS]
    out += [f"results/{subject}/reconstruction/{name}" for name in ("images", "latents.h5", "contact_sheet.png")]
    out += encoding_results(wildcards)
    out += [feature_map(subject, name, m) for name in FEATURE_NAMES for m in FEATURE_MAPS]
    out += [banded_map(subject, zc, m) for zc in BANDED_ZC for m in BANDED_MAPS]
    for stage in UNET_STAGES:
        out += best_layer_files(subject, stage).values()
    out.append(f"results/{subject}/encoding/roi_summary.tsv")
    out += flatmap_outputs(subject)
    out += [f"results/{subject}/evaluation/{name}" for name in EVALUATION_FILES]
    return out


def subject_nsd_files(subject):
    """The NSD files of one subject that ingestion reads (betas found on disk for real data)."""
    if USES_SYNTHETIC_NSD:
        return synthetic_subject_files(subject)
    betas = sessions_on_disk(layout.betas_dir(NSD_ROOT, subject), config["ingestion"]["betas_format"])
    rois = {config["rois"][name]["file"] for name in config["rois"]}
    return [
        layout.responses(NSD_FILES, subject),
        *(nsd_file(path) for path in betas.values()),
        *(roi_path(NSD_FILES, subject, name) for name in sorted(rois)),
    ]


def all_subjects_nsd_files(wildcards):
    """Every configured subject's NSD files: the test set depends on all of them."""
    return [f for subject in SUBJECTS for f in subject_nsd_files(subject)]


def trials_tables():
    return [f"results/{subject}/trials.tsv" for subject in SUBJECTS]


def roi_betas(subject):
    return [f"results/{subject}/betas/{roi}.h5" for roi in config["rois"]]


# --------------------------------------------------------------------------- encoding


def single_model_settings():
    """Encoding settings without those of the joint models (changing them reruns only the joint models)."""
    settings = without_runtime(config["encoding"], "encoding")
    return {key: value for key, value in settings.items() if not key.startswith("banded_")}


def encoding_betas(wildcards):
    return f"results/{wildcards.subject}/betas/{ENCODING_ROI}.h5"


def streams_reference(wildcards):
    """The subject's streams.nii.gz: grid, affine and header of every map, labels of the ROI summary."""
    return layout.roi(NSD_FILES, wildcards.subject, "streams")


def feature_result(subject, feature):
    return f"results/{subject}/encoding/{feature}.h5"


def feature_map(subject, feature, name):
    return f"results/{subject}/encoding/maps/{feature}_{name}.nii.gz"


def banded_result(subject, zc):
    return f"results/{subject}/encoding/banded/z+{zc}.h5"


def banded_map(subject, zc, name):
    return feature_map(subject, f"z+{zc}", name)


def best_layer_files(subject, stage):
    return {
        "map": feature_map(subject, f"best_unet_layer_t{stage}", "label"),
        "labels": f"results/{subject}/encoding/best_unet_layer_t{stage}.tsv",
    }


def unet_results(wildcards):
    """Encoding results of the U-Net blocks at one stage, in config order."""
    return [
        feature_result(wildcards.subject, spec.name)
        for spec in FEATURE_SPECS
        if spec.kind == "unet" and format_number(spec.stage) == wildcards.stage
    ]


def encoding_results(wildcards):
    """Every encoding result of one subject: per feature, then the banded z + zc models."""
    subject = wildcards.subject
    return [feature_result(subject, name) for name in FEATURE_NAMES] + [banded_result(subject, zc) for zc in BANDED_ZC]


# --------------------------------------------------------------------------- flatmaps


def figure_spec(subject, figure):
    """The maps of one paper figure (brainldm.flatmaps.figure_spec), or None if the config has none."""
    return flatmap_figure_spec(
        figure,
        FEATURE_SPECS,
        BANDS,
        lambda feature, name: feature_map(subject, feature, name),
        lambda stage: best_layer_files(subject, stage),
    )


def _paths_in(spec):
    if isinstance(spec, dict):
        return [path for value in spec.values() for path in _paths_in(value)]
    return [spec] if spec else []


def figure_maps(wildcards):
    return _paths_in(figure_spec(wildcards.subject, wildcards.figure))


def per_map_flatmaps(wildcards):
    """PNG name -> the map drawn, for every map of one subject (draw_map_flatmaps' ``maps``)."""
    subject = wildcards.subject
    maps = {
        f"{name}_r": {
            "map": feature_map(subject, name, "r"),
            "mask": feature_map(subject, name, "significant"),
            "kind": "r",
        }
        for name in FEATURE_NAMES
    }
    for zc in BANDED_ZC:
        for band in BANDS:
            maps[f"z+{zc}_unique_{band}"] = {"map": banded_map(subject, zc, f"unique_{band}"), "kind": "unique"}
    for stage in UNET_STAGES:
        files = best_layer_files(subject, stage)
        maps[f"best_unet_layer_t{stage}"] = {"map": files["map"], "labels": files["labels"], "kind": "layer"}
    return maps


def per_map_inputs(wildcards):
    return [path for panel in per_map_flatmaps(wildcards).values() for key, path in panel.items() if key != "kind"]


def flatmap_transform():
    """The synthetic volume's pycortex transform folder; real data use a transform of the filestore."""
    return [f"{SYNTHETIC_TRUTH}/pycortex_transform"] if USES_SYNTHETIC_NSD else []


def flatmap_outputs(subject):
    if not config["flatmaps"]["enabled"]:
        return []
    out = [
        f"results/{subject}/flatmaps/{figure}.png"
        for figure in PAPER_FIGURES
        if figure_spec(subject, figure) is not None
    ]
    if config["flatmaps"]["per_map"]:
        out.append(f"results/{subject}/flatmaps/maps")
    return out


# --------------------------------------------------------------------------- resources


_SIZES = {}


def workflow_sizes():
    """The sizes that set the heavy jobs' costs, read from the NSD files and the model folder once they are
    on disk (real data at once; the synthetic tree and model once built, so asked again until then)."""
    from brainldm.costs import WorkflowSizes, feature_dims, subject_sizes
    from brainldm.errors import NSDInputError

    if "subjects" not in _SIZES:
        if not os.path.isfile(layout.expdesign(NSD_ROOT)):
            return None
        try:
            _SIZES["subjects"] = {s: subject_sizes(NSD_ROOT, s, config["ingestion"], config["rois"]) for s in SUBJECTS}
        except (NSDInputError, OSError, ValueError) as exc:
            if not _SIZES.get("noticed"):
                print(f"resources: the rules' default requests (sizes not readable: {exc})", file=sys.stderr)
                _SIZES["noticed"] = True
            return None
    if _SIZES.get("dims") is None and os.path.isdir(MODEL):
        _SIZES["dims"] = feature_dims(MODEL, config["features"])
    return WorkflowSizes(_SIZES["subjects"], _SIZES.get("dims"))


def _expected_cost(rule, wildcards):
    from brainldm.costs import job_cost

    return job_cost(rule, workflow_sizes(), dict(wildcards.items()), config)


def measured_threads(rule, most):
    """``threads`` of a heavy rule: one for a job expected to be short (brainldm.costs.job_threads), else
    ``most``. A function of ``input``, so that Snakemake asks when the job is ready to run."""
    from brainldm.costs import job_threads

    return lambda wildcards, input: job_threads(_expected_cost(rule, wildcards), most)


def shared_threads(most, parallel_jobs):
    """``threads`` of the GPU rules, whose ``parallel_jobs`` jobs can run at once. On a local run, the
    cores shared among them (at least 1, at most ``most``), so that on a small CPU machine they run
    side by side on one thread each; ``most`` on a cluster and inside a cluster job."""

    def threads(wildcards):
        if not (workflow.is_main_process and workflow.local_exec):
            return most
        return max(1, min(most, workflow.cores // max(1, parallel_jobs)))

    return threads


def measured_resources(rule, **default):
    """``mem_mb`` and ``runtime`` of a heavy rule from its inputs' sizes and the rehearsal's coefficients
    (brainldm.costs), or ``default`` where these are not known. With BRAINLDM_PRICE set to a file, each
    job's expected cost is appended to it (brainldm.price reads it from a dry run)."""
    from brainldm.costs import resource_request

    def request(wildcards, threads, key):
        cost = _expected_cost(rule, wildcards)
        price_file = os.environ.get("BRAINLDM_PRICE")
        if price_file and key == "mem_mb":  # once per job
            record = {"rule": rule, "wildcards": dict(wildcards.items()), "cost": cost and vars(cost)}
            with open(price_file, "a") as f:
                f.write(json.dumps(record) + "\n")
        return resource_request(cost, threads, default)[key]

    return {
        "mem_mb": lambda wildcards, input, threads: request(wildcards, threads, "mem_mb"),
        "runtime": lambda wildcards, input, threads: request(wildcards, threads, "runtime"),
    }
