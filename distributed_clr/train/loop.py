"""THE training loop: the epochs of one rank, readable top to bottom.

Every piece it calls is named and lives in its own module: ``Trainer.train_epoch`` (exactly
``steps_per_epoch`` steps on this rank's shard, augmentations drawn on the training device),
``FaultInjector`` (a test crash after the training pass), ``Validator`` (validation loss,
alignment, uniformity and the linear-probe AUC), ``EarlyStopping`` on the validation loss
(every rank sees the same, all-reduced value, so all stop together), ``report_epoch`` (rank 0
checkpoints, every rank reports to Ray Train once) and ``EpochLogger`` (rank 0 logs the epoch to
MLflow after its checkpoint is safe, so restarts never duplicate one). ``worker.py`` builds the
pieces and resumes them from a checkpoint.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch

from distributed_clr import distributed
from distributed_clr.checkpoint import TrainState, capture_rng
from distributed_clr.config.schema import SELECTION_MODES, RunConfig
from distributed_clr.stopping import EarlyStopping
from distributed_clr.tracking import EpochLogger
from distributed_clr.train.checkpointing import report_epoch
from distributed_clr.train.faults import FaultInjector
from distributed_clr.train.trainer import Batch, Trainer
from distributed_clr.train.validation import Validator

log = logging.getLogger(__name__)

__all__ = ["EpochPieces", "run_epochs"]


@dataclass
class EpochPieces:
    """What the epoch loop of one rank works with (built by ``worker.py``)."""

    config: RunConfig
    rank: int
    trainer: Trainer
    state: TrainState
    generator: torch.Generator
    """The rank's augmentation generator (its state travels in every checkpoint)."""
    train_batches: Callable[[int], Iterable[Batch]]
    """Epoch -> this rank's shuffled training batches."""
    validator: Validator
    faults: FaultInjector
    logger: EpochLogger | None
    """Rank 0's MLflow logger (None elsewhere, or without tracking)."""


def run_epochs(p: EpochPieces) -> None:
    """Train from the epoch after ``p.state.epoch`` to ``train.epochs`` or early stopping."""
    train, state = p.config.train, p.state
    if state.stopped_early or state.epoch + 1 >= train.epochs:
        _info(p, "nothing to do: the run finished after epoch %d", state.epoch)
        return
    metric = train.selection_metric
    stopping = EarlyStopping(
        train.early_stopping_patience,
        mode=SELECTION_MODES[metric],
        best=state.best_value,
        best_epoch=state.best_epoch,
        stale=state.epochs_since_best,
    )
    state.selection_metric = metric
    for epoch in range(state.epoch + 1, train.epochs):
        start = time.perf_counter()
        metrics = p.trainer.train_epoch(p.train_batches(epoch), p.generator)
        p.faults.maybe_crash(epoch)  # after the training pass: the last report is registered
        metrics.update(p.validator())
        metrics["epoch_time_s"] = time.perf_counter() - start
        metrics["epoch"] = float(epoch)
        _record(state, stopping, epoch, metrics)
        metrics[f"best_{metric}"] = state.best_value
        rng = distributed.all_gather_objects(capture_rng(p.generator))  # every rank's states
        report_epoch(p.trainer, state, p.config, p.rank, metrics, rng)
        if p.logger is not None:
            p.logger.log_epoch(metrics, epoch)
        _info(
            p,
            "epoch %d: train loss %.4f, val loss %.4f, align+uniform %.3f, view retrieval %.3f, "
            "probe AUC %.3f, %.0f events/s, lr %.2e",
            epoch,
            metrics["train_loss"],
            metrics["val_loss"],
            metrics["val_align_uniform"],
            metrics["val_view_retrieval"],
            metrics["val_probe_auc"],
            metrics["events_per_s"],
            metrics["lr"],
        )
        if stopping.stop:
            _info(
                p,
                "early stopping after epoch %d: no better %s for %d epochs (best %.4f at epoch %d)",
                epoch,
                metric,
                state.epochs_since_best,
                state.best_value,
                state.best_epoch,
            )
            break


def _record(
    state: TrainState, stopping: EarlyStopping, epoch: int, metrics: dict[str, float]
) -> None:
    """The epoch into the state that travels with the checkpoint: history, best epoch (by the
    selection metric) and its val loss, early stopping."""
    if stopping.update(metrics[state.selection_metric], epoch):
        state.best_val_loss = metrics["val_loss"]
    state.best_value, state.best_epoch = stopping.best, stopping.best_epoch
    state.epochs_since_best, state.stopped_early = stopping.stale, stopping.stop
    state.epoch = epoch
    state.history.append(dict(metrics))


def _info(p: EpochPieces, message: str, *args: object) -> None:
    if p.rank == 0:
        log.info(message, *args)
