"""The evaluation protocols as data: which network sees which image size, which layers are read.

Torch-free, so that the CPU rules (tables, plots, pooled scores) import it without the networks;
:mod:`brainldm.evaluation.nets` builds and runs the networks these name.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

#: Heading of every table and plot made with random weights.
RANDOM_NOTICE = "RANDOM WEIGHTS — not comparable to published numbers"

#: Side the community table compares pixels at (NSD's image size).
PIXEL_SIZE = 425


@dataclass(frozen=True)
class View:
    """One network seeing images at one size: the unit of a forward pass."""

    net: str
    size: int
    interpolation: str = "bilinear"


@dataclass(frozen=True)
class Readout:
    """One layer of one view, flattened to a vector per image.

    ``layer`` is a module path of a torchvision network (its output is taken), or
    for CLIP ``hidden_states.<k>`` or ``image_embeds``.
    """

    name: str
    view: View
    layer: str


_PAPER_ALEX, _PAPER_INCEPTION, _PAPER_CLIP = View("alexnet", 299), View("inception_v3", 299), View("clip", 224, "bicubic")
#: The paper's readouts (Figure 5), in the order of the bar plot.
PAPER_READOUTS = (
    Readout("AlexNet early", _PAPER_ALEX, "features.5"),
    Readout("AlexNet mid", _PAPER_ALEX, "features.12"),
    Readout("AlexNet late", _PAPER_ALEX, "classifier.5"),
    Readout("CLIP early", _PAPER_CLIP, "hidden_states.6"),
    Readout("CLIP mid", _PAPER_CLIP, "hidden_states.12"),
    Readout("CLIP late", _PAPER_CLIP, "image_embeds"),
    Readout("InceptionV3", _PAPER_INCEPTION, "avgpool"),
)
_ALEX_256 = View("alexnet", 256)
#: The community table's readouts scored by two-way identification ...
COMMUNITY_IDENTIFICATION = (
    Readout("AlexNet(2)", _ALEX_256, "features.4"),
    Readout("AlexNet(5)", _ALEX_256, "features.11"),
    Readout("InceptionV3", View("inception_v3", 342), "avgpool"),
    Readout("CLIP", View("clip", 224), "image_embeds"),
)
#: ... and those scored by the correlation distance to the original.
COMMUNITY_DISTANCE = (
    Readout("EffNet-B", View("efficientnet_b1", 255), "avgpool"),
    Readout("SwAV", View("swav", 224), "avgpool"),
)
COMMUNITY_READOUTS = COMMUNITY_IDENTIFICATION + COMMUNITY_DISTANCE
#: The groups :func:`protocol_readouts` returns.
PROTOCOL_GROUPS = {"paper": PAPER_READOUTS, "identification": COMMUNITY_IDENTIFICATION, "distance": COMMUNITY_DISTANCE}


def scaled_size(size: int, scale: float) -> int:
    """A protocol image size times ``scale`` (1 keeps the protocol's)."""
    return max(1, int(round(size * scale)))


def protocol_readouts(scale: float = 1.0) -> dict[str, tuple[Readout, ...]]:
    """Readouts of the paper (``paper``) and community protocols (``identification``, ``distance``).

    Parameters
    ----------
    scale : float
        Multiplies every input size (``evaluation.image_scale``): 1 is the protocols'
        sizes; less is a cheaper demo with random weights.
    """
    return {group: tuple(replace(r, view=replace(r.view, size=scaled_size(r.view.size, scale))) for r in readouts)
            for group, readouts in PROTOCOL_GROUPS.items()}
