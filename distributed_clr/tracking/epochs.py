"""Rank 0's per-epoch metrics: each epoch logged exactly once, across restarts and crashes."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

from distributed_clr.tracking.run import RunHandle

log = logging.getLogger(__name__)

__all__ = ["EpochLogger"]


class EpochLogger:
    """Per-epoch metric logging into a run, exactly once per epoch.

    On creation it reads which epochs MLflow already has (steps of ``train_loss``);
    ``backfill`` logs epochs a checkpoint holds but MLflow missed (a crash between the
    checkpoint and the log call); ``log_epoch`` skips epochs already there. System metrics
    (CPU, memory, GPU, network) are sampled in a thread while training runs.
    """

    def __init__(self, run: RunHandle, *, system_metrics: bool = True) -> None:
        self.run = run
        self.logged: set[int] = {int(m.step) for m in run.metric_history("train_loss")}
        self.monitor: Any = None
        if system_metrics:
            self.monitor = _system_monitor(run, resume=bool(self.logged))

    def backfill(self, history: Iterable[Mapping[str, float]]) -> None:
        for metrics in history:
            epoch = int(metrics["epoch"])
            if epoch not in self.logged:
                log.info("logging epoch %d to MLflow from the checkpoint history", epoch)
                self.log_epoch(metrics, epoch)

    def log_epoch(self, metrics: Mapping[str, float], epoch: int) -> None:
        if epoch in self.logged:
            return
        self.run.log_metrics({k: v for k, v in metrics.items() if k != "epoch"}, step=epoch)
        self.logged.add(epoch)

    def close(self) -> None:
        if self.monitor is not None:
            try:
                self.monitor.finish()
            except Exception:  # never fail training over monitoring
                log.warning("stopping the MLflow system-metrics monitor failed", exc_info=True)
            self.monitor = None


def _system_monitor(run: RunHandle, *, resume: bool) -> Any:
    try:
        from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

        monitor = SystemMetricsMonitor(  # type: ignore[no-untyped-call]
            run.run_id, sampling_interval=5, resume_logging=resume, tracking_uri=run.uri
        )
        monitor.start()  # type: ignore[no-untyped-call]
        return monitor
    except Exception:  # psutil missing, no permission: training goes on without it
        log.warning("MLflow system metrics are unavailable", exc_info=True)
        return None
