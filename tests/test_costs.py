"""Job costs from the inputs' sizes: sizes read from NSD's files and SD 1.4's configs, requests that follow them."""

from __future__ import annotations

import json

import numpy as np
import pytest

from brainldm.costs import (
    Cost,
    SubjectSizes,
    WorkflowSizes,
    feature_dims,
    job_cost,
    job_threads,
    resource_request,
    subject_sizes,
    work_terms,
)
from brainldm.costs import SMALL_JOB_CPU_S
from nsd_headers import EARLY, GRID, VENTRAL, build_nsd_headers, build_sd14_configs

ALL_BLOCKS = ["down_blocks.0", "down_blocks.1", "down_blocks.2", "down_blocks.3", "mid_block", "up_blocks.0",
              "up_blocks.1", "up_blocks.2", "up_blocks.3"]
PAPER_FEATURES = {"image_size": 320, "strengths": [0.8], "stages": [1.0], "unet_blocks": ALL_BLOCKS}
CONFIG = {"pca": {"n_components": 6400},
          "decoding": {"alphas": [1.0, 10.0], "cv": 5, "n_targets_batch": 4096, "targets": {"z": "early"}},
          "encoding": {"alphas": [1.0, 10.0, 100.0], "cv": 5, "n_targets_batch": 4096, "roi": "brain",
                       "banded_n_ratios": 9, "banded_alphas": None}}
MEASURED = {"rules": {rule: {"cpu": {"read": 1e-9, "gram": 1e-10, "eig": 1e-9, "setup": 1e-9, "fit": 1e-10},
                             "base_mb": 500.0, "memory_factor": 2.0}
                      for rule in ("extract_roi_betas", "reduce_features", "decode_latent", "encode_feature",
                                   "encode_banded")}}


@pytest.fixture(scope="module")
def sd14(tmp_path_factory):
    return build_sd14_configs(tmp_path_factory.mktemp("hub") / "stable-diffusion-v1-4")


def test_feature_dims_are_those_of_diffusers_unet_from_sd14s_config(sd14):
    """The geometry is checked against diffusers itself: SD 1.4's published U-Net config, built on the meta
    device (no memory), run at 320 px (a 40 x 40 latent), every top-level block's output recorded."""
    torch = pytest.importorskip("torch")
    from diffusers import UNet2DConditionModel

    config = json.loads((sd14 / "unet" / "config.json").read_text())
    with torch.device("meta"):
        unet = UNet2DConditionModel.from_config(config)
        sizes = {}

        def record(name):
            def hook(module, args, out):
                sizes[name] = (out[0] if isinstance(out, tuple) else out)[0].numel()  # one image's values
            return hook

        for name in ALL_BLOCKS:
            unet.get_submodule(name).register_forward_hook(record(name))
        unet(torch.zeros(1, 4, 40, 40), torch.tensor([500]), torch.zeros(1, 77, 768))
    dims = feature_dims(sd14, PAPER_FEATURES)
    assert {name: dims[f"unet_{name}_t1"] for name in ALL_BLOCKS} == sizes
    # the numbers: z 4 x 40 x 40, c 77 x 768, up_blocks.2 640 x 40 x 40
    assert dims["z"] == 6_400 and dims["zc_s0.8_t1"] == 6_400 and dims["c"] == 59_136
    assert dims["unet_up_blocks.2_t1"] == 1_024_000


def test_feature_dims_wait_for_a_model_folder(tmp_path):
    assert feature_dims(tmp_path / "not_built", PAPER_FEATURES) is None


@pytest.fixture(scope="module")
def headers(tmp_path_factory):
    return build_nsd_headers(tmp_path_factory.mktemp("nsd"), subjects=("subj01",))


def test_subject_sizes_come_from_the_design_responses_and_roi_files(headers):
    rois = {"early": {"file": "streams", "labels": [1]}, "ventral": {"file": "streams", "labels": [5]},
            "brain": {"file": "brainmask", "labels": [1]}}
    ingestion = {"sessions": "paper", "betas_format": "auto", "missing_sessions": "error"}
    sizes = subject_sizes(headers, "subj01", ingestion, rois)
    assert sizes.sessions == 37 and sizes.trials == 37 * 750
    assert sizes.roi_voxels["early"] == EARLY and sizes.roi_voxels["ventral"] == VENTRAL
    assert 290_000 < sizes.roi_voxels["brain"] < 310_000 and sizes.grid_voxels == int(np.prod(GRID))
    # NSD: a tenth of the trials show the 1,000 shared images; 9,000 unique images, 3 repetitions over 40 sessions
    assert sizes.train_trials + (sizes.trials - sizes.train_trials) == sizes.trials
    assert 0.08 < 1 - sizes.train_trials / sizes.trials < 0.12
    assert 8_000 < sizes.train_images <= 9_000 and 800 < sizes.test_images <= 1_000
    fewer = subject_sizes(headers, "subj01", dict(ingestion, sessions=list(range(1, 11))), rois)
    assert fewer.sessions == 10 and fewer.trials == 7_500 and fewer.train_images < sizes.train_images


