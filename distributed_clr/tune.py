"""Hyper-parameter sweeps: a Ray Tune ``Tuner`` around ``pretrain``.

A sweep is a search space (``tune_spaces/*.yaml``: dotted config keys and their values or
distributions) over a base run configuration. ``sweep()``

1. checks every key and value of the space against the config schema (``load_space`` already
   did; the check is repeated against the final config), the search algorithm against the
   space, and the data, before anything starts;
2. opens the sweep's MLflow parent run (found again by the sweep name on a rerun);
3. runs a ``Tuner`` over a small trial function (the Ray Train V2 pattern): each trial applies
   its parameters to the base config and calls ``pretrain`` (the one function that builds a
   ``TorchTrainer``) with a ``TuneReportCallback``, so every epoch's metrics reach Tune (for
   ASHA) and the trial's MLflow child run; the trial function itself reserves only
   ``TRIAL_DRIVER_CPUS``, its training workers ask for their own resources, and the number of
   concurrent trials follows from the cluster's CPUs and GPUs;
4. restores the sweep instead of starting over when ``<ray.storage_path>/<name>`` holds one
   (``Tuner.restore``): finished trials are kept, unfinished and errored ones resume, and each
   resumed trial's ``pretrain`` continues from its own last checkpoint and MLflow run;
5. writes a summary table (CSV) and plots of the selection metric against temperature and latent
   size, and logs them to the parent run.

Storage layout: the Tune experiment is ``<ray.storage_path>/<name>``; the Ray Train runs of its
trials are under ``<ray.storage_path>/<name>/runs/<name>-<trial id>``; the summary and plots
of a local sweep are in ``<ray.storage_path>/<name>/summary``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import itertools
import json
import logging
import math
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args

import yaml

from distributed_clr.config.load import (
    ConfigError,
    apply_overrides,
    check_key,
    load_yaml,
    resolve_config,
)
from distributed_clr.config.schema import RunConfig, TuneConfig

if TYPE_CHECKING:
    from matplotlib.figure import Figure

log = logging.getLogger(__name__)

__all__ = [
    "Param",
    "SearchSpace",
    "SweepError",
    "SweepResult",
    "add_parser",
    "load_space",
    "max_concurrent_trials",
    "metric_vs_param_figure",
    "space_from_dict",
    "summarize",
    "sweep",
]

Kind = Literal["grid", "choice", "uniform", "loguniform", "randint"]
KINDS: tuple[Kind, ...] = get_args(Kind)
DISCRETE: tuple[Kind, ...] = ("grid", "choice")
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
    "val_probe_auc",
    "val_loss",
    "best_val_loss",
    "train_loss",
    "val_alignment",
    "val_uniformity",
    "lr",
    "events_per_s",
    "train_time_s",
    "epoch_time_s",
)
"""Metrics every epoch of ``train/loop.py`` reports (the choices for ``tune.metric``)."""

TRIAL_DRIVER_CPUS = 0.5
"""CPUs reserved by each trial function. It only drives its ``TorchTrainer`` (whose workers
reserve their own CPUs/GPUs) and logs to MLflow, so it gets half a logical CPU."""
DATA_CPUS = 1.0
"""CPUs kept free for Ray Data to read the shards of the running trials."""
TRIAL_KIND = "trial"
SWEEP_KIND = "sweep"
EXIT_INTERRUPTED = 130
SPACE_TAG = "dclr.space"
SPACE_SPEC_TAG = "dclr.space_spec"
MAX_SWEEP_NAME = 100
"""Trial runs are named ``<sweep>-<trial id>`` (12 more characters) and run names have at most
128."""
PRODUCT_CHECK_LIMIT = 512
"""Combinations of discrete values checked together (e.g. heads against latent sizes)."""
PLOTTED_PARAMS = {
    "loss.temperature": ("temperature", "temperature"),
    "model.latent_dim": ("latent size", "latent_dim"),
}
"""Params with a plot of the metric against them: key -> (axis label, file-name stem)."""


class SweepError(ValueError):
    """A sweep that cannot start (resources, storage) or cannot be resumed as asked."""


# ------------------------------------------------------------------------------------------------
# the search space


def _is_scalar(value: Any) -> bool:
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
    kind: Kind
    values: tuple[Any, ...]

    @property
    def discrete(self) -> bool:
        return self.kind in DISCRETE

    @property
    def encoded(self) -> bool:
        """Whether values travel through Tune as JSON text (lists and mappings do: Tune would
        otherwise search inside them, and Optuna only takes scalars)."""
        return self.discrete and not all(_is_scalar(v) for v in self.values)

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
    if tune_config.metric not in REPORTED_METRICS:
        raise ConfigError(
            f"invalid value for 'tune.metric': {tune_config.metric!r} is not reported by the "
            f"training loop; choose one of {', '.join(REPORTED_METRICS)}"
        )
    lower_is_better = tune_config.metric.endswith("loss") or tune_config.metric == "val_alignment"
    if lower_is_better and tune_config.mode == "max":
        log.warning(
            "tune.metric %s is maximised (tune.mode = max); is that meant?", tune_config.metric
        )
    if tune_config.search == "optuna" and any(p.kind == "grid" for p in space.params):
        log.info("optuna search: 'grid' values are sampled as choices, not crossed")


# ------------------------------------------------------------------------------------------------
# resources


def trial_footprint(config: RunConfig) -> tuple[float, float]:
    """(CPUs, GPUs) one trial holds: its driver function plus its training workers."""
    ray_config = config.ray
    cpus = TRIAL_DRIVER_CPUS + ray_config.num_workers * ray_config.cpus_per_worker
    gpus = float(ray_config.num_workers) if ray_config.use_gpu else 0.0
    return cpus, gpus


def max_concurrent_trials(config: RunConfig, cluster: Mapping[str, float]) -> int:
    """How many trials fit at once: ``tune.max_concurrent_trials`` if set, else
    floor((CPUs - 1) / CPUs per trial) (one CPU stays free for Ray Data), limited by
    GPUs / GPUs per trial on GPU runs. Raises SweepError if not even one trial fits."""
    cpus, gpus = trial_footprint(config)
    have_cpu = float(cluster.get("CPU", 0.0))
    have_gpu = float(cluster.get("GPU", 0.0))
    if have_cpu - DATA_CPUS < cpus - 1e-9:
        raise SweepError(
            f"a trial needs {cpus:g} CPUs ({config.ray.num_workers} workers x "
            f"{config.ray.cpus_per_worker:g} + {TRIAL_DRIVER_CPUS:g} for the trial driver) and "
            f"Ray Data {DATA_CPUS:g} more; the Ray cluster has {have_cpu:g}. Lower "
            "ray.num_workers or ray.cpus_per_worker, or add CPUs"
        )
    if gpus and have_gpu < gpus:
        raise SweepError(
            f"a trial needs {gpus:g} GPUs ({config.ray.num_workers} GPU workers); the Ray "
            f"cluster has {have_gpu:g}"
        )
    fits = int((have_cpu - DATA_CPUS) / cpus + 1e-9)
    if gpus:
        fits = min(fits, int(have_gpu / gpus + 1e-9))
    if config.tune.max_concurrent_trials is not None:
        return config.tune.max_concurrent_trials
    return max(1, fits)


# ------------------------------------------------------------------------------------------------
# the Tuner


def default_sweep_name(space: SearchSpace) -> str:
    return f"{space.name[:60]}-{dt.datetime.now().strftime('%Y%m%d-%H%M%S')}"


def trial_run_name(sweep_name: str, trial_id: str) -> str:
    """The MLflow run and Ray Train storage name of a trial (stable across restores)."""
    return f"{sweep_name}-{trial_id}"


def _join(storage: str, *parts: str) -> str:
    return "/".join([storage.rstrip("/"), *parts])


def _pin_paths(config: RunConfig) -> RunConfig:
    """Absolute tracking URI and storage paths: trials run in other processes, in Tune's trial
    directories, where relative paths would point elsewhere."""
    from distributed_clr import tracking

    storage = config.ray.storage_path
    if "://" not in storage:
        storage = str(Path(storage).expanduser().resolve())
    return config.model_copy(
        update={
            "tracking": config.tracking.model_copy(
                update={"uri": tracking.tracking_uri(config.tracking)}
            ),
            "ray": config.ray.model_copy(update={"storage_path": storage}),
        }
    )


def _trial_dirname(trial: Any) -> str:
    """Tune's directory of a trial: its id (the params are in its params.json)."""
    return str(trial.trial_id)


