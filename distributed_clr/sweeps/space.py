"""Search spaces: the params of a sweep over dotted config keys, parsed and checked.

A space file (``tune_spaces/*.yaml``, format in ``tune_spaces/README.md``) holds ``params``
(dotted config key -> ``{grid|choice: [values]}`` or ``{uniform|loguniform|randint: [low,
high]}``), optionally ``tune`` (defaults for the ``tune`` config section) and ``description``.
Every key, every listed value, both bounds of every distribution and the combinations of the
discrete values are checked against the config schema before a sweep starts; every problem is a
``ConfigError`` naming the file and the key.

A caller (``dclr tune``) loads the space against the base config (preset and ``--config``
files), then resolves the sweep's config with ``SearchSpace.settings`` (the file's ``tune:``
defaults) before its own overrides: preset -> ``--config`` files -> ``tune:`` defaults ->
``--set`` -> flags, i.e. ``resolve_config(preset, files, [*space.settings, *overrides,
*flags])``.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

from distributed_clr.config import ConfigError
from distributed_clr.config.load import apply_overrides, check_key, load_yaml
from distributed_clr.config.schema import RunConfig, TuneConfig
from distributed_clr.sweeps.errors import SweepError

log = logging.getLogger(__name__)

__all__ = [
    "FIXED_PREFIXES",
    "KINDS",
    "PRODUCT_CHECK_LIMIT",
    "REPORTED_METRICS",
    "Param",
    "ParamKind",
    "SearchSpace",
    "check_search",
    "is_scalar",
    "load_space",
    "space_from_dict",
]

ParamKind = Literal["grid", "choice", "uniform", "loguniform", "randint"]
KINDS: tuple[ParamKind, ...] = get_args(ParamKind)
DISCRETE: tuple[ParamKind, ...] = ("grid", "choice")
SPACE_FILE_KEYS = ("description", "tune", "params")
FIXED_PREFIXES = {
    "tune.": "the sweep's own settings (put them under 'tune:' or pass flags)",
    "ray.": "the resources of every trial (set them with --set or --workers)",
    "tracking.": "where the sweep is recorded",
    "prepare.": "the data is already prepared (pretrain takes these from the data)",
    "generate.": "the data is already generated",
}
"""Config keys a space may not vary, and why."""

REPORTED_METRICS = (
    "val_align_uniform",
    "best_val_align_uniform",
    "val_view_retrieval",
    "val_probe_auc",
    "val_loss",
    "best_val_view_retrieval",
    "best_val_loss",
    "best_val_probe_auc",
    "train_loss",
    "val_alignment",
    "val_uniformity",
    "lr",
    "events_per_s",
    "train_time_s",
    "epoch_time_s",
)
"""Metrics every epoch of ``train/loop.py`` reports. A sweep ranks trials by
``train.selection_metric``, the metric that also picks each trial's kept checkpoint."""

PRODUCT_CHECK_LIMIT = 512
"""Combinations of discrete values checked together (e.g. heads against latent sizes)."""


