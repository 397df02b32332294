"""Features and reconstruction on model folders laid out as the hub ships SD 1.4, 1.5, 2.1 and 2.1-base.

The folders (``tests/hub_checkpoints.py``) carry the published ``model_index.json`` and
scheduler configs: PNDM for SD 1.4 / 1.5 / 2.1-base, DDIM with ``v_prediction`` for SD 2.1,
``.bin``-only and ``*.fp16.safetensors``-only weights.
"""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
from diffusers import DDIMScheduler, PNDMScheduler

from brainldm.decoded import write_decoded_latent
from brainldm.ldm import reconstruct as recon_mod
from brainldm.ldm.features import features_to_files
from brainldm.ldm.load import img2img_timesteps, load_model
from brainldm.ldm.model_folder import ModelFolderError
from brainldm.ldm.names import feature_names
from brainldm.synthetic.scenes import make_stimulus
from hub_checkpoints import CHECKPOINTS, build_checkpoint
from test_features import extract_stimuli

IDS = [3, 11, 40]
FEATURES = {"device": "cpu", "image_size": 32, "num_inference_steps": 10, "strengths": [0.8],
            "stages": [0.5, 1.0], "unet_strength": 0.8, "unet_blocks": ["down_blocks.1", "mid_block"],
            "batch_size": 3, "shard_size": 3}
RECONSTRUCTION = {"device": "cpu", "output_size": 32, "num_inference_steps": 5, "strength": 0.8,
                  "guidance_scale": 5.0, "eta": 0.0, "n_samples": 2, "seed": 0, "batch_size": 2, "shard_size": 2}


def _variant(name):
    return "fp16" if CHECKPOINTS[name].weights == "fp16" else None


