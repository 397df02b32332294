"""Tests of the Stable Diffusion features (brainldm.ldm): z, c, zc stages, U-Net hooks, shards and resume."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys

import h5py
import numpy as np
import pytest
import torch

from brainldm.ldm.features import FeatureExtractor, features_to_files, preprocess_images, read_stimuli_index
from brainldm.ldm.load import load_model
from brainldm.config import ConfigError, section_defaults
from brainldm.ldm.names import denoising_steps, feature_names, format_number, stage_step
from brainldm.nsd.design import NSDInputError
from brainldm.seeds import derive_seed
from brainldm.synthetic.scenes import make_stimulus
from brainldm.synthetic.tiny_sd import build_pipeline, save_pipeline

FEATURES = section_defaults("features")
IDS = [2, 5, 9, 14, 30, 31, 57, 72]  # sorted 0-based 73k ids
BRICK_SIZE = 80  # resized (LANCZOS) to IMAGE_SIZE
IMAGE_SIZE = 64
# 10 steps at strength 0.8 = 8 denoising steps; stages 0.25/0.5/1 -> steps 2/4/8.
CONFIG = {
    "device": "cpu",
    "image_size": IMAGE_SIZE,
    "num_inference_steps": 10,
    "strengths": [0.8, 0.5],
    "stages": [0.25, 0.5, 1.0],
    "unet_strength": 0.8,
    "unet_blocks": ["down_blocks.1", "mid_block", "up_blocks.2"],
}
STEPS = {0.25: 2, 0.5: 4, 1.0: 8}


def extract_stimuli(path, images, ids, captions):
    width = max(len(c) for c in captions)
    with h5py.File(path, "w") as h5:
        h5["images"] = images
        h5["nsd_ids"] = np.asarray(ids)
        table = np.array([c + [""] * (width - len(c)) for c in captions], dtype=object)
        h5.create_dataset("captions", data=table.astype(h5py.string_dtype()))
        h5["n_captions"] = [len(c) for c in captions]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """A stimuli file of 8 synthetic images (5-7 captions each) and the tiny model trained on its captions."""
    root = tmp_path_factory.mktemp("features")
    stimuli = [make_stimulus(0, i, BRICK_SIZE, 5 + i % 3) for i in IDS]
    captions = [s[2] for s in stimuli]
    images = np.stack([s[1] for s in stimuli])
    extract_stimuli(root / "stimuli.h5", images, IDS, captions)
    save_pipeline(build_pipeline("tiny", [c for group in captions for c in group], seed=0), root / "tiny")
    return {"root": root, "stimuli": root / "stimuli.h5", "model": root / "tiny", "images": images,
            "captions": captions}


@pytest.fixture(scope="module")
def pipe(data):
    return load_model(data["model"], "cpu")


def run(data, name, **overrides):
    """extract_features into ``root/name``; return {feature: (features, attrs)}."""
    config = {**CONFIG, **overrides}
    out = data["root"] / name
    paths = {n: out / f"{n}.h5" for n in feature_names(config)}
    features_to_files(data["model"], data["stimuli"], paths, config, out / "shards")
    return read_outputs(paths)


def read_outputs(paths):
    result = {}
    for name, path in paths.items():
        with h5py.File(path, "r") as h5:
            assert list(h5["nsd_ids"][()]) == IDS
            result[name] = (h5["features"][()], dict(h5.attrs))
    return result


@pytest.fixture(scope="module")
def batched(data):
    """Batches of 8 (one shard)."""
    return run(data, "batched", batch_size=8, shard_size=8)


@pytest.fixture(scope="module")
def single(data):
    """One image at a time."""
    return run(data, "single", batch_size=1, shard_size=8)


@pytest.fixture(scope="module")
def sharded(data):
    """Batches of 4 in two shards of 4, uninterrupted."""
    return run(data, "sharded", batch_size=4, shard_size=4)


def direct_img2img(pipe, data, row, strength, record_blocks=()):
    """Call the img2img pipeline directly on one image, recording every U-Net call of ``record_blocks``."""
    extractor = FeatureExtractor(pipe, CONFIG)
    x = preprocess_images(data["images"][row:row + 1], IMAGE_SIZE)
    c = extractor.caption_embeddings([data["captions"][row]])
    generator = torch.Generator("cpu").manual_seed(derive_seed(CONFIG.get("seed", 0), "zc", IDS[row], strength))
    calls = {block: [] for block in record_blocks}
    handles = [pipe.unet.get_submodule(block).register_forward_hook(
        lambda m, a, out, block=block: calls[block].append(
            (out[0] if isinstance(out, tuple) else out)[1:].clone()))  # conditional half
        for block in record_blocks]
    try:
        latent = pipe(prompt_embeds=c, negative_prompt_embeds=extractor.empty_embedding,
                      image=(x + 1) / 2,  # [0, 1]: the pipeline normalises to [-1, 1]
                      strength=strength, num_inference_steps=CONFIG["num_inference_steps"],
                      guidance_scale=FEATURES["guidance_scale"], eta=FEATURES["eta"],
                      generator=[generator], output_type="latent").images
    finally:
        for handle in handles:
            handle.remove()
    return latent, calls, pipe.scheduler.timesteps.clone()


# ---------------------------------------------------------------- names and config


def test_names_stable_and_safe():
    names = feature_names(CONFIG)
    assert names[:2] == ["z", "c"]
    assert "zc_s0.8_t0.25" in names and "zc_s0.5_t1" in names and "unet_down_blocks.1_t0.5" in names
    assert len(names) == 2 + 2 * 3 + 3 * 3 and len(set(names)) == len(names)
    assert all(set(n) <= set("abcdefghijklmnopqrstuvwxyz_0123456789.") for n in names)
    assert feature_names(None)[2:5] == ["zc_s0.2_t0.2", "zc_s0.2_t0.66", "zc_s0.2_t1"]  # low noise first
    assert format_number(0.66) == "0.66" and format_number(1.0) == "1"
    assert denoising_steps(50, 0.8) == 40 and denoising_steps(10, 0.8) == 8
    assert [stage_step(f, 40) for f in (0.2, 0.66, 1.0)] == [8, 27, 40]
    assert stage_step(0.35, 20) == 7  # 0.35 * 20 = 7.000000000000001 in floating point
    assert feature_names({"stages": []}) == ["z", "c"]  # no stage: no zc and no U-Net feature
    with pytest.raises(ConfigError, match=r"'features\.strength' is not known"):
        feature_names({"strength": [0.8]})
    with pytest.raises(ConfigError, match=r"'features\.stages\[0\]'"):
        feature_names({"stages": [0.0]})
    with pytest.raises(ConfigError, match=r"'features\.strengths'.* leaves no denoising step"):
        feature_names({"num_inference_steps": 2, "strengths": [0.3]})
    with pytest.raises(ConfigError, match=r"'features\.unet_strength'.* leaves no denoising step"):
        feature_names({"num_inference_steps": 4, "strengths": [0.5], "unet_strength": 0.2})


def test_names_module_does_not_import_torch():
    code = "import sys, brainldm.ldm.names, brainldm.ldm; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


# ---------------------------------------------------------------- features


def test_shapes_come_from_model_config(batched, pipe):
    vae, text = pipe.vae.config, pipe.text_encoder.config
    factor = 2 ** (len(vae.block_out_channels) - 1)
    latent = (vae.latent_channels, IMAGE_SIZE // factor, IMAGE_SIZE // factor)
    assert tuple(batched["z"][1]["shape"]) == latent
    assert tuple(batched["c"][1]["shape"]) == (text.max_position_embeddings, text.hidden_size)
    for name in ("zc_s0.8_t0.25", "zc_s0.5_t1"):
        assert tuple(batched[name][1]["shape"]) == latent
    mid = pipe.unet.config.block_out_channels[-1]
    assert tuple(batched["unet_mid_block_t1"][1]["shape"]) == (mid, latent[1] // 2 ** (len(pipe.unet.down_blocks) - 1),
                                                                latent[2] // 2 ** (len(pipe.unet.down_blocks) - 1))
    for name, (array, attrs) in batched.items():
        # U-Net blocks in float16 (features.unet_dtype's default: the bulk of the disk), the rest float32
        assert array.dtype == (np.float16 if name.startswith("unet_") else np.float32), name
        assert array.shape == (len(IDS), int(np.prod(attrs["shape"])))
        assert np.isfinite(array).all(), name
        assert attrs["model"] == str(pipe.config._name_or_path) or attrs["model"].endswith("tiny")
        assert json.loads(attrs["features_config"])["num_inference_steps"] == 10
        assert attrs["brainldm_version"]


def test_z_and_c_definitions(batched, pipe, data):
    row = 3
    x = preprocess_images(data["images"][row:row + 1], IMAGE_SIZE)
    assert x.min() >= -1 and x.max() <= 1
    with torch.no_grad():
        z = pipe.vae.encode(x).latent_dist.mean * pipe.vae.config.scaling_factor
        tok = pipe.tokenizer(data["captions"][row], padding="max_length", truncation=True,
                             max_length=pipe.tokenizer.model_max_length, return_tensors="pt")
        c = pipe.text_encoder(tok.input_ids).last_hidden_state.mean(0)
    np.testing.assert_allclose(batched["z"][0][row], z.numpy().ravel(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(batched["c"][0][row], c.numpy().ravel(), rtol=1e-4, atol=1e-5)


def test_stage_steps_and_timesteps(batched, pipe, data):
    _, _, timesteps = direct_img2img(pipe, data, 0, 0.8)
    t_start = CONFIG["num_inference_steps"] - 8
    for stage, step in STEPS.items():
        for name in (f"zc_s0.8_t{format_number(stage)}", f"unet_mid_block_t{format_number(stage)}"):
            attrs = batched[name][1]
            assert attrs["step"] == step and attrs["n_denoising_steps"] == 8
            assert attrs["timestep"] == int(timesteps[t_start + step - 1])
    # strength 0.5: 5 denoising steps, stages -> steps 2, 3, 5
    assert [batched[f"zc_s0.5_t{format_number(f)}"][1]["step"] for f in (0.25, 0.5, 1.0)] == [2, 3, 5]


def test_hooks_record_exactly_the_requested_steps(single, pipe, data):
    row = 2
    _, calls, _ = direct_img2img(pipe, data, row, 0.8, record_blocks=("down_blocks.1", "mid_block", "up_blocks.2"))
    assert all(len(c) == 8 for c in calls.values())  # one U-Net call per denoising step (CFG batched)
    for block, outputs in calls.items():
        for stage, step in STEPS.items():
            got = single[f"unet_{block}_t{format_number(stage)}"][0][row]
            # stored in float16: the recorded call's values, rounded once
            np.testing.assert_array_equal(got, outputs[step - 1].numpy().ravel().astype(got.dtype))
            for other in set(STEPS.values()) - {step}:  # and not those of another step
                assert not np.allclose(got, outputs[other - 1].numpy().ravel().astype(got.dtype))


def test_zc_final_equals_direct_pipeline(single, pipe, data):
    for row in (0, 5):
        latent, _, _ = direct_img2img(pipe, data, row, 0.8)
        np.testing.assert_array_equal(single["zc_s0.8_t1"][0][row], latent.numpy().ravel())
    assert not np.allclose(single["zc_s0.8_t1"][0], single["zc_s0.8_t0.25"][0])


def test_batch_of_one_equals_batch_of_eight(single, batched):
    # Exact equality does not hold on CPU: oneDNN/BLAS block a batch of 8
    # differently from a batch of 1 (float32 summation order). Measured with
    # torch 2.13 CPU: c identical, z, zc and U-Net outputs differ by at most
    # 4e-6 of the feature's largest value; allow 2e-5. Seeds are per image,
    # so a batch-dependent seed would differ by O(1). Features stored in float16 (U-Net blocks) may
    # round such a difference to the neighbouring float16: one spacing more.
    for name, (array, _) in single.items():
        scale = np.abs(array.astype(np.float32)).max()
        rounding = float(np.spacing(array.dtype.type(scale))) if array.dtype == np.float16 else 0.0
        np.testing.assert_allclose(batched[name][0], array, rtol=0, atol=2e-5 * scale + rounding, err_msg=name)


def test_z_sample_mode_is_seeded_per_image(pipe, data):
    config = {**CONFIG, "z_mode": "sample", "strengths": [], "unet_blocks": []}
    extractor = FeatureExtractor(pipe, config)
    both, _ = extractor.process_batch(data["images"][:2], data["captions"][:2], IDS[:2])
    alone, _ = extractor.process_batch(data["images"][1:2], data["captions"][1:2], IDS[1:2])
    np.testing.assert_allclose(both["z"][1], alone["z"][0], rtol=0, atol=1e-4 * np.abs(alone["z"]).max())
    mean = FeatureExtractor(pipe, {**config, "z_mode": "mean"}).process_batch(
        data["images"][1:2], data["captions"][1:2], IDS[1:2])[0]["z"]
    assert not np.allclose(alone["z"], mean)


def test_no_guidance_and_stochastic_ddim_are_per_image(pipe, data):
    # guidance_scale 1: no unconditional half in the U-Net batch; eta > 0: DDIM draws noise at
    # every step, from the same per-image generators.
    extractor = FeatureExtractor(pipe, {**CONFIG, "guidance_scale": 1.0, "eta": 0.5, "strengths": [0.8]})
    assert not extractor.cfg
    both, meta = extractor.process_batch(data["images"][:2], data["captions"][:2], IDS[:2])
    alone, _ = extractor.process_batch(data["images"][1:2], data["captions"][1:2], IDS[1:2])
    for name in ("zc_s0.8_t1", "unet_mid_block_t0.5"):
        np.testing.assert_allclose(both[name][1], alone[name][0], rtol=0, atol=2e-5 * np.abs(alone[name]).max())
    assert meta["unet_mid_block_t0.5"]["step"] == 4
    no_stages = FeatureExtractor(pipe, {**CONFIG, "stages": []})
    assert set(no_stages.process_batch(data["images"][:1], data["captions"][:1], IDS[:1])[0]) == {"z", "c"}


# ---------------------------------------------------------------- shards and resume


def test_resume_after_interruption(data, sharded, monkeypatch):
    config = {**CONFIG, "batch_size": 4, "shard_size": 4, "keep_shards": True}
    out = data["root"] / "resumed"
    paths = {n: out / f"{n}.h5" for n in feature_names(config)}
    shards = out / "shards"
    original = FeatureExtractor.process_batch
    calls = []

    def fail_on_second_shard(self, images, captions, nsd_ids):
        calls.append(list(nsd_ids))
        if len(calls) == 2:
            raise KeyboardInterrupt("killed")
        return original(self, images, captions, nsd_ids)

    monkeypatch.setattr(FeatureExtractor, "process_batch", fail_on_second_shard)
    with pytest.raises(KeyboardInterrupt):
        features_to_files(data["model"], data["stimuli"], paths, config, shards)
    assert sorted(p.name for p in shards.iterdir()) == ["shard_00000.h5"]  # no partial file, no manifest
    assert not any(p.exists() for p in paths.values())
    (shards / ".shard_00001.stale.part.h5").write_bytes(b"left by a kill -9")
    mtime = (shards / "shard_00000.h5").stat().st_mtime_ns

    calls.clear()
    monkeypatch.setattr(FeatureExtractor, "process_batch",
                        lambda self, *a: (calls.append(list(a[2])), original(self, *a))[1])
    features_to_files(data["model"], data["stimuli"], paths, config, shards)
    assert calls == [IDS[4:]]  # only the second shard was computed
    assert (shards / "shard_00000.h5").stat().st_mtime_ns == mtime
    assert sorted(p.name for p in shards.glob("*.h5")) == ["shard_00000.h5", "shard_00001.h5"]
    resumed = read_outputs(paths)
    for name, (array, attrs) in sharded.items():
        np.testing.assert_array_equal(resumed[name][0], array, err_msg=name)

    # A shard of another configuration is recomputed, not reused.
    calls.clear()
    changed = {**config, "guidance_scale": 3.0}
    features_to_files(data["model"], data["stimuli"], {n: out / "g3" / f"{n}.h5" for n in feature_names(changed)},
                     changed, shards)
    assert calls == [IDS[:4], IDS[4:]]


# ---------------------------------------------------------------- bad inputs


def test_bad_block_is_named(pipe):
    with pytest.raises(ValueError, match=r"'down_blocks\.7'.*available top-level blocks.*mid_block"):
        FeatureExtractor(pipe, {**CONFIG, "unet_blocks": ["mid_block", "down_blocks.7"]})


def test_image_without_captions_is_named(data, tmp_path):
    captions = [list(c) for c in data["captions"]]
    captions[3] = []
    path = tmp_path / "nocap.h5"
    extract_stimuli(path, data["images"], IDS, [c or [""] for c in captions])
    with h5py.File(path, "a") as h5:
        h5["n_captions"][3] = 0
    with pytest.raises(NSDInputError, match=f"73k id {IDS[3]} "):
        read_stimuli_index(path)


@pytest.mark.parametrize("shape", [(2, 16, 16), (2, 16, 16, 1), (2, 16, 20, 3)])
def test_bad_brick_shape_is_named(data, tmp_path, shape):
    path = tmp_path / "brick.h5"
    extract_stimuli(path, np.zeros(shape, np.uint8), IDS[:2], data["captions"][:2])
    with pytest.raises(NSDInputError, match=re.escape(str(path)) + ".*" + re.escape(str(tuple(shape)))):
        features_to_files(data["model"], path, {n: tmp_path / n for n in feature_names(CONFIG)}, CONFIG,
                         tmp_path / "shards")


def test_missing_model_component_is_named(data, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    shutil.copy(data["model"] / "model_index.json", broken)
    for component in ("scheduler", "tokenizer", "text_encoder", "vae"):
        shutil.copytree(data["model"] / component, broken / component)
    with pytest.raises(FileNotFoundError, match="component 'unet'"):
        load_model(broken, "cpu")


def test_out_paths_must_match_names(data, tmp_path):
    paths = {n: tmp_path / n for n in feature_names(CONFIG)}
    del paths["z"]
    with pytest.raises(ValueError, match=r"missing \['z'\]"):
        features_to_files(data["model"], data["stimuli"], paths, CONFIG, tmp_path / "shards")
    assert not (tmp_path / "shards").exists()


def test_image_size_must_fit_the_vae(pipe):
    # SD's VAE halves the image 3 times: the schema asks for a multiple of 8 before any model is loaded
    with pytest.raises(ConfigError, match=r"'features\.image_size': 60 is not a multiple of 8"):
        FeatureExtractor(pipe, {**CONFIG, "image_size": 60})


def test_brick_smaller_than_the_input_is_logged(data, tmp_path, caplog):
    caplog.set_level("WARNING")
    config = {**CONFIG, "image_size": 96, "strengths": [0.8], "stages": [1.0], "unet_blocks": []}
    paths = {n: tmp_path / f"{n}.h5" for n in feature_names(config)}
    features_to_files(data["model"], data["stimuli"], paths, config, tmp_path / "shards")
    assert any(f"images are {BRICK_SIZE} px, upscaled (LANCZOS) to features.image_size 96 px" in r.getMessage()
               for r in caplog.records)
