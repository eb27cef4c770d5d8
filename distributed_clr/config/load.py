"""Building a ``RunConfig``: preset -> YAML files -> dotted overrides, and the flat-dict round trip.

Keys are dotted paths through the sections (``train.batch_size``). A dict-valued field takes one
more path element as its key (``generate.pythia_settings.PhaseSpace:pTHatMax=3000``). Values given
as strings are read as YAML scalars or flow collections, so ``4096`` is an int, ``1e-4`` a float,
``null`` is None and ``[rotate, distort]`` a list.
"""

from __future__ import annotations

import copy
import difflib
import hashlib
import json
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from distributed_clr.config.errors import ConfigError
from distributed_clr.config.presets import get_preset
from distributed_clr.config.schema import RunConfig, Section

SEPARATOR = "."

RENAMED: dict[str, str] = {
    "train.optimizer": "train.optimizer.name",
    "train.lr": "train.optimizer.lr",
    "train.lr_scaling": "train.optimizer.lr_scaling",
    "train.reference_batch_size": "train.optimizer.reference_batch_size",
    "train.weight_decay": "train.optimizer.weight_decay",
    "train.grad_clip": "train.optimizer.grad_clip",
    "train.schedule": "train.schedule.name",
    "train.warmup_epochs": "train.schedule.warmup_epochs",
    "train.keep_checkpoints": "train.checkpoint.keep",
    "train.max_failures": "train.faults.max_failures",
    "train.fail_rank": "train.faults.fail_rank",
    "train.fail_epoch": "train.faults.fail_epoch",
    "evaluate.fcn_hidden": "evaluate.fcn.hidden",
    "evaluate.fcn_dropout": "evaluate.fcn.dropout",
    "evaluate.fcn_lr": "evaluate.fcn.lr",
    "evaluate.fcn_epochs": "evaluate.fcn.epochs",
    "evaluate.fcn_patience": "evaluate.fcn.patience",
    "evaluate.fcn_batch_size": "evaluate.fcn.batch_size",
    "evaluate.trans_bc": "evaluate.trans_bc.enabled",
    "evaluate.trans_bc_epochs": "evaluate.trans_bc.epochs",
    "evaluate.trans_bc_patience": "evaluate.trans_bc.patience",
    "evaluate.trans_bc_lr": "evaluate.trans_bc.lr",
    "evaluate.trans_bc_batch_size": "evaluate.trans_bc.batch_size",
    "evaluate.trans_bc_device": "evaluate.trans_bc.device",
    "evaluate.cwola_fractions": "evaluate.cwola.fractions",
    "evaluate.signal_region": "evaluate.bumphunt.signal_region",
    "evaluate.sideband_width": "evaluate.bumphunt.sideband_width",
    "evaluate.bumphunt_efficiencies": "evaluate.bumphunt.efficiencies",
    "evaluate.bumphunt_bin_width": "evaluate.bumphunt.bin_width",
    "tune.metric": "train.selection_metric",
}
"""Keys of earlier versions that now live elsewhere: old dotted key -> new dotted key."""

RESUMABLE_CHANGES = ("train.epochs", "train.faults.", "tracking.", "ray.")
"""Config keys (exact, or prefixes ending in '.') a rerun of a run may change without starting
a different experiment: more epochs, another retry or fault-injection setting, other resources
or tracking. A pretraining run, a sweep and an evaluation reopened by name may differ in these
params only."""

REMOVED: dict[str, str] = {
    "data.path": "the prepared dataset is named by each command's --data flag",
    "tune.mode": "whether the metric is maximised follows from train.selection_metric",
}
"""Keys of earlier versions that no longer exist, and why."""


# ------------------------------------------------------------------------------------------------
# schema walking


def _section_type(annotation: Any) -> type[Section] | None:
    """The Section subclass a field holds, or None for a leaf field."""
    if isinstance(annotation, type) and issubclass(annotation, Section):
        return annotation
    return None


def _is_mapping_field(annotation: Any) -> bool:
    return typing.get_origin(annotation) is dict


def _suggest(name: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(choices), n=1)
    return f" Did you mean '{close[0]}'?" if close else ""


