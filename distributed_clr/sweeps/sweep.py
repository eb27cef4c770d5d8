"""``sweep``: one hyper-parameter sweep of contrastive pretraining, from checks to summary.

A sweep is a search space (``tune_spaces/*.yaml``: dotted config keys and their values or
distributions) over a base run configuration. ``sweep()``

1. checks the name, the search algorithm and the metric against the space, every key and value
   of the space against the final config (``load_space`` already did against the base), and the
   data, before anything starts;
2. sizes the trials to the cluster (``resources``) and opens the sweep's MLflow parent run,
   found again by the sweep's name on a rerun (``records``);
3. runs a ``Tuner`` over a small trial function that calls ``pretrain`` (``tuner``), with the
   placement groups of stopped trials released as it goes (``janitor``);
4. restores the sweep instead of starting over when ``<ray.storage_path>/<name>`` holds one:
   finished trials are kept, unfinished and errored ones resume, and each resumed trial's
   ``pretrain`` continues from its own last checkpoint and MLflow run;
5. writes a summary table (CSV) and plots of the selection metric against temperature and
   latent size, and logs them to the parent run (``summary``, ``records``).

Storage layout: the Tune experiment is ``<ray.storage_path>/<name>``; the Ray Train runs of its
trials are under ``<ray.storage_path>/<name>/runs/<name>-<trial id>``; the summary and plots of
a local sweep are in ``<ray.storage_path>/<name>/summary`` (a sweep on object storage writes
them to a temporary directory and logs them to MLflow).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from distributed_clr.config.schema import SELECTION_MODES, RunConfig
from distributed_clr.runtime import DATA_CPUS, init_ray, join, storage_root
from distributed_clr.storage.location import StoragePath, as_storage_path
from distributed_clr.sweeps import records
from distributed_clr.sweeps.janitor import PlacementGroupJanitor
from distributed_clr.sweeps.resources import max_concurrent_trials, trial_footprint
from distributed_clr.sweeps.space import SearchSpace, check_search
from distributed_clr.sweeps.summary import SweepResult, load_trials, summarize, write_results
from distributed_clr.sweeps.tuner import make_trainable, make_tuner, sweep_name, trial_run_name
from distributed_clr.tracking import RunHandle, tracking_uri

log = logging.getLogger(__name__)

__all__ = ["sweep"]


def sweep(
    config: RunConfig,
    space: SearchSpace,
    data: str | StoragePath,
    name: str | None = None,
    *,
    log_embeddings: bool = False,
    parent_run_id: str | None = None,
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
        parent_run_id: an MLflow run the sweep's own run is a child of (a study's).

    Raises:
        ConfigError: a space value, search algorithm or metric that cannot work.
        DatasetError: ``data`` is not a complete prepared dijet dataset.
        ResourceError: not even one trial fits on the Ray cluster.
        ConfigError: a name that is not a valid run name (``train.check_run_name``).
        SweepError: a name too long, or a resumed sweep with another space or configuration.
    """
    import ray

    from distributed_clr.storage.formats import EVENT_KINDS
    from distributed_clr.storage.manifest import require_complete

    name = sweep_name(name, space)
    check_search(space, config.tune)
    space.check(config)
    data = as_storage_path(data).resolve()
    require_complete(data, EVENT_KINDS)
    config = _pin_paths(config)
    experiment = join(config.ray.storage_path, name)

    cpus, _ = trial_footprint(config)
    init_ray(config.ray, min_cpus=math.ceil(cpus + DATA_CPUS))
    concurrency = max_concurrent_trials(config, ray.cluster_resources())  # type: ignore[no-untyped-call]
    trial_config = config.model_copy(
        update={"ray": config.ray.model_copy(update={"storage_path": join(experiment, "runs")})}
    )
    parent = records.open_parent(config, space, name, data, parent_run_id)
    with contextlib.nullcontext() if parent is None else parent.failing_on_error():
        trainable = make_trainable(
            trial_config,
            space,
            str(data),
            name,
            None if parent is None else parent.run_id,
            log_embeddings,
        )
        tuner = make_tuner(trainable, config, space, name, experiment, concurrency)
        # Tune prints its tables and trial errors; stdout is for results, so they go to stderr.
        with contextlib.redirect_stdout(sys.stderr), PlacementGroupJanitor(), _steady_cwd():
            tuner.fit()
        return _finish(config, space, name, experiment, parent)


@contextlib.contextmanager
def _steady_cwd() -> Iterator[None]:
    """Run Tune from a working directory that outlives it.

    In a job submitted with a working_dir, the driver starts in Ray's unpacked copy of it, and
    Ray can remove that copy while the sweep runs; Tune then fails at its very end, when it
    resolves relative paths against a working directory that is gone (seen with Ray 2.60 on the
    local two-node cluster; ray-project/ray#52343). Every path the sweep uses is absolute by
    now (``_pin_paths``, the data), so the driver waits in the temporary directory instead and
    returns where it was if that still exists.
    """
    previous = Path.cwd()
    os.chdir(tempfile.gettempdir())
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            os.chdir(previous)


def _pin_paths(config: RunConfig) -> RunConfig:
    """Absolute tracking URI and storage paths: trials run in other processes, in Tune's trial
    directories, where relative paths would point elsewhere."""
    return config.model_copy(
        update={
            "tracking": config.tracking.model_copy(update={"uri": tracking_uri(config.tracking)}),
            "ray": config.ray.model_copy(
                update={"storage_path": storage_root(config.ray.storage_path)}
            ),
        }
    )


def _finish(
    config: RunConfig, space: SearchSpace, name: str, experiment: str, parent: RunHandle | None
) -> SweepResult:
    """Summary, plots and the parent run's final state."""
    metric = config.train.selection_metric
    mode = SELECTION_MODES[metric]
    trials = load_trials(experiment, space)
    runs: dict[str, Any] = {}
    if parent is not None:
        runs = records.child_runs(parent)
        for record in trials:
            run = runs.get(trial_run_name(name, record.trial_id))
            history = [] if run is None else records.trial_history(parent, run, metric)
            record.history = history or record.history
    summary = summarize(trials, space, name, metric, mode, runs, inputs=config.model.inputs)
    complete = not (summary["status"] == "incomplete").any()
    failed = int((summary["status"] == "error").sum())
    directory = (
        Path(experiment) / "summary"
        if "://" not in experiment
        else Path(tempfile.mkdtemp(prefix=f"dclr-sweep-{name}-"))
    )
    csv, plots = write_results(summary, space, metric, directory)
    if parent is not None:
        records.close_stopped_children(parent, runs)
        records.log_results(parent, summary, metric, csv, plots)
        records.finish_parent(parent, complete=complete, failed=failed)
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
