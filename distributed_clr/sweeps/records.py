"""The sweep's MLflow records: its parent run, the trials' child runs, and the results logged
at the end. All MLflow access goes through ``tracking.RunHandle``.

Layout (docs/architecture.md, "Tracking layout"): a parent run named after the sweep (tag
``dclr.kind`` = ``sweep``; params = the flattened base config, ``config.yaml``; tags
``dclr.space`` (the space's name), ``dclr.space_spec`` (its fingerprint) and ``dclr.data``;
artifact ``space.yaml``), found again by name on a rerun, with one child run per trial (tag
``dclr.kind`` = ``trial``, made by ``pretrain``). At the end the parent gets ``summary.csv``,
``plots/``, the metric ``best_<metric>``, the tags ``dclr.best_trial``, ``dclr.best_run_id``
and ``dclr.trials_<status>``; trials the scheduler stopped are ended ``KILLED`` with
``dclr.stopped = true``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from distributed_clr.config.load import RESUMABLE_CHANGES, to_flat_dict, to_yaml
from distributed_clr.config.schema import RunConfig
from distributed_clr.storage.location import StoragePath
from distributed_clr.sweeps.errors import SweepError
from distributed_clr.sweeps.space import SearchSpace
from distributed_clr.tracking import RUN_NAME_TAG, Kind, RunHandle, TrackingError

log = logging.getLogger(__name__)

__all__ = [
    "BEST_RUN_ID_TAG",
    "BEST_TRIAL_TAG",
    "DATA_TAG",
    "SPACE_SPEC_TAG",
    "SPACE_TAG",
    "STOPPED_TAG",
    "TRIAL_STATUSES",
    "child_runs",
    "close_stopped_children",
    "finish_parent",
    "log_results",
    "open_parent",
    "trial_history",
]

SPACE_TAG = "dclr.space"
SPACE_SPEC_TAG = "dclr.space_spec"
DATA_TAG = "dclr.data"
BEST_TRIAL_TAG = "dclr.best_trial"
BEST_RUN_ID_TAG = "dclr.best_run_id"
STOPPED_TAG = "dclr.stopped"
TRIAL_STATUSES = ("complete", "stopped", "error", "incomplete")
"""The statuses of a trial in the summary; the parent is tagged ``dclr.trials_<status>``."""


def open_parent(
    config: RunConfig,
    space: SearchSpace,
    name: str,
    data: StoragePath,
    parent_run_id: str | None = None,
) -> RunHandle | None:
    """The sweep's parent run: new, or the one an earlier attempt of ``name`` left (None when
    tracking is off); a child of ``parent_run_id`` when given (a study's run).

    A rerun may change what a rerun of a pretraining run may (``config.RESUMABLE_CHANGES``:
    ``train.epochs``, ``train.faults.*``, ``ray.*``, ``tracking.*``); nothing else.

    Raises:
        SweepError: the sweep ``name`` exists with another search space or configuration.
    """
    if not config.tracking.enabled:
        return None
    existing = RunHandle.find(config.tracking, name, Kind.SWEEP)
    if existing is not None:
        logged = existing.tags.get(SPACE_SPEC_TAG)
        if logged is not None and logged != space.fingerprint():
            raise SweepError(
                f"sweep '{name}' was started with another search space ({logged}); this one is "
                f"{space.fingerprint()}. Use the same space file to resume it, or a new --name"
            )
    try:
        parent = RunHandle.open(
            config.tracking,
            name,
            Kind.SWEEP,
            params=to_flat_dict(config),
            config_text=to_yaml(config),
            tags={SPACE_TAG: space.name, DATA_TAG: str(data)},
            may_differ=RESUMABLE_CHANGES,
            parent_run_id=parent_run_id,
        )
    except TrackingError as err:  # another configuration under this name
        raise SweepError(
            f"cannot resume sweep: {str(err).replace('--run-name', '--name')}"
        ) from None
    if not parent.resumed:
        parent.set_tags({SPACE_SPEC_TAG: space.fingerprint()})
        parent.log_text(yaml.safe_dump(space.to_dict(), sort_keys=False), "space.yaml")
    log.info(
        "%s MLflow parent run %s at %s",
        "continuing" if parent.resumed else "started",
        parent.run_id,
        parent.uri,
    )
    return parent


def child_runs(parent: RunHandle) -> dict[str, Any]:
    """The sweep's trial runs (MLflow ``Run`` entities) by run name."""
    return parent.children(Kind.TRIAL)


def _child(parent: RunHandle, run: Any) -> RunHandle:
    """A handle on one of ``parent``'s child runs (an MLflow ``Run``)."""
    run_id = str(run.info.run_id)
    name = str(run.data.tags.get(RUN_NAME_TAG, run_id))
    return RunHandle(parent.uri, run_id, name, resumed=True)


def trial_history(parent: RunHandle, run: Any, metric: str) -> list[dict[str, float]]:
    """A trial's per-epoch metrics as its MLflow run holds them (logged once per epoch by rank
    0; Tune can miss the last report before a crash): ``metric``, ``val_loss``, ``train_loss``
    and ``epoch``, in epoch order."""
    child = _child(parent, run)
    by_epoch: dict[int, dict[str, float]] = {}
    for key in dict.fromkeys((metric, "val_loss", "train_loss")):
        for point in child.metric_history(key):
            by_epoch.setdefault(int(point.step), {"epoch": float(point.step)})[key] = point.value
    return [by_epoch[e] for e in sorted(by_epoch)]


def close_stopped_children(parent: RunHandle, runs: Mapping[str, Any]) -> None:
    """Trials the scheduler stopped (or an interruption killed) leave their runs RUNNING: end
    them ``KILLED``, tagged ``dclr.stopped``."""
    for run in runs.values():
        if run.info.status == "RUNNING":
            child = _child(parent, run)
            child.set_tags({STOPPED_TAG: "true"})
            child.finish("KILLED")


def log_results(
    parent: RunHandle, summary: Any, metric: str, csv: Path, plots: Sequence[Path]
) -> None:
    """The summary table and plots as artifacts, the trial counts and the best trial as tags,
    and ``best_<metric>`` as a metric."""
    parent.log_artifact(csv)
    for path in plots:
        parent.log_artifact(path, "plots")
    column = f"best_{metric}"
    ranked = summary[summary[column].notna()]
    counts = summary["status"].value_counts().to_dict()
    parent.set_tags({f"dclr.trials_{s}": str(counts.get(s, 0)) for s in TRIAL_STATUSES})
    if not ranked.empty:
        best = ranked.iloc[0]
        parent.log_metrics({column: float(best[column])})
        parent.set_tags({BEST_TRIAL_TAG: str(best["trial"])})
        if best["mlflow_run_id"]:
            parent.set_tags({BEST_RUN_ID_TAG: str(best["mlflow_run_id"])})


def finish_parent(parent: RunHandle, *, complete: bool, failed: int) -> None:
    """End the parent run: FINISHED (and ``dclr.complete``) when every trial finished, KILLED
    for an interrupted sweep, FAILED when a trial failed."""
    if complete and not failed:
        parent.mark_complete()
    parent.finish("FINISHED" if complete and not failed else "KILLED" if not complete else "FAILED")
