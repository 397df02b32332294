"""Images from decoded latents: Xz, Xc and Xzc (paper section 3.3, Figures 1, 3, 4).

* Xz: the predicted z decoded by the VAE (``image_size`` = 8 x the latent side),
  resized to ``output_size``; deterministic, so one image per test image.
* Xc: text-to-image from noise with the predicted c as the condition.
* Xzc: img2img from Xz (encoded again) with the predicted c: DDIM, strength,
  eta and guidance as configured (CompVis defaults: 50 steps, 0.8, 0.0, 5.0),
  the empty-prompt embedding as the unconditional branch.

Xc and Xzc have ``n_samples`` samples, each seeded by (seed, method, subject,
73k id, sample), so results do not depend on batch size or shard layout. The
pipelines are the diffusers classes a user with SD 1.4 runs, with the same
arguments: only the weights differ.
"""

from __future__ import annotations

import io
import json
import logging
import os
import time
from pathlib import Path

import h5py
import numpy as np
import torch
from PIL import Image

from ..config import section_settings, without_runtime
from ..decoded import DecodedLatent
from ..files import atomic_path
from ..shards import clean_partial_shards, fingerprint, mark_complete, part_shards, shard_is_complete, write_part_manifest
from ..seeds import derive_seed
from .names import METHODS, image_name

log = logging.getLogger(__name__)