def _make_trial_function(
    base: dict[str, Any],
    space: SearchSpace,
    data: str,
    sweep_name: str,
    parent_run_id: str | None,
    log_embeddings: bool,
) -> Callable[[dict[str, Any]], None]:
    """The function Tune runs per trial: the base config with the trial's params, trained by
    ``pretrain`` with its Ray Train runs stored under ``<sweep>/runs``."""

    def pretrain_trial(params: dict[str, Any]) -> None:
        from ray import tune
        from ray.tune.integration.ray_train import TuneReportCallback

        from distributed_clr.train.driver import pretrain

        trial_id = tune.get_context().get_trial_id()
        config = apply_overrides(RunConfig.model_validate(base), space.overrides(params))
        pretrain(
            config,
            data,
            trial_run_name(sweep_name, trial_id),
            log_embeddings=log_embeddings,
            callbacks=[TuneReportCallback()],  # type: ignore[no-untyped-call]
            parent_run_id=parent_run_id,
            kind=TRIAL_KIND,
        )

    return pretrain_trial


def _scheduler(config: RunConfig) -> Any:
    """ASHA on ``tune.metric`` (set through Tune's config), or None.

    Rungs sit at grace_period x reduction_factor^k epochs strictly below ``train.epochs``, and
    trials past the last rung are never stopped: a trial that reached its final epoch must be
    left to finish (its model and final MLflow records come after the last report).
    """
    from ray.tune.schedulers import ASHAScheduler

    tune_config = config.tune
    if tune_config.scheduler == "none":
        return None
    max_t = config.train.epochs - 1
    if max_t < tune_config.grace_period:
        log.warning(
            "ASHA cannot stop any trial: train.epochs = %d leaves no epoch after the grace "
            "period (%d); running every trial to the end",
            config.train.epochs,
            tune_config.grace_period,
        )
        return None
    return ASHAScheduler(
        time_attr="training_iteration",
        max_t=max_t,
        grace_period=tune_config.grace_period,
        reduction_factor=tune_config.reduction_factor,
        stop_last_trials=False,
    )


