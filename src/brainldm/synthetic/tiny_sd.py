"""Randomly initialised Stable Diffusion pipelines for offline tests and benchmarks.

The real pipeline decodes fMRI into Stable Diffusion 1.4 latents and text
embeddings, then runs img2img. Without network access no pretrained weights are
available, so this module builds a *structurally faithful* stand-in:

* ``"tiny"`` -- a small SD-shaped model (VAE x8, CLIP text encoder, cross-attention
  U-Net, DDIM) that runs img2img on a CPU in seconds;
* ``"sd14"`` -- SD 1.4's exact architecture with random weights, for timing and
  memory benchmarks on a GPU.

Both use a CLIP-style BPE tokenizer trained on the caption corpus, saved as a
standard :class:`transformers.CLIPTokenizer`, so that the saved folder has the
same layout as ``CompVis/stable-diffusion-v1-4`` and everything downstream goes
through one loader, :func:`brainldm.ldm.load.load_pipeline`, for the tiny folder,
a local SD 1.4 folder or a hub id alike.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import shutil
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
from diffusers import (
    AutoencoderKL,
    DDIMScheduler,
    StableDiffusionImg2ImgPipeline,
    UNet2DConditionModel,
)
from tokenizers import Tokenizer, models, trainers
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

from ..seeds import derive_seed

__all__ = [
    "PRESETS",
    "derive_preset",
    "train_caption_tokenizer",
    "build_pipeline",
    "save_pipeline",
]

BOS_TOKEN = "<|startoftext|>"
EOS_TOKEN = "<|endoftext|>"
# CLIP marks the last sub-token of every word with this suffix instead of a
# leading-space marker (GPT-2's "Ġ").
END_OF_WORD = "</w>"

# ----------------------------------------------------------------------------
# Architecture presets
# ----------------------------------------------------------------------------

# SD 1.4 (CompVis/stable-diffusion-v1-4) component configurations. This is the
# single place where SD 1.4's numbers live; "tiny" is derived from it below so
# that everything not explicitly shrunk (block types, activations, latent
# scaling, noise schedule) stays identical to SD 1.4.
_SD14: dict[str, dict[str, Any]] = {
    "vae": {
        "in_channels": 3,
        "out_channels": 3,
        "down_block_types": ("DownEncoderBlock2D",) * 4,
        "up_block_types": ("UpDecoderBlock2D",) * 4,
        "block_out_channels": (128, 256, 512, 512),
        "layers_per_block": 2,
        "act_fn": "silu",
        "latent_channels": 4,
        "norm_num_groups": 32,
        "sample_size": 512,
        "scaling_factor": 0.18215,
    },
    "text_encoder": {
        # CLIP ViT-L/14 text tower. vocab_size None would mean "size of the
        # trained tokenizer"; SD 1.4 fixes it at CLIP's 49408 rows.
        "vocab_size": 49408,
        "hidden_size": 768,
        "intermediate_size": 3072,
        "projection_dim": 768,
        "num_hidden_layers": 12,
        "num_attention_heads": 12,
        "max_position_embeddings": 77,
        "hidden_act": "quick_gelu",
        "layer_norm_eps": 1e-5,
        "attention_dropout": 0.0,
        "initializer_range": 0.02,
        "initializer_factor": 1.0,
    },
    "unet": {
        "sample_size": 64,
        "in_channels": 4,
        "out_channels": 4,
        "center_input_sample": False,
        "flip_sin_to_cos": True,
        "freq_shift": 0,
        "down_block_types": (
            "CrossAttnDownBlock2D",
            "CrossAttnDownBlock2D",
            "CrossAttnDownBlock2D",
            "DownBlock2D",
        ),
        "mid_block_type": "UNetMidBlock2DCrossAttn",
        "up_block_types": (
            "UpBlock2D",
            "CrossAttnUpBlock2D",
            "CrossAttnUpBlock2D",
            "CrossAttnUpBlock2D",
        ),
        "block_out_channels": (320, 640, 1280, 1280),
        "layers_per_block": 2,
        "downsample_padding": 1,
        "mid_block_scale_factor": 1,
        "act_fn": "silu",
        "norm_num_groups": 32,
        "norm_eps": 1e-5,
        # cross_attention_dim None means "the text encoder's hidden_size".
        "cross_attention_dim": 768,
        # diffusers' historical misnomer: for SD 1.x this is the number of heads.
        "attention_head_dim": 8,
    },
    "scheduler": {
        "num_train_timesteps": 1000,
        "beta_start": 0.00085,
        "beta_end": 0.012,
        "beta_schedule": "scaled_linear",
        "clip_sample": False,
        "set_alpha_to_one": False,
        "steps_offset": 1,
        "prediction_type": "epsilon",
    },
}


def derive_preset(base: Mapping[str, Mapping[str, Any]], overrides: Mapping[str, Mapping[str, Any]]):
    """Return a deep copy of ``base`` with per-component keys replaced by ``overrides``."""
    out = copy.deepcopy(dict(base))
    for component, changes in overrides.items():
        out[component] = {**out[component], **changes}
    return out


PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "sd14": copy.deepcopy(_SD14),
    # Small enough to build in about a second and run 10 img2img steps at
    # 128x128 on a laptop CPU, but with the same component types, x8 VAE,
    # 4 latent channels and cross-attention layout as SD 1.4.
    "tiny": derive_preset(
        _SD14,
        {
            "vae": {
                "block_out_channels": (64, 128, 256, 256),
                "layers_per_block": 1,
                "sample_size": 128,
            },
            "text_encoder": {
                "vocab_size": None,
                "hidden_size": 256,
                "intermediate_size": 1024,
                "projection_dim": 256,
                "num_hidden_layers": 4,
                "num_attention_heads": 4,
            },
            "unet": {
                "sample_size": 16,
                "block_out_channels": (32, 64, 128, 128),
                "layers_per_block": 1,
                "cross_attention_dim": None,
            },
        },
    ),
}

# ----------------------------------------------------------------------------
# Tokenizer
# ----------------------------------------------------------------------------


def _bytes_to_unicode() -> dict[int, str]:
    """Map every byte to a printable unicode character (GPT-2 / CLIP base alphabet).

    Returns
    -------
    dict of int to str
        256 entries, in CLIP's order: printable Latin-1 bytes map to themselves,
        the rest to code points from 256 upwards.
    """
    bs = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def _clip_pipeline_tokenizer(model: models.Model) -> Tokenizer:
    """Wrap a BPE ``model`` with exactly the normaliser and pre-tokeniser of ``CLIPTokenizer``.

    Copying them from a throw-away transformers ``CLIPTokenizer`` (rather than
    re-declaring the regex here) guarantees that training sees the same words
    that the saved tokenizer will later encode.
    """
    template = CLIPTokenizer().backend_tokenizer
    tok = Tokenizer(model)
    tok.normalizer = template.normalizer
    tok.pre_tokenizer = template.pre_tokenizer
    return tok


def train_caption_tokenizer(
    captions: Iterable[str],
    vocab_size: int | None = None,
    *,
    model_max_length: int | None = None,
) -> CLIPTokenizer:
    """Train a CLIP-style byte-level BPE tokenizer on a caption corpus.

    Parameters
    ----------
    captions : iterable of str
        Training corpus. Lower-cased and split into words exactly as
        :class:`transformers.CLIPTokenizer` does.
    vocab_size : int, optional
        Upper bound on the vocabulary size (special tokens included). The
        default trains until every word of the corpus is a single token.
        Must be at least 514 (256 bytes, 256 end-of-word bytes, 2 specials).
    model_max_length : int, optional
        Context length written into the tokenizer; pass the text encoder's
        ``max_position_embeddings``. Defaults to SD 1.4's (77).

    Returns
    -------
    transformers.CLIPTokenizer
        Vocabulary laid out like CLIP's: ids 0-255 are the byte alphabet of
        ``bytes_to_unicode``, 256-511 the same bytes with ``</w>``, then the
        learned merges in order, then ``<|startoftext|>`` and
        ``<|endoftext|>`` last; ``pad_token`` is ``<|endoftext|>`` as in SD 1.4.
        Any text tokenises without unknown tokens.

    Raises
    ------
    ValueError
        If the corpus is empty or ``vocab_size`` is too small.
    RuntimeError
        If transformers' ``CLIPTokenizer`` disagrees with the trained
        ``tokenizers`` model on the corpus (a transformers/tokenizers
        incompatibility).
    """
    captions = [str(c) for c in captions]
    if not captions:
        raise ValueError("train_caption_tokenizer needs at least one caption")
    if model_max_length is None:
        model_max_length = _SD14["text_encoder"]["max_position_embeddings"]

    byte_chars = list(_bytes_to_unicode().values())
    eow_chars = [c + END_OF_WORD for c in byte_chars]
    specials = [BOS_TOKEN, EOS_TOKEN]
    n_base = len(byte_chars) + len(eow_chars) + len(specials)
    if vocab_size is not None and vocab_size < n_base:
        raise ValueError(f"vocab_size={vocab_size} is below the {n_base} base tokens")

    raw = _clip_pipeline_tokenizer(
        models.BPE(unk_token=EOS_TOKEN, end_of_word_suffix=END_OF_WORD, continuing_subword_prefix="")
    )
    if vocab_size is None:
        # Enough room for the trainer to merge until no pair is left, i.e. until
        # every pre-tokenised word is one token: each merge removes at least one
        # symbol from the set of distinct words. (A huge literal does not work:
        # the trainer pre-allocates vocab_size slots and aborts the process.)
        words = {
            w
            for c in captions
            for w, _ in raw.pre_tokenizer.pre_tokenize_str(raw.normalizer.normalize_str(c))
        }
        vocab_size = n_base + sum(len(w) - 1 for w in words)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=0,
        show_progress=False,
        initial_alphabet=byte_chars,
        end_of_word_suffix=END_OF_WORD,
        # The "</w>" byte tokens are registered up front, not only so that any
        # word-final byte is encodable: the trainer otherwise gives them ids in
        # hash-map order, and its merge tie-breaking uses those ids, which
        # made the learned merges differ from process to process.
        special_tokens=specials + eow_chars,
    )
    raw.train_from_iterator(captions, trainer=trainer)
    # tokenizers >= 0.20 serialises merges as pairs, older versions as "a b".
    merges = [
        tuple(m.split(" ")) if isinstance(m, str) else tuple(m)
        for m in json.loads(raw.to_str())["model"]["merges"]
    ]

    # Re-number in CLIP's layout (deterministic: depends only on the merges).
    vocab: dict[str, int] = {}
    for token in byte_chars + eow_chars + ["".join(m) for m in merges] + specials:
        vocab.setdefault(token, len(vocab))

    # Built from the in-memory vocab.json / merges.txt contents rather than via
    # from_pretrained(folder): transformers 5 records "is_local" and
    # "local_files_only" from such a load into the saved tokenizer_config.json.
    tokenizer = CLIPTokenizer(
        vocab=vocab,
        merges=merges,
        bos_token=BOS_TOKEN,
        eos_token=EOS_TOKEN,
        unk_token=EOS_TOKEN,
        pad_token=EOS_TOKEN,  # SD 1.4 pads with <|endoftext|>
        model_max_length=int(model_max_length),
    )
    _check_against_trained(tokenizer, raw, vocab, captions[:8])
    return tokenizer


def _check_against_trained(
    tokenizer: CLIPTokenizer, raw: Tokenizer, vocab: Mapping[str, int], captions: list[str]
) -> None:
    """Raise if transformers' tokenizer and the trained ``tokenizers`` BPE disagree.

    The trained model is applied word by word (``raw.model.tokenize``) so that
    the "</w>" byte tokens, registered as special tokens only for training, do
    not act as added tokens here.
    """
    for caption in captions:
        words = raw.pre_tokenizer.pre_tokenize_str(raw.normalizer.normalize_str(caption))
        expected = [vocab[t.value] for w, _ in words for t in raw.model.tokenize(w)]
        got = tokenizer(caption)["input_ids"]
        if got != [tokenizer.bos_token_id, *expected, tokenizer.eos_token_id]:
            raise RuntimeError(
                f"CLIPTokenizer ids {got} disagree with the trained BPE {expected} for {caption!r}"
            )


# ----------------------------------------------------------------------------
# Pipeline
# ----------------------------------------------------------------------------

@contextlib.contextmanager
def _seeded(seed: int, component: str):
    """Seed the CPU RNG for one component without touching the caller's RNG state.

    Each component gets its own seed derived from its name, so its weights do
    not depend on the order in which the components are built.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(seed, "tiny_sd", component))
        yield


