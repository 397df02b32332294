"""Procedurally drawn scenes and captions that describe them.

Each scene has a background and one or two objects; an object has a category
(its shape, named by a noun), a colour, a position and a size. Images carry the
low-level content (where the colour is) and captions the semantic content
(which objects), so the planted brain responses can be tied to both.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..seeds import rng_for

CATEGORIES = ("ball", "box", "tent", "tower", "ring", "cross")
COLOURS = {
    "red": (210, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 70, 210),
    "yellow": (235, 210, 40),
    "white": (245, 245, 245),
    "black": (20, 20, 20),
    "purple": (140, 50, 170),
    "orange": (245, 140, 30),
}
#: background name -> (top colour, bottom colour, phrase used in captions)
BACKGROUNDS = {
    "grey": ((150, 150, 150), (120, 120, 120), "on a grey background"),
    "field": ((120, 180, 235), (70, 150, 60), "in a grassy field"),
    "beach": ((140, 200, 240), (225, 205, 150), "on a sandy beach"),
    "night": ((15, 20, 50), (40, 40, 60), "at night"),
    "room": ((200, 185, 160), (120, 90, 60), "in a room"),
}
MAX_OBJECTS = 2


@dataclass(frozen=True)
class SceneObject:
    """One object of a scene; positions and size are fractions of the image width."""

    category: int
    colour: int
    x: float
    y: float
    size: float


@dataclass(frozen=True)
class Scene:
    """A background and its objects."""

    background: int
    objects: tuple[SceneObject, ...]


def sample_scene(rng: np.random.Generator) -> Scene:
    """Draw the parameters of one scene."""
    n_objects = 1 if rng.random() < 0.6 else 2
    categories = rng.choice(len(CATEGORIES), size=n_objects, replace=False)
    colours = rng.choice(len(COLOURS), size=n_objects, replace=False)
    if n_objects == 1:
        xs = [rng.uniform(0.25, 0.75)]
    else:  # keep the two objects apart, left one first
        xs = sorted([rng.uniform(0.2, 0.42), rng.uniform(0.58, 0.8)])
    objects = tuple(
        SceneObject(
            category=int(cat),
            colour=int(col),
            x=float(x),
            y=float(rng.uniform(0.3, 0.7)),
            size=float(rng.uniform(0.1, 0.22) if n_objects == 2 else rng.uniform(0.12, 0.3)),
        )
        for cat, col, x in zip(categories, colours, xs)
    )
    return Scene(background=int(rng.integers(len(BACKGROUNDS))), objects=objects)


def _shape_mask(category: str, u: np.ndarray, v: np.ndarray, size: float) -> np.ndarray:
    """Boolean mask of a shape, ``u`` and ``v`` being offsets from its centre."""
    r = np.hypot(u, v)
    if category == "ball":
        return r <= size
    if category == "box":
        return (np.abs(u) <= size * 0.85) & (np.abs(v) <= size * 0.85)
    if category == "tent":
        return (v <= size * 0.8) & (v >= -size) & (np.abs(u) <= (v + size) * 0.55)
    if category == "tower":
        return (np.abs(u) <= size * 0.4) & (np.abs(v) <= size * 1.3)
    if category == "ring":
        return (r <= size) & (r >= size * 0.55)
    if category == "cross":
        arm = size * 0.3
        return ((np.abs(u) <= arm) & (np.abs(v) <= size)) | ((np.abs(v) <= arm) & (np.abs(u) <= size))
    raise ValueError(f"unknown category {category!r}")


def render_scene(scene: Scene, size: int, rng: np.random.Generator) -> np.ndarray:
    """Draw a scene as an RGB image.

    Parameters
    ----------
    scene : Scene
        The scene parameters.
    size : int
        Width and height in pixels.
    rng : numpy.random.Generator
        Source of the pixel texture noise.

    Returns
    -------
    numpy.ndarray
        ``(size, size, 3)`` uint8 image.
    """
    coords = (np.arange(size) + 0.5) / size
    v, u = np.meshgrid(coords, coords, indexing="ij")
    top, bottom, _ = list(BACKGROUNDS.values())[scene.background]
    horizon = v[..., None] if scene.background != 1 else (v[..., None] > 0.55).astype(float)
    image = np.asarray(top, float) * (1 - horizon) + np.asarray(bottom, float) * horizon
    colours = list(COLOURS.values())
    for obj in scene.objects:
        mask = _shape_mask(CATEGORIES[obj.category], u - obj.x, v - obj.y, obj.size)
        image[mask] = colours[obj.colour]
    image += rng.normal(0.0, 6.0, size=image.shape)
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _horizontal(x: float) -> str:
    return "left" if x < 0.4 else "right" if x > 0.6 else "middle"


def _vertical(y: float) -> str:
    return "top" if y < 0.42 else "bottom" if y > 0.58 else "centre"


def _size_word(size: float) -> str:
    return "small" if size < 0.17 else "large"


def _single_object_captions(obj: SceneObject, setting: str) -> list[str]:
    cat = CATEGORIES[obj.category]
    col = list(COLOURS)[obj.colour]
    size = _size_word(obj.size)
    hpos, vpos = _horizontal(obj.x), _vertical(obj.y)
    where = "in the middle" if hpos == "middle" else f"on the {hpos}"
    return [
        f"{_article(size)} {size} {col} {cat} {where} {setting}",
        f"a photo of {_article(col)} {col} {cat} {setting}",
        f"there is {_article(cat)} {cat} at the {vpos} {where} of the picture",
        f"{_article(col)} {col} {cat} {setting}",
        f"an image showing {_article(size)} {size} {cat} that is {col}",
        f"a single {cat} painted {col} {setting}",
        f"{_article(cat)} {cat} {where}, coloured {col}",
    ]


def _two_object_captions(left: SceneObject, right: SceneObject, setting: str) -> list[str]:
    cat1, cat2 = CATEGORIES[left.category], CATEGORIES[right.category]
    col1, col2 = list(COLOURS)[left.colour], list(COLOURS)[right.colour]
    return [
        f"{_article(col1)} {col1} {cat1} and {_article(col2)} {col2} {cat2} {setting}",
        f"{_article(cat1)} {cat1} to the left of {_article(cat2)} {cat2}",
        f"a photo of {_article(cat1)} {cat1} and {_article(cat2)} {cat2} {setting}",
        f"{_article(col2)} {col2} {cat2} on the right and {_article(col1)} {col1} {cat1} on the left",
        f"two objects {setting}: {_article(cat1)} {cat1} and {_article(cat2)} {cat2}",
        f"{_article(cat2)} {cat2} next to {_article(col1)} {col1} {cat1}",
        f"{_article(col1)} {col1} {cat1} beside {_article(cat2)} {cat2} that is {col2}",
    ]


def describe_scene(scene: Scene, n_captions: int, rng: np.random.Generator) -> list[str]:
    """Write ``n_captions`` distinct captions that describe a scene.

    Parameters
    ----------
    scene : Scene
        The scene to describe.
    n_captions : int
        How many captions (COCO has 5, sometimes 6 or 7).
    rng : numpy.random.Generator
        Chooses the caption templates.

    Returns
    -------
    list of str
    """
    setting = list(BACKGROUNDS.values())[scene.background][2]
    if len(scene.objects) == 1:
        candidates = _single_object_captions(scene.objects[0], setting)
    else:
        candidates = _two_object_captions(*scene.objects, setting)
    if n_captions > len(candidates):
        raise ValueError(f"at most {len(candidates)} captions per scene, {n_captions} requested")
    chosen = rng.choice(len(candidates), size=n_captions, replace=False)
    return [candidates[i].capitalize() + "." for i in chosen]


def make_stimulus(seed: int, nsd_id: int, size: int, n_captions: int) -> tuple[Scene, np.ndarray, list[str]]:
    """Scene, image and captions of one stimulus, seeded by its 0-based 73k id.

    The result depends only on ``(seed, nsd_id)`` and the sizes, so stimuli can
    be made in any order or in parallel.
    """
    scene = sample_scene(rng_for(seed, "scene", nsd_id))
    image = render_scene(scene, size, rng_for(seed, "pixels", nsd_id))
    captions = describe_scene(scene, n_captions, rng_for(seed, "captions", nsd_id))
    return scene, image, captions


def scene_table(scenes: list[Scene]) -> dict[str, np.ndarray]:
    """Scene parameters as arrays (one row per scene, -1 / NaN where no object)."""
    n = len(scenes)
    table = {
        "background": np.array([s.background for s in scenes], dtype=np.int16),
        "n_objects": np.array([len(s.objects) for s in scenes], dtype=np.int16),
        "category": np.full((n, MAX_OBJECTS), -1, dtype=np.int16),
        "colour": np.full((n, MAX_OBJECTS), -1, dtype=np.int16),
        "x": np.full((n, MAX_OBJECTS), np.nan, dtype=np.float32),
        "y": np.full((n, MAX_OBJECTS), np.nan, dtype=np.float32),
        "size": np.full((n, MAX_OBJECTS), np.nan, dtype=np.float32),
    }
    for i, scene in enumerate(scenes):
        for k, obj in enumerate(scene.objects):
            for field in ("category", "colour", "x", "y", "size"):
                table[field][i, k] = getattr(obj, field)
    return table