def check_key(key: str, root: type[Section] = RunConfig) -> None:
    """Raise ConfigError unless ``key`` is a settable dotted path of the schema."""
    parts = key.split(SEPARATOR)
    if not all(parts):
        raise ConfigError(f"malformed config key '{key}': empty path element")
    if root is RunConfig and key in RENAMED:
        raise ConfigError(f"config key '{key}' was renamed to '{RENAMED[key]}'; use the new name")
    if root is RunConfig and key in REMOVED:
        raise ConfigError(f"config key '{key}' was removed: {REMOVED[key]}")
    section: type[Section] = root
    for depth, part in enumerate(parts):
        where = SEPARATOR.join(parts[:depth]) or "the top level"
        fields = section.model_fields
        if part not in fields:
            raise ConfigError(
                f"unknown config key '{key}': {where} has no key '{part}'."
                f"{_suggest(part, fields)} Allowed: {', '.join(fields)}"
            )
        annotation = fields[part].annotation
        child = _section_type(annotation)
        rest = parts[depth + 1 :]
        if child is not None:
            if not rest:
                names = list(child.model_fields)
                raise ConfigError(
                    f"config key '{key}' names a whole section; set one of its keys "
                    f"({', '.join(names)}), e.g. '{key}.{names[0]}'"
                )
            section = child
            continue
        if rest and not (_is_mapping_field(annotation) and len(rest) == 1):
            raise ConfigError(
                f"unknown config key '{key}': '{SEPARATOR.join(parts[: depth + 1])}' is a value, "
                "not a section"
            )
        return


# ------------------------------------------------------------------------------------------------
# nested-dict helpers


def _set_path(tree: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(SEPARATOR)
    node = tree
    for depth, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        elif not isinstance(child, dict):
            raise ConfigError(
                f"cannot set '{key}': '{SEPARATOR.join(parts[: depth + 1])}' holds a value"
            )
        node = child
    node[parts[-1]] = value


def _merge_checked(base: dict[str, Any], update: Mapping[str, Any], source: str) -> None:
    """Merge ``update`` (a nested mapping, e.g. a YAML file) into ``base``, checking every key."""

    def walk(prefix: str, node: Mapping[str, Any]) -> Iterable[tuple[str, Any]]:
        for name, value in node.items():
            if not isinstance(name, str):
                raise ConfigError(f"{source}: key {name!r} under '{prefix}' is not a string")
            key = f"{prefix}{SEPARATOR}{name}" if prefix else name
            if isinstance(value, Mapping) and _leads_to_section(key):
                yield from walk(key, value)
            else:
                yield key, value

    for key, value in walk("", update):
        try:
            check_key(key)
        except ConfigError as err:
            raise ConfigError(f"{source}: {err}") from None
        _set_path(base, key, copy.deepcopy(value))


def _leads_to_section(key: str) -> bool:
    section: type[Section] = RunConfig
    for part in key.split(SEPARATOR):
        field = section.model_fields.get(part)
        if field is None:
            return False  # check_key reports it
        child = _section_type(field.annotation)
        if child is None:
            return False
        section = child
    return True


# ------------------------------------------------------------------------------------------------
# validation with readable errors


def _format_validation_error(err: ValidationError, values: Mapping[str, Any]) -> str:
    lines = []
    for item in err.errors(include_url=False):
        key = SEPARATOR.join(str(part) for part in item["loc"])
        message = str(item["msg"]).removeprefix("Value error, ")
        if item["type"] in {"value_error", "assertion_error"} and isinstance(
            item.get("input"), dict
        ):
            lines.append(f"invalid config in '{key or 'config'}': {message}")
        else:
            given = item.get("input", _lookup(values, key))
            lines.append(f"invalid value for '{key}': {given!r} ({message})")
    return "\n".join(lines)


def _lookup(tree: Mapping[str, Any], key: str) -> Any:
    node: Any = tree
    for part in key.split(SEPARATOR):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def validate(values: Mapping[str, Any]) -> RunConfig:
    """Build a RunConfig from a nested mapping, raising ConfigError with every problem named."""
    try:
        return RunConfig.model_validate(values)
    except ValidationError as err:
        raise ConfigError(_format_validation_error(err, values)) from None


# ------------------------------------------------------------------------------------------------
# public API


def parse_value(text: str) -> Any:
    """Read an override's value as YAML (``4096`` -> int, ``[a, b]`` -> list, ``null`` -> None)."""
    try:
        return yaml.safe_load(text) if text.strip() else ""
    except yaml.YAMLError:
        return text  # not YAML: keep the literal string and let validation judge it


def parse_override(text: str) -> tuple[str, Any]:
    """Split ``'a.b.c=value'`` into its checked key and parsed value."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"override '{text}' must look like key.path=value")
    check_key(key)
    return key, parse_value(raw)


def apply_overrides(config: RunConfig, overrides: Iterable[str | tuple[str, Any]]) -> RunConfig:
    """Return a new config with dotted overrides applied, re-validating the whole tree."""
    values = config.model_dump(mode="python")
    for item in overrides:
        if isinstance(item, str):
            key, value = parse_override(item)
        else:
            key, value = item
            check_key(key)
        _set_path(values, key, value)
    return validate(values)


def load_yaml(path: str | Path, what: str = "config file") -> dict[str, Any]:
    """Read a YAML file holding a mapping (a config file, a search space, ...), with errors that
    name ``what`` and the file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise ConfigError(f"cannot read {what} {path}: {err.strerror or err}") from None
    except UnicodeDecodeError as err:
        bad = err.object[err.start : err.start + 1]
        raise ConfigError(f"{what} {path} is not UTF-8 text (byte {err.start}: {bad!r})") from None
    try:
        loaded = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"{what} {path} is not valid YAML: {err}") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"{what} {path} must hold a mapping, got {type(loaded).__name__}")
    return loaded


