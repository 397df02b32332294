"""Tests of the randomly initialised Stable Diffusion presets (brainldm.synthetic.tiny_sd)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import CLIPTokenizer

from brainldm.ldm.load import load_pipeline
from brainldm.synthetic.tiny_sd import (
    PRESETS,
    build_pipeline,
    save_pipeline,
    train_caption_tokenizer,
)

CAPTIONS = [
    "a red ball on the left",
    "two blue boxes in the middle",
    "a green cube at the top right",
    "three yellow stars, one of them big!",
    "A small purple pyramid next to two red balls",
    "an orange ring at the bottom left",
]
# Every pair ("a", "x</w>") here is equally frequent: without the fix in
# train_caption_tokenizer, tokenizers' BPE trainer learned these merges in a
# different order in every process (ties are broken by hash-map-ordered ids).
TIE_CORPUS = ["ab ac ad ae af ag ah", "ak am an ap"]


@pytest.fixture(scope="module")
def tiny_pipe():
    return build_pipeline("tiny", CAPTIONS, seed=0)


@pytest.fixture(scope="module")
def tiny_dir(tiny_pipe, tmp_path_factory):
    out = tmp_path_factory.mktemp("models") / "tiny"
    save_pipeline(tiny_pipe, out)
    return out


def words_of(tokenizer: CLIPTokenizer, text: str) -> list[str]:
    """The words of ``text`` as CLIP splits them (after lower-casing)."""
    backend = tokenizer.backend_tokenizer
    return [w for w, _ in backend.pre_tokenizer.pre_tokenize_str(backend.normalizer.normalize_str(text))]


def files_of(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# ---------------------------------------------------------------- tokenizer


def test_every_corpus_word_is_one_token(tiny_pipe):
    tok = tiny_pipe.tokenizer
    for caption in CAPTIONS:
        for word in words_of(tok, caption):
            assert len(tok(word, add_special_tokens=False)["input_ids"]) == 1, word
        ids = tok(caption)["input_ids"]
        assert ids[0] == tok.bos_token_id and ids[-1] == tok.eos_token_id
        assert len(ids) == len(words_of(tok, caption)) + 2 < tok.model_max_length


def test_tokenizer_matches_clip_conventions(tiny_pipe):
    tok, cfg = tiny_pipe.tokenizer, tiny_pipe.text_encoder.config
    assert isinstance(tok, CLIPTokenizer)
    assert tok.model_max_length == cfg.max_position_embeddings == 77
    assert tok.pad_token == tok.eos_token == "<|endoftext|>" and tok.bos_token == "<|startoftext|>"
    assert (cfg.bos_token_id, cfg.eos_token_id, cfg.pad_token_id) == (
        tok.bos_token_id, tok.eos_token_id, tok.pad_token_id
    )
    assert cfg.vocab_size == len(tok)
    # CLIP's layout: byte alphabet first, "</w>" bytes next, specials last.
    assert tok.convert_ids_to_tokens([0, 256, len(tok) - 2, len(tok) - 1]) == [
        "!", "!</w>", "<|startoftext|>", "<|endoftext|>"
    ]
    assert tok.convert_ids_to_tokens(tok("a red ball")["input_ids"]) == [
        "<|startoftext|>", "a</w>", "red</w>", "ball</w>", "<|endoftext|>"
    ]


def test_any_text_tokenizes_without_unknowns(tiny_pipe):
    tok = tiny_pipe.tokenizer
    text = "Zebra café 🙂 #42"
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert tok.unk_token_id not in ids  # unk is <|endoftext|>, as in CLIP
    assert tok.decode(ids) == "zebra café 🙂 # 4 2"


def test_tokenizer_round_trip(tiny_pipe, tmp_path):
    tok = tiny_pipe.tokenizer
    tok.save_pretrained(tmp_path)
    again = CLIPTokenizer.from_pretrained(tmp_path)
    texts = [*CAPTIONS, "unseen words: zebra giraffe"]
    kw = dict(padding="max_length", max_length=tok.model_max_length, truncation=True)
    assert again(texts, **kw)["input_ids"] == tok(texts, **kw)["input_ids"]
    assert again.model_max_length == tok.model_max_length


def test_vocab_size_cap():
    tok = train_caption_tokenizer(CAPTIONS, vocab_size=520)
    assert len(tok) <= 520
    ids = tok("a small purple pyramid", add_special_tokens=False)["input_ids"]
    assert len(ids) > 4 and tok.unk_token_id not in ids  # words split, nothing lost
    with pytest.raises(ValueError, match="base tokens"):
        train_caption_tokenizer(CAPTIONS, vocab_size=100)


# ----------------------------------------------------------------- pipeline


def test_tiny_preset_shares_sd14_schedule_and_latent_scale(tiny_pipe):
    assert PRESETS["tiny"]["scheduler"] == PRESETS["sd14"]["scheduler"]
    sched = tiny_pipe.scheduler.config
    assert (sched.beta_start, sched.beta_end, sched.beta_schedule) == (0.00085, 0.012, "scaled_linear")
    assert (sched.clip_sample, sched.set_alpha_to_one, sched.steps_offset) == (False, False, 1)
    assert tiny_pipe.vae.config.scaling_factor == PRESETS["sd14"]["vae"]["scaling_factor"] == 0.18215
    assert tiny_pipe.unet.config.cross_attention_dim == tiny_pipe.text_encoder.config.hidden_size
    assert tiny_pipe.safety_checker is None and tiny_pipe.feature_extractor is None


def test_round_trip_and_img2img(tiny_pipe, tiny_dir, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert not list(tiny_dir.parent.glob(".tiny.*"))  # no temporary siblings left
    assert not list(tiny_dir.rglob("*.bin")) and not list(tiny_dir.rglob("*.pt"))
    pipe = load_pipeline(tiny_dir)
    for name in ("vae", "text_encoder", "unet"):
        built, loaded = getattr(tiny_pipe, name).state_dict(), getattr(pipe, name).state_dict()
        assert built.keys() == loaded.keys()
        assert all(torch.equal(built[k], loaded[k]) for k in built), name

    tok = pipe.tokenizer

    def embed(texts):
        ids = tok(texts, padding="max_length", max_length=tok.model_max_length,
                  truncation=True, return_tensors="pt").input_ids
        with torch.no_grad():
            return pipe.text_encoder(ids)[0]

    prompt_embeds, negative_embeds = embed(CAPTIONS[:1]), embed([""])
    assert prompt_embeds.shape == (1, tok.model_max_length, pipe.text_encoder.config.hidden_size)

    size = 128
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8))
    call = dict(prompt_embeds=prompt_embeds, negative_prompt_embeds=negative_embeds, image=image,
                strength=0.8, num_inference_steps=10, guidance_scale=5.0, eta=0.0)
    scale = 2 ** (len(pipe.vae.config.block_out_channels) - 1)
    assert scale == pipe.vae_scale_factor == 8

    latents = pipe(**call, output_type="latent", generator=torch.Generator().manual_seed(0)).images
    assert latents.shape == (1, pipe.vae.config.latent_channels, size // scale, size // scale)
    assert torch.isfinite(latents).all()

    images = pipe(**call, output_type="np", generator=torch.Generator().manual_seed(0)).images
    assert images.shape == (1, size, size, 3)
    assert np.isfinite(images).all() and images.min() >= 0 and images.max() <= 1


def test_same_seed_gives_byte_identical_files(tiny_dir, tmp_path):
    pipe = build_pipeline("tiny", CAPTIONS, seed=0)
    # Using the tokenizer must not leak its padding/truncation into tokenizer.json.
    pipe.tokenizer(CAPTIONS, padding="max_length", max_length=pipe.tokenizer.model_max_length, truncation=True)
    save_pipeline(pipe, tmp_path / "again")
    first, again = files_of(tiny_dir), files_of(tmp_path / "again")
    assert first.keys() == again.keys()
    assert any(name.endswith(".safetensors") for name in first)
    assert [n for n in first if first[n] != again[n]] == []

    save_pipeline(build_pipeline("tiny", CAPTIONS, seed=1), tmp_path / "other")
    other = files_of(tmp_path / "other")
    assert other["unet/diffusion_pytorch_model.safetensors"] != first["unet/diffusion_pytorch_model.safetensors"]
    assert other["tokenizer/tokenizer.json"] == first["tokenizer/tokenizer.json"]


def test_save_replaces_existing_folder(tiny_pipe, tmp_path):
    out = tmp_path / "model"
    out.mkdir()
    (out / "stale.txt").write_text("from an earlier run")
    save_pipeline(tiny_pipe, out)
    assert not (out / "stale.txt").exists() and (out / "model_index.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_build_is_identical_across_processes(tmp_path):
    corpus = TIE_CORPUS + CAPTIONS
    code = textwrap.dedent(
        f"""
        from brainldm.synthetic.tiny_sd import build_pipeline, save_pipeline
        save_pipeline(build_pipeline("tiny", {corpus!r}, seed=3), {str(tmp_path / "child")!r})
        """
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
    save_pipeline(build_pipeline("tiny", corpus, seed=3), tmp_path / "parent")
    child, parent = files_of(tmp_path / "child"), files_of(tmp_path / "parent")
    assert child.keys() == parent.keys()
    assert [n for n in child if child[n] != parent[n]] == []


@pytest.mark.parametrize("component", ["unet", "vae", "text_encoder", "tokenizer", "scheduler"])
def test_missing_component_is_named(tiny_dir, tmp_path, component):
    # Only the layout matters: the check runs before any weights are read.
    (tmp_path / "model_index.json").write_bytes((tiny_dir / "model_index.json").read_bytes())
    for name in ("unet", "vae", "text_encoder", "tokenizer", "scheduler"):
        if name != component:
            (tmp_path / name).mkdir()
    with pytest.raises(FileNotFoundError, match=f"'{component}'.*{tmp_path / component}"):
        load_pipeline(tmp_path)


def test_missing_folder_or_index(tmp_path):
    with pytest.raises(FileNotFoundError, match="model folder not found"):
        load_pipeline(tmp_path / "nothing")
    with pytest.raises(FileNotFoundError, match="model_index.json"):
        load_pipeline(tmp_path)


def test_build_rejects_bad_arguments():
    with pytest.raises(KeyError, match="unknown preset"):
        build_pipeline("sd99", CAPTIONS, 0)
    with pytest.raises(ValueError, match="cpu"):
        build_pipeline("tiny", CAPTIONS, 0, device="cuda")


def test_sd14_preset_has_sd14_architecture():
    # Shapes only: the full random init takes ~20 s and 4.6 GB on a CPU.
    pipe = build_pipeline("sd14", CAPTIONS, seed=0, device="meta")
    n_params = {name: sum(p.numel() for p in getattr(pipe, name).parameters())
                for name in ("unet", "text_encoder", "vae")}
    assert n_params == {"unet": 859_520_964, "text_encoder": 123_060_480, "vae": 83_653_863}
    text = pipe.text_encoder.config
    assert (text.hidden_size, text.num_hidden_layers, text.num_attention_heads, text.intermediate_size,
            text.vocab_size, text.hidden_act) == (768, 12, 12, 3072, 49408, "quick_gelu")
    assert len(pipe.tokenizer) <= text.vocab_size
    assert pipe.tokenizer.model_max_length == text.max_position_embeddings == 77
    assert pipe.vae_scale_factor == 8 and pipe.vae.config.latent_channels == 4
    assert pipe.unet.config.sample_size * pipe.vae_scale_factor == 512
    assert tuple(pipe.unet.config.block_out_channels) == (320, 640, 1280, 1280)