def _search_algorithm(config: RunConfig, concurrency: int) -> Any:
    tune_config = config.tune
    if tune_config.search == "optuna":
        from ray.tune.search import ConcurrencyLimiter
        from ray.tune.search.optuna import OptunaSearch

        return ConcurrencyLimiter(OptunaSearch(seed=config.train.seed), max_concurrent=concurrency)
    from ray.tune.search import BasicVariantGenerator

    return BasicVariantGenerator(max_concurrent=concurrency, random_state=config.train.seed)


def _new_tuner(
    trainable: Any, config: RunConfig, space: SearchSpace, name: str, concurrency: int
) -> Any:
    from ray import tune

    from distributed_clr.progress import progress_enabled

    tune_config = config.tune
    return tune.Tuner(
        trainable,
        param_space=space.param_space(tune_config.search),
        tune_config=tune.TuneConfig(
            metric=tune_config.metric,
            mode=tune_config.mode,
            search_alg=_search_algorithm(config, concurrency),
            scheduler=_scheduler(config),
            num_samples=tune_config.num_samples,
            trial_dirname_creator=_trial_dirname,
        ),
        run_config=tune.RunConfig(
            name=name,
            storage_path=config.ray.storage_path,
            # A failed trial stays failed (Ray Train already retried its workers
            # train.max_failures times); rerunning the sweep resumes it.
            failure_config=tune.FailureConfig(max_failures=0),
            verbose=1 if progress_enabled() else 0,
        ),
    )


# ------------------------------------------------------------------------------------------------
# MLflow


@dataclass
class _Parent:
    uri: str
    run_id: str
    client: Any
    resumed: bool


def _open_parent(config: RunConfig, space: SearchSpace, name: str, data: Path) -> _Parent | None:
    """The sweep's parent run: new, or the one an earlier attempt of ``name`` left."""
    if not config.tracking.enabled:
        return None
    from distributed_clr import tracking

    uri = tracking.tracking_uri(config.tracking)
    client = tracking.client(uri)
    experiment_id = tracking.ensure_experiment(client, config.tracking.experiment, uri)
    existing = tracking.find_run(client, experiment_id, name, SWEEP_KIND)
    if existing is not None:
        logged = existing.data.tags.get(SPACE_SPEC_TAG)
        if logged is not None and logged != space.fingerprint():
            raise SweepError(
                f"sweep '{name}' was started with another search space ({logged}); this one is "
                f"{space.fingerprint()}. Use the same space file to resume it, or a new --name"
            )
    try:
        uri, run_id, resumed = tracking.open_run(
            config, name, SWEEP_KIND, tags={SPACE_TAG: space.name, "dclr.data": str(data)}
        )
    except ValueError as err:  # another configuration under this name
        raise SweepError(
            f"cannot resume sweep: {str(err).replace('--run-name', '--name')}"
        ) from None
    if not resumed:
        client.set_tag(run_id, SPACE_SPEC_TAG, space.fingerprint())
        with tempfile.TemporaryDirectory(prefix="dclr-space-") as tmp:
            path = Path(tmp) / "space.yaml"
            path.write_text(yaml.safe_dump(space.to_dict(), sort_keys=False))
            client.log_artifact(run_id, str(path))
    log.info("%s MLflow parent run %s at %s", "continuing" if resumed else "started", run_id, uri)
    return _Parent(uri, run_id, client, resumed)


