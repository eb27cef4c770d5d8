"""The driver of a pretraining run: data, ``TorchTrainer``, MLflow run, final artifacts.

``pretrain(config, data, run_name)`` is what ``dclr pretrain`` and the Tune trials call. It

1. reads the prepared dataset's manifest (the model's constituent count comes from the data)
   and sizes the epoch so that every rank runs the same number of steps;
2. opens the MLflow run of this run name (new, or the one a previous attempt left) on the
   driver, and hands its id to rank 0;
3. runs a Ray Train V2 ``TorchTrainer`` whose storage is ``<ray.storage_path>/<run name>``:
   Ray restores the latest checkpoint by itself when that directory already holds the run, so
   rerunning the same command continues an interrupted run; ``FailureConfig`` restarts the
   worker group after a failure; Ray keeps the best ``train.keep_checkpoints`` by val loss plus
   the latest;
4. logs the final artifacts from the best checkpoint: the checkpoint itself, the model
   (``mlflow.pytorch``), val/test embeddings (Parquet), and the loss curve.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from distributed_clr.config.schema import PrepareConfig, RunConfig
from distributed_clr.storage.manifest import DatasetError, require_complete
from distributed_clr.checkpoint import load_checkpoint

log = logging.getLogger(__name__)

RUN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
TRAIN_COLUMNS = ("pt", "eta", "phi", "label")
VAL_COLUMNS = ("pt", "eta", "phi", "label", "event_id")

__all__ = ["PretrainError", "PretrainResult", "default_run_name", "plan_epoch", "pretrain"]


class PretrainError(RuntimeError):
    """A pretraining run that cannot start or did not finish."""


@dataclass
class PretrainResult:
    """What a finished run left behind."""

    run_name: str
    storage: str
    best_checkpoint: str
    latest_checkpoint: str
    best_epoch: int
    best_val_loss: float
    epochs: int
    """Epochs finished (over all attempts)."""
    stopped_early: bool
    history: list[dict[str, float]] = field(default_factory=list)
    mlflow_run_id: str | None = None
    tracking_uri: str | None = None


def default_run_name() -> str:
    return "pretrain-" + dt.datetime.now().strftime("%Y%m%d-%H%M%S")


def check_run_name(name: str) -> str:
    if not RUN_NAME.match(name):
        raise ValueError(
            f"invalid run name {name!r}: use letters, digits, '_', '.', '-' (at most 128, "
            "starting with a letter or digit)"
        )
    return name


@dataclass(frozen=True)
class EpochPlan:
    """How an epoch is cut: the same number of full batches on every rank."""

    train_events: int
    val_events: int
    steps_per_epoch: int
    val_batch_size: int


def plan_epoch(train_events: int, val_events: int, batch_size: int, workers: int) -> EpochPlan:
    """Steps per epoch = floor(train events / workers / batch); validation batches are at most
    the training batch and fit each rank's share at least once."""
    per_rank = train_events // workers
    steps = per_rank // batch_size
    if steps < 1:
        raise PretrainError(
            f"the train split has {train_events} events: {workers} workers x batch "
            f"{batch_size} needs at least {workers * batch_size}; lower train.batch_size or "
            "ray.num_workers, or prepare more events"
        )
    val_per_rank = val_events // workers
    if val_per_rank < 2:
        raise PretrainError(
            f"the val split has {val_events} events; {workers} workers need at least "
            f"{2 * workers} for a validation loss"
        )
    return EpochPlan(train_events, val_events, steps, min(batch_size, val_per_rank))


def _storage(config: RunConfig) -> str:
    path = config.ray.storage_path
    return path if "://" in path else str(Path(path).expanduser().resolve())


def _join(storage: str, *parts: str) -> str:
    return "/".join([storage.rstrip("/"), *parts])


def _config_for_data(config: RunConfig, prepare: dict[str, Any]) -> RunConfig:
    """The run config with the ``prepare`` section that made the data (the model's input size
    depends on it)."""
    made_with = PrepareConfig.model_validate(prepare)
    if made_with != config.prepare:
        log.info(
            "using the data's prepare settings (%d constituents per jet)",
            made_with.num_constituents,
        )
    return config.model_copy(update={"prepare": made_with})


def _split_events(manifest_summary: dict[str, Any], split: str, limit: int | None) -> int:
    n = int(manifest_summary.get("splits", {}).get(split, 0))
    return min(n, limit) if limit is not None else n


def _check_resources(config: RunConfig) -> None:
    import ray

    resources = ray.cluster_resources()  # type: ignore[no-untyped-call]
    need_cpu = config.ray.num_workers * config.ray.cpus_per_worker
    have_cpu = resources.get("CPU", 0.0)
    if have_cpu < need_cpu:
        raise PretrainError(
            f"{config.ray.num_workers} workers x {config.ray.cpus_per_worker} CPUs need "
            f"{need_cpu:g} CPUs; the Ray cluster has {have_cpu:g}. Lower ray.num_workers or "
            "ray.cpus_per_worker"
        )
    if have_cpu - need_cpu < 1:
        raise PretrainError(
            f"the Ray cluster has {have_cpu:g} CPUs and the workers take {need_cpu:g}; Ray Data "
            "needs at least one more to read the shards. Lower ray.num_workers or "
            "ray.cpus_per_worker, or add CPUs"
        )
    if config.ray.use_gpu and resources.get("GPU", 0.0) < config.ray.num_workers:
        raise PretrainError(
            f"{config.ray.num_workers} GPU workers requested; the Ray cluster has "
            f"{resources.get('GPU', 0.0):g} GPUs"
        )


