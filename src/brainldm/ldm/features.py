"""Per-image Stable Diffusion features: z, c, zc (noise level x denoising stage), U-Net activations.

Definitions (Takagi & Nishimoto, CVPR 2023, and their code):

* ``z``: ``vae.encode(x).latent_dist.mean * vae.config.scaling_factor`` of the
  image resized to ``image_size`` (PIL LANCZOS), ``x = 2 * pixels / 255 - 1``.
  With ``z_mode: sample``, ``.sample(generator)`` with a generator seeded by
  ``derive_seed(seed, "z", nsd_id)``.
* ``c``: the text encoder's ``last_hidden_state`` (``model_max_length`` x
  hidden) of every caption of the image (padding to ``max_length``,
  truncation, no attention mask: what SD's pipeline and the original
  ``FrozenCLIPEmbedder`` do), averaged over the captions.
* ``zc``: DDIM img2img (:class:`diffusers.StableDiffusionImg2ImgPipeline`)
  from the same image with ``prompt_embeds = c`` and the empty prompt's
  embedding as ``negative_prompt_embeds``; the latent after each stage's
  denoising step (:func:`brainldm.ldm.names.stage_step`), captured with
  ``callback_on_step_end``. One generator per image, seeded by
  ``derive_seed(seed, "zc", nsd_id, strength)``, drives both the VAE
  posterior sample of the init latent and the added noise (and DDIM's noise
  when ``eta > 0``), so features do not depend on batch size or shard layout.
* ``unet_<block>``: output of a top-level U-Net block (a down block's first
  output, its hidden states) in the U-Net call of the stage's step of the
  img2img run at ``unet_strength``, conditional half of the classifier-free
  guidance batch, recorded by forward hooks.

Batching: the VAE posterior is computed once per batch and reused for ``z``
and for the img2img init latents (the pipeline is given the scaled latent
sample, drawn from each image's generator exactly as the pipeline's own
per-image ``latent_dist.sample(generator[i])`` would: the same random draws,
one batched VAE pass instead of one per image and strength); captions of a
batch go through the text encoder together; each img2img run denoises the
whole batch.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import torch
from diffusers.utils.torch_utils import randn_tensor
from PIL import Image

from .. import __version__
from ..files import atomic_path
from ..shards import clean_partial_shards, fingerprint, mark_complete, part_shards, shard_is_complete, write_part_manifest
from ..errors import NSDInputError
from ..seeds import derive_seed
from .load import img2img_timesteps, load_model, model_fingerprint, scheduler_provenance
from .gather import check_out_paths, gather_features
from ..config import section_settings
from .names import FeatureSpec, feature_names, feature_specs, img2img_strengths, stage_step, storage_dtype

__all__ = [
    "StimuliIndex",
    "read_stimuli_index",
    "preprocess_images",
    "available_blocks",
    "FeatureExtractor",
    "extract_features",
    "features_to_files",
]

log = logging.getLogger(__name__)

#: Keys of the feature configuration that cannot change the values of the features.
_NOT_IN_FINGERPRINT = ("device", "batch_size", "shard_size", "jobs", "keep_shards")


def config_without_runtime(config: Mapping) -> dict:
    """The features configuration without the keys that cannot change a value (how jobs run)."""
    return {k: v for k, v in config.items() if k not in _NOT_IN_FINGERPRINT}


# ----------------------------------------------------------------------------- stimuli


@dataclass(frozen=True)
class StimuliIndex:
    """What :func:`read_stimuli_index` checked in a stimuli file (the images stay on disk)."""

    path: str
    nsd_ids: np.ndarray
    n_captions: np.ndarray
    image_shape: tuple[int, int, int]

    def __len__(self) -> int:
        return len(self.nsd_ids)


def read_stimuli_index(path: str | os.PathLike) -> StimuliIndex:
    """Check a stimuli file of :func:`brainldm.nsd.stimuli.extract_stimuli` and read its index.

    Raises
    ------
    FileNotFoundError
        No such file.
    brainldm.nsd.design.NSDInputError
        (a ``ValueError``) a missing dataset, an image brick that is not
        ``(n, H, W, 3)`` uint8 with ``H == W`` (grayscale or single-channel
        bricks are refused, not converted), ids not sorted and unique, or an
        image without captions; the message names the file and the shape or the
        0-based 73k id.
    """
    path = str(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: stimuli file not found")
    with h5py.File(path, "r") as h5:
        missing = [k for k in ("images", "nsd_ids", "captions", "n_captions") if k not in h5]
        if missing:
            raise NSDInputError(f"{path}: expected datasets images, nsd_ids, captions, n_captions; missing {missing}")
        shape = tuple(h5["images"].shape)
        if len(shape) != 4 or shape[3] != 3:
            raise NSDInputError(
                f"{path}: 'images' must be an RGB brick (n, H, W, 3); found shape {shape} "
                "(grayscale or single-channel images are not converted)")
        if shape[1] != shape[2]:
            raise NSDInputError(f"{path}: 'images' must be square (n, S, S, 3); found shape {shape}")
        if h5["images"].dtype != np.uint8:
            raise NSDInputError(f"{path}: 'images' must be uint8, found {h5['images'].dtype}")
        nsd_ids = np.asarray(h5["nsd_ids"][()], dtype=np.int64)
        n_captions = np.asarray(h5["n_captions"][()], dtype=np.int64)
        caption_shape = tuple(h5["captions"].shape)
    n = shape[0]
    if n == 0:
        raise NSDInputError(f"{path}: no images")
    if nsd_ids.shape != (n,) or n_captions.shape != (n,) or len(caption_shape) != 2 or caption_shape[0] != n:
        raise NSDInputError(
            f"{path}: images {shape}, nsd_ids {nsd_ids.shape}, captions {caption_shape} and n_captions "
            f"{n_captions.shape} must have one row per image")
    if np.any(np.diff(nsd_ids) <= 0):
        raise NSDInputError(f"{path}: nsd_ids must be sorted and unique (0-based 73k ids)")
    empty = np.flatnonzero(n_captions < 1)
    if empty.size:
        raise NSDInputError(
            f"{path}: 73k id {int(nsd_ids[empty[0]])} (0-based) has no caption"
            + (f" ({empty.size} images without captions in all)" if empty.size > 1 else ""))
    if n_captions.max() > caption_shape[1]:
        raise NSDInputError(f"{path}: n_captions up to {n_captions.max()} but captions has {caption_shape[1]} columns")
    return StimuliIndex(path, nsd_ids, n_captions, shape[1:])


def _read_rows(index: StimuliIndex, start: int, stop: int) -> tuple[np.ndarray, list[list[str]]]:
    """Images and captions of rows ``start:stop``."""
    with h5py.File(index.path, "r") as h5:
        images = h5["images"][start:stop]
        table = h5["captions"].asstr()[start:stop]
    captions = [[str(c) for c in row[:k]] for row, k in zip(table, index.n_captions[start:stop])]
    return images, captions


def preprocess_images(images: np.ndarray, size: int) -> torch.Tensor:
    """uint8 ``(B, H, W, 3)`` -> float32 ``(B, 3, size, size)`` in [-1, 1], resized with PIL LANCZOS.

    As the original code's ``load_img_from_arr``: ``2 * (pixels / 255) - 1``.
    """
    out = np.empty((len(images), 3, size, size), np.float32)
    for i, image in enumerate(images):
        pil = Image.fromarray(np.ascontiguousarray(image)).convert("RGB")
        pil = pil.resize((size, size), resample=Image.Resampling.LANCZOS)
        pixels = np.asarray(pil, dtype=np.float32) / 255.0
        out[i] = (2.0 * pixels - 1.0).transpose(2, 0, 1)
    return torch.from_numpy(out)


# ----------------------------------------------------------------------------- model side


def available_blocks(unet) -> list[str]:
    """Names of the U-Net's top-level blocks whose output can be recorded."""
    names = [f"down_blocks.{i}" for i in range(len(unet.down_blocks))]
    if getattr(unet, "mid_block", None) is not None:
        names.append("mid_block")
    names += [f"up_blocks.{i}" for i in range(len(unet.up_blocks))]
    return names


