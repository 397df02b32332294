"""Configuration: schema validation, defaults and checks that name the key at fault."""

from __future__ import annotations

import copy
import functools
import os
import re
from collections.abc import Callable, Iterable, Mapping
from importlib import resources

import jsonschema
import yaml

#: A Hugging Face hub id: ``owner/name``, no leading ``/`` or ``.``.
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


class ConfigError(ValueError):
    """A configuration value is missing, of the wrong type or points nowhere."""


#: Keys that say how a job runs, not what it computes (the same outputs whatever their values). The
#: rules leave them out of ``params`` (Snakemake reruns a job whose params change) and the job
#: scripts add them back from the configuration (:func:`with_runtime`).
RUNTIME_KEYS = {
    "features": ("device", "batch_size", "shard_size", "jobs", "keep_shards"),
    "reconstruction": ("device", "batch_size", "shard_size", "jobs", "keep_shards"),
    "decoding": ("backend", "n_targets_batch"),
    "encoding": ("backend", "n_targets_batch"),
    "evaluation": ("device", "batch_size"),
}


def without_runtime(settings: dict, section: str) -> dict:
    """``settings`` (a section of the configuration) without its :data:`RUNTIME_KEYS`: what a rule's params carry."""
    runtime = RUNTIME_KEYS.get(section, ())
    return {key: value for key, value in settings.items() if key not in runtime}


def with_runtime(settings: dict, config: dict, section: str) -> dict:
    """``settings`` from a rule's params completed with the runtime keys of ``config[section]``."""
    return {**settings, **{key: config[section][key] for key in RUNTIME_KEYS.get(section, ()) if key in config[section]}}


@functools.lru_cache(maxsize=1)
def _schema() -> dict:
    text = resources.files("brainldm").joinpath("schemas/config.schema.yaml").read_text()
    return yaml.safe_load(text)


def load_schema() -> dict:
    """The JSON schema of ``config.yaml`` shipped with the package (a copy: change it freely)."""
    return copy.deepcopy(_schema())


def section_defaults(section: str, exclude: Iterable[str] = ()) -> dict:
    """Defaults of one top-level section of the schema (e.g. ``features``), minus ``exclude``."""
    properties = _schema()["properties"][section]["properties"]
    return {key: copy.deepcopy(spec["default"]) for key, spec in properties.items() if key not in set(exclude)}


def _plain(value):
    """A deep copy of ``value`` as YAML would give it: path objects as strings, tuples as lists."""
    if isinstance(value, Mapping):
        return {key: _plain(v) for key, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return copy.deepcopy(value)


def section_settings(section: str, values: Mapping | None = None, ignore: Iterable[str] = ()) -> dict:
    """One section of the configuration, complete and checked: the settings library functions take.

    The same path as :func:`validate_config` takes for that section: the schema's defaults filled
    in, numbers given as strings read back, the section's schema checked, then its cross-key
    rules and normal forms (:data:`SECTION_RULES`). Settings that already went through it come
    back equal, so a function may call it on what it is given.

    Parameters
    ----------
    section : str
        A top-level key of the configuration (``features``, ``encoding``, ...).
    values : mapping, optional
        ``config[section]``, whole or in part (``None``: every default).
    ignore : iterable of str
        Keys the workflow reads and the library does not (e.g. ``encoding.roi``): left out of the result.

    Raises
    ------
    ConfigError
        Naming the key at fault (``section.key``), what was expected and what was found.
    """
    schema = _schema()["properties"][section]
    ignore = set(ignore)
    settings = {key: _plain(value) for key, value in dict(values or {}).items() if key not in ignore}
    _fill_defaults(settings, schema)
    _coerce_strings(settings, schema)
    errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(settings),
                    key=lambda e: (len(e.absolute_path), _key(e.absolute_path)))
    for error in errors:
        error.path.appendleft(section)
    if errors:
        raise ConfigError(f"invalid configuration of '{section}':\n  " + "\n  ".join(_describe(e) for e in errors))
    if section in SECTION_RULES:
        SECTION_RULES[section](settings)
    for key in ignore:
        settings.pop(key, None)
    return settings


def _key(path: Iterable) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "<top level>"


def _describe(error: jsonschema.ValidationError) -> str:
    key = _key(error.absolute_path)
    if error.validator == "required":
        missing = error.message.split("'")[1]
        where = f"{key}.{missing}" if error.absolute_path else missing
        return f"config key '{where}' is missing (required)"
    if error.validator == "additionalProperties":
        unexpected = re.findall(r"'([^']+)'", error.message)
        names = ", ".join(f"'{_key([*error.absolute_path, u])}'" for u in unexpected)
        return f"config key {names} is not known (allowed: {sorted(error.schema.get('properties', {}))})"
    if error.validator == "type":
        return f"config key '{key}': expected {error.validator_value}, found {error.instance!r}"
    if error.validator == "oneOf" and error.schema.get("description"):
        expected = " ".join(str(error.schema["description"]).split())
        return f"config key '{key}': expected {expected}; found {error.instance!r}"
    if error.validator == "enum":
        return f"config key '{key}': expected one of {error.validator_value}, found {error.instance!r}"
    return f"config key '{key}': {error.message}"


