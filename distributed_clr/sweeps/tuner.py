"""The Ray Tune side of a sweep: names, the trial function, ASHA, the search algorithm and the
``Tuner`` (new, or restored from its storage).

Each trial applies its parameters to the base config and calls ``pretrain`` (the one function
that builds a ``TorchTrainer``) with a ``TuneReportCallback``, so every epoch's metrics reach
Tune (for ASHA) and the trial's MLflow child run. The trial function itself reserves only
``TRIAL_DRIVER_CPUS``; its training workers ask for their own resources.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from typing import Any

from distributed_clr.config.load import apply_overrides
from distributed_clr.config.schema import SELECTION_MODES, RunConfig
from distributed_clr.sweeps.errors import SweepError
from distributed_clr.sweeps.resources import TRIAL_DRIVER_CPUS
from distributed_clr.sweeps.space import SearchSpace
from distributed_clr.tracking import Kind

log = logging.getLogger(__name__)

__all__ = [
    "MAX_SWEEP_NAME",
    "asha_scheduler",
    "default_sweep_name",
    "make_trainable",
    "make_tuner",
    "search_algorithm",
    "sweep_name",
    "trial_run_name",
]

MAX_SWEEP_NAME = 100
"""Trial runs are named ``<sweep>-<trial id>`` (12 more characters) and run names have at most
128."""


# ------------------------------------------------------------------------------------------------
# names


def default_sweep_name(space: SearchSpace) -> str:
    """``<space name>-<time stamp>``."""
    return f"{space.name[:60]}-{dt.datetime.now().strftime('%Y%m%d-%H%M%S')}"


def sweep_name(name: str | None, space: SearchSpace) -> str:
    """``name`` (or the default), checked as a run name and for room for the trial ids.

    Raises:
        ConfigError: not a valid run name (``train.check_run_name``).
        SweepError: longer than ``MAX_SWEEP_NAME``.
    """
    from distributed_clr.train import check_run_name

    name = check_run_name(name or default_sweep_name(space))
    if len(name) > MAX_SWEEP_NAME:
        raise SweepError(f"sweep name '{name}' is longer than {MAX_SWEEP_NAME} characters")
    return name


def trial_run_name(sweep_name: str, trial_id: str) -> str:
    """The MLflow run and Ray Train storage name of a trial (stable across restores)."""
    return f"{sweep_name}-{trial_id}"


def _trial_dirname(trial: Any) -> str:
    """Tune's directory of a trial: its id (the params are in its params.json)."""
    return str(trial.trial_id)


# ------------------------------------------------------------------------------------------------
# the trial function


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

        from distributed_clr.train import pretrain

        trial_id = tune.get_context().get_trial_id()
        config = apply_overrides(RunConfig.model_validate(base), space.overrides(params))
        pretrain(
            config,
            data,
            trial_run_name(sweep_name, trial_id),
            log_embeddings=log_embeddings,
            callbacks=[TuneReportCallback()],  # type: ignore[no-untyped-call]
            parent_run_id=parent_run_id,
            kind=Kind.TRIAL,
        )

    return pretrain_trial


def make_trainable(
    trial_config: RunConfig,
    space: SearchSpace,
    data: str,
    sweep_name: str,
    parent_run_id: str | None,
    log_embeddings: bool,
) -> Any:
    """The trial function with its resources (``TRIAL_DRIVER_CPUS``), ready for a ``Tuner``.

    ``trial_config`` is the base config every trial starts from (its ``ray.storage_path`` is
    where the trials' Ray Train runs go).
    """
    from ray import tune

    return tune.with_resources(
        _make_trial_function(
            trial_config.model_dump(mode="json"),
            space,
            data,
            sweep_name,
            parent_run_id,
            log_embeddings,
        ),
        {"cpu": TRIAL_DRIVER_CPUS},
    )


# ------------------------------------------------------------------------------------------------
# scheduler and search


def asha_scheduler(config: RunConfig) -> Any:
    """ASHA on ``train.selection_metric`` (set through Tune's config), or None.

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


def search_algorithm(config: RunConfig, concurrency: int) -> Any:
    """Optuna (behind a concurrency limiter) or Tune's basic variant generator (grid and
    random), seeded by ``train.seed``."""
    tune_config = config.tune
    if tune_config.search == "optuna":
        from ray.tune.search import ConcurrencyLimiter
        from ray.tune.search.optuna import OptunaSearch

        return ConcurrencyLimiter(OptunaSearch(seed=config.train.seed), max_concurrent=concurrency)
    from ray.tune.search import BasicVariantGenerator

    return BasicVariantGenerator(max_concurrent=concurrency, random_state=config.train.seed)


# ------------------------------------------------------------------------------------------------
# the Tuner


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
            metric=config.train.selection_metric,
            mode=SELECTION_MODES[config.train.selection_metric],
            search_alg=search_algorithm(config, concurrency),
            scheduler=asha_scheduler(config),
            num_samples=tune_config.num_samples,
            trial_dirname_creator=_trial_dirname,
        ),
        run_config=tune.RunConfig(
            name=name,
            storage_path=config.ray.storage_path,
            # A failed trial stays failed (Ray Train already retried its workers
            # train.faults.max_failures times); rerunning the sweep resumes it.
            failure_config=tune.FailureConfig(max_failures=0),
            verbose=1 if progress_enabled() else 0,
        ),
    )


def make_tuner(
    trainable: Any,
    config: RunConfig,
    space: SearchSpace,
    name: str,
    experiment: str,
    concurrency: int,
) -> Any:
    """The ``Tuner`` of sweep ``name``: restored from ``experiment`` when an earlier attempt
    left it there (finished trials are kept, unfinished and errored ones resume), else new."""
    from ray import tune

    if tune.Tuner.can_restore(experiment):
        log.info("restoring sweep '%s' from %s", name, experiment)
        return tune.Tuner.restore(experiment, trainable=trainable, resume_errored=True)
    log.info(
        "sweep '%s': %s search over %s, %d sample(s), scheduler %s, up to %d trials at once; %s",
        name,
        config.tune.search,
        ", ".join(space.keys),
        config.tune.num_samples,
        config.tune.scheduler,
        concurrency,
        experiment,
    )
    return _new_tuner(trainable, config, space, name, concurrency)