def pretrain(
    config: RunConfig,
    data: str | Path,
    run_name: str | None = None,
    *,
    log_embeddings: bool = True,
    callbacks: list[Any] | None = None,
    parent_run_id: str | None = None,
    kind: str = "pretrain",
) -> PretrainResult:
    """Train the encoder on the prepared dijets in ``data``; see the module docstring.

    Args:
        config: the run configuration (its ``prepare`` section is replaced by the data's).
        data: a prepared dijet dataset directory.
        run_name: names the Ray storage directory and the MLflow run; rerunning with the same
            name continues the run. Default: a new time-stamped name.
        log_embeddings: embed the val and test splits at the end and log them to MLflow.
        callbacks: Ray Train ``UserCallback``s (a Tune trial passes ``TuneReportCallback``).
        parent_run_id: MLflow parent run (a sweep's), making this run its child.
        kind: the ``dclr.kind`` tag of the MLflow run ('pretrain', or 'trial' in a sweep).
    """
    from distributed_clr.runtime import init_ray

    data = Path(data).resolve()
    manifest = require_complete(data, "dijet")
    run_name = check_run_name(run_name or default_run_name())
    config = _config_for_data(config, manifest.config["prepare"])
    plan = plan_epoch(
        _split_events(manifest.summary, config.data.train_split, config.data.max_events),
        _split_events(manifest.summary, config.data.val_split, config.data.max_events),
        config.train.batch_size,
        config.ray.num_workers,
    )
    storage = _storage(config)
    log.info(
        "run '%s': %d workers x batch %d = global batch %d; %d steps per epoch over %d training "
        "events; storage %s",
        run_name,
        config.ray.num_workers,
        config.train.batch_size,
        config.ray.num_workers * config.train.batch_size,
        plan.steps_per_epoch,
        plan.train_events,
        _join(storage, run_name),
    )

    uri = run_id = None
    mlflow_client: Any = None
    if config.tracking.enabled:
        from distributed_clr import tracking

        uri, run_id, resumed = tracking.open_run(
            config, run_name, kind, parent_run_id=parent_run_id
        )
        mlflow_client = tracking.client(uri)
        tags = mlflow_client.get_run(run_id).data.tags
        if resumed and tags.get("dclr.complete") == "true":
            log.info("run '%s' is already complete (MLflow run %s)", run_name, run_id)
            mlflow_client.set_terminated(run_id, "FINISHED")
            return _result_from_storage(run_name, storage, run_id, uri)
        log.info("%s MLflow run %s at %s", "continuing" if resumed else "started", run_id, uri)

    init_ray(
        config.ray, min_cpus=math.ceil(config.ray.num_workers * config.ray.cpus_per_worker) + 1
    )
    _check_resources(config)
    try:
        result = _fit(config, data, run_name, storage, plan, uri, run_id, callbacks)
        if mlflow_client is not None and run_id is not None:
            _log_final(mlflow_client, run_id, result, config, data, log_embeddings)
            mlflow_client.set_tag(run_id, "dclr.complete", "true")
            mlflow_client.set_terminated(run_id, "FINISHED")
    except BaseException:
        if mlflow_client is not None and run_id is not None:
            mlflow_client.set_terminated(run_id, "FAILED")
        raise
    result.mlflow_run_id, result.tracking_uri = run_id, uri
    return result


def _datasets(config: RunConfig, data: Path) -> dict[str, Any]:
    import ray.data

    from distributed_clr.storage.reader import read_split
    from distributed_clr.progress import progress_enabled

    ray.data.DataContext.get_current().enable_progress_bars = progress_enabled()
    datasets = {}
    for name, split, columns in (
        ("train", config.data.train_split, TRAIN_COLUMNS),
        ("val", config.data.val_split, VAL_COLUMNS),
    ):
        ds = read_split(data, split, columns)
        if config.data.max_events is not None:
            ds = ds.limit(config.data.max_events)
        if config.data.cache:
            ds = ds.materialize()
        if name == "train":
            ds = ds.randomize_block_order(seed=config.train.seed)
        datasets[name] = ds
    return datasets