def _fill_defaults(instance, schema) -> None:
    """Insert schema defaults into ``instance`` in place, recursively."""
    if not isinstance(instance, dict):
        return
    for name, sub in schema.get("properties", {}).items():
        if name not in instance and "default" in sub:
            instance[name] = copy.deepcopy(sub["default"])
        if name in instance:
            _fill_defaults(instance[name], sub)


def _types(schema: dict) -> set[str]:
    kinds = schema.get("type", [])
    kinds = {kinds} if isinstance(kinds, str) else set(kinds)
    for option in schema.get("oneOf", []) + schema.get("anyOf", []):
        kinds |= _types(option)
    return kinds


def _coerce_strings(instance, schema: dict):
    """Numbers and booleans that arrive as strings (nested ``--config`` values) read back as YAML; integers as int.

    Snakemake passes ``--config features='{strengths: [0.5]}'`` with ``'0.5'`` inside; where the
    schema does not allow a string there, the YAML value of the string is used if its type fits.
    """
    if isinstance(instance, dict):
        properties = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        for key, value in instance.items():
            sub = properties.get(key, extra if isinstance(extra, dict) else {})
            instance[key] = _coerce_strings(value, sub)
        return instance
    if isinstance(instance, list):
        items = schema.get("items", {})
        if not items:
            for option in schema.get("oneOf", []):
                items = option.get("items", items) if option.get("type") == "array" else items
        return [_coerce_strings(value, items) for value in instance]
    if isinstance(instance, str) and "enum" in schema and instance not in schema["enum"]:
        try:
            value = yaml.safe_load(instance)
        except yaml.YAMLError:
            return instance
        return value if any(value == v and type(value) is type(v) for v in schema["enum"]) else instance
    kinds = _types(schema)
    if isinstance(instance, str) and kinds and "string" not in kinds:
        try:
            value = yaml.safe_load(instance)
        except yaml.YAMLError:
            return instance
        fits = {"number": (int, float), "integer": (int,), "boolean": (bool,), "null": (type(None),)}
        if any(isinstance(value, fits[k]) and (k == "boolean" or not isinstance(value, bool))
               for k in kinds if k in fits):
            return value
    if isinstance(instance, float) and instance.is_integer() and "integer" in kinds and "number" not in kinds:
        return int(instance)  # JSON schema counts 5.0 as an integer; ranges and shapes need the int
    return instance


def _check_paths(config: dict, base_dir: str, built_by_workflow: dict[str, Iterable[str]]) -> None:
    def resolve(value: str) -> str:
        return value if os.path.isabs(value) else os.path.join(base_dir, value)

    def built(key: str) -> set[str]:
        return {os.path.normpath(p) for p in built_by_workflow.get(key, ())}

    root = config["nsd_root"]
    if os.path.normpath(root) not in built("nsd_root") and not os.path.isdir(resolve(root)):
        raise ConfigError(
            f"config key 'nsd_root': folder {root!r} does not exist "
            f"(expected an NSD tree, or {sorted(built('nsd_root'))} which the workflow builds)"
        )
    model = config["model"]
    if os.path.normpath(model) in built("model") or os.path.isdir(resolve(model)):
        return
    looks_like_path = os.path.isabs(model) or model.startswith((".", "~")) or not _HUB_ID.match(model)
    if looks_like_path:
        raise ConfigError(
            f"config key 'model': folder {model!r} does not exist (expected a diffusers model "
            f"folder, a hub id such as 'CompVis/stable-diffusion-v1-4', or one of {sorted(built('model'))} which the workflow builds)"
        )


def _check_references(config: dict) -> None:
    """Keys that name other parts of the configuration must name existing ones."""
    for target, roi in config["decoding"]["targets"].items():
        if roi not in config["rois"]:
            raise ConfigError(f"config key 'decoding.targets.{target}': ROI {roi!r} is not defined in 'rois' "
                              f"(defined: {sorted(config['rois'])})")
    roi = config["encoding"]["roi"]
    if roi not in config["rois"]:
        raise ConfigError(f"config key 'encoding.roi': ROI {roi!r} is not defined in 'rois' "
                          f"(defined: {sorted(config['rois'])})")
    for needed in ("z", "c"):
        if needed not in config["decoding"]["targets"]:
            raise ConfigError(f"config key 'decoding.targets' must decode {needed!r} (reconstruction needs z and c), "
                              f"found {sorted(config['decoding']['targets'])}")


def _sorted_alphas(values) -> list[float]:
    return sorted(float(a) for a in values)


