"""MLflow: where runs go, what they are called, and what they record.

Layout (ARCHITECTURE.md): one run per pretrain (tag ``dclr.kind=pretrain``), found again by its
run name (tag ``dclr.run_name``) so that a rerun with the same name logs into the same run; a
sweep is a parent run (``sweep``) with a child run per trial (``trial``); evaluations log into
the run of the encoder they evaluate, or a child of it. Params are the flattened config.

The default store is ``sqlite:///mlflow.db`` in the working directory, resolved to an absolute
path (Ray workers run elsewhere); artifacts of a SQLite store go to ``mlartifacts/`` next to the
database file. ``MLFLOW_TRACKING_URI`` or ``tracking.uri`` point at a server instead (use one on
a multi-node cluster: a SQLite file on the head node is not visible to the workers).

Only the driver and rank 0 of a training run ever talk to MLflow.
"""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
import time
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from distributed_clr.config.load import to_flat_dict, to_yaml
from distributed_clr.config.schema import RunConfig, TrackingConfig

log = logging.getLogger(__name__)

RUN_NAME_TAG = "dclr.run_name"
KIND_TAG = "dclr.kind"
DEFAULT_DB = "mlflow.db"
ARTIFACT_DIR = "mlartifacts"
MAX_PARAMS_PER_BATCH = 100

__all__ = [
    "EpochLogger",
    "client",
    "ensure_experiment",
    "find_run",
    "log_artifact_dir",
    "log_loss_curve",
    "log_params",
    "open_run",
    "tracking_uri",
]


def tracking_uri(config: TrackingConfig) -> str:
    """``tracking.uri``, else ``MLFLOW_TRACKING_URI``, else ``sqlite:///<cwd>/mlflow.db``;
    relative SQLite paths become absolute."""
    uri = config.uri or os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{DEFAULT_DB}"
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri.startswith(prefix + "/"):
        uri = prefix + str(Path(uri[len(prefix) :]).resolve())
    return uri


def _artifact_root(uri: str) -> str | None:
    prefix = "sqlite:///"
    if uri.startswith(prefix):
        return Path(uri[len(prefix) :]).resolve().parent.joinpath(ARTIFACT_DIR).as_uri()
    return None


def client(uri: str) -> Any:
    """An ``MlflowClient`` for ``uri``."""
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


def ensure_experiment(mlflow_client: Any, name: str, uri: str) -> str:
    """The id of experiment ``name``, created (with a local artifact root for SQLite) if new."""
    experiment = mlflow_client.get_experiment_by_name(name)
    if experiment is not None:
        if experiment.lifecycle_stage == "deleted":
            raise ValueError(
                f"MLflow experiment '{name}' is deleted; restore it or choose another "
                "tracking.experiment"
            )
        return str(experiment.experiment_id)
    root = _artifact_root(uri)
    root_uri = None if root is None else f"{root}/{name}"
    try:
        return str(mlflow_client.create_experiment(name, artifact_location=root_uri))
    except Exception:  # another process created it meanwhile
        experiment = mlflow_client.get_experiment_by_name(name)
        if experiment is None:
            raise
        return str(experiment.experiment_id)


