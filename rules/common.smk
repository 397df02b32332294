# Configuration checks, paths and input functions.
import os

from brainldm.config import validate_config
from brainldm.nsd import layout
from brainldm.ldm.names import feature_names
from brainldm.nsd.betas import roi_path, sessions_on_disk
from brainldm.synthetic.nsd_tree import SyntheticDesign

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
SUBJECTS = config["subjects"]
FEATURE_NAMES = feature_names(config["features"])
DECODING_TARGETS = config["decoding"]["targets"]
USES_SYNTHETIC_NSD = NSD_ROOT == SYNTHETIC_NSD


def synthetic_betas(subject):
    """Betas files the synthetic tree holds for one subject."""
    design = SyntheticDesign.from_config(config["synthetic"])
    return [
        layout.betas(SYNTHETIC_NSD, subject, session, fmt)
        for session in range(1, design.sessions_released + 1)
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


def nsd_inputs():
    """The subject-independent NSD files."""
    return {
        "expdesign": layout.expdesign(NSD_ROOT),
        "stim_info": layout.stim_info(NSD_ROOT),
        "stimuli": layout.stimuli(NSD_ROOT),
        "captions": [layout.captions(NSD_ROOT, split) for split in layout.CAPTION_SPLITS],
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


def all_targets():
    """Targets of the default run: every stage that exists, for the configured subjects."""
    targets = [*trials_tables(), "results/stimuli/stimuli.h5"]
    for subject in SUBJECTS:
        targets += roi_betas(subject)
        targets += [f"results/{subject}/features_pca/{name}.h5" for name in FEATURE_NAMES]
        targets += [f"results/{subject}/decoding/{target}.h5" for target in DECODING_TARGETS]
        targets.append(f"results/{subject}/reconstruction/contact_sheet.png")
    if USES_SYNTHETIC_NSD:
        targets += [f"{SYNTHETIC_TRUTH}/{subject}.h5" for subject in SUBJECTS]
    return targets


def subject_nsd_files(subject):
    """The NSD files of one subject that ingestion reads (betas found on disk for real data)."""
    if USES_SYNTHETIC_NSD:
        return synthetic_subject_files(subject)
    betas = sessions_on_disk(
        layout.betas_dir(NSD_ROOT, subject), config["ingestion"]["betas_format"]
    )
    rois = {config["rois"][name]["file"] for name in config["rois"]}
    return [
        layout.responses(NSD_ROOT, subject),
        *betas.values(),
        *(roi_path(NSD_ROOT, subject, name) for name in sorted(rois)),
    ]


def all_subjects_nsd_files(wildcards):
    """Every configured subject's NSD files: the test set depends on all of them."""
    return [f for subject in SUBJECTS for f in subject_nsd_files(subject)]


def trials_tables():
    return [f"results/{subject}/trials.tsv" for subject in SUBJECTS]


def roi_betas(subject):
    return [f"results/{subject}/betas/{roi}.h5" for roi in config["rois"]]