def paper_subject(**changes) -> WorkflowSizes:
    subject = SubjectSizes("subj01", 37, 27_750, 24_980, 982, 8_859, int(np.prod(GRID)),
                           {"early": EARLY, "ventral": VENTRAL, "brain": 300_000}, frozenset(range(9_841)))
    values = {**vars(subject), **changes}
    return WorkflowSizes({"subj01": SubjectSizes(**values)}, {"z": 6_400, "c": 59_136, "unet_up_blocks.2_t1": 1_024_000})


def test_costs_follow_the_sizes():
    base = job_cost("encode_feature", paper_subject(), {"subject": "subj01", "feature": "z"}, CONFIG, MEASURED)
    twice = job_cost("encode_feature", paper_subject(roi_voxels={"early": EARLY, "ventral": VENTRAL, "brain": 600_000}),
                     {"subject": "subj01", "feature": "z"}, CONFIG, MEASURED)
    terms = work_terms("encode_feature", paper_subject(), {"subject": "subj01"}, CONFIG)
    assert terms["cpu"]["fit"] == 3 * 24_980 * 6_400 * 300_000  # alphas x trials x components x voxels
    assert terms["cpu"]["setup"] == 6 * (24_980 * 6_400**2 + 6_400**3)
    assert twice.cpu_s - base.cpu_s == pytest.approx(1e-10 * terms["cpu"]["fit"])  # only the fit term doubles
    roi = [job_cost("extract_roi_betas", paper_subject(sessions=s, trials=750 * s), {"subject": "subj01"}, CONFIG,
                    MEASURED).cpu_s for s in (10, 37)]
    assert roi[1] == pytest.approx(roi[0] * 3.7)  # reading is linear in the trials read
    banded = work_terms("encode_banded", paper_subject(), {"subject": "subj01"}, CONFIG)
    assert banded["cpu"]["setup"] == 9 * 6 * (24_980 * 12_800**2 + 12_800**3)  # 9 band weights, bands of 2 x 6,400
    # a PCA job does every feature: its Gram products grow with their summed dimensions
    pca = work_terms("reduce_features", paper_subject(), {"subject": "subj01"}, CONFIG)
    assert pca["cpu"]["gram"] == 9_841**2 * (6_400 + 59_136 + 1_024_000)
    assert job_cost("encode_feature", None, {"subject": "subj01"}, CONFIG, MEASURED) is None


def test_requests_add_margins_or_keep_the_rules_defaults():
    default = {"mem_mb": 16000, "runtime": 240}
    assert resource_request(None, 4, default) == default
    assert resource_request(Cost(None, None, 10.0), 4, default) == default  # counted, not measured
    request = resource_request(Cost(cpu_s=4 * 3600, peak_mb=10_000, output_mb=1), 4, default)
    assert request["runtime"] == 60 * 2 + 10 and request["mem_mb"] == 13_000
    # a memory floor; a start-up allowance of 10 minutes on top of every job's time
    assert resource_request(Cost(1.0, 100.0, 0), 4, default) == {"mem_mb": 1000, "runtime": 11}


def test_short_jobs_get_one_thread_paper_jobs_the_rules():
    assert job_threads(Cost(cpu_s=SMALL_JOB_CPU_S / 2, peak_mb=500, output_mb=1), 4) == 1
    assert job_threads(Cost(cpu_s=SMALL_JOB_CPU_S * 2, peak_mb=500, output_mb=1), 4) == 4
    assert job_threads(None, 4) == 4 and job_threads(Cost(None, None, 1.0), 2) == 2  # not known: the rule's own
    # with the committed coefficients: the suite's tiny encoding job is short, subj01's at the paper's size is not
    tiny = paper_subject(train_trials=450, roi_voxels={"early": 300, "ventral": 400, "brain": 10_000})
    small = dict(CONFIG, pca={"n_components": 149})
    assert job_threads(job_cost("encode_feature", tiny, {"subject": "subj01"}, small), 4) == 1
    assert job_threads(job_cost("encode_feature", paper_subject(), {"subject": "subj01"}, CONFIG), 4) == 4


def test_the_committed_coefficients_keep_paper_jobs_within_a_node():
    """The rehearsal's coefficients (data/job_costs.json): every modelled CPU job of subj01 at the paper's sizes
    fits the issue's 16 GB, and its runtime request exceeds its expected time."""
    from brainldm.costs import MODELLED_RULES, coefficients

    measured = coefficients()
    assert set(MODELLED_RULES) <= set(measured["rules"]), "bench/paper_rehearsal.py writes every modelled rule"
    config = dict(CONFIG, decoding=dict(CONFIG["decoding"], targets={"z": "early", "c": "ventral"}))
    for rule, wildcards in (("extract_roi_betas", {}), ("reduce_features", {}), ("decode_latent", {"target": "c"}),
                            ("encode_feature", {"feature": "z"}), ("encode_banded", {"zc": "zc_s0.8_t1"})):
        cost = job_cost(rule, paper_subject(), {"subject": "subj01", **wildcards}, config)
        assert 0 < cost.peak_mb < 16_000, (rule, cost)
        request = resource_request(cost, 4, {"mem_mb": 1, "runtime": 1})
        assert request["mem_mb"] > cost.peak_mb and request["runtime"] * 60 * 4 > cost.cpu_s, (rule, cost, request)