def _child_runs(parent: _Parent) -> dict[str, Any]:
    """The sweep's trial runs by run name."""
    from distributed_clr import tracking

    experiment_id = parent.client.get_run(parent.run_id).info.experiment_id
    runs = parent.client.search_runs(
        [experiment_id],
        filter_string=f"tags.`mlflow.parentRunId` = '{parent.run_id}' and "
        f"tags.`{tracking.KIND_TAG}` = '{TRIAL_KIND}'",
        max_results=10_000,
    )
    return {run.data.tags.get(tracking.RUN_NAME_TAG, run.info.run_id): run for run in runs}


# ------------------------------------------------------------------------------------------------
# results


@dataclass
class TrialRecord:
    """What Tune knows of one trial."""

    trial_id: str
    status: str
    """Tune's status: TERMINATED, ERROR, PENDING, RUNNING or PAUSED."""
    params: dict[str, Any]
    history: list[dict[str, float]] = field(default_factory=list)
    """Reported metrics per epoch (one row per epoch; a repeated epoch keeps its last report)."""
    error: str = ""


@dataclass
class SweepResult:
    """A finished (or interrupted) sweep."""

    name: str
    experiment_path: str
    summary: Any
    """pandas DataFrame, one row per trial, best first (see ``summarize``)."""
    metric: str
    mode: str
    summary_csv: Path
    plots: list[Path] = field(default_factory=list)
    parent_run_id: str | None = None
    tracking_uri: str | None = None
    complete: bool = True
    """Every trial reached a final state (complete, stopped by the scheduler, or error)."""

    @property
    def best(self) -> dict[str, Any] | None:
        """The summary row of the best trial (by its best epoch), or None without any metric."""
        column = f"best_{self.metric}"
        rows = self.summary[self.summary[column].notna()]
        if rows.empty:
            return None
        return dict(rows.iloc[0])

    @property
    def failed(self) -> int:
        return int((self.summary["status"] == "error").sum())


def _history(frame: Any) -> list[dict[str, float]]:
    """Tune's result rows of a trial -> one dict per epoch, in epoch order."""
    if frame is None or len(frame) == 0 or "epoch" not in frame:
        return []
    keep = [m for m in (*REPORTED_METRICS, "epoch") if m in frame]
    by_epoch: dict[int, dict[str, float]] = {}
    for row in frame[keep].to_dict("records"):
        if row.get("epoch") is None or math.isnan(float(row["epoch"])):
            continue
        by_epoch[int(row["epoch"])] = {k: float(v) for k, v in row.items() if v is not None}
    return [by_epoch[e] for e in sorted(by_epoch)]


def _load_trials(experiment_path: str, space: SearchSpace) -> list[TrialRecord]:
    from ray import tune

    analysis = tune.ExperimentAnalysis(experiment_path)
    frames = analysis.trial_dataframes
    records = []
    for trial in analysis.trials:
        error = ""
        if trial.status == "ERROR":
            try:
                error = str(trial.get_error() or "")
            except Exception:  # the error file may be missing after a hard kill
                error = "error (no details stored)"
        records.append(
            TrialRecord(
                trial_id=str(trial.trial_id),
                status=str(trial.status),
                params=space.decode(trial.config),
                history=_history(frames.get(trial.trial_id)),
                error=error,
            )
        )
    return records


def _param_column(value: Any) -> Any:
    return value if _is_scalar(value) else json.dumps(value)


