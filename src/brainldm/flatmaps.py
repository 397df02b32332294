"""Flatmaps of NIfTI maps with pycortex, in a filestore owned by the project.

pycortex reads subjects, transforms and caches from a *filestore*. The site filestore
(``cortex.database.default_filestore``, inside the installation) is never written: the
pycortex subject is copied once into a writable folder the caller names
(``settings["filestore"]``), the transform of the maps' volume is registered there and
``cortex.db`` is pointed at it. For the synthetic NSD tree the subject is pycortex's
``S1`` and the transform is the coarsened ``fullhead`` written by
:func:`brainldm.synthetic.anatomy.build_synthetic_anatomy` (a folder with ``matrices.xfm`` and
``reference.nii.gz``); for real NSD the user names a subject and a transform that exist
in their own filestore (``source_filestore``), e.g. one per NSD subject.

pycortex writes ``$XDG_CONFIG_HOME/pycortex/options.cfg`` (``~/.config`` by default)
the first time it is imported; ``settings["config_home"]`` sets ``XDG_CONFIG_HOME``
before that import so that the file lands in a project folder instead.

ROI outlines need Inkscape (``with_rois``); without it (``shutil.which("inkscape")`` is
None) maps are drawn without outlines and a notice is logged. Rendering uses
matplotlib's Agg backend. A flatmap failure only fails the flatmap: the NIfTI maps are
written by other functions (and rules) before, and PNGs are written atomically.
"""

from __future__ import annotations

import contextlib
import csv
import filecmp
import logging
import os
import shutil
import sys
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from .config import section_settings
from .files import atomic_path

log = logging.getLogger(__name__)

__all__ = [
    "KINDS",
    "FlatmapError",
    "flatmap_settings",
    "import_cortex",
    "inkscape_available",
    "prepare_filestore",
    "render_flatmap",
    "render_panel",
    "figure6",
    "figure_unique",
    "figure9",
    "FIGURES",
    "draw_paper_figure",
    "draw_map_flatmaps",
]

#: Keys of ``config["flatmaps"]`` that the workflow reads (what to draw), not the renderer.
WORKFLOW_KEYS = ("enabled", "per_map")

#: Kinds of maps and how they are drawn: values, transparent where 0 / not in the mask.
KINDS = ("r", "unique", "layer", "value")


class FlatmapError(RuntimeError):
    """A pycortex subject, transform or map that cannot be drawn (the message names it)."""


def flatmap_settings(settings: Mapping | None, nsd_subject: str | None = None) -> dict:
    """``settings`` (``config["flatmaps"]``), complete and checked, with the pycortex subject of ``nsd_subject``.

    ``settings["subjects"][nsd_subject]`` may name that subject's own pycortex
    ``subject`` and ``transform`` (real NSD: each subject has its surfaces).
    """
    out = section_settings("flatmaps", settings, ignore=WORKFLOW_KEYS)
    out.update(out["subjects"].get(nsd_subject, {}) if nsd_subject is not None else {})
    return out


def inkscape_available() -> bool:
    """Whether Inkscape (needed by pycortex for ROI outlines) is on PATH."""
    return shutil.which("inkscape") is not None


def _with_rois(settings: Mapping) -> bool:
    wanted = settings["with_rois"]
    if wanted is False:
        return False
    if inkscape_available():
        return True
    log.warning("NOTICE: Inkscape not found on PATH: flatmaps are drawn without ROI outlines "
                "(install Debian's 'inkscape' for pycortex's ROI outlines)")
    return False


def import_cortex(config_home=None):
    """Import pycortex with matplotlib's Agg backend; set ``XDG_CONFIG_HOME`` first if given.

    pycortex writes ``options.cfg`` under ``$XDG_CONFIG_HOME/pycortex`` on its first import;
    once imported in a process, later ``config_home`` values have no effect.
    """
    import matplotlib

    matplotlib.use("Agg")
    if config_home and "cortex" not in sys.modules:
        os.makedirs(config_home, exist_ok=True)
        os.environ["XDG_CONFIG_HOME"] = os.fspath(Path(config_home).resolve())
    import cortex

    return cortex


