"""The workflow as a user drives it: dry run, lint, bad configuration, one full run."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
import yaml

from conftest import REPO, SMALL_CONFIG, run_snakemake


def _job_counts(stdout: str) -> dict[str, int]:
    table = stdout.split("Job stats:")[1]
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.M)}


def test_dry_run_lists_the_dag(tmp_path):
    result = run_snakemake(tmp_path, "-n")
    assert result.returncode == 0, result.stderr
    counts = _job_counts(result.stdout)
    subjects = yaml.safe_load(SMALL_CONFIG.read_text())["subjects"]
    assert counts["build_synthetic_subject"] == len(subjects)
    assert counts["build_synthetic_anatomy"] == counts["build_synthetic_stimuli"] == counts["build_model"] == 1
    assert counts["extract_roi_betas"] == len(subjects)
    assert counts["split_trials"] == counts["extract_stimuli"] == counts["extract_features"] == 1
    assert counts["reduce_features"] == counts["reconstruct_images"] == len(subjects)
    assert counts["decode_latent"] == 2 * len(subjects)
    config = yaml.safe_load(SMALL_CONFIG.read_text())["features"]
    n_features = 2 + len(config["strengths"]) * len(config["stages"]) + len(config["unet_blocks"]) * len(config["stages"])
    assert counts["encode_feature"] == n_features * len(subjects)
    # joint z + zc models: noise levels at the final stage and stages at the largest noise level
    assert counts["encode_banded"] == (len(config["strengths"]) + len(config["stages"]) - 1) * len(subjects)
    assert counts["map_best_unet_layer"] == len(config["stages"]) * len(subjects)
    assert counts["draw_paper_figure"] == 4 * len(subjects)
    assert counts["evaluate_subject"] == counts["write_subject_manifest"] == len(subjects)
    assert counts["evaluate_pooled"] == counts["summarize_job_benchmarks"] == 1
    assert not (tmp_path / "resources").exists()


def test_lint_reports_nothing(tmp_path):
    result = run_snakemake(tmp_path, "--lint")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Lints for" not in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ('subjects=["subj01","subj42"]', "subjects[1]"),
        ("nsd_root=/no/such/nsd", "nsd_root"),
        ('synthetic={"image_size":"large"}', "synthetic.image_size"),
        ('evaluation={"weights":"pretrained","image_scale":0.5}', "evaluation.image_scale"),  # a cross-key rule
    ],
)
def test_bad_config_stops_before_any_job(tmp_path, override, key):
    result = run_snakemake(tmp_path, "--cores", "1", "--config", override)
    assert result.returncode != 0
    assert f"config key '{key}'" in result.stdout + result.stderr
    assert not (tmp_path / "resources").exists() and not (tmp_path / "logs").exists()


def test_missing_config_key_is_named(tmp_path):
    config = yaml.safe_load(SMALL_CONFIG.read_text())
    del config["subjects"]
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(config))
    # the repository's config.yaml is always loaded first, so point the workflow at a copy without it
    workflow = tmp_path / "workflow"
    workflow.mkdir()
    for name in ("Snakefile", "rules", "workflow_scripts", "envs", "profiles"):
        (workflow / name).symlink_to(REPO / name)
    (workflow / "config.yaml").write_text(yaml.safe_dump(config))
    result = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--directory", str(workflow)],
                            cwd=workflow, capture_output=True, text=True)
    assert result.returncode != 0
    assert "config key 'subjects' is missing" in result.stdout + result.stderr


@pytest.mark.workflow
def test_full_run_builds_every_target(workflow_run, small_config):
    for subject in small_config["subjects"]:
        assert (workflow_run / "resources" / "synthetic_nsd_truth" / f"{subject}.h5").is_file()
        assert (workflow_run / "logs" / "synthetic" / "build_synthetic_subject" / f"{subject}.log").stat().st_size > 0
        for roi in small_config["rois"]:
            assert (workflow_run / "results" / subject / "betas" / f"{roi}.h5").is_file()
        assert (workflow_run / "results" / subject / "trials.tsv").is_file()
        assert (workflow_run / "results" / subject / "reconstruction" / "contact_sheet.png").stat().st_size > 1000
        assert len(list((workflow_run / "results" / subject / "reconstruction" / "images" / "Xzc").glob("*.png"))) > 0
    assert (workflow_run / "results" / "split" / "test_images.tsv").is_file()
    assert (workflow_run / "results" / "stimuli" / "stimuli.h5").is_file()
    assert (workflow_run / "resources" / "models" / "tiny" / "model_index.json").is_file()
    assert (workflow_run / "benchmarks" / "models" / "build_model" / "tiny.tsv").is_file()
    # nothing left to do: the run is complete and consistent
    again = run_snakemake(workflow_run, "-n")
    assert again.returncode == 0 and "Nothing to be done" in again.stdout + again.stderr


def test_model_folder_without_unet_stops_before_any_job(tmp_path):
    """A local model folder is checked when the DAG is built, not in extract_features hours later."""
    model = tmp_path / "sd14"
    model.mkdir()
    (model / "model_index.json").write_text(
        '{"_class_name": "StableDiffusionPipeline", "unet": ["diffusers", "UNet2DConditionModel"], '
        '"vae": ["diffusers", "AutoencoderKL"]}')
    (model / "vae").mkdir()
    result = run_snakemake(tmp_path / "work", "--cores", "1", "--config", f"model={model}")
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "config key 'model'" in output and f"no folder {model / 'unet'}" in output
    assert not (tmp_path / "work" / "resources").exists() and not (tmp_path / "work" / "logs").exists()