def summarize(
    records: Sequence[TrialRecord],
    space: SearchSpace,
    sweep_name: str,
    metric: str,
    mode: str,
    runs: Mapping[str, Any] | None = None,
) -> Any:
    """One row per trial, best first: trial (its run name), trial_id, mlflow_run_id, one column
    per param, ``best_<metric>`` and its ``best_epoch``, ``last_<metric>``, ``val_loss`` (last
    epoch), ``epochs`` and ``status``: complete, stopped (by the scheduler), error, or
    incomplete (an interrupted sweep)."""
    import pandas as pd

    rows = []
    for record in records:
        run_name = trial_run_name(sweep_name, record.trial_id)
        run = (runs or {}).get(run_name)
        values = [h.get(metric, math.nan) for h in record.history]
        finite = [(v, int(h["epoch"])) for v, h in zip(values, record.history, strict=True)]
        finite = [(v, e) for v, e in finite if math.isfinite(v)]
        best = (max if mode == "max" else min)(finite, default=(math.nan, -1))
        status = {"TERMINATED": "complete", "ERROR": "error"}.get(record.status, "incomplete")
        if (
            status == "complete"
            and run is not None
            and run.data.tags.get("dclr.complete") != "true"
        ):
            status = "stopped"
        row: dict[str, Any] = {
            "trial": run_name,
            "trial_id": record.trial_id,
            "mlflow_run_id": None if run is None else run.info.run_id,
        }
        row.update({key: _param_column(v) for key, v in record.params.items()})
        row.update(
            {
                f"best_{metric}": best[0],
                "best_epoch": best[1] if best[1] >= 0 else None,
                f"last_{metric}": values[-1] if values else math.nan,
                "val_loss": record.history[-1].get("val_loss", math.nan)
                if record.history
                else math.nan,
                "epochs": len(record.history),
                "status": status,
                "error": record.error.strip().splitlines()[-1][:300] if record.error else "",
            }
        )
        rows.append(row)
    columns = [
        "trial",
        "trial_id",
        "mlflow_run_id",
        *space.keys,
        f"best_{metric}",
        "best_epoch",
        f"last_{metric}",
        "val_loss",
        "epochs",
        "status",
        "error",
    ]
    frame = pd.DataFrame(rows, columns=columns)
    frame = frame.sort_values(
        f"best_{metric}", ascending=mode == "min", na_position="last", kind="stable"
    )
    return frame.reset_index(drop=True)


def metric_vs_param_figure(
    summary: Any, key: str, metric: str, space: SearchSpace, label: str | None = None
) -> Figure:
    """The best ``metric`` of each trial against param ``key`` (log x).

    Trials are coloured by another discrete param when the space has one (e.g. one colour per
    latent size in a temperature plot); trials not run to the end (stopped, failed or
    interrupted) are drawn hollow.
    """
    import numpy as np
    from matplotlib.figure import Figure

    column = f"best_{metric}"
    figure = Figure(figsize=(6, 4.5), layout="constrained")
    ax = figure.add_subplot()
    data = summary[summary[column].notna() & summary[key].notna()]
    others = [p for p in space.params if p.key != key]
    groups = [p for p in others if p.discrete and len(p.values) <= 10]
    group = groups[0].key if groups else None
    # Lines join the values of a grid or choice scan when nothing else varies within a colour.
    connect = space.param(key).discrete and (not others or (len(others) == 1 and group is not None))
    parts = (
        [(f"{group} = {value}", part) for value, part in data.groupby(group, sort=True)]
        if group is not None
        else [("trials", data)]
    )
    for index, (name, part) in enumerate(parts):
        part = part.sort_values(key)
        done = part["status"] == "complete"
        color = f"C{index % 10}"
        ax.scatter(part[key][done], part[column][done], color=color, label=name)
        ax.scatter(part[key][~done], part[column][~done], facecolors="none", edgecolors=color)
        if connect:
            ax.plot(part[key], part[column], alpha=0.5, color=color)
    values = np.unique(np.asarray(data[key], dtype=np.float64))
    if len(values) and np.all(values > 0):
        ax.set_xscale("log", base=2 if key == "model.latent_dim" else 10)
    if 0 < len(values) <= 10:  # a grid: label its values
        ax.set_xticks(values, [f"{v:g}" for v in values])
        ax.minorticks_off()
    ax.set_xlabel(f"{label or key} ({key})")
    ax.set_ylabel(f"{metric} (best epoch)")
    ax.set_title(f"{len(data)} trials; hollow: not run to the end")
    if group is not None or len(parts) > 1:
        ax.legend(frameon=False, fontsize="small")
    return figure


def _write_results(
    summary: Any, space: SearchSpace, metric: str, directory: Path
) -> tuple[Path, list[Path]]:
    from distributed_clr.plotting import save_figure

    directory.mkdir(parents=True, exist_ok=True)
    csv = directory / "summary.csv"
    tmp = csv.with_name(f".{csv.name}.tmp")
    summary.to_csv(tmp, index=False)
    tmp.replace(csv)
    plots = []
    for key, (label, stem) in PLOTTED_PARAMS.items():
        if key in space.keys:
            figure = metric_vs_param_figure(summary, key, metric, space, label)
            plots.append(save_figure(figure, directory / f"{metric}_vs_{stem}.png"))
    return csv, plots


