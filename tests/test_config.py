"""Configuration validation names the key at fault before any job runs."""

from __future__ import annotations

import copy

import pytest
import yaml

from brainldm.config import ConfigError, load_schema, section_settings, validate_config

from conftest import REPO

BUILT = {"nsd_root": ["resources/synthetic_nsd"], "model": ["resources/models/tiny"]}


def _n_trials(config):
    synthetic = config["synthetic"]
    return (synthetic["n_shared_images"] + synthetic["n_unique_images"]) * synthetic["repetitions"]


@pytest.fixture
def config():
    return yaml.safe_load((REPO / "config.yaml").read_text())


def test_default_config_is_valid_and_defaults_are_filled(config):
    config["synthetic"].pop("signal", None)
    validated = validate_config(config, base_dir=str(REPO), built_by_workflow=BUILT)
    assert validated["synthetic"]["signal"]["noise_sd"] == load_schema()["properties"]["synthetic"]["properties"][
        "signal"]["properties"]["noise_sd"]["default"]
    assert "signal" not in config["synthetic"]  # the input is not modified


@pytest.mark.parametrize(
    ("change", "key", "found"),
    [
        (lambda c: c["subjects"].append("subj99"), "subjects[4]", "subj99"),
        (lambda c: c.pop("model"), "model", "missing"),
        (lambda c: c["synthetic"].update(image_size="large"), "synthetic.image_size", "'large'"),
        # one more than the total number of trials never divides it, whatever the sizes
        (lambda c: c["synthetic"].update(trials_per_session=_n_trials(c) + 1), "synthetic.trials_per_session",
         "must be a multiple"),
        (lambda c: c.update(nsd_root="/no/such/nsd"), "nsd_root", "/no/such/nsd"),
        (lambda c: c.update(model="./no/such/model"), "model", "./no/such/model"),
        (lambda c: c.update(unknown_key=1), "unknown_key", "not known"),
        (lambda c: c["synthetic"].update(voxel_downsample=[2, 2]), "synthetic.voxel_downsample", "[2, 2]"),
        (lambda c: c.update(decoding={"targets": {"z": "early", "c": "nowhere"}}), "decoding.targets.c", "nowhere"),
        (lambda c: c.update(decoding={"targets": {"z": "early"}}), "decoding.targets", "'c'"),
        (lambda c: c.update(ingestion={"missing_sessions": "ignore"}), "ingestion.missing_sessions", "ignore"),
        (lambda c: c.update(encoding={"roi": "cortex"}), "encoding.roi", "cortex"),
        (lambda c: c.update(encoding={"fdr_q": 1.5}), "encoding.fdr_q", "1.5"),
        (lambda c: c.update(flatmaps={"with_rois": "maybe"}), "flatmaps.with_rois", "maybe"),
        # cross-key rules and names that jobs would only find out about later
        (lambda c: c.update(evaluation={"weights": "pretrained", "image_scale": 0.5}), "evaluation.image_scale",
         "only with 'evaluation.weights: random'"),
        (lambda c: c.update(evaluation={"weights": "random", "random_clip": {"hidden_size": 30,
                                                                           "num_attention_heads": 4}}),
         "evaluation.random_clip.num_attention_heads", "divisor of hidden_size (30), found 4"),
        (lambda c: c.update(encoding={"backend": "torch-cuda"}), "encoding.backend", "'torch-cuda'"),
        (lambda c: c.update(decoding={"backend": "gpu"}), "decoding.backend", "'gpu'"),
        (lambda c: c.update(features={"num_inference_steps": 3, "strengths": [0.2]}), "features.strengths",
         "leaves no denoising step"),
        (lambda c: c.update(features={"num_inference_steps": 4, "strengths": [0.5], "unet_strength": 0.2}), "features.unet_strength",
         "leaves no denoising step"),
        (lambda c: c.update(features={"unet_blocks": ["up_blocks.1/../x"]}), "features.unet_blocks[0]",
         "does not match"),
    ],
)
def test_bad_config_names_the_key(config, change, key, found):
    bad = copy.deepcopy(config)
    change(bad)
    with pytest.raises(ConfigError) as info:
        validate_config(bad, base_dir=str(REPO), built_by_workflow=BUILT)
    message = str(info.value)
    assert f"'{key}'" in message and found in message, message


