"""The end of every epoch on every rank: rank 0 writes the checkpoint, every rank reports.

``ray.train.report`` must be called equally often on every rank; Ray keeps the best
``train.checkpoint.keep`` checkpoints by ``train.selection_metric`` plus the latest.
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path
from typing import Any

from distributed_clr.checkpoint import TrainState, save_checkpoint
from distributed_clr.config.schema import SELECTION_MODES, RunConfig
from distributed_clr.train.trainer import Trainer

__all__ = ["report_epoch"]


def report_epoch(
    trainer: Trainer,
    state: TrainState,
    config: RunConfig,
    rank: int,
    metrics: dict[str, float],
    rng: list[dict[str, Any]],
) -> None:
    """Checkpoint (rank 0) and report this epoch's metrics (every rank) to Ray Train."""
    import ray.train

    # Ray keeps checkpoints by the selection metric; a NaN would sort arbitrarily: the worst.
    metric = config.train.selection_metric
    worst = math.inf if SELECTION_MODES[metric] == "min" else -math.inf
    report = {k: (v if math.isfinite(v) or k != metric else worst) for k, v in metrics.items()}
    with tempfile.TemporaryDirectory(prefix="dclr-ckpt-") as tmp:
        checkpoint = None
        if rank == 0:
            save_checkpoint(
                Path(tmp),
                model=trainer.model,
                optimizer=trainer.optimizer,
                scheduler=trainer.scheduler,
                state=state,
                config=config,
                rng=rng,
            )
            checkpoint = ray.train.Checkpoint.from_directory(tmp)
        ray.train.report(
            report, checkpoint=checkpoint, checkpoint_dir_name=f"epoch_{state.epoch:05d}"
        )