def _log_results(
    parent: _Parent, summary: Any, metric: str, csv: Path, plots: Sequence[Path]
) -> None:
    parent.client.log_artifact(parent.run_id, str(csv))
    for path in plots:
        parent.client.log_artifact(parent.run_id, str(path), "plots")
    column = f"best_{metric}"
    ranked = summary[summary[column].notna()]
    counts = summary["status"].value_counts().to_dict()
    for status in ("complete", "stopped", "error", "incomplete"):
        parent.client.set_tag(parent.run_id, f"dclr.trials_{status}", str(counts.get(status, 0)))
    if not ranked.empty:
        best = ranked.iloc[0]
        parent.client.log_metric(parent.run_id, column, float(best[column]))
        parent.client.set_tag(parent.run_id, "dclr.best_trial", str(best["trial"]))
        if best["mlflow_run_id"]:
            parent.client.set_tag(parent.run_id, "dclr.best_run_id", str(best["mlflow_run_id"]))


def _mlflow_history(parent: _Parent, run_id: str, metric: str) -> list[dict[str, float]]:
    """A trial's per-epoch metrics as its MLflow run holds them (logged once per epoch by rank
    0; Tune can miss the last report before a crash)."""
    by_epoch: dict[int, dict[str, float]] = {}
    for key in dict.fromkeys((metric, "val_loss", "train_loss")):
        for point in parent.client.get_metric_history(run_id, key):
            by_epoch.setdefault(int(point.step), {"epoch": float(point.step)})[key] = point.value
    return [by_epoch[e] for e in sorted(by_epoch)]


def _close_children(parent: _Parent, runs: Mapping[str, Any]) -> None:
    """Trials the scheduler stopped (or an interruption killed) leave their runs RUNNING."""
    for run in runs.values():
        if run.info.status == "RUNNING":
            parent.client.set_tag(run.info.run_id, "dclr.stopped", "true")
            parent.client.set_terminated(run.info.run_id, "KILLED")


# ------------------------------------------------------------------------------------------------
# placement groups of stopped trials


def release_orphaned_placement_groups() -> int:
    """Remove this job's placement groups whose creating actor is dead; returns how many.

    When ASHA stops a trial, Tune ends the trial's actor, and with it the ``TorchTrainer``
    controller that actor owns. The controller's worker placement group is not removed: Ray
    keeps a placement group made by an actor until the job ends, and Ray Train's detached
    cleaner finds dead controllers through the State API, which a session without the
    dashboard (``runtime.init_ray``) does not have. Each stopped trial would keep its workers'
    CPUs/GPUs, and after a few the sweep waits forever. A placement group made by an actor that
    is dead can hold nothing alive (the actor's own actors died with it), so removing it is
    safe. Placement groups made by the driver (Tune's trial groups) and detached ones are never
    touched. Reads the GCS placement-group table through Ray's private state accessor.
    """
    import ray
    from ray._private.state import state
    from ray.core.generated import gcs_pb2
    from ray.util.placement_group import PlacementGroup, remove_placement_group

    table_data: Any = gcs_pb2.PlacementGroupTableData  # type: ignore[attr-defined]
    job = ray.get_runtime_context().get_job_id()
    removed = 0
    for raw in state._connect_and_get_accessor().get_placement_group_table():
        info = table_data.FromString(raw)
        made_by_actor = info.creator_actor_id != b"\xff" * len(info.creator_actor_id)
        if (
            info.is_detached
            or not made_by_actor
            or not info.creator_actor_dead
            or info.state == table_data.REMOVED
            or info.creator_job_id.hex() != job
        ):
            continue
        group = PlacementGroup(ray.PlacementGroupID(info.placement_group_id))
        remove_placement_group(group)
        log.info("released placement group %s of a stopped trial", group.id.hex())
        removed += 1
    return removed


class _PlacementGroupJanitor:
    """Calls ``release_orphaned_placement_groups`` every ``interval_s`` while a sweep runs."""

    def __init__(self, interval_s: float = 5.0) -> None:
        import threading

        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="dclr-pg-janitor", daemon=True)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            if not self.release():
                return

    @staticmethod
    def release() -> bool:
        try:
            release_orphaned_placement_groups()
        except Exception:  # never fail a sweep over housekeeping
            log.warning("cannot release placement groups of stopped trials", exc_info=True)
            return False
        return True

    def __enter__(self) -> _PlacementGroupJanitor:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.release()  # trials stopped in the last interval


# ------------------------------------------------------------------------------------------------
# the sweep