def find_run(mlflow_client: Any, experiment_id: str, run_name: str, kind: str) -> Any | None:
    """The newest run named ``run_name`` of ``kind`` in the experiment, or None."""
    escaped = run_name.replace("'", "\\'")
    runs = mlflow_client.search_runs(
        [experiment_id],
        filter_string=f"tags.`{RUN_NAME_TAG}` = '{escaped}' and tags.`{KIND_TAG}` = '{kind}'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    return runs[0] if runs else None


def _param_value(value: Any) -> str:
    if isinstance(value, list | tuple | dict):
        return json.dumps(value)
    return str(value)


def log_params(mlflow_client: Any, run_id: str, params: Mapping[str, Any]) -> None:
    """Log params in batches (MLflow takes at most 100 per call)."""
    from mlflow.entities import Param

    items = [Param(key, _param_value(value)) for key, value in sorted(params.items())]
    for start in range(0, len(items), MAX_PARAMS_PER_BATCH):
        mlflow_client.log_batch(run_id, params=items[start : start + MAX_PARAMS_PER_BATCH])


def open_run(
    config: RunConfig,
    run_name: str,
    kind: str,
    *,
    parent_run_id: str | None = None,
    tags: Mapping[str, str] | None = None,
) -> tuple[str, str, bool]:
    """(uri, run_id, resumed): the run named ``run_name`` of ``kind``, or a new one.

    A new run gets the flattened config as params and ``config.yaml`` as an artifact. An
    existing one is reopened (status RUNNING) and must have been made with the same config,
    apart from keys that do not change results (``RESUMABLE_CHANGES``).
    """
    uri = tracking_uri(config.tracking)
    mlflow_client = client(uri)
    experiment_id = ensure_experiment(mlflow_client, config.tracking.experiment, uri)
    existing = find_run(mlflow_client, experiment_id, run_name, kind)
    flat = {k: _param_value(v) for k, v in to_flat_dict(config).items()}
    if existing is not None:
        _check_same_params(existing.data.params, flat, run_name)
        run_id = str(existing.info.run_id)
        mlflow_client.update_run(run_id, status="RUNNING")
        return uri, run_id, True
    all_tags = {RUN_NAME_TAG: run_name, KIND_TAG: kind, "mlflow.runName": run_name}
    if parent_run_id is not None:
        all_tags["mlflow.parentRunId"] = parent_run_id
    all_tags.update(tags or {})
    run = mlflow_client.create_run(experiment_id, tags=all_tags, run_name=run_name)
    run_id = str(run.info.run_id)
    log_params(mlflow_client, run_id, flat)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "config.yaml"
        path.write_text(to_yaml(config))
        mlflow_client.log_artifact(run_id, str(path))
    return uri, run_id, False


RESUMABLE_CHANGES = (
    "train.epochs",
    "train.max_failures",
    "train.fail_rank",
    "train.fail_epoch",
    "tracking.",
    "ray.",
)
"""Config keys a rerun may change without starting a different experiment."""


def _check_same_params(logged: Mapping[str, str], flat: Mapping[str, str], run_name: str) -> None:
    changed = sorted(
        key
        for key in set(logged) | set(flat)
        if logged.get(key) != flat.get(key)
        and not any(key == p or (p.endswith(".") and key.startswith(p)) for p in RESUMABLE_CHANGES)
    )
    if changed:
        shown = ", ".join(f"{k}: {logged.get(k)!r} -> {flat.get(k)!r}" for k in changed[:8])
        raise ValueError(
            f"run '{run_name}' exists with a different configuration ({shown}"
            f"{', ...' if len(changed) > 8 else ''}); choose a new --run-name to start a new run"
        )


def log_artifact_dir(mlflow_client: Any, run_id: str, directory: Path, artifact_path: str) -> None:
    """Upload a directory's files under ``artifact_path``."""
    mlflow_client.log_artifacts(run_id, str(directory), artifact_path)


def log_loss_curve(mlflow_client: Any, run_id: str, history: Sequence[Mapping[str, float]]) -> None:
    """Plot train/val loss and the probe AUC per epoch; logged as ``plots/loss_curve.png``."""
    from distributed_clr.plotting import loss_curve_figure, save_figure

    if not history:
        return
    with tempfile.TemporaryDirectory() as tmp:
        path = save_figure(
            loss_curve_figure(history), Path(tmp) / "loss_curve.png", bbox_inches="tight"
        )
        mlflow_client.log_artifact(run_id, str(path), "plots")


class EpochLogger:
    """Rank 0's per-epoch metric logging, exactly once per epoch across restarts.

    On creation it reads which epochs MLflow already has (steps of ``train_loss``);
    ``backfill`` logs epochs a checkpoint holds but MLflow missed (a crash between the
    checkpoint and the log call); ``log_epoch`` skips epochs already there. System metrics
    (CPU, memory, GPU, network) are sampled in a thread while training runs.
    """

    def __init__(self, uri: str, run_id: str, *, system_metrics: bool = True) -> None:
        self.client = client(uri)
        self.run_id = run_id
        history = self.client.get_metric_history(run_id, "train_loss")
        self.logged: set[int] = {int(m.step) for m in history}
        self.monitor: Any = None
        if system_metrics:
            self.monitor = _system_monitor(run_id, uri, resume=bool(self.logged))

    def backfill(self, history: Iterable[Mapping[str, float]]) -> None:
        for metrics in history:
            epoch = int(metrics["epoch"])
            if epoch not in self.logged:
                log.info("logging epoch %d to MLflow from the checkpoint history", epoch)
                self.log_epoch(metrics, epoch)

    def log_epoch(self, metrics: Mapping[str, float], epoch: int) -> None:
        from mlflow.entities import Metric

        if epoch in self.logged:
            return
        now = int(time.time() * 1000)
        items = [
            Metric(key, float(value), now, epoch)
            for key, value in sorted(metrics.items())
            if key != "epoch" and not math.isnan(float(value))
        ]
        self.client.log_batch(self.run_id, metrics=items)
        self.logged.add(epoch)

    def close(self) -> None:
        if self.monitor is not None:
            try:
                self.monitor.finish()
            except Exception:  # never fail training over monitoring
                log.warning("stopping the MLflow system-metrics monitor failed", exc_info=True)
            self.monitor = None


def _system_monitor(run_id: str, uri: str, *, resume: bool) -> Any:
    try:
        from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

        monitor = SystemMetricsMonitor(  # type: ignore[no-untyped-call]
            run_id, sampling_interval=5, resume_logging=resume, tracking_uri=uri
        )
        monitor.start()  # type: ignore[no-untyped-call]
        return monitor
    except Exception:  # psutil missing, no permission: training goes on without it
        log.warning("MLflow system metrics are unavailable", exc_info=True)
        return None


def log_model(uri: str, run_id: str, checkpoint_dir: Path) -> None:
    """The trained model of ``checkpoint_dir`` as an ``mlflow.pytorch`` model named ``model``
    (loadable with ``mlflow.pytorch.load_model``; needs distributed_clr installed)."""
    import mlflow
    import mlflow.pytorch
    import torch

    from distributed_clr import __version__
    from distributed_clr.train.checkpoint import load_model

    model, _ = load_model(checkpoint_dir)
    mlflow.set_tracking_uri(uri)
    with mlflow.start_run(run_id=run_id, log_system_metrics=False), warnings.catch_warnings():
        # MLflow inspects forward()'s type hints for a pyfunc signature and warns that tensors
        # are 'Any'; the model is used through mlflow.pytorch, never as a pyfunc.
        warnings.filterwarnings("ignore", message=".*type hint", category=UserWarning)
        mlflow.pytorch.log_model(
            model,
            name="model",
            serialization_format="pickle",
            pip_requirements=[
                f"torch=={torch.__version__.split('+')[0]}",
                f"distributed_clr=={__version__}",
            ],
        )


def download_checkpoint(uri: str, run_id: str, destination: Path | None = None) -> Path:
    """The ``checkpoint`` artifact of a pretraining run, downloaded (a local store's artifacts
    are used in place)."""
    mlflow_client = client(uri)
    try:
        mlflow_client.get_run(run_id)
    except Exception as err:
        raise ValueError(f"no MLflow run {run_id} at {uri}: {err}") from err
    target = destination or Path(tempfile.mkdtemp(prefix="dclr-checkpoint-"))
    try:
        local = mlflow_client.download_artifacts(run_id, "checkpoint", str(target))
    except Exception as err:
        raise ValueError(
            f"MLflow run {run_id} has no 'checkpoint' artifact (is it a finished pretraining "
            f"run?): {err}"
        ) from err
    return Path(local)
