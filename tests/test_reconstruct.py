"""Reconstruction: the SD 1.4 code path, seeded samples, resumable shards."""

from __future__ import annotations

import hashlib
import shutil

import h5py
import numpy as np
import pytest
from diffusers import StableDiffusionImg2ImgPipeline, StableDiffusionPipeline

from brainldm.decoded import write_decoded_latent
from brainldm.ldm import reconstruct as recon_mod
from brainldm.ldm.gather import gather_reconstructions
from brainldm.synthetic.tiny_sd import build_pipeline, save_pipeline

SETTINGS = {"device": "cpu", "output_size": 32, "num_inference_steps": 5, "strength": 0.8, "guidance_scale": 5.0,
            "eta": 0.0, "n_samples": 2, "seed": 3, "batch_size": 2, "shard_size": 2}


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("model") / "tiny"
    save_pipeline(build_pipeline("tiny", ["a red ball on the left", "a blue box in a room"], seed=1), folder)
    return folder


@pytest.fixture(scope="module")
def decoded(tmp_path_factory, model):
    """Decoder outputs for three test images with shapes from the model config."""
    import json

    folder = tmp_path_factory.mktemp("decoded")
    vae = json.loads((model / "vae" / "config.json").read_text())
    text = json.loads((model / "text_encoder" / "config.json").read_text())
    side = SETTINGS["output_size"] // 2 ** (len(vae["block_out_channels"]) - 1)
    shapes = {"z": (vae["latent_channels"], side, side), "c": (text["max_position_embeddings"], text["hidden_size"])}
    rng = np.random.default_rng(0)
    for name, shape in shapes.items():
        write_decoded_latent(folder / f"{name}.h5", rng.normal(size=(3, *shape)).astype(np.float32), [4, 8, 15], shape)
    return folder


def _run(model, decoded, out, settings=SETTINGS):
    recon_mod.reconstructions_to_files(model, decoded / "z.h5", decoded / "c.h5", out / "images", out / "latents.h5",
                                       out / "shards", settings, "subj01")


def _digests(folder):
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*.png"))}


def test_outputs_and_same_seed_identical(model, decoded, tmp_path):
    _run(model, decoded, tmp_path / "a")
    _run(model, decoded, tmp_path / "b")
    first = _digests(tmp_path / "a" / "images")
    assert len(first) == 3 * (1 + 2 * SETTINGS["n_samples"])
    assert first == _digests(tmp_path / "b" / "images")
    with h5py.File(tmp_path / "a" / "latents.h5", "r") as h5:
        assert h5["Xzc"].shape[:2] == (3, SETTINGS["n_samples"])
    assert not (tmp_path / "a" / "shards").exists()
    # another seed, other samples
    _run(model, decoded, tmp_path / "c", {**SETTINGS, "seed": 4})
    other = _digests(tmp_path / "c" / "images")
    assert other["Xz/00004.png"] == first["Xz/00004.png"]  # Xz is deterministic
    assert other["Xzc/00004_0.png"] != first["Xzc/00004_0.png"]


def _files(folder):
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("n_parts", [2, 3])
def test_parts_gather_into_the_one_job_files(model, decoded, tmp_path, n_parts):
    """k reconstruction jobs (one of them empty for k = 3: 2 shards) give the one job's files, byte for byte."""
    _run(model, decoded, tmp_path / "one")
    out = tmp_path / "parts"
    manifests = [out / "parts" / f"part{i}_of_{n_parts}.json" for i in range(n_parts)]
    for i in reversed(range(n_parts)):  # any order
        recon_mod.reconstruct_images(model, decoded / "z.h5", decoded / "c.h5", manifests[i], out / "shards",
                                     SETTINGS, "subj01", part=(i, n_parts))
    with pytest.raises(ValueError, match="expected parts 0-"):
        gather_reconstructions(manifests[1:], decoded / "z.h5", out / "images", out / "latents.h5", SETTINGS)
    gather_reconstructions(manifests, decoded / "z.h5", out / "images", out / "latents.h5", SETTINGS)
    assert _files(out / "images") == _files(tmp_path / "one" / "images")
    assert (out / "latents.h5").read_bytes() == (tmp_path / "one" / "latents.h5").read_bytes()
    assert not (out / "shards").exists()