def sweep(
    config: RunConfig,
    space: SearchSpace,
    data: str | Path,
    name: str | None = None,
    *,
    log_embeddings: bool = False,
) -> SweepResult:
    """Run (or resume) the sweep ``name`` of ``space`` over ``config`` on prepared ``data``.

    Args:
        config: the base run config; ``tune.*`` choose the search, scheduler, metric and mode,
            ``ray.*`` the resources of each trial (and ``ray.storage_path`` where the sweep
            lives).
        space: from ``load_space``; checked again against ``config`` here.
        data: a prepared dijet dataset directory.
        name: the sweep's name (Tune experiment and MLflow parent run); a rerun with the same
            name restores the sweep. Default: ``<space name>-<time stamp>``.
        log_embeddings: embed the val and test splits at the end of every trial (off by
            default: ``dclr embed --run <id>`` embeds the trial you choose).

    Raises:
        ConfigError: a space value, search algorithm or metric that cannot work.
        SweepError: too few resources, or a resumed sweep with another space.
    """
    import ray
    from ray import tune

    from distributed_clr.storage.manifest import require_complete
    from distributed_clr.runtime import init_ray
    from distributed_clr.train.driver import check_run_name

    name = check_run_name(name or default_sweep_name(space))
    if len(name) > MAX_SWEEP_NAME:
        raise SweepError(f"sweep name '{name}' is longer than {MAX_SWEEP_NAME} characters")
    check_search(space, config.tune)
    space.check(config)
    data = Path(data).resolve()
    require_complete(data, "dijet")
    config = _pin_paths(config)
    experiment = _join(config.ray.storage_path, name)

    cpus, _ = trial_footprint(config)
    init_ray(config.ray, min_cpus=math.ceil(cpus + DATA_CPUS))
    concurrency = max_concurrent_trials(config, ray.cluster_resources())  # type: ignore[no-untyped-call]
    trial_config = config.model_copy(
        update={"ray": config.ray.model_copy(update={"storage_path": _join(experiment, "runs")})}
    )
    parent = _open_parent(config, space, name, data)
    try:
        trainable = tune.with_resources(
            _make_trial_function(
                trial_config.model_dump(mode="json"),
                space,
                str(data),
                name,
                None if parent is None else parent.run_id,
                log_embeddings,
            ),
            {"cpu": TRIAL_DRIVER_CPUS},
        )
        if tune.Tuner.can_restore(experiment):
            log.info("restoring sweep '%s' from %s", name, experiment)
            tuner = tune.Tuner.restore(experiment, trainable=trainable, resume_errored=True)
        else:
            log.info(
                "sweep '%s': %s search over %s, %d sample(s), scheduler %s, up to %d trials at "
                "once; %s",
                name,
                config.tune.search,
                ", ".join(space.keys),
                config.tune.num_samples,
                config.tune.scheduler,
                concurrency,
                experiment,
            )
            tuner = _new_tuner(trainable, config, space, name, concurrency)
        # Tune prints its tables and trial errors; stdout is for results, so they go to stderr.
        with contextlib.redirect_stdout(sys.stderr), _PlacementGroupJanitor():
            tuner.fit()
        result = _finish(config, space, name, experiment, parent)
    except BaseException as err:
        if parent is not None:
            status = "KILLED" if isinstance(err, KeyboardInterrupt) else "FAILED"
            parent.client.set_terminated(parent.run_id, status)
        raise
    return result


def _finish(
    config: RunConfig, space: SearchSpace, name: str, experiment: str, parent: _Parent | None
) -> SweepResult:
    """Summary, plots and the parent run's final state."""
    metric, mode = config.tune.metric, config.tune.mode
    records = _load_trials(experiment, space)
    runs: dict[str, Any] = {}
    if parent is not None:
        runs = _child_runs(parent)
        for record in records:
            run = runs.get(trial_run_name(name, record.trial_id))
            history = [] if run is None else _mlflow_history(parent, run.info.run_id, metric)
            record.history = history or record.history
    summary = summarize(records, space, name, metric, mode, runs)
    complete = not (summary["status"] == "incomplete").any()
    failed = int((summary["status"] == "error").sum())
    directory = (
        Path(experiment) / "summary"
        if "://" not in experiment
        else Path(tempfile.mkdtemp(prefix=f"dclr-sweep-{name}-"))
    )
    csv, plots = _write_results(summary, space, metric, directory)
    if parent is not None:
        _close_children(parent, runs)
        _log_results(parent, summary, metric, csv, plots)
        if complete and not failed:
            parent.client.set_tag(parent.run_id, "dclr.complete", "true")
        status = "FINISHED" if complete and not failed else "KILLED" if not complete else "FAILED"
        parent.client.set_terminated(parent.run_id, status)
    if not complete:
        log.warning("sweep '%s' was interrupted; rerun it with the same name to resume", name)
    if failed:
        log.warning(
            "%d of %d trials failed; rerun the sweep with the same name to resume them",
            failed,
            len(summary),
        )
    return SweepResult(
        name=name,
        experiment_path=experiment,
        summary=summary,
        metric=metric,
        mode=mode,
        summary_csv=csv,
        plots=plots,
        parent_run_id=None if parent is None else parent.run_id,
        tracking_uri=None if parent is None else parent.uri,
        complete=complete,
    )