@contextlib.contextmanager
def _locked(store: Path):
    """An exclusive lock on the filestore (jobs in parallel copy, register and cache there)."""
    import fcntl

    store.mkdir(parents=True, exist_ok=True)
    with open(store / ".brainldm.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _copy_subject(source: Path, store: Path, subject: str) -> None:
    target = store / subject
    if target.is_dir():
        return
    if not (source / subject).is_dir():
        available = sorted(p.name for p in source.iterdir() if p.is_dir()) if source.is_dir() else []
        raise FlatmapError(f"pycortex subject {subject!r} not found in filestore {source} (available: {available})")
    if source.resolve() == store.resolve():
        return
    with atomic_path(target) as tmp:
        shutil.copytree(source / subject, tmp, ignore=shutil.ignore_patterns("cache", "mask_*"))
    log.info("copied pycortex subject %s from %s to %s", subject, source, store)


def _register_transform(store: Path, subject: str, name: str, transform_dir) -> None:
    source = Path(transform_dir)
    files = ("matrices.xfm", "reference.nii.gz")
    missing = [f for f in files if not (source / f).is_file()]
    if missing:
        raise FlatmapError(f"{source}: transform folder lacks {missing} (expected pycortex's matrices.xfm + reference.nii.gz)")
    target = store / subject / "transforms" / name
    if target.is_dir() and all((target / f).is_file() and filecmp.cmp(source / f, target / f, shallow=False)
                               for f in files):
        return
    with atomic_path(target) as tmp:
        tmp.mkdir()
        for f in files:
            shutil.copyfile(source / f, tmp / f)
    # caches of an earlier transform of this name are stale
    for stale in (store / subject / "cache").glob(f"flatpixel_{name}_*"):
        stale.unlink()
    log.info("registered pycortex transform %s/%s from %s", subject, name, source)


def prepare_filestore(settings: Mapping, transform_dir=None):
    """Copy the subject into the project's filestore, register the transform, point pycortex there.

    Call it under :func:`_locked` (the rendering functions do).

    Parameters
    ----------
    settings : mapping
        :func:`flatmap_settings` output (``filestore``, ``source_filestore``, ``subject``,
        ``transform``, ``config_home``).
    transform_dir : path, optional
        A folder with ``matrices.xfm`` and ``reference.nii.gz`` registered as
        ``settings["transform"]`` (the synthetic anatomy's ``pycortex_transform/``). Without
        it the transform must already exist in the (copied) subject.

    Returns
    -------
    module
        ``cortex``, with ``cortex.db`` reading the project's filestore.

    Raises
    ------
    FlatmapError
        The subject or the transform does not exist (the message names it and what exists).
    """
    cortex = import_cortex(settings.get("config_home"))
    store = Path(settings["filestore"]).resolve()
    source = Path(settings["source_filestore"] or cortex.database.default_filestore)
    subject, name = str(settings["subject"]), str(settings["transform"])
    _copy_subject(source, store, subject)
    if transform_dir is not None:
        _register_transform(store, subject, name, transform_dir)
    if os.fspath(cortex.db.filestore) != os.fspath(store):
        cortex.db.filestore = os.fspath(store)
    cortex.db.reload_subjects()
    transforms = store / subject / "transforms"
    if not (transforms / name / "matrices.xfm").is_file():
        available = sorted(p.name for p in transforms.iterdir() if p.is_dir()) if transforms.is_dir() else []
        raise FlatmapError(f"pycortex transform {name!r} not found for subject {subject!r} in filestore {store} "
                           f"(available: {available})")
    return cortex


# --------------------------------------------------------------------------- drawing


def _build_caches(cortex, s: Mapping) -> None:
    """Draw an empty flatmap once, so that pycortex's cache files (flat mask, pixel map, curvature) exist
    before jobs draw in parallel (pycortex writes them on first use, not atomically)."""
    import matplotlib.pyplot as plt

    shape = tuple(cortex.db.get_xfm(s["subject"], s["transform"]).shape)
    volume = cortex.Volume(np.full(shape, np.nan, np.float32), s["subject"], s["transform"], vmin=0, vmax=1)
    fig = cortex.quickflat.make_figure(volume, with_rois=False, with_colorbar=False,
                                       with_curvature=s["with_curvature"], height=s["height"])
    plt.close(fig)


@contextlib.contextmanager
def _textures_once():
    """Within the block, Inkscape renders each SVG overlay texture (the ROI outlines) once: it takes
    seconds and is the same for every map of a subject."""
    from cortex.svgoverlay import SVGOverlay as overlay

    original = overlay.get_texture
    rendered = {}

    def get_texture(self, layer_name, height, name=None, background=None, labels=True, shape_list=None,
                    shadow=None, **kwargs):
        if background is not None:
            return original(self, layer_name, height, name=name, background=background, labels=labels,
                            shape_list=shape_list, shadow=shadow, **kwargs)
        key = (os.fspath(self.svgfile), layer_name, int(height), bool(labels),
               None if shape_list is None else tuple(shape_list), shadow,
               tuple(sorted((k, repr(v)) for k, v in kwargs.items())))
        if key not in rendered:
            rendered[key] = original(self, layer_name, height, name=name, labels=labels, shape_list=shape_list,
                                     shadow=shadow, **kwargs)
        return rendered[key].copy()

    overlay.get_texture = get_texture
    try:
        yield
    finally:
        overlay.get_texture = original


@contextlib.contextmanager
def _pycortex(s: Mapping, transform_dir=None):
    """pycortex ready to draw: filestore prepared and caches built under the filestore's lock, then
    released, so that jobs draw side by side; overlay textures rendered once."""
    with _locked(Path(s["filestore"])):
        cortex = prepare_filestore(s, transform_dir)
        _build_caches(cortex, s)
    with _textures_once():
        yield cortex


def _load_zyx(cortex, map_path, subject: str, transform: str, mask_path=None, kind: str = "value") -> np.ndarray:
    """A NIfTI map as pycortex's (Z, Y, X) float array; NaN where nothing is drawn."""
    import nibabel as nib

    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    data = np.asarray(nib.load(os.fspath(map_path)).dataobj, dtype=np.float32)
    if data.ndim != 3:
        raise FlatmapError(f"{map_path}: expected a 3-D map, found shape {data.shape}")
    expected = tuple(cortex.db.get_xfm(subject, transform).shape)  # (Z, Y, X)
    if data.T.shape != expected:
        raise FlatmapError(f"{map_path}: volume (X, Y, Z) {data.shape} does not match pycortex transform "
                           f"{subject}/{transform}, whose volume is (Z, Y, X) {expected}")
    if mask_path is not None:
        mask = np.asarray(nib.load(os.fspath(mask_path)).dataobj)
        if mask.shape != data.shape:
            raise FlatmapError(f"{mask_path}: mask shape {mask.shape} differs from the map's {data.shape}")
        data = np.where(mask > 0, data, np.nan)
    if kind in ("unique", "layer"):
        data = np.where(data == 0, np.nan, data)  # 0 = not significant / no label
    return np.ascontiguousarray(data.T)


def _scale(values: Sequence[np.ndarray], kind: str, settings: Mapping, n_labels: int = 0) -> dict:
    finite = np.concatenate([v[np.isfinite(v)].ravel() for v in values]) if values else np.zeros(0)
    if kind == "layer":
        import matplotlib

        base = matplotlib.colormaps[settings["cmap_layer"]]
        colours = [base(k % base.N) for k in range(max(n_labels, 1))]
        cmap = matplotlib.colors.ListedColormap(colours, name="brainldm_layers")
        return {"cmap": cmap, "vmin": 0.5, "vmax": max(n_labels, 1) + 0.5}
    if kind == "r":
        top = settings["r_vmax"] or (float(np.percentile(finite, 99)) if finite.size else 0.0)
        return {"cmap": settings["cmap_r"], "vmin": 0.0, "vmax": max(top, 0.05)}
    if kind == "unique":
        top = settings["unique_vmax"] or (float(np.percentile(finite, 99)) if finite.size else 0.0)
        return {"cmap": settings["cmap_unique"], "vmin": 0.0, "vmax": max(top, 0.01)}
    low, high = (np.percentile(finite, [1, 99]) if finite.size else (0.0, 1.0))
    return {"cmap": "RdBu_r" if low < 0 < high else "viridis", "vmin": float(low), "vmax": float(max(high, low + 1e-6))}


def _volume(cortex, data_zyx, settings, scale):
    import matplotlib

    cmap = scale["cmap"]
    if isinstance(cmap, matplotlib.colors.Colormap):  # pycortex takes colormap names; register ours
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # re-registering our own colormap
            matplotlib.colormaps.register(cmap, force=True)
        cmap = cmap.name
    return cortex.Volume(data_zyx, settings["subject"], settings["transform"], vmin=scale["vmin"],
                         vmax=scale["vmax"], cmap=cmap)


def _read_labels(path) -> list[str]:
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    return [row["name"] for row in rows if int(row["label"]) > 0]


def render_flatmap(map_path, out_png, settings: Mapping | None, transform_dir=None, kind: str = "value",
                   mask_path=None, labels_path=None, nsd_subject: str | None = None) -> None:
    """Draw one NIfTI map on the pycortex subject's flatmap, with a colour bar, as PNG.

    Parameters
    ----------
    map_path : path
        NIfTI in the transform's volume ((X, Y, Z) = pycortex's (Z, Y, X) transposed).
    out_png : path
        Output PNG (written atomically).
    settings : mapping
        ``config["flatmaps"]``, whole or in part (defaults from the schema).
    transform_dir : path, optional
        Folder of the transform to register (the synthetic anatomy's ``pycortex_transform``).
    kind : str
        ``r`` (0 to a robust max), ``unique`` (0 transparent), ``layer`` (categorical,
        0 transparent), ``value`` (robust range).
    mask_path : path, optional
        NIfTI mask (e.g. FDR significance): voxels where it is 0 are transparent.
    labels_path : path, optional
        For ``layer`` maps: the label TSV of :func:`brainldm.encoding.map_best_unet_layer`.
    nsd_subject : str, optional
        Selects ``settings["subjects"][nsd_subject]`` overrides.
    """
    s = flatmap_settings(settings, nsd_subject)
    with _pycortex(s, transform_dir) as cortex:
        _draw_one(cortex, s, map_path, out_png, kind, mask_path, labels_path)


def _draw_one(cortex, s: Mapping, map_path, out_png, kind: str = "value", mask_path=None, labels_path=None) -> None:
    """One flatmap PNG with pycortex ready (settings ``s`` completed, filestore prepared)."""
    n_labels = len(_read_labels(labels_path)) if labels_path else 0
    data = _load_zyx(cortex, map_path, s["subject"], s["transform"], mask_path, kind)
    if kind == "layer" and not n_labels:
        n_labels = int(np.nanmax(data)) if np.isfinite(data).any() else 1
    scale = _scale([data], kind, s, n_labels)
    volume = _volume(cortex, data, s, scale)
    with_rois = _with_rois(s)
    ticks = list(range(1, n_labels + 1)) if kind == "layer" else None
    with atomic_path(out_png) as tmp:
        cortex.quickflat.make_png(os.fspath(tmp), volume, with_rois=with_rois, with_colorbar=True,
                                  with_curvature=s["with_curvature"], height=s["height"], dpi=s["dpi"],
                                  colorbar_ticks=ticks, bgcolor="white")
    log.info("flatmap of %s -> %s (%s/%s, ROI outlines %s)", map_path, out_png, s["subject"], s["transform"],
             "on" if with_rois else "off")


def draw_map_flatmaps(maps: Mapping[str, Mapping], out_dir, settings: Mapping | None, transform_dir=None,
                    nsd_subject: str | None = None) -> None:
    """One flatmap PNG per map into ``out_dir`` (pycortex set up once for all).

    Parameters
    ----------
    maps : mapping
        PNG name (without ``.png``) -> ``{"map": NIfTI, "kind": ..., "mask": NIfTI or None,
        "labels": TSV or None}`` (see :func:`render_flatmap`).
    out_dir : path
        Folder of the PNGs; it is complete only when this function returns (built in a
        temporary sibling and renamed, :func:`brainldm.files.atomic_path`).
    settings, transform_dir, nsd_subject
        As in :func:`render_flatmap`.
    """
    s = flatmap_settings(settings, nsd_subject)
    with _pycortex(s, transform_dir) as cortex, atomic_path(out_dir) as partial:
        partial.mkdir()
        for name, panel in maps.items():
            _draw_one(cortex, s, panel["map"], partial / f"{name}.png", panel.get("kind", "value"),
                      panel.get("mask"), panel.get("labels"))


def render_panel(grid: Sequence[Sequence[Mapping | None]], out_png, settings: Mapping | None, transform_dir=None,
                 title: str | None = None, nsd_subject: str | None = None, share_scale: bool = True) -> None:
    """Compose several maps' flatmaps into one PNG (a paper figure).

    Parameters
    ----------
    grid : sequence of rows
        Each row a sequence of panels (``None`` leaves a cell empty). A panel is a mapping
        with ``map`` (NIfTI path), ``title``, ``kind`` (see :func:`render_flatmap`),
        optional ``mask`` (NIfTI) and, for ``layer``, ``labels`` (label TSV).
    out_png : path
        Output PNG.
    settings : mapping
        ``config["flatmaps"]``.
    transform_dir : path, optional
        As in :func:`render_flatmap`.
    title : str, optional
        The figure's title.
    share_scale : bool
        One colour scale per kind across the figure (so panels compare).
    """
    import matplotlib.pyplot as plt

    s = flatmap_settings(settings, nsd_subject)
    rows = [list(row) for row in grid]
    n_rows, n_cols = len(rows), max((len(row) for row in rows), default=0)
    if not n_rows or not n_cols:
        raise ValueError("render_panel needs at least one panel")
    with _pycortex(s, transform_dir) as cortex:
        data = {}
        labels = {}
        for i, row in enumerate(rows):
            for j, panel in enumerate(row):
                if panel is None:
                    continue
                kind = panel.get("kind", "value")
                data[i, j] = _load_zyx(cortex, panel["map"], s["subject"], s["transform"], panel.get("mask"), kind)
                if kind == "layer":
                    labels[i, j] = _read_labels(panel["labels"]) if panel.get("labels") else [
                        str(k) for k in range(1, int(np.nanmax(data[i, j])) + 1)] if np.isfinite(data[i, j]).any() else []
        scales = {}
        for (i, j), values in data.items():
            kind = rows[i][j].get("kind", "value")
            if kind == "layer":
                scales[i, j] = _scale([values], kind, s, len(labels[i, j]))
            elif share_scale:
                same = [data[key] for key in data if rows[key[0]][key[1]].get("kind", "value") == kind]
                scales[i, j] = _scale(same, kind, s)
            else:
                scales[i, j] = _scale([values], kind, s)
        with_rois = _with_rois(s)
        panel_height = 3.2
        fig, axes = plt.subplots(n_rows, n_cols, figsize=(n_cols * panel_height * 1.9, n_rows * panel_height + 0.6),
                                 squeeze=False)
        try:
            for i in range(n_rows):
                for j in range(n_cols):
                    ax = axes[i][j]
                    panel = rows[i][j] if j < len(rows[i]) else None
                    if panel is None:
                        ax.axis("off")
                        continue
                    volume = _volume(cortex, data[i, j], s, scales[i, j])
                    cortex.quickflat.make_figure(volume, fig=ax, with_rois=with_rois, with_colorbar=False,
                                                 with_curvature=s["with_curvature"], height=s["height"])
                    image = ax.get_images()[0]
                    kind = panel.get("kind", "value")
                    bar = fig.colorbar(image, ax=ax, orientation="horizontal", fraction=0.05, pad=0.02, shrink=0.6)
                    if kind == "layer":
                        names = labels[i, j]
                        bar.set_ticks(range(1, len(names) + 1))
                        bar.set_ticklabels(names, fontsize=7, rotation=20)
                    ax.set_title(panel.get("title", ""), fontsize=10)
            if title:
                fig.suptitle(title)
            with atomic_path(out_png) as tmp:
                fig.savefig(tmp, dpi=s["dpi"], facecolor="white", format="png")
        finally:
            plt.close(fig)
    log.info("panel of %d maps -> %s", len(data), out_png)


def figure6(r_maps: Mapping, significance_maps: Mapping, out_png, settings: Mapping | None, transform_dir=None,
            nsd_subject: str | None = None) -> None:
    """Paper Fig. 6: prediction accuracy (test r) of z, c and zc models, FDR-significant voxels only.

    ``r_maps`` and ``significance_maps``: feature name -> NIfTI (``encode_feature``'s ``r``
    and ``significant`` maps), one panel per feature in the mapping's order.
    """
    missing = [name for name in r_maps if name not in significance_maps]
    if missing:
        raise ValueError(f"figure6: no significance map for {missing}")
    row = [{"map": path, "mask": significance_maps[name], "kind": "r", "title": f"{name}: r (q < FDR)"}
           for name, path in r_maps.items()]
    render_panel([row], out_png, settings, transform_dir, title=f"{nsd_subject or ''} prediction accuracy".strip(),
                 nsd_subject=nsd_subject)


def figure_unique(unique_maps: Mapping, out_png, settings: Mapping | None, transform_dir=None,
                  title: str = "unique variance", nsd_subject: str | None = None) -> None:
    """Paper Figs. 7 and 8: unique variance of z and of zc, one column per noise level or stage.

    ``unique_maps``: column label (e.g. ``"noise 0.5"`` or ``"stage 0.2"``) -> ``{band:
    NIfTI}`` (``encode_banded``'s ``unique_<band>`` maps, already FDR-thresholded); one row
    per band, one colour scale for the whole figure.
    """
    columns = list(unique_maps)
    bands = list(dict.fromkeys(band for col in columns for band in unique_maps[col]))
    grid = [[({"map": unique_maps[col][band], "kind": "unique", "title": f"{col}: unique R² of {band}"}
              if band in unique_maps[col] else None) for col in columns] for band in bands]
    render_panel(grid, out_png, settings, transform_dir, title=title, nsd_subject=nsd_subject)


def figure9(layer_maps: Mapping, label_tables: Mapping, out_png, settings: Mapping | None, transform_dir=None,
            nsd_subject: str | None = None) -> None:
    """Paper Fig. 9: the best U-Net block per significant voxel, one panel per denoising stage.

    ``layer_maps`` and ``label_tables``: stage label -> ``map_best_unet_layer``'s NIfTI and TSV.
    """
    row = [{"map": path, "labels": label_tables[stage], "kind": "layer", "title": f"best U-Net block, {stage}"}
           for stage, path in layer_maps.items()]
    render_panel([row], out_png, settings, transform_dir, title="U-Net layers", nsd_subject=nsd_subject)


def figure_spec(figure: str, specs: Sequence, bands: Sequence[str], map_path, layer_files) -> dict | None:
    """Which maps make one of the paper's figures, for the configured features (None: the configuration
    has none of its maps).

    Parameters
    ----------
    figure : str
        A key of :data:`FIGURES`.
    specs : sequence of FeatureSpec
        :func:`brainldm.ldm.names.feature_specs` of the configuration.
    bands : sequence of str
        The bands of the joint z + zc models (``("z", "zc")``).
    map_path : callable
        ``map_path(feature, name)``: the NIfTI map ``name`` (``r``, ``significant``, ``unique_<band>``)
        of an encoding model (a feature's name, or ``z+<zc>`` for a joint model).
    layer_files : callable
        ``layer_files(stage)``: ``{"map": NIfTI, "labels": TSV}`` of the best U-Net block at a stage.

    Returns
    -------
    dict or None
        Shaped as :data:`FIGURES` says: figure 6, z, c and the zc over noise levels; figures 7 and 8,
        the joint models' unique variance over noise levels (at the final stage) and over stages (at
        the largest noise level); figure 9, the best U-Net block per stage.
    """
    from .ldm.names import format_number, unet_stages, zc_over_noise, zc_over_stages

    if figure == "figure6":
        shown = ["z", "c"] + [spec.name for spec in zc_over_noise(specs)]
        return {"r": {name: map_path(name, "r") for name in shown},
                "significant": {name: map_path(name, "significant") for name in shown}}
    if figure in ("figure7", "figure8"):
        if figure == "figure7":
            columns = {f"noise {format_number(spec.strength)}": spec.name for spec in zc_over_noise(specs)}
        else:
            columns = {f"stage {format_number(spec.stage)}": spec.name for spec in zc_over_stages(specs)}
        return {label: {band: map_path(f"z+{name}", f"unique_{band}") for band in bands}
                for label, name in columns.items()} or None
    if figure == "figure9":
        stages = unet_stages(specs)
        if not stages:
            return None
        files = {f"t{stage}": layer_files(stage) for stage in stages}
        return {"layers": {k: v["map"] for k, v in files.items()}, "labels": {k: v["labels"] for k, v in files.items()}}
    raise ValueError(f"unknown figure {figure!r}; known: {sorted(FIGURES)}")


#: Paper figures :func:`draw_paper_figure` draws, and what their ``spec`` holds.
FIGURES = {
    "figure6": "{'r': {feature: r NIfTI}, 'significant': {feature: significance NIfTI}}",
    "figure7": "{column label: {band: unique-variance NIfTI}} over noise levels",
    "figure8": "{column label: {band: unique-variance NIfTI}} over denoising stages",
    "figure9": "{'layers': {stage: best-layer NIfTI}, 'labels': {stage: label TSV}}",
}


def draw_paper_figure(figure: str, spec: Mapping, out_png, settings: Mapping | None, transform_dir=None,
                 nsd_subject: str | None = None) -> None:
    """Draw one of the paper's encoding figures (6, 7, 8 or 9) from its maps.

    Parameters
    ----------
    figure : str
        A key of :data:`FIGURES`.
    spec : mapping
        The maps of that figure, shaped as :data:`FIGURES` says.
    out_png, settings, transform_dir, nsd_subject
        As in :func:`render_panel`.
    """
    if figure not in FIGURES:
        raise ValueError(f"unknown figure {figure!r}; known: {sorted(FIGURES)}")
    if figure == "figure6":
        figure6(spec["r"], spec["significant"], out_png, settings, transform_dir, nsd_subject)
    elif figure == "figure9":
        figure9(spec["layers"], spec["labels"], out_png, settings, transform_dir, nsd_subject)
    else:
        what = "noise levels" if figure == "figure7" else "denoising stages"
        title = f"{nsd_subject or ''} unique variance of z and zc over {what}".strip()
        figure_unique(spec, out_png, settings, transform_dir, title=title, nsd_subject=nsd_subject)
