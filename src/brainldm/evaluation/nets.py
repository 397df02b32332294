"""Feature networks of the evaluation: which layers, at which image size, with which weights.

Two protocols read features from the same networks at different sizes and layers:

* the paper's (Takagi & Nishimoto 2023, their public ``img2feat_decoded.py``):
  AlexNet and InceptionV3 at 299 x 299, AlexNet ``features.5`` / ``features.12`` /
  ``classifier.5`` (early / mid / late), InceptionV3's final pooled layer, and
  CLIP ViT-L/14 at 224 x 224 (bicubic, as ``CLIPProcessor``): hidden states 6 and
  12 and the projected image embedding (early / mid / late);
* the community table (Brain-Diffuser, MindEye): AlexNet ``features.4`` and
  ``features.11`` at 256 x 256, InceptionV3 ``avgpool`` at 342 x 342, the CLIP
  ViT-L/14 image embedding at 224 x 224, EfficientNet-B1 ``avgpool`` at
  255 x 255 and SwAV's ResNet-50 ``avgpool`` at 224 x 224.

Weights are never downloaded by this module. ``weights="pretrained"`` loads the
standard checkpoint from a configured path or from the library's cache
(``torch.hub.get_dir()/checkpoints/<file>``, the Hugging Face cache for CLIP) and
fails naming the file to provide; ``weights="random"`` builds the same
architecture with seeded random weights (tests, demo).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import torch

from ..device import torch_device
from ..seeds import derive_seed
from .images import resize_images
from .protocols import Readout, View

log = logging.getLogger(__name__)

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
CLIP_MEAN, CLIP_STD = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)

#: Standard checkpoints: the URL the libraries download from (its last part is the cache file name).
CHECKPOINT_URLS = {
    "alexnet": "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",
    "inception_v3": "https://download.pytorch.org/models/inception_v3_google-0cc3c7bd.pth",
    "efficientnet_b1": "https://download.pytorch.org/models/efficientnet_b1-c27df63c.pth",
    "swav": "https://dl.fbaipublicfiles.com/deepcluster/swav_800ep_pretrain.pth.tar",
}
#: CLIP ViT-L/14 on the Hugging Face hub (the model both protocols use).
CLIP_HUB_ID = "openai/clip-vit-large-patch14"
NETWORKS = ("alexnet", "inception_v3", "clip", "efficientnet_b1", "swav")


class WeightsError(FileNotFoundError):
    """Pretrained weights were asked for and are not on disk."""


def checkpoint_file(net: str, settings: dict) -> Path:
    """Where the pretrained weights of a torchvision network are looked for.

    The configured ``settings["weight_paths"][net]`` when set, else the torch hub
    cache under the standard file name.
    """
    configured = settings.get("weight_paths", {}).get(net)
    if configured:
        return Path(configured)
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(CHECKPOINT_URLS[net])


def _missing(net: str, where: Path) -> WeightsError:
    return WeightsError(
        f"pretrained weights of {net} not found: provide {where} (a copy of {CHECKPOINT_URLS[net]}), "
        f"or set config key 'evaluation.weight_paths.{net}' to a local copy; "
        "'evaluation.weights: random' runs without them (numbers then not comparable to published ones)"
    )


def _torchvision_net(net: str) -> torch.nn.Module:
    """The architecture of ``net`` with freshly initialised weights (the global RNG)."""
    from torchvision import models

    if net == "alexnet":
        return models.alexnet(weights=None)
    if net == "inception_v3":  # as the pretrained builder sets it: Google's weights expect transformed input
        return models.inception_v3(weights=None, aux_logits=True, transform_input=True, init_weights=True)
    if net == "efficientnet_b1":
        return models.efficientnet_b1(weights=None)
    if net == "swav":
        return models.resnet50(weights=None)
    raise ValueError(f"unknown evaluation network {net!r} (known: {NETWORKS})")


def _load_state(net: str, module: torch.nn.Module, path: Path) -> None:
    state = torch.load(path, map_location="cpu", weights_only=True)
    if net == "swav":  # a DataParallel checkpoint with a projection head; the backbone must be complete
        state = {k.removeprefix("module."): v for k, v in state.get("state_dict", state).items()}
        result = module.load_state_dict(state, strict=False)
        lacking = [k for k in result.missing_keys if not k.startswith("fc.")]
        if lacking:
            raise ValueError(f"{path}: not a SwAV ResNet-50 checkpoint (lacks {lacking[:5]})")
        return
    module.load_state_dict(state)


def _clip_model(settings: dict, seed: int) -> torch.nn.Module:
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    if settings["weights"] == "random":
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return CLIPVisionModelWithProjection(CLIPVisionConfig(**settings["random_clip"]))
    source = settings.get("weight_paths", {}).get("clip") or CLIP_HUB_ID
    try:
        return CLIPVisionModelWithProjection.from_pretrained(source, local_files_only=True)
    except OSError as exc:
        where = source if source != CLIP_HUB_ID else f"the Hugging Face cache ({CLIP_HUB_ID})"
        raise WeightsError(
            f"pretrained CLIP ViT-L/14 not found in {where}: provide a local folder with {CLIP_HUB_ID}'s "
            "config.json and model.safetensors and set config key 'evaluation.weight_paths.clip' to it, "
            "or fill the Hugging Face cache; 'evaluation.weights: random' runs without it"
        ) from exc


def load_network(net: str, settings: dict) -> torch.nn.Module:
    """One evaluation network in eval mode on the CPU.

    Parameters
    ----------
    net : str
        One of :data:`NETWORKS`.
    settings : dict
        ``config["evaluation"]``: ``weights`` (``pretrained`` or ``random``), ``seed``,
        ``weight_paths``, ``random_clip``.

    Raises
    ------
    WeightsError
        Pretrained weights asked for and absent; the message names the file to provide.
    """
    seed = derive_seed(settings["seed"], "evaluation", net)
    if net == "clip":
        module = _clip_model(settings, seed)
    elif settings["weights"] == "random":
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            module = _torchvision_net(net)
    else:
        path = checkpoint_file(net, settings)
        if not path.is_file():
            raise _missing(net, path)
        module = _torchvision_net(net)
        _load_state(net, module, path)
        log.info("%s: pretrained weights from %s", net, path)
    return module.eval().requires_grad_(False)


def preprocess(images: np.ndarray, view: View, device: torch.device) -> torch.Tensor:
    """uint8 RGB images (B, H, W, 3) -> normalised float input (B, 3, size, size) of ``view``."""
    from torchvision.transforms.v2 import functional as F

    batch = resize_images(images, view.size, view.interpolation, device)
    mean, std = (CLIP_MEAN, CLIP_STD) if view.net == "clip" else (IMAGENET_MEAN, IMAGENET_STD)
    return F.normalize(batch, list(mean), list(std))


class FeatureExtractor:
    """Features of every readout of the given views, one forward pass per view and batch.

    Parameters
    ----------
    readouts : sequence of Readout
    settings : dict
        ``config["evaluation"]`` (see :func:`load_network`; also ``device``).
    """

    def __init__(self, readouts, settings: dict):
        self.readouts = tuple(readouts)
        self.device = torch_device(settings["device"], "evaluation.device", half_on_cuda=False)[0]
        self.nets = {net: load_network(net, settings).to(self.device)
                     for net in dict.fromkeys(r.view.net for r in self.readouts)}
        for r in self.readouts:
            if r.view.net == "clip" and r.layer.startswith("hidden_states."):
                depth = self.nets["clip"].config.num_hidden_layers
                if int(r.layer.split(".")[1]) > depth:
                    raise ValueError(f"{r.name}: CLIP hidden state {r.layer} asked of a model with {depth} layers")
            elif r.view.net != "clip":
                self.nets[r.view.net].get_submodule(r.layer)  # fails naming the layer if absent

    @torch.no_grad()
    def __call__(self, images: np.ndarray) -> dict[Readout, np.ndarray]:
        """Flattened float32 features (B, D) of each readout for uint8 images (B, H, W, 3)."""
        out = {}
        for view in dict.fromkeys(r.view for r in self.readouts):
            wanted = [r for r in self.readouts if r.view == view]
            x = preprocess(images, view, self.device)
            net = self.nets[view.net]
            if view.net == "clip":
                result = net(pixel_values=x, output_hidden_states=True,
                             interpolate_pos_encoding=view.size != net.config.image_size)
                for r in wanted:
                    key, _, index = r.layer.partition(".")
                    value = result.hidden_states[int(index)] if index else getattr(result, key)
                    out[r] = value.flatten(1).float().cpu().numpy()
                continue
            captured = {}
            hooks = [net.get_submodule(r.layer).register_forward_hook(
                lambda module, args, output, r=r: captured.__setitem__(r, output.flatten(1).float().cpu().clone().numpy()))
                for r in wanted]
            try:
                net(x)
            finally:
                for hook in hooks:
                    hook.remove()
            out.update(captured)
        return out