# ------------------------------------------------------------------------------------------------
# dclr tune


def _flag_overrides(args: argparse.Namespace) -> list[tuple[str, Any]]:
    from distributed_clr.cli import _scaling_flags

    flags = {
        "tune.num_samples": args.samples,
        "tune.scheduler": args.scheduler,
        "tune.search": args.search,
    }
    return [*((k, v) for k, v in flags.items() if v is not None), *_scaling_flags(args)]


def _format_value(value: Any) -> str:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.4g}"
    return str(value)


def _cmd_tune(args: argparse.Namespace) -> int:
    # Precedence: preset -> --config files -> the space file's 'tune:' defaults -> --set -> flags.
    base = resolve_config(args.preset, args.config)
    space = load_space(args.space, base)
    config = resolve_config(
        args.preset, args.config, [*space.settings, *args.overrides, *_flag_overrides(args)]
    )
    result = sweep(config, space, args.data, args.name)
    out = sys.stdout
    column = f"best_{result.metric}"
    shown = ["trial", *space.keys, column, "epochs", "status"]
    table = result.summary[shown]
    widths = {c: max(len(c), *(len(_format_value(v)) for v in table[c])) for c in shown}
    out.write(
        f"sweep {result.name}: {len(table)} trials "
        f"({', '.join(f'{k} {v}' for k, v in table['status'].value_counts().items())})\n\n"
    )
    out.write("  " + "  ".join(f"{c:<{widths[c]}}" for c in shown) + "\n")
    for row in table.itertuples(index=False):
        cells = [_format_value(v) for v in row]
        out.write("  " + "  ".join(f"{v:<{widths[c]}}" for c, v in zip(shown, cells, strict=True)))
        out.write("\n")
    best = result.best
    if best is not None:
        params = ", ".join(f"{k}={_format_value(best[k])}" for k in space.keys)
        out.write(
            f"\n  best: {best['trial']} ({result.metric} {_format_value(best[column])} at epoch "
            f"{_format_value(best['best_epoch'])}): {params}\n"
        )
        if best["mlflow_run_id"]:
            out.write(f"  best MLflow run: {best['mlflow_run_id']}\n")
    out.write(f"  Tune experiment: {result.experiment_path}\n  summary: {result.summary_csv}\n")
    for path in result.plots:
        out.write(f"  plot: {path}\n")
    if result.parent_run_id:
        out.write(
            f"  MLflow parent run {result.parent_run_id} at {result.tracking_uri}\n"
            f"  browse: mlflow ui --backend-store-uri {result.tracking_uri}\n"
        )
    resume = f"rerun with --name {result.name} (and the same options) to resume"
    if not result.complete:
        out.write(f"\n  the sweep was interrupted; {resume} it\n")
        return EXIT_INTERRUPTED
    if result.failed:
        out.write(f"\n  {result.failed} trial(s) failed; {resume} them\n")
        return 1
    return 0


def add_parser(subparsers: Any) -> None:
    """Register ``dclr tune`` on the ``dclr`` command's subparsers."""
    from distributed_clr.cli import _add_config_options

    parser = subparsers.add_parser(
        "tune",
        help="hyper-parameter sweep over pretraining (Ray Tune), tracked in MLflow",
        description="Sweep a search space (tune_spaces/*.yaml) over the pretraining config "
        "with Ray Tune: one Ray Train run per trial, ASHA on the selection metric "
        "(tune.metric), one MLflow parent run with a child per trial, and a summary table and "
        "plots at the end. Rerunning with the same --name resumes the sweep: finished trials "
        "are kept, interrupted and failed ones continue from their last checkpoint.",
    )
    parser.add_argument("--space", type=Path, required=True, help="search space YAML file")
    parser.add_argument("--data", type=Path, required=True, help="prepared dijet dataset")
    parser.add_argument(
        "--name", help="sweep name (Tune experiment, MLflow parent run); a rerun resumes it"
    )
    parser.add_argument(
        "--samples", type=int, help="samples per grid point, or trials (tune.num_samples)"
    )
    parser.add_argument(
        "--scheduler", choices=["asha", "none"], help="trial scheduler (tune.scheduler)"
    )
    parser.add_argument(
        "--search", choices=["grid", "random", "optuna"], help="search algorithm (tune.search)"
    )
    parser.add_argument("--workers", type=int, help="training workers per trial (ray.num_workers)")
    parser.add_argument("--gpu", action="store_true", help="one GPU per worker (ray.use_gpu)")
    _add_config_options(parser)
    parser.set_defaults(handler=_cmd_tune)
