"""The Ray Train worker: what every rank of a ``TorchTrainer`` runs.

1. Build the model from its config section (same seed on every rank; DDP broadcasts anyway),
   wrap it for DDP, build the trainer for the global batch.
2. Resume from ``ray.train.get_checkpoint()`` if Ray hands one over (a restart after a failure,
   or a rerun with the same run name): weights, optimiser, scheduler, epoch, early stopping,
   this rank's RNG states.
3. Run the epochs (``loop.run_epochs``), rank 0 logging each one to MLflow.
"""

from __future__ import annotations

import logging
import typing
from dataclasses import dataclass
from typing import Any

import torch

from distributed_clr.checkpoint import (
    TrainState,
    load_checkpoint,
    restore_rng,
    run_model,
    unwrap,
)
from distributed_clr.config.schema import RunConfig
from distributed_clr.distributed import DDP_OPTIONS
from distributed_clr.seeds import derive_seed
from distributed_clr.tracking import EpochLogger, RunHandle
from distributed_clr.train.faults import FaultInjector
from distributed_clr.train.feed import batches, label_columns
from distributed_clr.train.loop import EpochPieces, run_epochs
from distributed_clr.train.samples import SamplePlan
from distributed_clr.train.trainer import Trainer
from distributed_clr.train.validation import Validator

log = logging.getLogger(__name__)

__all__ = ["WorkerSpec", "train_loop_per_worker"]

SPEC_KEY = "spec"


@dataclass(frozen=True)
class WorkerSpec:
    """Everything the driver hands each worker (``train_loop_config={"spec": spec}``)."""

    config: RunConfig
    steps_per_epoch: int
    val_batch_size: int
    run: RunHandle | None
    """The MLflow run rank 0 logs each epoch to; None without tracking."""
    samples: SamplePlan
    """The run's validation and probe events (``samples.py``)."""
    fault_marker: str | None
    """Where fault injection records that it happened (see ``faults.py``)."""


def train_loop_per_worker(loop_config: dict[str, Any]) -> None:
    """The per-rank body of a pretraining run (``TorchTrainer(train_loop_per_worker=...)``)."""
    import ray.train
    import ray.train.torch

    spec: WorkerSpec = loop_config[SPEC_KEY]
    config, train = spec.config, spec.config.train
    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    device = ray.train.torch.get_device()
    _configure_worker_logging()

    torch.manual_seed(train.seed)  # identical initial weights on every rank
    model: torch.nn.Module = run_model(config)
    if config.model.mlp_norm == "batch" and config.ray.use_gpu and world > 1:
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)  # type: ignore[no-untyped-call]
    model = ray.train.torch.prepare_model(model, parallel_strategy_kwargs=DDP_OPTIONS)
    if train.compile:
        model = torch.compile(model)  # type: ignore[assignment]
    trainer = Trainer(
        model,
        train=train,
        loss=config.loss,
        augment=config.augment,
        device=device,
        steps_per_epoch=spec.steps_per_epoch,
        world_size=world,
    )
    generator = torch.Generator(device=device)
    generator.manual_seed(derive_seed(train.seed, 0, rank, bits=63))
    torch.manual_seed(derive_seed(train.seed, 2, rank, bits=63))
    state = _resume(trainer, generator, rank, world, spec)

    logger = None
    if rank == 0 and spec.run is not None:
        logger = EpochLogger(spec.run, system_metrics=config.tracking.system_metrics)
        logger.backfill(state.history)
    train_shard = ray.train.get_dataset_shard("train")
    trainer_labels = label_columns(config.loss)

    def train_batches(epoch: int) -> Any:
        shuffle_seed = derive_seed(train.seed, 3, epoch, rank, bits=63) % 2**32
        return batches(
            train_shard, train.batch_size, device, config.data, shuffle_seed, trainer_labels
        )

    pieces = EpochPieces(
        config=config,
        rank=rank,
        trainer=trainer,
        state=state,
        generator=generator,
        train_batches=train_batches,
        validator=Validator(
            trainer,
            ray.train.get_dataset_shard("val"),
            config.data,
            spec.val_batch_size,
            rank,
            spec.samples.val,
            spec.samples.probe,
        ),
        faults=FaultInjector(train.faults, spec.fault_marker),
        logger=logger,
    )
    try:
        run_epochs(pieces)
    finally:
        if logger is not None:
            logger.close()


def _resume(
    trainer: Trainer, generator: torch.Generator, rank: int, world: int, spec: WorkerSpec
) -> TrainState:
    """The state to continue from: the checkpoint Ray hands over, or a fresh one."""
    import ray.train

    state = TrainState(world_size=world)
    state.mlflow_run_id = spec.run.run_id if spec.run is not None else None
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is None:
        return state
    with checkpoint.as_directory() as directory:
        payload = load_checkpoint(directory)
    unwrap(trainer.model).load_state_dict(payload["model"])
    trainer.optimizer.load_state_dict(payload["optimizer"])
    trainer.scheduler.load_state_dict(payload["scheduler"])
    state = typing.cast(TrainState, payload["train_state"])
    state.resumes += 1
    rng = payload["rng"]
    if len(rng) == world:
        restore_rng(rng[rank], generator)
    else:
        log.warning(
            "checkpoint was written by %d workers, this run has %d: RNG streams restart from "
            "the seed",
            len(rng),
            world,
        )
        seed = spec.config.train.seed
        generator.manual_seed(derive_seed(seed, 0, rank, state.epoch + 1, bits=63))
    if rank == 0:
        log.info("resuming after epoch %d (checkpoint %s)", state.epoch, checkpoint.path)
    return state


def _configure_worker_logging() -> None:
    """The package's INFO lines (each epoch's summary) to this worker's stderr, which Ray
    forwards to the driver; the package's own ``NullHandler`` does not count as configured."""
    package = logging.getLogger("distributed_clr")
    if not any(not isinstance(h, logging.NullHandler) for h in package.handlers):
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        package.addHandler(handler)
        package.setLevel(logging.INFO)
        package.propagate = False