def _fit(
    config: RunConfig,
    data: Path,
    run_name: str,
    storage: str,
    plan: EpochPlan,
    uri: str | None,
    run_id: str | None,
    callbacks: list[Any] | None = None,
) -> PretrainResult:
    import ray.train
    from ray.train.torch import TorchConfig, TorchTrainer

    from distributed_clr.train.loop import train_loop_per_worker

    fault_marker = None
    if config.train.fail_rank is not None:
        fault_marker = _join(
            storage,
            run_name,
            f"fault_injected_rank{config.train.fail_rank}_epoch{config.train.fail_epoch}",
        )
    loop_config = {
        "config": config.model_dump(mode="json"),
        "steps_per_epoch": plan.steps_per_epoch,
        "val_batch_size": plan.val_batch_size,
        "mlflow": None
        if run_id is None
        else {"uri": uri, "run_id": run_id, "system_metrics": config.tracking.system_metrics},
        "fault_marker": fault_marker,
    }
    resources: dict[str, float] = {"CPU": config.ray.cpus_per_worker}
    if config.ray.use_gpu:
        resources["GPU"] = 1.0
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config=loop_config,
        torch_config=TorchConfig(backend="nccl" if config.ray.use_gpu else "gloo"),
        scaling_config=ray.train.ScalingConfig(
            num_workers=config.ray.num_workers,
            use_gpu=config.ray.use_gpu,
            resources_per_worker=resources,
        ),
        run_config=ray.train.RunConfig(
            name=run_name,
            storage_path=storage,
            failure_config=ray.train.FailureConfig(max_failures=config.train.max_failures),
            logging_config=ray.train.LoggingConfig(log_level="WARNING"),  # type: ignore[call-arg]
            callbacks=callbacks,
            checkpoint_config=ray.train.CheckpointConfig(
                num_to_keep=config.train.keep_checkpoints,
                checkpoint_score_attribute="val_loss",
                checkpoint_score_order="min",
            ),
        ),
        datasets=_datasets(config, data),
    )
    try:
        result = trainer.fit()
    except Exception as err:
        raise PretrainError(f"pretraining run '{run_name}' failed: {err}") from err
    if result.checkpoint is None:
        raise PretrainError(f"pretraining run '{run_name}' finished without a checkpoint")
    return _result_from_storage(run_name, storage, run_id, uri, result)


def _local_path(checkpoint: Any) -> str:
    """A local directory with the checkpoint's files: the checkpoint itself on a local file
    system, a downloaded copy for object storage (s3://, gs://, ...)."""
    import pyarrow.fs

    if isinstance(checkpoint.filesystem, pyarrow.fs.LocalFileSystem):
        return str(checkpoint.path)
    target = tempfile.mkdtemp(prefix=f"dclr-{Path(checkpoint.path).name}-")
    return str(checkpoint.to_directory(target))


def _result_from_storage(
    run_name: str, storage: str, run_id: str | None, uri: str | None, result: Any = None
) -> PretrainResult:
    """Best and latest checkpoints of a run (from a Ray result, or its storage directory)."""
    if result is not None:
        latest = _local_path(result.checkpoint)
        candidates = [_local_path(c) for c, _ in result.best_checkpoints] or [latest]
    else:
        root = Path(_join(storage, run_name))
        candidates = sorted(str(p.parent) for p in root.glob("*/state.pt"))
        if not candidates:
            raise PretrainError(f"no checkpoints under {root}")
        latest = candidates[-1]
    losses = {
        path: load_checkpoint(path)["train_state"].history[-1].get("val_loss", math.inf)
        for path in candidates
    }
    best = min(candidates, key=lambda p: (losses[p], p))
    state = load_checkpoint(latest)["train_state"]
    return PretrainResult(
        run_name=run_name,
        storage=_join(storage, run_name),
        best_checkpoint=best,
        latest_checkpoint=latest,
        best_epoch=state.best_epoch,
        best_val_loss=state.best_val_loss,
        epochs=state.epoch + 1,
        stopped_early=state.stopped_early,
        history=list(state.history),
        mlflow_run_id=run_id,
        tracking_uri=uri,
    )


def _log_final(
    mlflow_client: Any,
    run_id: str,
    result: PretrainResult,
    config: RunConfig,
    data: Path,
    log_embeddings: bool,
) -> None:
    """Checkpoint, model, embeddings and plots of the best epoch into the MLflow run."""
    from distributed_clr import tracking

    best = Path(result.best_checkpoint)
    tracking.log_artifact_dir(mlflow_client, run_id, best, "checkpoint")
    tracking.log_loss_curve(mlflow_client, run_id, result.history)
    mlflow_client.log_metric(run_id, "best_epoch", result.best_epoch)
    mlflow_client.log_metric(run_id, "final_best_val_loss", result.best_val_loss)
    tracking.log_model(mlflow_client.tracking_uri, run_id, best)
    if log_embeddings:
        from distributed_clr.embed import embed

        with tempfile.TemporaryDirectory(prefix="dclr-embed-") as tmp:
            for split in (config.data.val_split, config.data.test_split):
                out = Path(tmp) / split
                try:
                    embed(best, data, out, config.ray, splits=[split])
                except DatasetError as err:
                    log.warning("no %s embeddings: %s", split, err)
                    continue
                tracking.log_artifact_dir(mlflow_client, run_id, out, f"embeddings/{split}")