def is_scalar(value: Any) -> bool:
    """Whether a param value is a scalar (a CSV cell and a Tune value as it is)."""
    return value is None or isinstance(value, str | int | float | bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


@dataclass(frozen=True)
class Param:
    """One dimension of a search space.

    ``values`` holds the candidates of ``grid`` (every value is tried) and ``choice`` (one is
    drawn per trial), or the bounds ``(low, high)`` of ``uniform``, ``loguniform`` (real
    numbers) and ``randint`` (integers, both bounds included).
    """

    key: str
    kind: ParamKind
    values: tuple[Any, ...]

    @property
    def discrete(self) -> bool:
        return self.kind in DISCRETE

    @property
    def encoded(self) -> bool:
        """Whether values travel through Tune as JSON text (lists and mappings do: Tune would
        otherwise search inside them, and Optuna only takes scalars)."""
        return self.discrete and not all(is_scalar(v) for v in self.values)

    def domain(self, search: str) -> Any:
        """The Ray Tune domain of this param under ``search`` (grid, random or optuna)."""
        from ray import tune

        if self.discrete:
            values = [json.dumps(v) for v in self.values] if self.encoded else list(self.values)
            # Optuna has no grid: there, every listed value is a categorical choice.
            if self.kind == "grid" and search != "optuna":
                return tune.grid_search(values)
            return tune.choice(values)
        low, high = self.values
        if self.kind == "uniform":
            return tune.uniform(float(low), float(high))
        if self.kind == "loguniform":
            return tune.loguniform(float(low), float(high))
        return tune.randint(int(low), int(high) + 1)  # Tune's upper bound is exclusive

    def decode(self, value: Any) -> Any:
        """A value as Tune hands it to a trial -> the config value."""
        if self.encoded and isinstance(value, str):
            return json.loads(value)
        if self.kind == "randint":
            return int(value)
        if self.kind in ("uniform", "loguniform"):
            return float(value)
        return value

    def spec(self) -> dict[str, Any]:
        return {self.kind: list(self.values)}


@dataclass(frozen=True)
class SearchSpace:
    """Named params over dotted config keys, plus the file's defaults for ``tune.*``."""

    name: str
    params: tuple[Param, ...]
    settings: tuple[tuple[str, Any], ...] = ()
    """``(tune.key, value)`` defaults from the file's ``tune:`` section; --set and flags win."""
    description: str = ""
    source: str = "<space>"

    @property
    def keys(self) -> list[str]:
        return [p.key for p in self.params]

    def param(self, key: str) -> Param:
        for p in self.params:
            if p.key == key:
                return p
        raise KeyError(key)

    @property
    def all_grid(self) -> bool:
        return all(p.kind == "grid" for p in self.params)

    @property
    def grid_points(self) -> int:
        """Points of the grid part of the space (1 without grid params)."""
        return math.prod(len(p.values) for p in self.params if p.kind == "grid")

    def to_dict(self) -> dict[str, Any]:
        """The space as a space file holds it (canonical: keys sorted)."""
        return {
            "description": self.description,
            "tune": {k.removeprefix("tune."): v for k, v in self.settings},
            "params": {p.key: p.spec() for p in sorted(self.params, key=lambda p: p.key)},
        }

    def fingerprint(self) -> str:
        """Compact JSON of the params: equal for equal spaces."""
        return json.dumps(self.to_dict()["params"], sort_keys=True, separators=(",", ":"))

    def check(self, config: RunConfig) -> None:
        """Raise ConfigError unless every value (and every combination of the discrete values,
        up to ``PRODUCT_CHECK_LIMIT``) gives a valid config on top of ``config``."""
        for p in self.params:
            _check_param(p, config, self.source)
        discrete = [p for p in self.params if p.discrete]
        combinations = math.prod(len(p.values) for p in discrete)
        if len(discrete) < 2 or combinations > PRODUCT_CHECK_LIMIT:
            return
        for values in itertools.product(*(p.values for p in discrete)):
            overrides = [(p.key, v) for p, v in zip(discrete, values, strict=True)]
            try:
                apply_overrides(config, overrides)
            except ConfigError as err:
                shown = ", ".join(f"{k}={json.dumps(v)}" for k, v in overrides)
                raise ConfigError(
                    f"{self.source}: the combination {shown} is invalid: {err}"
                ) from None

    def param_space(self, search: str) -> dict[str, Any]:
        """Ray Tune's ``param_space``: one entry per dotted key."""
        return {p.key: p.domain(search) for p in self.params}

    def decode(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """A trial's Tune config -> ``{dotted key: config value}``."""
        missing = [p.key for p in self.params if p.key not in params]
        if missing:
            raise SweepError(f"the trial's parameters lack {', '.join(missing)}")
        return {p.key: p.decode(params[p.key]) for p in self.params}

    def overrides(self, params: Mapping[str, Any]) -> list[tuple[str, Any]]:
        return list(self.decode(params).items())


def _check_value(key: str, value: Any, config: RunConfig, source: str, what: str) -> None:
    try:
        apply_overrides(config, [(key, value)])
    except ConfigError as err:
        shown = json.dumps(value, default=str)
        raise ConfigError(f"{source}: {what} {shown} of '{key}' is invalid: {err}") from None


def _check_param(p: Param, config: RunConfig, source: str) -> None:
    if p.discrete:
        for value in p.values:
            _check_value(p.key, value, config, source, "value")
        return
    low, high = p.values
    for name, bound in (("lower bound", low), ("upper bound", high)):
        _check_value(p.key, bound, config, source, name)
    if p.kind != "randint":
        # A real number strictly inside the range: catches a real-valued draw for an int key.
        inside = (
            low + 0.3183 * (high - low) if p.kind == "uniform" else low * (high / low) ** 0.3183
        )
        try:
            apply_overrides(config, [(p.key, inside)])
        except ConfigError as err:
            raise ConfigError(
                f"{source}: '{p.key}' cannot take a real number such as {inside:.4g} drawn from "
                f"{p.kind} [{low}, {high}] ({err}); use randint or choice for an integer key"
            ) from None


def _parse_param(key: Any, spec: Any, source: str) -> Param:
    if not isinstance(key, str):
        raise ConfigError(f"{source}: param key {key!r} is not a string")
    try:
        check_key(key)
    except ConfigError as err:
        raise ConfigError(f"{source}: {err}") from None
    for prefix, why in FIXED_PREFIXES.items():
        if key.startswith(prefix):
            raise ConfigError(f"{source}: '{key}' cannot be swept: '{prefix.rstrip('.')}' is {why}")
    forms = ", ".join(f"{{{k}: [...]}}" for k in KINDS)
    if not isinstance(spec, Mapping) or len(spec) != 1:
        raise ConfigError(
            f"{source}: '{key}' must be a mapping with exactly one of {forms}; got "
            f"{json.dumps(spec, default=str)}"
        )
    ((kind, values),) = spec.items()
    if kind not in KINDS:
        raise ConfigError(
            f"{source}: '{key}' has unknown kind '{kind}'; use one of {', '.join(KINDS)}"
        )
    if not isinstance(values, list) or not values:
        raise ConfigError(f"{source}: '{key}': {kind} needs a non-empty list, got {values!r}")
    if kind in DISCRETE:
        texts = [json.dumps(v, sort_keys=True, default=str) for v in values]
        repeated = sorted({t for t in texts if texts.count(t) > 1})
        if repeated:
            raise ConfigError(f"{source}: '{key}' lists {', '.join(repeated)} more than once")
        return Param(key, kind, tuple(values))
    if len(values) != 2 or not all(_is_number(v) for v in values):
        raise ConfigError(
            f"{source}: '{key}': {kind} takes two numbers [low, high], got {values!r}"
        )
    low, high = values
    if not low < high:
        raise ConfigError(f"{source}: '{key}': {kind} needs low < high, got [{low}, {high}]")
    if kind == "loguniform" and low <= 0:
        raise ConfigError(f"{source}: '{key}': loguniform needs low > 0, got [{low}, {high}]")
    if kind == "randint" and not all(isinstance(v, int) for v in values):
        raise ConfigError(f"{source}: '{key}': randint takes integer bounds, got [{low}, {high}]")
    return Param(key, kind, (low, high))


def space_from_dict(
    values: Mapping[str, Any], base_config: RunConfig, *, name: str, source: str = "<space>"
) -> SearchSpace:
    """A checked ``SearchSpace`` from a space file's contents (see ``load_space``)."""
    unknown = [k for k in values if k not in SPACE_FILE_KEYS]
    if unknown:
        hint = ""
        if any("." in str(k) for k in unknown):
            hint = " (config keys to sweep go under 'params:')"
        raise ConfigError(
            f"{source}: unknown top-level key(s) {', '.join(map(str, unknown))}{hint}; a space "
            f"file holds {', '.join(SPACE_FILE_KEYS)}"
        )
    params_spec = values.get("params")
    if not isinstance(params_spec, Mapping) or not params_spec:
        raise ConfigError(f"{source}: 'params' must map dotted config keys to values to search")
    params = tuple(_parse_param(key, spec, source) for key, spec in params_spec.items())

    tune_spec = values.get("tune") or {}
    if not isinstance(tune_spec, Mapping):
        raise ConfigError(f"{source}: 'tune' must be a mapping of tune settings")
    settings: list[tuple[str, Any]] = []
    for key, value in tune_spec.items():
        dotted = f"tune.{key}"
        try:
            check_key(dotted)
            apply_overrides(base_config, [(dotted, value)])
        except ConfigError as err:
            raise ConfigError(f"{source}: {err}") from None
        settings.append((dotted, value))

    description = values.get("description") or ""
    if not isinstance(description, str):
        raise ConfigError(f"{source}: 'description' must be text")
    space = SearchSpace(name, params, tuple(settings), " ".join(description.split()), source)
    space.check(base_config)
    return space


def load_space(path: str | Path, base_config: RunConfig) -> SearchSpace:
    """Read and check a space file; every problem raises ConfigError naming the file and key.

    The file holds ``params`` (dotted config key -> ``{grid|choice: [values]}`` or
    ``{uniform|loguniform|randint: [low, high]}``), optionally ``tune`` (defaults for the
    ``tune`` config section, e.g. ``search: optuna``) and ``description``. Each listed value and
    both bounds of each distribution are applied to ``base_config`` and validated.
    """
    path = Path(path)
    values = load_yaml(path, "space file")
    return space_from_dict(values, base_config, name=path.stem, source=f"space file {path}")


def check_search(space: SearchSpace, tune_config: TuneConfig) -> None:
    """Raise ConfigError if the search algorithm cannot explore this space."""
    if tune_config.search == "grid" and not space.all_grid:
        others = ", ".join(f"{p.key} ({p.kind})" for p in space.params if p.kind != "grid")
        raise ConfigError(
            f"{space.source}: grid search needs every param as 'grid', but {others} "
            "must be sampled; use --search random (or optuna), or list the values under 'grid'"
        )
    if tune_config.search == "optuna" and any(p.kind == "grid" for p in space.params):
        log.info("optuna search: 'grid' values are sampled as choices, not crossed")