def _hidden_states(output):
    """A block's hidden states: down blocks return ``(hidden_states, residuals)``."""
    return output[0] if isinstance(output, (tuple, list)) else output


class FeatureExtractor:
    """Computes all features of a batch of images with one loaded pipeline.

    Parameters
    ----------
    pipe : diffusers.StableDiffusionImg2ImgPipeline
        From :func:`brainldm.ldm.load.load_model` (its device and dtype are used).
    config : mapping
        ``config["features"]``, whole or in part (completed and checked by
        :func:`brainldm.config.section_settings`).

    Attributes
    ----------
    specs : list of FeatureSpec
    shapes : dict
        Per-image array shape of z and c (known from the model config);
        zc shares z's; U-Net shapes are known after the first batch.
    steps : dict
        strength -> {stage: 1-based denoising step}.
    n_denoise : dict
        strength -> number of denoising steps.

    Raises
    ------
    ValueError
        A U-Net block that does not exist (the message lists the available
        ones), or an ``image_size`` that the VAE cannot encode exactly.
    """

    def __init__(self, pipe, config: Mapping):
        self.config = section_settings("features", config)
        self.pipe = pipe
        pipe.set_progress_bar_config(disable=True)
        self.device = pipe.device
        self.dtype = pipe.unet.dtype
        self.specs: list[FeatureSpec] = feature_specs(self.config)

        vae_cfg, text_cfg = pipe.vae.config, pipe.text_encoder.config
        self.vae_scale_factor = 2 ** (len(vae_cfg.block_out_channels) - 1)
        size = self.config["image_size"]
        if size % self.vae_scale_factor:
            raise ValueError(f"features.image_size {size} is not a multiple of the VAE's downsampling "
                             f"factor {self.vae_scale_factor}")
        self.text_length = int(pipe.tokenizer.model_max_length)
        if self.text_length > text_cfg.max_position_embeddings:
            raise ValueError(f"tokenizer model_max_length {self.text_length} exceeds the text encoder's "
                             f"max_position_embeddings {text_cfg.max_position_embeddings}")
        latent = (int(vae_cfg.latent_channels), size // self.vae_scale_factor, size // self.vae_scale_factor)
        self.shapes: dict[str, tuple[int, ...]] = {"z": latent, "c": (self.text_length, int(text_cfg.hidden_size))}
        for spec in self.specs:
            if spec.kind == "zc":
                self.shapes[spec.name] = latent

        blocks = available_blocks(pipe.unet)
        bad = [b for b in self.config["unet_blocks"] if b not in blocks]
        if bad:
            raise ValueError(f"unknown U-Net block {bad[0]!r} in features.unet_blocks; "
                             f"available top-level blocks: {blocks}")
        self.blocks = {b: pipe.unet.get_submodule(b) for b in self.config["unet_blocks"]}

        n_steps = self.config["num_inference_steps"]
        self.strengths = img2img_strengths(self.config)
        # One U-Net call per timestep of the scheduler's img2img schedule (DDIM: int(n x strength)).
        self.n_denoise = {s: len(img2img_timesteps(pipe.scheduler, n_steps, s)) for s in self.strengths}
        self.steps = {s: {f: stage_step(f, self.n_denoise[s]) for f in self.config["stages"]}
                      for s in self.strengths}
        self.cfg = self.config["guidance_scale"] > 1 and pipe.unet.config.time_cond_proj_dim is None
        # The img2img pipeline takes 4-channel tensors as ready latents (a literal 4 in
        # diffusers 0.42's prepare_latents); other VAEs get the image and encode it per image.
        self.pass_latents = (int(vae_cfg.latent_channels) == 4
                             == pipe.image_processor.config.vae_latent_channels)
        with torch.no_grad():
            self.empty_embedding = self.encode_texts([""])

    # -- pieces ---------------------------------------------------------------

    @torch.no_grad()
    def encode_texts(self, texts: Sequence[str]) -> torch.Tensor:
        """Text encoder ``last_hidden_state`` of each text, ``(len(texts), L, hidden)`` in the model dtype."""
        tokens = self.pipe.tokenizer(list(texts), padding="max_length", max_length=self.text_length,
                                     truncation=True, return_tensors="pt")
        output = self.pipe.text_encoder(tokens.input_ids.to(self.device))
        return output.last_hidden_state

    @torch.no_grad()
    def caption_embeddings(self, captions: Sequence[Sequence[str]]) -> torch.Tensor:
        """c per image: the mean over its captions of :meth:`encode_texts`, float32 ``(B, L, hidden)``."""
        flat = [text for group in captions for text in group]
        hidden = self.encode_texts(flat).float()
        out, start = [], 0
        for group in captions:
            out.append(hidden[start:start + len(group)].mean(dim=0))
            start += len(group)
        return torch.stack(out)

    def _generators(self, feature: str, nsd_ids, strength: float | None = None) -> list[torch.Generator]:
        # CPU generators: the same random numbers on every device (diffusers draws on the CPU and moves).
        keys = (lambda i: (self.config["seed"], feature, int(i))) if strength is None else \
            (lambda i: (self.config["seed"], feature, int(i), float(strength)))
        return [torch.Generator("cpu").manual_seed(derive_seed(*keys(i))) for i in nsd_ids]

    @staticmethod
    def _posterior_sample(posterior, generators) -> torch.Tensor:
        """``posterior.sample(generator)`` per image, drawn as the pipeline draws it for one image."""
        mean, std = posterior.mean, posterior.std
        eps = torch.cat([randn_tensor(mean[i:i + 1].shape, generator=g, device=mean.device, dtype=mean.dtype)
                         for i, g in enumerate(generators)])
        return mean + std * eps

    def img2img(self, x: torch.Tensor, posterior, c: torch.Tensor, nsd_ids, strength: float,
                record_unet: bool) -> tuple[dict, dict, dict]:
        """One img2img run of the batch at ``strength``.

        Returns
        -------
        latents : dict
            1-based step -> latent after that step (float32, CPU), for the stages' steps.
        activations : dict
            (block, step) -> conditional-half block output (float32, CPU), when ``record_unet``.
        timesteps : dict
            1-based step -> scheduler timestep of that step.
        """
        pipe, batch = self.pipe, x.shape[0]
        wanted = set(self.steps[strength].values())
        generators = self._generators("zc", nsd_ids, strength)
        sf = pipe.vae.config.scaling_factor
        if self.pass_latents:
            image = self._posterior_sample(posterior, generators) * sf
        else:  # the pipeline encodes (per image, generator[i]); it expects [0, 1]
            image = ((x + 1) / 2).to(self.device, self.dtype)

        latents, activations, timesteps = {}, {}, {}
        state = {"calls": 0}

        def count_calls(module, args, kwargs):
            state["calls"] += 1

        def record(block):
            def hook(module, args, output):
                step = state["calls"]
                if step not in wanted:
                    return
                hidden = _hidden_states(output)
                if self.cfg:
                    if hidden.shape[0] != 2 * batch:
                        raise RuntimeError(f"U-Net block {block}: batch {hidden.shape[0]}, expected 2 x {batch} "
                                           "(unconditional; conditional)")
                    hidden = hidden[batch:]
                activations[(block, step)] = hidden.detach().float().cpu()
            return hook

        def on_step_end(_pipe, i, t, kwargs):
            step = i + 1
            if state["calls"] != step:
                raise RuntimeError(f"{state['calls']} U-Net calls at the end of denoising step {step}: "
                                   "the hooks assume one call per step")
            if step in wanted:
                latents[step] = kwargs["latents"].detach().float().cpu()
                timesteps[step] = int(t)
            return {}

        handles = [pipe.unet.register_forward_pre_hook(count_calls, with_kwargs=True)]
        if record_unet:
            handles += [module.register_forward_hook(record(name)) for name, module in self.blocks.items()]
        try:
            output = pipe(
                prompt_embeds=c.to(self.device, self.dtype),
                negative_prompt_embeds=self.empty_embedding.expand(batch, -1, -1),
                image=image,
                strength=strength,
                num_inference_steps=self.config["num_inference_steps"],
                guidance_scale=self.config["guidance_scale"],
                eta=self.config["eta"],
                generator=generators,
                output_type="latent",
                callback_on_step_end=on_step_end,
                callback_on_step_end_tensor_inputs=["latents"],
            )
        finally:
            for handle in handles:
                handle.remove()
        n = self.n_denoise[strength]
        if state["calls"] != n:
            raise RuntimeError(f"img2img at strength {strength}: {state['calls']} U-Net calls, expected {n}")
        last = max(wanted)
        if last == n and not torch.equal(latents[n], output.images.detach().float().cpu()):
            raise RuntimeError("the latent captured at the last step differs from the pipeline's output")
        return latents, activations, timesteps

    # -- a batch ---------------------------------------------------------------

    @torch.no_grad()
    def process_batch(self, images: np.ndarray, captions: Sequence[Sequence[str]], nsd_ids) -> tuple[dict, dict]:
        """All features of a batch.

        Parameters
        ----------
        images : uint8 array (B, H, W, 3)
        captions : list of lists of str
            At least one caption per image.
        nsd_ids : sequence of int
            0-based 73k ids (seed the per-image generators).

        Returns
        -------
        features : dict
            name -> float32 array ``(B, *shape)``.
        meta : dict
            name -> {"step", "timestep", "n_denoising_steps", "strength", "stage", "block"} for zc and U-Net features.
        """
        config, pipe = self.config, self.pipe
        x = preprocess_images(images, config["image_size"])
        posterior = pipe.vae.encode(x.to(self.device, self.dtype)).latent_dist
        sf = pipe.vae.config.scaling_factor
        if config["z_mode"] == "mean":
            z = posterior.mean * sf
        else:
            z = self._posterior_sample(posterior, self._generators("z", nsd_ids)) * sf
        c = self.caption_embeddings(captions)
        features = {"z": z.float().cpu().numpy(), "c": c.cpu().numpy()}
        meta: dict[str, dict] = {}
        by_strength = {}
        for strength in self.strengths:
            record_unet = bool(self.blocks) and strength == config["unet_strength"]
            by_strength[strength] = self.img2img(x, posterior, c, nsd_ids, strength, record_unet)
        for spec in self.specs:
            if spec.kind not in ("zc", "unet"):
                continue
            latents, activations, timesteps = by_strength[spec.strength]
            step = self.steps[spec.strength][spec.stage]
            array = latents[step] if spec.kind == "zc" else activations[(spec.block, step)]
            features[spec.name] = array.numpy()
            self.shapes.setdefault(spec.name, tuple(array.shape[1:]))
            meta[spec.name] = {"strength": spec.strength, "stage": spec.stage, "block": spec.block,
                               "step": step, "timestep": timesteps[step],
                               "n_denoising_steps": self.n_denoise[spec.strength]}
        for name, array in features.items():
            if name in self.shapes and tuple(array.shape[1:]) != self.shapes[name]:
                raise RuntimeError(f"feature {name}: per-image shape {array.shape[1:]}, expected {self.shapes[name]}")
        return features, meta


# ----------------------------------------------------------------------------- files


def _shard_fingerprint(base: str, ids: np.ndarray, images: np.ndarray, captions) -> str:
    return fingerprint(base, np.asarray(ids, dtype=np.int64), images, np.array(json.dumps(captions, ensure_ascii=True)))


def _shard_complete(path: Path, expected: str, ids: np.ndarray, names: Sequence[str]) -> bool:
    """Whether ``path`` holds every feature of exactly these images, from this model and configuration."""
    if not shard_is_complete(path, expected, ids):
        return False
    with h5py.File(path, "r") as h5:
        group = h5["features"]
        return all(name in group and group[name].shape[0] == len(ids) for name in names)


def _row_chunks(n_rows: int, dim: int) -> int:
    """Rows per HDF5 chunk: about 4 MB of float32, at least one row."""
    return max(1, min(n_rows, (1 << 20) // max(dim, 1)))


def _write_shard(path: Path, extractor: FeatureExtractor, images, captions, ids, expected: str,
                 batch_size: int) -> None:
    names = [spec.name for spec in extractor.specs]
    dtypes = {spec.name: storage_dtype(spec, extractor.config) for spec in extractor.specs}
    n = len(ids)
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as h5:
        group = h5.create_group("features")
        meta = {}
        for start in range(0, n, batch_size):
            stop = min(n, start + batch_size)
            features, batch_meta = extractor.process_batch(images[start:stop], captions[start:stop], ids[start:stop])
            for name in names:
                array = features[name].reshape(stop - start, -1)
                if name not in group:
                    group.create_dataset(name, shape=(n, array.shape[1]), dtype=dtypes[name],
                                         chunks=(_row_chunks(n, array.shape[1]), array.shape[1]))
                    group[name].attrs["shape"] = np.asarray(features[name].shape[1:], dtype=np.int64)
                group[name][start:stop] = array
            for name, values in batch_meta.items():
                if meta.setdefault(name, values) != values:
                    raise RuntimeError(f"feature {name}: step/timestep differ between batches: {meta[name]} {values}")
        h5.create_dataset("nsd_ids", data=np.asarray(ids, dtype=np.int64))
        h5.attrs["meta"] = json.dumps(meta, sort_keys=True)
        mark_complete(h5, expected)


def extract_features(model, stimuli_path: str | os.PathLike, manifest_path: str | os.PathLike,
                     features_config: Mapping | None, shard_dir: str | os.PathLike,
                     model_loading: Mapping | None = None, part: tuple[int, int] = (0, 1),
                     threads: int | None = None) -> None:
    """Compute the features of one part of the images into shards, and write the part's manifest.

    Images are processed in shards of ``shard_size`` rows; each shard is
    written atomically to ``shard_dir/shard_XXXXX.h5`` with all features of
    its images, and a shard already there and complete (same images, model,
    configuration; see ``_shard_complete``) is not recomputed, so a killed job
    resumes where it stopped. Part ``i`` of ``k`` computes the ``i``-th of ``k``
    contiguous runs of shards, so ``k`` jobs (GPUs) share the work and the shards
    do not depend on ``k``. :func:`brainldm.ldm.gather.gather_features` then
    writes one file per feature from the manifests of all parts.

    Parameters
    ----------
    model : str, os.PathLike or pipeline
        Diffusers folder or hub id (or a loaded pipeline), see :func:`brainldm.ldm.load.load_model`.
    stimuli_path : path
        From :func:`brainldm.nsd.stimuli.extract_stimuli`.
    manifest_path : path
        JSON written last (atomically): the part, its shards with their fingerprints,
        and the attributes every feature file records (see :mod:`brainldm.ldm.gather`).
    features_config : mapping
        ``config["features"]``.
    shard_dir : path
        Folder of the shards (the resume state; :func:`~brainldm.ldm.gather.gather_features`
        removes them unless ``features.keep_shards``).
    model_loading : mapping, optional
        ``config["model_loading"]``: ``scheduler`` (``"ddim"``, the paper's sampler built
        from the checkpoint's scheduler config, or ``"shipped"``) and ``variant``.
    part : (int, int)
        ``(i, k)``: this job's part and the number of parts.
    threads : int, optional
        torch's CPU threads (the job's); float sums depend on it, so jobs given the same
        number write the same bytes.
    """
    if threads:
        torch.set_num_threads(int(threads))
    config = section_settings("features", features_config)
    specs = feature_specs(config)
    names = [spec.name for spec in specs]
    index, n_parts = read_stimuli_index(stimuli_path), int(part[1])
    if not 0 <= part[0] < n_parts:
        raise ValueError(f"part {part[0]} of {n_parts}: expected 0 <= part < number of parts")
    if index.image_shape[0] < config["image_size"]:
        log.warning("%s: images are %d px, upscaled (LANCZOS) to features.image_size %d px: z sees no more "
                    "detail than the brick has", stimuli_path, index.image_shape[0], config["image_size"])
    pipe = load_model(model, config["device"], **dict(model_loading or {}))
    extractor = FeatureExtractor(pipe, config)
    model_name = str(model) if isinstance(model, (str, os.PathLike)) else str(
        getattr(pipe.config, "_name_or_path", type(pipe).__name__))

    base = json.dumps({
        "model": model_fingerprint(pipe),
        "config": config_without_runtime(config),
        "device_type": extractor.device.type,
        "dtype": str(extractor.dtype),
        "features": names,
    }, sort_keys=True)
    shard_dir = Path(shard_dir)
    shard_dir.mkdir(parents=True, exist_ok=True)

    n, shard_size = len(index), config["shard_size"]
    n_shards = math.ceil(n / shard_size)
    mine = part_shards(n_shards, part[0], n_parts)
    clean_partial_shards(shard_dir, mine)
    log.info("features of %d images in %d shards of %d; part %d of %d: shards %d-%d, on %s (%s), batch size %d: %s",
             n, n_shards, shard_size, part[0] + 1, n_parts, mine.start + 1, mine.stop, extractor.device,
             extractor.dtype, config["batch_size"], ", ".join(names))
    shards = []
    computed = 0
    started = time.perf_counter()
    for k in mine:
        start, stop = k * shard_size, min(n, (k + 1) * shard_size)
        ids = index.nsd_ids[start:stop]
        images, captions = _read_rows(index, start, stop)
        path = shard_dir / f"shard_{k:05d}.h5"
        expected = _shard_fingerprint(base, ids, images, captions)
        shards.append({"file": path.name, "start": start, "stop": stop, "fingerprint": expected})
        if _shard_complete(path, expected, ids, names):
            log.info("shard %d/%d (images %d-%d): complete, skipped", k + 1, n_shards, start, stop - 1)
            continue
        t0 = time.perf_counter()
        _write_shard(path, extractor, images, captions, ids, expected, config["batch_size"])
        seconds = time.perf_counter() - t0
        computed += stop - start
        log.info("shard %d/%d (images %d-%d): %d images in %.1f s, %.2f images/s", k + 1, n_shards, start,
                 stop - 1, stop - start, seconds, (stop - start) / seconds)
    if computed:
        total = time.perf_counter() - started
        log.info("computed %d images in %.1f s (%.2f images/s)", computed, total, computed / total)

    write_part_manifest(manifest_path, part=part, shard_dir=shard_dir, nsd_ids=index.nsd_ids, contents=names,
                        shards=shards, common={
                            "model": model_name,
                            "features_config": json.dumps(config_without_runtime(config), sort_keys=True),
                            "stimuli": os.path.basename(os.fspath(stimuli_path)),
                            "device": str(extractor.device),
                            "dtype": str(extractor.dtype).replace("torch.", ""),
                            "brainldm_version": __version__,
                            **scheduler_provenance(pipe),
                        })


def features_to_files(model, stimuli_path: str | os.PathLike, out_paths: Mapping[str, str | os.PathLike],
                      features_config: Mapping | None, shard_dir: str | os.PathLike,
                      model_loading: Mapping | None = None) -> None:
    """Every feature of every image in one process: :func:`extract_features` of one part, then the gather.

    ``out_paths``: feature name -> output HDF5, exactly the configured names (see
    :func:`brainldm.ldm.gather.gather_features` for the files' content).
    """
    check_out_paths(out_paths, feature_names(features_config))
    manifest = Path(shard_dir) / "part0_of_1.json"
    extract_features(model, stimuli_path, manifest, features_config, shard_dir, model_loading)
    gather_features([manifest], stimuli_path, out_paths, features_config)