def _to_pil(batch: torch.Tensor) -> list[Image.Image]:
    """Images in [-1, 1], (B, 3, H, W) -> PIL."""
    array = ((batch.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    return [Image.fromarray(a) for a in array]


def _generators(seed: int, method: str, subject: str, nsd_ids, samples) -> list[torch.Generator]:
    return [torch.Generator("cpu").manual_seed(derive_seed(seed, method, subject, int(i), int(k)))
            for i, k in zip(nsd_ids, samples)]


class Reconstructor:
    """Xz, Xc and Xzc for batches of decoded latents with one loaded pipeline.

    Parameters
    ----------
    pipe : diffusers.StableDiffusionImg2ImgPipeline
        From :func:`brainldm.ldm.load.load_model`.
    settings : dict
        ``config["reconstruction"]``: ``output_size``, ``num_inference_steps``,
        ``strength``, ``guidance_scale``, ``eta``, ``n_samples``, ``seed``.
    """

    def __init__(self, pipe, settings: dict):
        from diffusers import StableDiffusionPipeline

        self.img2img = pipe
        self.txt2img = StableDiffusionPipeline.from_pipe(pipe)
        for p in (self.img2img, self.txt2img):
            p.set_progress_bar_config(disable=True)
        self.settings = settings
        self.device, self.dtype = pipe.device, pipe.unet.dtype
        tokenizer = pipe.tokenizer
        tokens = tokenizer([""], padding="max_length", max_length=tokenizer.model_max_length,
                           truncation=True, return_tensors="pt")
        with torch.no_grad():
            self.empty = pipe.text_encoder(tokens.input_ids.to(self.device)).last_hidden_state

    def _common(self) -> dict:
        s = self.settings
        return {"num_inference_steps": s["num_inference_steps"], "guidance_scale": s["guidance_scale"],
                "eta": s["eta"]}

    @torch.no_grad()
    def decode_z(self, z: torch.Tensor) -> list[Image.Image]:
        """Xz: VAE decode of predicted (scaled) latents, resized to ``output_size``."""
        vae = self.img2img.vae
        pixels = vae.decode(z.to(self.device, self.dtype) / vae.config.scaling_factor).sample
        size = self.settings["output_size"]
        return [im.resize((size, size), Image.Resampling.LANCZOS) for im in _to_pil(pixels)]

    @torch.no_grad()
    def text_to_image(self, c: torch.Tensor, generators) -> tuple[list[Image.Image], torch.Tensor]:
        """Xc: images and final latents from noise, conditioned on predicted c."""
        size = self.settings["output_size"]
        c = c.to(self.device, self.dtype)
        latents = self.txt2img(prompt_embeds=c, negative_prompt_embeds=self.empty.expand_as(c),
                               height=size, width=size, generator=generators, output_type="latent",
                               **self._common()).images
        return self._decode_latents(latents), latents

    @torch.no_grad()
    def image_to_image(self, images: list[Image.Image], c: torch.Tensor, generators) -> tuple[list[Image.Image], torch.Tensor]:
        """Xzc: img2img from Xz with predicted c."""
        c = c.to(self.device, self.dtype)
        latents = self.img2img(image=images, prompt_embeds=c, negative_prompt_embeds=self.empty.expand_as(c),
                               strength=self.settings["strength"], generator=generators, output_type="latent",
                               **self._common()).images
        return self._decode_latents(latents), latents

    def _decode_latents(self, latents: torch.Tensor) -> list[Image.Image]:
        vae = self.img2img.vae
        return _to_pil(vae.decode(latents / vae.config.scaling_factor).sample)


def reconstruct_images(model, z_path, c_path, manifest_path, shard_dir, settings: dict, subject: str,
                       part: tuple[int, int] = (0, 1), model_loading: dict | None = None,
                       threads: int | None = None) -> None:
    """Reconstruct part ``i`` of ``k`` of a subject's test images from their decoded z and c.

    The test images are cut into shards of ``settings["shard_size"]``; this part computes the
    ``i``-th of ``k`` contiguous runs of them (:func:`brainldm.shards.part_shards`). Each shard
    (PNGs and final latents) is written atomically and fingerprinted by the model, sampler,
    settings, subject and its decoded latents, so a killed job resumes at its first missing
    shard and a changed seed, model or input recomputes it. :func:`~brainldm.ldm.gather.gather_reconstructions`
    writes the images from the shards of all parts.

    Parameters
    ----------
    model : str
        Diffusers folder or hub id.
    z_path, c_path : path
        Decoder outputs (``predictions``, ``nsd_ids``, attr ``shape``).
    manifest_path : path
        This part's manifest (JSON, :func:`brainldm.shards.write_part_manifest`).
    shard_dir : path
        Folder of the shards (shared by the parts).
    settings : dict
        ``config["reconstruction"]``, whole or in part.
    subject : str
        Seeds the samples.
    part : (int, int)
        ``(i, k)``: this job's part and the number of parts.
    model_loading : dict, optional
        ``config["model_loading"]`` (``scheduler``, ``variant``); the sampler used is
        recorded in the latents file (``scheduler``, ``scheduler_config``, ``shipped_scheduler``).
    threads : int, optional
        torch's CPU threads (the job's); torch's default when None.
    """
    from .load import load_model, model_fingerprint, scheduler_provenance

    if threads:
        torch.set_num_threads(int(threads))
    settings = section_settings("reconstruction", settings)
    decoded_z, decoded_c = DecodedLatent.read(z_path), DecodedLatent.read(c_path)
    z, z_ids, z_shape = decoded_z.predictions, decoded_z.nsd_ids, decoded_z.shape
    c, c_shape = decoded_c.predictions, decoded_c.shape
    if not np.array_equal(z_ids, decoded_c.nsd_ids):
        raise ValueError(f"{z_path} and {c_path} predict different test images")
    shard_size = settings["shard_size"]
    n_shards = -(-len(z_ids) // shard_size)
    mine = part_shards(n_shards, int(part[0]), int(part[1]))
    pipe = load_model(model, settings["device"], **dict(model_loading or {}))
    expected_z = (pipe.vae.config.latent_channels,)
    if z_shape[:1] != expected_z or len(z_shape) != 3:
        raise ValueError(f"{z_path}: z of shape {z_shape} does not fit the VAE ({expected_z[0]} latent channels)")
    recon = Reconstructor(pipe, settings)
    values = without_runtime(settings, "reconstruction")
    # A shard is kept only if made by this model, sampler, seed and settings from these decoded latents.
    base = {"model": model_fingerprint(pipe), "settings": values, "subject": subject,
            "device_type": pipe.device.type, "dtype": str(pipe.unet.dtype), **scheduler_provenance(pipe)}
    n_samples, batch = settings["n_samples"], settings["batch_size"]
    shard_dir = Path(shard_dir)
    shard_dir.mkdir(parents=True, exist_ok=True)
    clean_partial_shards(shard_dir, mine)
    log.info("%s: %d test images in %d shards of %d; part %d of %d: shards %d-%d", subject, len(z_ids), n_shards,
             shard_size, part[0] + 1, part[1], mine.start + 1, mine.stop)
    shards = []
    for number in mine:
        start, stop = number * shard_size, min((number + 1) * shard_size, len(z_ids))
        rows = np.arange(start, stop)
        path = shard_dir / f"shard_{number:05d}.h5"
        expected = fingerprint(base, z_ids[rows], z[rows], c[rows])
        shards.append({"file": path.name, "start": start, "stop": stop, "fingerprint": expected})
        if shard_is_complete(path, expected, z_ids[rows]):
            log.info("shard %d: complete, skipped", number)
            continue
        began = time.perf_counter()
        xc_latents, xzc_latents, pngs = [], [], {}
        for b in range(0, len(rows), batch):
            chunk = rows[b:b + batch]
            ids = z_ids[chunk]
            zt = torch.from_numpy(z[chunk].reshape((-1,) + z_shape))
            ct = torch.from_numpy(c[chunk].reshape((-1,) + c_shape))
            xz = recon.decode_z(zt)
            for im, i in zip(xz, ids):
                pngs[image_name("Xz", i, 0)] = _png_bytes(im)
            rep_ids = np.repeat(ids, n_samples)
            samples = np.tile(np.arange(n_samples), len(ids))
            c_rep = ct.repeat_interleave(n_samples, dim=0)
            xc, lat_c = recon.text_to_image(c_rep, _generators(settings["seed"], "Xc", subject, rep_ids, samples))
            xz_rep = [im for im in xz for _ in range(n_samples)]
            xzc, lat_zc = recon.image_to_image(xz_rep, c_rep,
                                               _generators(settings["seed"], "Xzc", subject, rep_ids, samples))
            for method, images in (("Xc", xc), ("Xzc", xzc)):
                for im, i, k in zip(images, rep_ids, samples):
                    pngs[image_name(method, i, k)] = _png_bytes(im)
            xc_latents.append(lat_c.float().cpu().numpy().reshape((len(ids), n_samples) + lat_c.shape[1:]))
            xzc_latents.append(lat_zc.float().cpu().numpy().reshape((len(ids), n_samples) + lat_zc.shape[1:]))
        with atomic_path(path) as tmp, h5py.File(tmp, "w") as h5:
            h5.create_dataset("nsd_ids", data=z_ids[rows], track_times=False)
            h5.create_dataset("Xc", data=np.concatenate(xc_latents), track_times=False)
            h5.create_dataset("Xzc", data=np.concatenate(xzc_latents), track_times=False)
            for name, data in pngs.items():
                h5.create_dataset(f"png/{name}", data=np.void(data), track_times=False)
            mark_complete(h5, expected)
        rate = len(rows) / (time.perf_counter() - began)
        log.info("shard %d/%d: %d test images (%.2f images/s)", number + 1, n_shards, len(rows), rate)
    common = {"settings": json.dumps(values, sort_keys=True), "subject": subject, "model": os.fspath(model),
              **scheduler_provenance(pipe)}
    write_part_manifest(manifest_path, part, shard_dir, z_ids, METHODS, shards, common)


def _png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def reconstructions_to_files(model, z_path, c_path, image_dir, latents_path, shard_dir, settings: dict,
                             subject: str, stimuli_path=None, sheet_path=None, model_loading: dict | None = None,
                             ) -> None:
    """Every reconstruction of a subject in one process: :func:`reconstruct_images` of one part, then the
    gather (:func:`brainldm.ldm.gather.gather_reconstructions`, which describes the files)."""
    from .gather import gather_reconstructions

    manifest = Path(shard_dir).with_name(f"{Path(shard_dir).name}_part0_of_1.json")
    reconstruct_images(model, z_path, c_path, manifest, shard_dir, settings, subject, model_loading=model_loading)
    gather_reconstructions([manifest], z_path, image_dir, latents_path, settings, stimuli_path, sheet_path)
    manifest.unlink()
