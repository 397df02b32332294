"""Evaluation networks: seeded random weights, pretrained weights from a path, a missing file named."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from brainldm.config import ConfigError, check_evaluation, section_defaults
from brainldm.evaluation.nets import CHECKPOINT_URLS, FeatureExtractor, WeightsError, load_network
from brainldm.evaluation.protocols import Readout, View, protocol_readouts

TINY_CLIP = {"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 12, "num_attention_heads": 2,
             "patch_size": 14, "projection_dim": 8}


def _settings(**changes) -> dict:
    settings = section_defaults("evaluation")
    settings.update(weights="random", device="cpu", random_clip=TINY_CLIP, weight_paths={})
    settings.update(changes)
    return settings


def _parameters(module) -> torch.Tensor:
    return torch.cat([p.flatten() for p in module.parameters()])


@pytest.fixture
def empty_hub(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path / "hub"))
    return tmp_path / "hub"


def test_random_weights_are_seeded():
    a, b = load_network("efficientnet_b1", _settings()), load_network("efficientnet_b1", _settings())
    assert torch.equal(_parameters(a), _parameters(b))
    assert not torch.equal(_parameters(a), _parameters(load_network("efficientnet_b1", _settings(seed=1))))
    assert not a.training


def test_random_weights_leave_the_global_generator_alone():
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    load_network("efficientnet_b1", _settings())
    assert torch.equal(torch.rand(3), expected)


@pytest.mark.parametrize("net", ["alexnet", "swav", "clip"])
def test_missing_pretrained_weights_name_the_file(empty_hub, net):
    with pytest.raises(WeightsError) as error:
        load_network(net, _settings(weights="pretrained"))
    message = str(error.value)
    assert "evaluation.weight_paths." + net in message
    if net != "clip":
        assert str(empty_hub / "checkpoints" / CHECKPOINT_URLS[net].rsplit("/", 1)[1]) in message
    else:
        assert "openai/clip-vit-large-patch14" in message


def test_pretrained_from_the_hub_cache(empty_hub):
    state = load_network("efficientnet_b1", _settings(seed=3)).state_dict()
    (empty_hub / "checkpoints").mkdir(parents=True)
    torch.save(state, empty_hub / "checkpoints" / "efficientnet_b1-c27df63c.pth")
    loaded = load_network("efficientnet_b1", _settings(weights="pretrained"))
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in state.items())


def test_swav_checkpoint_layout(tmp_path):
    from torchvision.models import resnet50

    backbone = resnet50(weights=None).state_dict()
    checkpoint = {f"module.{k}": v for k, v in backbone.items() if not k.startswith("fc.")}
    checkpoint["module.projection_head.0.weight"] = torch.zeros(2, 2)  # SwAV's head: not part of ResNet-50
    torch.save(checkpoint, tmp_path / "swav.pth.tar")
    loaded = load_network("swav", _settings(weights="pretrained", weight_paths={"swav": str(tmp_path / "swav.pth.tar")}))
    assert torch.equal(loaded.state_dict()["conv1.weight"], backbone["conv1.weight"])
    torch.save({"module.conv1.weight": backbone["conv1.weight"]}, tmp_path / "partial.pth.tar")
    with pytest.raises(ValueError, match="not a SwAV ResNet-50 checkpoint"):
        load_network("swav", _settings(weights="pretrained", weight_paths={"swav": str(tmp_path / "partial.pth.tar")}))


def test_clip_from_a_local_folder(tmp_path):
    model = load_network("clip", _settings(seed=4))
    model.save_pretrained(tmp_path / "clip")
    loaded = load_network("clip", _settings(weights="pretrained", weight_paths={"clip": str(tmp_path / "clip")}))
    assert torch.equal(_parameters(loaded), _parameters(model))


def test_readouts_of_both_protocols(rng):
    groups = protocol_readouts(0.3)
    readouts = tuple(dict.fromkeys(r for group in groups.values() for r in group))
    features = FeatureExtractor(readouts, _settings())(rng.integers(0, 256, (2, 40, 40, 3), dtype=np.uint8))
    assert set(features) == set(readouts)
    sizes = {r.name: f.shape[1] for r, f in features.items() if r in groups["paper"]}
    assert sizes["CLIP late"] == TINY_CLIP["projection_dim"] and sizes["InceptionV3"] == 2048
    assert sizes["AlexNet late"] == 4096
    assert all(np.isfinite(f).all() and f.shape[0] == 2 for f in features.values())


def test_protocol_sizes():
    groups = protocol_readouts()
    assert {r.name: r.view.size for r in groups["paper"]}["AlexNet early"] == 299
    assert {r.name: (r.view.size, r.layer) for r in groups["identification"]}["AlexNet(2)"] == (256, "features.4")
    assert {r.view.size for r in protocol_readouts(0.5)["distance"]} == {128, 112}


def test_bad_layers_and_settings():
    with pytest.raises(ValueError, match="hidden state hidden_states.13 asked of a model with 12 layers"):
        FeatureExtractor([Readout("deep", View("clip", 224), "hidden_states.13")], _settings())
    with pytest.raises(AttributeError):
        FeatureExtractor([Readout("none", View("alexnet", 64), "features.99")], _settings())
    with pytest.raises(ConfigError, match="evaluation.image_scale"):
        check_evaluation(_settings(weights="pretrained", image_scale=0.5))