def build_pipeline(
    preset: str | Mapping[str, Mapping[str, Any]],
    captions: Iterable[str],
    seed: int,
    *,
    device: str | torch.device = "cpu",
) -> StableDiffusionImg2ImgPipeline:
    """Build a randomly initialised SD-style img2img pipeline.

    Parameters
    ----------
    preset : str or mapping
        Key of :data:`PRESETS` (``"tiny"`` or ``"sd14"``), or a spec of the same form
        (``vae``, ``text_encoder``, ``unet``, ``scheduler`` keyword dicts), e.g. a preset
        with another checkpoint's structural keys (SD 2.x: linear projections, 1024-d text).
    captions : iterable of str
        Corpus for :func:`train_caption_tokenizer`.
    seed : int
        Weight seed. The same seed, preset and captions give byte-identical
        files from :func:`save_pipeline`.
    device : {"cpu", "meta"}, default "cpu"
        ``"meta"`` creates shape-only weights (no memory, no init time), for
        inspecting the architecture, e.g. counting SD 1.4's parameters. Other
        devices are refused because their RNGs would give different weights;
        build on CPU, save, then :func:`brainldm.ldm.load.load_pipeline` onto the GPU.

    Returns
    -------
    diffusers.StableDiffusionImg2ImgPipeline
        In float32, without safety checker or feature extractor.

    Raises
    ------
    KeyError
        Unknown preset.
    ValueError
        Unsupported device, or a tokenizer larger than the preset's fixed
        text embedding.
    """
    if isinstance(preset, str) and preset not in PRESETS:
        raise KeyError(f"unknown preset {preset!r}; choose from {sorted(PRESETS)}")
    device = torch.device(device)
    if device.type not in ("cpu", "meta"):
        raise ValueError(f"build on 'cpu' (reproducible) or 'meta' (shapes only), not {device}")
    spec = PRESETS[preset] if isinstance(preset, str) else preset
    text_kw = dict(spec["text_encoder"])

    # A preset with a fixed embedding size (SD 1.4: 49408) caps the BPE so that
    # every id has a row; otherwise the embedding is sized to the tokenizer.
    tokenizer = train_caption_tokenizer(
        captions,
        vocab_size=text_kw["vocab_size"],
        model_max_length=text_kw["max_position_embeddings"],
    )
    if text_kw["vocab_size"] is None:
        text_kw["vocab_size"] = len(tokenizer)
    elif len(tokenizer) > text_kw["vocab_size"]:  # pragma: no cover - guarded by the cap
        raise ValueError(f"tokenizer has {len(tokenizer)} ids > vocab_size {text_kw['vocab_size']}")
    text_config = CLIPTextConfig(
        **text_kw,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )

    unet_kw = dict(spec["unet"])
    if unet_kw["cross_attention_dim"] is None:
        unet_kw["cross_attention_dim"] = text_config.hidden_size
    if unet_kw["cross_attention_dim"] != text_config.hidden_size:
        raise ValueError("unet cross_attention_dim must equal the text encoder hidden_size")

    with torch.device(device):
        with _seeded(seed, "vae"):
            vae = AutoencoderKL(**spec["vae"])
        with _seeded(seed, "text_encoder"):
            text_encoder = CLIPTextModel(text_config)
        with _seeded(seed, "unet"):
            unet = UNet2DConditionModel(**unet_kw)
    scheduler = DDIMScheduler(**spec["scheduler"])

    for module in (vae, text_encoder, unet):
        module.eval()
    return StableDiffusionImg2ImgPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def save_pipeline(pipe: StableDiffusionImg2ImgPipeline, out_dir: str | os.PathLike) -> None:
    """Save a pipeline as safetensors, atomically replacing ``out_dir``.

    The pipeline is written into a temporary sibling folder which is then
    renamed onto ``out_dir``, so readers (and Snakemake) never see a
    half-written model. An existing ``out_dir`` is moved aside first and
    deleted only after the new folder is in place.

    Parameters
    ----------
    pipe : diffusers.StableDiffusionImg2ImgPipeline
        Pipeline to save.
    out_dir : str or os.PathLike
        Destination folder (diffusers layout: ``model_index.json``, ``unet/``,
        ``vae/``, ``text_encoder/``, ``tokenizer/``, ``scheduler/``).
    """
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tag = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp = out_dir.with_name(f".{out_dir.name}.tmp-{tag}")
    old = out_dir.with_name(f".{out_dir.name}.old-{tag}")
    tokenizer = getattr(pipe, "tokenizer", None)
    if tokenizer is not None and hasattr(tokenizer, "backend_tokenizer"):
        # transformers 5 leaves the padding/truncation of the last call on the
        # Rust backend and save_pretrained writes it into tokenizer.json, so the
        # file would depend on whether the tokenizer was used before saving.
        # Every call sets these again, so clearing them changes no behaviour.
        tokenizer.backend_tokenizer.no_padding()
        tokenizer.backend_tokenizer.no_truncation()
    try:
        pipe.save_pretrained(tmp, safe_serialization=True)
        # rename() cannot replace a non-empty directory, so swap in two steps
        # and put the old folder back if the second one fails.
        moved_aside = out_dir.exists()
        if moved_aside:
            os.replace(out_dir, old)
        try:
            os.replace(tmp, out_dir)
        except BaseException:
            if moved_aside:
                os.replace(old, out_dir)
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)