def test_hub_id_is_accepted_as_model(config):
    config["model"] = "CompVis/stable-diffusion-v1-4"
    assert validate_config(config, base_dir=str(REPO), built_by_workflow=BUILT)["model"] == config["model"]


def test_existing_folders_are_accepted(config, tmp_path):
    (tmp_path / "nsd").mkdir()
    (tmp_path / "sd").mkdir()
    config.update(nsd_root=str(tmp_path / "nsd"), model=str(tmp_path / "sd"))
    validated = validate_config(config, base_dir=str(REPO))
    assert validated["nsd_root"] == str(tmp_path / "nsd")


def _merge(base: dict, override: dict) -> dict:
    """Snakemake's merge of a --configfile over the Snakefile's configfile: nested keys, lists replaced."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def _leaves(tree: dict, prefix=""):
    for key, value in tree.items():
        name = f"{prefix}.{key}" if prefix else key
        if isinstance(value, dict) and value:
            yield from _leaves(value, name)
        else:
            yield name, value


def test_paper_configuration_leaves_nothing_of_the_demo(config):
    """config.yaml + config.paper.yaml == the schema's paper defaults, but for the data's location."""
    paper = yaml.safe_load((REPO / "config.paper.yaml").read_text())
    merged = validate_config(_merge(config, paper), base_dir=str(REPO), built_by_workflow=BUILT)
    defaults = validate_config({k: config[k] for k in ("nsd_root", "model", "subjects")},
                               base_dir=str(REPO), built_by_workflow=BUILT)
    demo_only = ("synthetic", "model_build")  # used only when nsd_root / model are the workflow-built ones
    merged_values, default_values = dict(_leaves(merged)), dict(_leaves(defaults))
    assert set(merged_values) == set(default_values)
    left = [(key, value) for key, value in merged_values.items()
            if value != default_values[key] and not key.startswith(demo_only)]
    assert left == []
    assert merged["ingestion"]["sessions"] == "paper"
    assert merged["features"]["image_size"] == 320 and merged["reconstruction"]["n_samples"] == 5


def test_sessions_value_error_says_what_is_accepted(config):
    config["ingestion"]["sessions"] = {"subj09": "all"}
    with pytest.raises(ConfigError, match=r"ingestion.sessions': expected paper: .*found \{'subj09': 'all'\}"):
        validate_config(config, base_dir=str(REPO), built_by_workflow=BUILT)


def test_nested_command_line_values_read_as_yaml(config):
    """--config features='{strengths: [0.5]}' arrives with '0.5' inside; where no string is allowed it is 0.5."""
    config["features"] = {**config["features"], "strengths": ["0.5", "0.8"], "image_size": "64"}
    config["flatmaps"] = {"with_rois": "false"}
    validated = validate_config(config, base_dir=str(REPO), built_by_workflow=BUILT)
    assert validated["features"]["strengths"] == [0.5, 0.8] and validated["features"]["image_size"] == 64
    assert validated["flatmaps"]["with_rois"] is False
    config["features"]["strengths"] = ["half"]
    with pytest.raises(ConfigError, match=r"features.strengths\[0\]': expected number, found 'half'"):
        validate_config(config, base_dir=str(REPO), built_by_workflow=BUILT)


def test_each_section_has_one_complete_form(config):
    """validate_config and section_settings (what library functions call) give a section the same settings."""
    config["encoding"] = {"alphas": [100, 1, 10.0], "cv": 3.0}
    validated = validate_config(config, base_dir=str(REPO), built_by_workflow=BUILT)
    sections = [name for name, spec in load_schema()["properties"].items() if spec.get("type") == "object"]
    for section in sections:
        alone = section_settings(section, config.get(section))
        assert alone == validated[section], section
        assert section_settings(section, alone) == alone, section  # a second pass changes nothing
    assert validated["encoding"]["alphas"] == validated["encoding"]["banded_alphas"] == [1.0, 10.0, 100.0]
    assert type(validated["encoding"]["cv"]) is int
    assert "roi" not in section_settings("encoding", validated["encoding"], ignore=["roi"])