@pytest.fixture(scope="module")
def stimuli(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hub_stimuli")
    made = [make_stimulus(0, i, 40, 5) for i in IDS]
    captions = [m[2] for m in made]
    extract_stimuli(folder / "stimuli.h5", np.stack([m[1] for m in made]), IDS, captions)
    return {"path": folder / "stimuli.h5", "captions": [c for group in captions for c in group]}


@pytest.fixture(scope="module")
def folders(tmp_path_factory, stimuli):
    root = tmp_path_factory.mktemp("hub")
    return {name: build_checkpoint(name, root / name, stimuli["captions"]) for name in CHECKPOINTS}


def _features(model, stimuli, out, model_loading):
    paths = {n: out / f"{n}.h5" for n in feature_names(FEATURES)}
    features_to_files(model, stimuli["path"], paths, FEATURES, out / "shards", model_loading)
    result = {}
    for name, path in paths.items():
        with h5py.File(path, "r") as h5:
            result[name] = (h5["features"][()], dict(h5.attrs))
    return result


@pytest.mark.parametrize("name", sorted(CHECKPOINTS))
def test_features_and_reconstruction_run_with_the_papers_sampler(name, folders, stimuli, tmp_path):
    folder = folders[name]
    published = CHECKPOINTS[name].scheduler_config()
    loading = {"scheduler": "ddim", "variant": _variant(name)}
    features = _features(folder, stimuli, tmp_path / "features", loading)
    text = json.loads((folder / "text_encoder" / "config.json").read_text())
    assert set(features) == set(feature_names(FEATURES))
    assert features["c"][1]["shape"].tolist() == [77, text["hidden_size"]]  # 1024 for SD 2.x
    for array, attrs in features.values():
        assert np.isfinite(array).all()
        assert attrs["scheduler"] == "DDIMScheduler"
        assert attrs["shipped_scheduler"] == published["_class_name"]
        used = json.loads(attrs["scheduler_config"])
        for key in ("beta_start", "beta_end", "beta_schedule", "steps_offset", "set_alpha_to_one"):
            assert used[key] == published[key]
        assert used["prediction_type"] == published.get("prediction_type", "epsilon")
    assert features["zc_s0.8_t1"][1]["n_denoising_steps"] == 8  # int(10 x 0.8): DDIM, not PNDM's 9

    # Reconstruction from decoded latents of the shapes the features have.
    decoded = tmp_path / "decoded"
    decoded.mkdir()
    rng = np.random.default_rng(0)
    z_shape = (features["z"][1]["shape"][0], RECONSTRUCTION["output_size"] // 8, RECONSTRUCTION["output_size"] // 8)
    for key, shape in (("z", z_shape), ("c", tuple(features["c"][1]["shape"]))):
        write_decoded_latent(decoded / f"{key}.h5", rng.normal(size=(2, *shape)).astype(np.float32), IDS[:2], shape)
    out = tmp_path / "recon"
    recon_mod.reconstructions_to_files(folder, decoded / "z.h5", decoded / "c.h5", out / "images", out / "latents.h5",
                                       out / "shards", RECONSTRUCTION, "subj01", model_loading=loading)
    assert len(list((out / "images").rglob("*.png"))) == 2 * (1 + 2 * RECONSTRUCTION["n_samples"])
    with h5py.File(out / "latents.h5", "r") as h5:
        assert h5.attrs["scheduler"] == "DDIMScheduler"
        assert h5.attrs["shipped_scheduler"] == published["_class_name"]
        assert np.isfinite(h5["Xzc"][()]).all()


def test_pndm_checkpoint_gives_the_features_of_the_same_weights_with_ddim(folders, stimuli, tmp_path):
    """SD 1.4 ships PNDM; rebuilt as DDIM from its config it is the same sampler as a DDIM config of those betas."""
    published = CHECKPOINTS["sd14"].scheduler_config()
    ddim_config = {**published, "_class_name": "DDIMScheduler"}
    twin = build_checkpoint("sd14", tmp_path / "sd14_ddim", stimuli["captions"], scheduler_config=ddim_config)
    loading = {"scheduler": "ddim", "variant": None}
    shipped_pndm = _features(folders["sd14"], stimuli, tmp_path / "pndm", loading)
    shipped_ddim = _features(twin, stimuli, tmp_path / "ddim", loading)
    for name, (array, _) in shipped_pndm.items():
        np.testing.assert_array_equal(array, shipped_ddim[name][0], err_msg=name)
    assert shipped_pndm["z"][1]["shipped_scheduler"] == "PNDMScheduler"
    assert shipped_ddim["z"][1]["shipped_scheduler"] == "DDIMScheduler"


def test_shipped_scheduler_is_kept_and_counted(folders, stimuli, tmp_path):
    """scheduler: shipped keeps PNDM; its img2img makes int(n x strength) + 1 U-Net calls, and the check follows."""
    features = _features(folders["sd14"], stimuli, tmp_path / "shipped", {"scheduler": "shipped", "variant": None})
    attrs = features["zc_s0.8_t1"][1]
    assert attrs["scheduler"] == "PNDMScheduler"
    assert attrs["n_denoising_steps"] == 9


def test_img2img_schedules_of_the_published_configs():
    """diffusers' img2img at 50 steps x 0.8: DDIM runs 40 steps from t = 781; PNDM 41 calls."""
    config = CHECKPOINTS["sd14"].scheduler_config()
    ddim = img2img_timesteps(DDIMScheduler.from_config(config), 50, 0.8)
    assert len(ddim) == 40 and ddim[0] == 781 and ddim[-1] == 1
    assert len(img2img_timesteps(PNDMScheduler.from_config(config), 50, 0.8)) == 41


def test_fp16_only_folder_needs_the_variant_and_says_so(folders):
    folder = folders["sd14_fp16_only"]
    with pytest.raises(ModelFolderError) as error:
        load_model(folder, "cpu")
    message = str(error.value)
    assert "unet/diffusion_pytorch_model.fp16.safetensors" in message
    assert "model_loading.variant" in message and "'fp16'" in message
    pipe = load_model(folder, "cpu", variant="fp16")
    assert isinstance(pipe.scheduler, DDIMScheduler)


def test_wrong_variant_names_the_files_found(folders):
    with pytest.raises(ModelFolderError, match=r"of variant 'fp16'.*diffusion_pytorch_model\.bin"):
        load_model(folders["sd15_bin_only"], "cpu", variant="fp16")