def resolve_config(
    preset: str | None = None,
    files: Iterable[str | Path] = (),
    overrides: Iterable[str | tuple[str, Any]] = (),
) -> RunConfig:
    """The config of a run: a named preset (default 'demo'), then YAML files, then overrides.

    A YAML file may name its own base with a top-level ``preset:`` key; an explicit ``preset``
    argument wins over it.
    """
    file_values = [(str(path), load_yaml(path)) for path in files]
    base_name = preset
    if base_name is None:
        named = [v.pop("preset") for _, v in file_values if "preset" in v]
        base_name = named[-1] if named else "demo"
    else:
        for _, values in file_values:
            values.pop("preset", None)
    values = get_preset(str(base_name)).model_dump(mode="python")
    for source, update in file_values:
        _merge_checked(values, update, source)
    config = validate(values)
    return apply_overrides(config, overrides)


class _Dumper(yaml.SafeDumper):
    """Sections as blocks, lists inline: the layout people write by hand."""


def _represent_list(dumper: yaml.SafeDumper, data: list[Any]) -> yaml.Node:
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=True)


_Dumper.add_representer(list, _represent_list)


def to_yaml(config: BaseModel) -> str:
    """The config as YAML, sections in schema order; ``load_yaml`` reads it back unchanged."""
    return yaml.dump(
        config.model_dump(mode="json"), Dumper=_Dumper, sort_keys=False, default_flow_style=False
    )


def config_digest(config: RunConfig, length: int = 10) -> str:
    """A short hex digest of every setting of ``config``: equal configs, equal digests (it names
    runs that a rerun with the same settings continues)."""
    text = json.dumps(to_flat_dict(config), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def to_flat_dict(config: RunConfig) -> dict[str, Any]:
    """``{'train.batch_size': 400, ...}``: one entry per leaf field, JSON-compatible values.

    Lists, tuples and dict-valued fields are single entries, so ``from_flat_dict`` inverts this
    exactly (Ray Tune's param spaces and MLflow's params are built on it).
    """
    flat: dict[str, Any] = {}

    def walk(prefix: str, section: type[Section], values: Mapping[str, Any]) -> None:
        for name, field in section.model_fields.items():
            key = f"{prefix}{SEPARATOR}{name}" if prefix else name
            child = _section_type(field.annotation)
            if child is not None:
                walk(key, child, values[name])
            else:
                flat[key] = values[name]

    walk("", RunConfig, config.model_dump(mode="json"))
    return flat


def from_flat_dict(flat: Mapping[str, Any]) -> RunConfig:
    """Inverse of ``to_flat_dict``; keys may be any subset (the rest keep their defaults)."""
    values: dict[str, Any] = {}
    for key, value in flat.items():
        check_key(key)
        _set_path(values, key, copy.deepcopy(value))
    return validate(values)