def test_sd14_code_path_and_arguments(model, decoded, tmp_path, monkeypatch):
    """The same diffusers classes and CompVis arguments a user with SD 1.4 gets."""
    calls = []
    real = {cls: cls.__call__ for cls in (StableDiffusionPipeline, StableDiffusionImg2ImgPipeline)}

    def spy(cls):
        def call(self, *args, **kwargs):
            calls.append((type(self), kwargs))
            return real[cls](self, *args, **kwargs)
        return call

    for cls in real:
        monkeypatch.setattr(cls, "__call__", spy(cls))
    _run(model, decoded, tmp_path)
    classes = {c for c, _ in calls}
    assert classes == {StableDiffusionPipeline, StableDiffusionImg2ImgPipeline}
    for cls, kwargs in calls:
        assert kwargs["num_inference_steps"] == SETTINGS["num_inference_steps"]
        assert kwargs["guidance_scale"] == SETTINGS["guidance_scale"] and kwargs["eta"] == SETTINGS["eta"]
        assert kwargs["prompt_embeds"].shape == kwargs["negative_prompt_embeds"].shape
        # the unconditional branch is the empty prompt's embedding, the same for every image
        negative = kwargs["negative_prompt_embeds"]
        assert np.allclose(negative[0].numpy(), negative[-1].numpy())
        if cls is StableDiffusionImg2ImgPipeline:
            assert kwargs["strength"] == SETTINGS["strength"]
            assert len(kwargs["image"]) == len(kwargs["generator"])


def _killed_at_second_batch(monkeypatch) -> dict:
    """Make the second img2img call die as a killed job would; return the call counter."""
    real = recon_mod.Reconstructor.image_to_image
    count = {"n": 0}

    def dies_on_second_batch(self, *args, **kwargs):
        count["n"] += 1
        if count["n"] == 2:
            raise KeyboardInterrupt("killed")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(recon_mod.Reconstructor, "image_to_image", dies_on_second_batch)
    return count


def test_killed_job_resumes_without_redoing_shards(model, decoded, tmp_path, monkeypatch):
    count = _killed_at_second_batch(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        _run(model, decoded, tmp_path / "run")
    first_shard = tmp_path / "run" / "shards" / "shard_00000.h5"
    assert first_shard.exists() and not (tmp_path / "run" / "latents.h5").exists()
    count["n"] = 10  # from now on it works; count the calls of the resumed run
    calls_before = count["n"]
    _run(model, decoded, tmp_path / "run")
    assert count["n"] - calls_before == 1  # only the second shard (one batch) was computed
    _run(model, decoded, tmp_path / "clean")
    assert _digests(tmp_path / "run" / "images") == _digests(tmp_path / "clean" / "images")


@pytest.mark.parametrize("change", ["seed", "decoded"])
def test_killed_then_changed_run_mixes_no_old_images(model, decoded, tmp_path, monkeypatch, change):
    """A shard of the old seed (or of other decoded latents) is recomputed, not mixed with new ones."""
    count = _killed_at_second_batch(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        _run(model, decoded, tmp_path / "run")
    assert (tmp_path / "run" / "shards" / "shard_00000.h5").exists()
    count["n"] = 10
    settings, inputs = dict(SETTINGS), decoded
    if change == "seed":
        settings["seed"] = SETTINGS["seed"] + 1
    else:  # the decoders were refitted: other predicted z
        inputs = tmp_path / "decoded"
        shutil.copytree(decoded, inputs)
        with h5py.File(inputs / "z.h5", "r+") as h5:
            h5["predictions"][...] = h5["predictions"][()] * 0.5
    _run(model, inputs, tmp_path / "run", settings)
    assert count["n"] - 10 == 2  # both shards recomputed
    _run(model, inputs, tmp_path / "clean", settings)
    assert _digests(tmp_path / "run" / "images") == _digests(tmp_path / "clean" / "images")