def _features_rules(settings: dict) -> None:
    """Fractions as floats; every img2img run (zc's strengths, the U-Net's) keeps a denoising step."""
    for key in ("strengths", "stages"):
        settings[key] = [float(v) for v in settings[key]]
    for key in ("guidance_scale", "eta", "unet_strength"):
        settings[key] = float(settings[key])
    strengths = dict.fromkeys(settings["strengths"], "features.strengths")
    if settings["unet_blocks"]:
        strengths.setdefault(settings["unet_strength"], "features.unet_strength")
    steps = settings["num_inference_steps"]
    for strength, key in strengths.items():
        # diffusers' img2img runs min(int(steps * strength), steps) steps.
        if settings["stages"] and int(steps * strength) < 1:
            raise ConfigError(f"config key '{key}': strength {strength} with features.num_inference_steps {steps} "
                              "leaves no denoising step (expected strength x steps >= 1)")


def _encoding_rules(settings: dict) -> None:
    """Alpha grids as sorted floats; the banded models' grid is ``alphas`` unless given."""
    settings["alphas"] = _sorted_alphas(settings["alphas"])
    given = settings["banded_alphas"]
    settings["banded_alphas"] = list(settings["alphas"]) if given is None else _sorted_alphas(given)


def check_evaluation(settings: Mapping) -> None:
    """Evaluation settings that cannot go together (part of ``section_settings("evaluation")``).

    Raises
    ------
    ConfigError
        ``image_scale`` other than 1 with pretrained weights (the numbers would look comparable to the
        protocols' when they are not); random CLIP attention heads that do not divide its width.
    """
    if settings["image_scale"] != 1 and settings["weights"] != "random":
        raise ConfigError(f"config key 'evaluation.image_scale' is {settings['image_scale']}: sizes other than the "
                          "protocols' (1) are allowed only with 'evaluation.weights: random'")
    clip = settings.get("random_clip") or {}
    if settings["weights"] == "random" and {"hidden_size", "num_attention_heads"} <= set(clip):
        if clip["hidden_size"] % clip["num_attention_heads"]:
            raise ConfigError(f"config key 'evaluation.random_clip.num_attention_heads': expected a divisor of "
                              f"hidden_size ({clip['hidden_size']}), found {clip['num_attention_heads']}")


def validate_config(config: dict, base_dir: str = ".", built_by_workflow: dict | None = None) -> dict:
    """Validate a configuration and return a copy with the schema's defaults filled in.

    Parameters
    ----------
    config : dict
        The configuration as loaded from YAML (and command-line overrides).
    base_dir : str
        Folder relative paths are resolved against (the workflow's working directory).
    built_by_workflow : dict, optional
        Per key (``nsd_root``, ``model``), the paths the workflow itself produces
        (the synthetic tree, the model presets); they need not exist yet.

    Returns
    -------
    dict

    Raises
    ------
    ConfigError
        Naming the key at fault, what was expected and what was found.
    """
    schema = load_schema()
    validated = copy.deepcopy(dict(config))
    _fill_defaults(validated, schema)
    _coerce_strings(validated, schema)
    errors = sorted(
        jsonschema.Draft202012Validator(schema).iter_errors(validated),
        key=lambda e: (len(e.absolute_path), _key(e.absolute_path)),
    )
    if errors:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(_describe(e) for e in errors))
    for section, rules in SECTION_RULES.items():
        rules(validated[section])
    _check_paths(validated, base_dir, built_by_workflow or {})
    _check_references(validated)
    return validated


def check_synthetic_sizes(synthetic: Mapping) -> None:
    """The synthetic design's sizes fit together (whole sessions, a released session, runs of trials).

    Raises
    ------
    ConfigError
        Naming the ``synthetic`` key at fault.
    """
    n_trials = (synthetic["n_shared_images"] + synthetic["n_unique_images"]) * synthetic["repetitions"]
    per_session = synthetic["trials_per_session"]
    if n_trials % per_session:
        raise ConfigError(
            "config key 'synthetic.trials_per_session': (n_shared_images + n_unique_images) * repetitions"
            f" = {n_trials} trials must be a multiple of it, found {per_session}"
        )
    n_sessions = n_trials // per_session
    if not 0 <= synthetic["sessions_withheld"] < n_sessions:
        raise ConfigError(
            f"config key 'synthetic.sessions_withheld': expected a value in [0, {n_sessions}), "
            f"found {synthetic['sessions_withheld']}"
        )
    if synthetic["runs_per_session"] > per_session:
        raise ConfigError(
            f"config key 'synthetic.runs_per_session': expected at most trials_per_session "
            f"({per_session}), found {synthetic['runs_per_session']}"
        )


#: Per section, what the schema cannot say (keys that depend on each other) and the normal form of its
#: values, checked and set in place; :func:`section_settings` and :func:`validate_config` apply them.
SECTION_RULES: dict[str, Callable[[dict], None]] = {
    "features": _features_rules,
    "encoding": _encoding_rules,
    "evaluation": check_evaluation,
    "synthetic": check_synthetic_sizes,
}
