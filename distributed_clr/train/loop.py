"""THE training loop: one function per Ray Train worker, plus the Ray-free pieces it is made of.

``train_loop_per_worker`` runs on every rank of a ``TorchTrainer`` (see ``driver.py``):

1. build the model from the run configuration (same seed on every rank; DDP broadcasts anyway),
   wrap it for DDP, build optimiser and schedule for the global batch;
2. resume from ``ray.train.get_checkpoint()`` if Ray hands one over (a restart after a failure,
   or a rerun with the same run name): weights, optimiser, scheduler, epoch, early stopping,
   this rank's RNG states;
3. per epoch: exactly ``steps_per_epoch`` optimiser steps on this rank's shard (every rank the
   same number, or DDP would hang), augmentations drawn on the training device, then the
   validation loss, alignment, uniformity and a linear-probe AUC on labelled validation events;
4. rank 0 writes a checkpoint and every rank calls ``ray.train.report`` once per epoch; rank 0
   then logs the epoch to MLflow (after the checkpoint is safe, and only epochs MLflow does not
   have yet, so restarts never duplicate one);
5. early stopping on the validation loss; every rank sees the same (all-reduced) value, so all
   stop together.

``Trainer`` (one optimisation step, one training epoch, one validation pass) has no Ray in it:
the benchmark's bare loop and the distributed-gradient test drive exactly the same code.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import tempfile
import time
import typing
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from distributed_clr import distributed
from distributed_clr.augment import Augmenter, make_views
from distributed_clr.config.schema import LossConfig, RunConfig, TrainConfig
from distributed_clr.losses import SupConLoss, alignment, build_loss, uniformity
from distributed_clr.models import ContrastiveModel
from distributed_clr.checkpoint import (
    TrainState,
    capture_rng,
    load_checkpoint,
    restore_rng,
    save_checkpoint,
    unwrap,
)
from distributed_clr.models import build_model
from distributed_clr.train.optim import build_optimizer, build_scheduler

log = logging.getLogger(__name__)

Batch = dict[str, torch.Tensor]

__all__ = ["Trainer", "contrastive_loss", "epoch_seed", "train_loop_per_worker"]


def epoch_seed(seed: int, *stream: int) -> int:
    """A 63-bit seed for a named stream (e.g. (epoch, rank)) derived from the run seed."""
    state = np.random.SeedSequence([seed, *stream]).generate_state(2, dtype=np.uint32)
    return int(state[0]) << 31 ^ int(state[1])


def autocast_context(
    precision: str, device: torch.device
) -> contextlib.AbstractContextManager[Any]:
    """bf16 autocast on CUDA when asked for; a no-op elsewhere (CPU bf16 is slower than fp32)."""
    if precision == "bf16" and device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def contrastive_loss(
    model: nn.Module,
    loss_fn: nn.Module,
    batch: Batch,
    augmenter: Augmenter,
    generator: torch.Generator,
    precision: str = "fp32",
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(loss, z1, z2) of one batch: two views, one forward pass over both, the loss in fp32."""
    x, mask = batch["x"], batch["mask"]
    (x1, m1), (x2, m2) = make_views(x, mask, augmenter, generator)
    with autocast_context(precision, x.device):
        z = model(torch.cat([x1, x2]), torch.cat([m1, m2]))
    z1, z2 = z.float().chunk(2)
    if isinstance(loss_fn, SupConLoss):
        loss = loss_fn(torch.stack([z1, z2], dim=1), batch["label"].long())
    else:
        loss = loss_fn(z1, z2)
    return loss, z1, z2


@dataclass
class EpochStats:
    """Sums over an epoch on this rank (reduced over ranks by ``Trainer``)."""

    loss: float = 0.0
    steps: int = 0
    events: int = 0


class Trainer:
    """Model, loss, optimiser, schedule and augmentations of one rank.

    ``model`` may be wrapped in DDP; the loss gathers negatives across ranks when configured.
    """

    def __init__(
        self,
        model: nn.Module,
        config: RunConfig,
        device: torch.device,
        steps_per_epoch: int,
        world_size: int = 1,
    ) -> None:
        self.model = model
        self.config = config
        self.train_config: TrainConfig = config.train
        self.device = device
        self.steps_per_epoch = steps_per_epoch
        self.global_batch = config.train.batch_size * world_size
        self.loss_fn = build_loss(config.loss).to(device)
        # Validation runs rank by rank (no collectives inside), so its loss gathers nothing.
        local: LossConfig = config.loss.model_copy(update={"gather_distributed": False})
        self.val_loss_fn = build_loss(local).to(device)
        self.augmenter = Augmenter(config.augment)
        self.optimizer = build_optimizer(unwrap(model), config.train, self.global_batch)
        self.scheduler = build_scheduler(self.optimizer, config.train, steps_per_epoch)

    def step(self, batch: Batch, generator: torch.Generator) -> torch.Tensor:
        """One optimisation step; returns the detached loss."""
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        loss, _, _ = contrastive_loss(
            self.model,
            self.loss_fn,
            batch,
            self.augmenter,
            generator,
            self.train_config.precision,
        )
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"training loss is {loss.item()} at step {self.scheduler.last_epoch}; lower "
                "train.lr, set train.grad_clip, or check the input data"
            )
        loss.backward()  # type: ignore[no-untyped-call]
        if self.train_config.grad_clip is not None:
            nn.utils.clip_grad_norm_(self.model.parameters(), self.train_config.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        return loss.detach()

    def train_epoch(self, batches: Iterable[Batch], generator: torch.Generator) -> dict[str, float]:
        """Exactly ``steps_per_epoch`` steps; fewer batches than that is an error (DDP would hang
        on the other ranks, so the message says which rank ran dry)."""
        start = time.perf_counter()
        total = torch.zeros((), device=self.device)
        steps = events = 0
        iterator = iter(batches)
        for steps in range(1, self.steps_per_epoch + 1):
            try:
                batch = next(iterator)
            except StopIteration:
                raise RuntimeError(
                    f"rank {distributed.rank()} ran out of training batches after {steps - 1} "
                    f"of {self.steps_per_epoch} steps"
                ) from None
            batch = _to_device(batch, self.device)
            total += self.step(batch, generator)
            events += int(batch["x"].shape[0])
        elapsed = time.perf_counter() - start
        mean_loss = distributed.all_reduce_mean(total / max(steps, 1))
        global_events = _all_reduce_sum(events, self.device)
        slowest = _all_reduce_max(elapsed, self.device)
        return {
            "train_loss": float(mean_loss),
            "lr": float(self.scheduler.get_last_lr()[0]),
            "events_per_s": global_events / slowest if slowest > 0 else math.nan,
            "train_time_s": slowest,
        }

    @torch.no_grad()
    def validate(
        self, batches: Iterable[Batch], generator: torch.Generator, probe_events: int
    ) -> tuple[dict[str, float], dict[str, torch.Tensor]]:
        """Validation loss, alignment and uniformity (mean over this rank's batches, then over
        ranks, weighted by batch count), and up to ``probe_events`` representations with their
        labels and event ids for the linear probe."""
        self.model.eval()
        plain = typing.cast("ContrastiveModel", unwrap(self.model))
        sums = torch.zeros(3, device=self.device, dtype=torch.float64)
        count = 0
        probe: dict[str, list[torch.Tensor]] = {"h": [], "label": [], "event_id": []}
        kept = 0
        for raw in batches:
            batch = _to_device(raw, self.device)
            loss, z1, z2 = contrastive_loss(
                plain,
                self.val_loss_fn,
                batch,
                self.augmenter,
                generator,
                self.train_config.precision,
            )
            sums += torch.stack([loss, alignment(z1, z2), uniformity(torch.cat([z1, z2]))]).to(
                sums.dtype
            )
            count += 1
            if kept < probe_events:
                take = min(probe_events - kept, int(batch["x"].shape[0]))
                with autocast_context(self.train_config.precision, self.device):
                    h = plain.represent(batch["x"][:take], batch["mask"][:take])
                probe["h"].append(h.float().cpu())
                probe["label"].append(batch["label"][:take].cpu())
                probe["event_id"].append(batch["event_id"][:take].cpu())
                kept += take
        totals = torch.cat([sums, torch.tensor([count], device=self.device, dtype=sums.dtype)])
        if distributed.is_distributed():
            dist.all_reduce(totals)
        n = float(totals[3])
        names = ("val_loss", "val_alignment", "val_uniformity")
        metrics = {name: float(totals[i]) / n if n else math.nan for i, name in enumerate(names)}
        gathered = {k: torch.cat(v) if v else torch.empty(0) for k, v in probe.items()}
        return metrics, gathered


def _to_device(batch: Batch, device: torch.device) -> Batch:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def _all_reduce_sum(value: float, device: torch.device) -> float:
    if not distributed.is_distributed():
        return value
    tensor = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return float(tensor)


def _all_reduce_max(value: float, device: torch.device) -> float:
    if not distributed.is_distributed():
        return value
    tensor = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return float(tensor)


def _gather_objects(obj: Any) -> list[Any]:
    if not distributed.is_distributed():
        return [obj]
    out: list[Any] = [None] * distributed.world_size()
    dist.all_gather_object(out, obj)
    return out


def probe_auc(probe: list[dict[str, torch.Tensor]], config: RunConfig) -> float:
    """Linear-probe ROC AUC on labelled validation representations (NaN if unlabelled).

    Events with even ``event_id`` hash train the classifier, the others are scored; labels -1
    (unknown) are ignored. Contrastive losses at different temperatures are not comparable, so
    this is what sweeps select on.
    """
    from distributed_clr.data.splits import splitmix64
    from distributed_clr.evaluate.classifiers import fit_predict
    from distributed_clr.evaluate.metrics import binary_metrics

    if not probe or not any(len(p["h"]) for p in probe):
        return math.nan
    h = torch.cat([p["h"] for p in probe if len(p["h"])]).numpy()
    label = torch.cat([p["label"] for p in probe if len(p["h"])]).numpy().astype(np.int64)
    event_id = torch.cat([p["event_id"] for p in probe if len(p["h"])]).numpy()
    known = label >= 0
    h, label, event_id = h[known], label[known], event_id[known]
    fit = (splitmix64(event_id.astype(np.uint64)) & np.uint64(1)) == 0
    for part in (fit, ~fit):
        if len(np.unique(label[part])) < 2:
            return math.nan
    scores = fit_predict("lct", h[fit], label[fit], h[~fit], config.evaluate, config.train.seed)
    return float(binary_metrics(label[~fit], scores, min_background=1)["auc"])


# ------------------------------------------------------------------------------------------------
# the Ray Train worker function


def _fault_marker_exists(path: str) -> bool:
    import pyarrow.fs

    fs, inner = pyarrow.fs.FileSystem.from_uri(path) if "://" in path else (None, path)
    if fs is None:
        return Path(inner).exists()
    return bool(fs.get_file_info(inner).type != pyarrow.fs.FileType.NotFound)


def _write_fault_marker(path: str) -> None:
    import pyarrow.fs

    if "://" in path:
        fs, inner = pyarrow.fs.FileSystem.from_uri(path)
        with fs.open_output_stream(inner) as stream:
            stream.write(b"injected\n")
        return
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text("injected\n")


def _maybe_inject_fault(config: TrainConfig, epoch: int, marker: str | None) -> None:
    """Crash this process once if ``train.fail_rank``/``fail_epoch`` name this rank and epoch
    (after that epoch's training pass, before its validation and checkpoint).

    The marker file (in the run's storage) makes it once per run, across restarts."""
    if config.fail_rank is None or marker is None:
        return
    if distributed.rank() != config.fail_rank or epoch != config.fail_epoch:
        return
    if _fault_marker_exists(marker):
        return
    _write_fault_marker(marker)
    # Let Ray finish registering the reports already made, so the restart deterministically
    # continues from the previous epoch's checkpoint (a fast epoch can otherwise beat it).
    import ray.train

    ray.train.get_all_reported_checkpoints(timeout_s=60)
    log.error("fault injection: rank %d exits at the start of epoch %d", config.fail_rank, epoch)
    logging.shutdown()
    os._exit(3)


def _batches(
    shard: Any,
    batch_size: int,
    device: torch.device,
    config: RunConfig,
    seed: int | None,
    extra: tuple[str, ...],
) -> Iterator[Batch]:
    from distributed_clr.storage.reader import DijetCollate

    collate = DijetCollate(extra=extra, device=str(device) if device.type == "cuda" else None)
    buffer = config.data.shuffle_buffer if seed is not None else 0
    iterator: Iterator[Batch] = shard.iter_torch_batches(
        batch_size=batch_size,
        collate_fn=collate,
        drop_last=True,
        prefetch_batches=config.data.prefetch_batches,
        local_shuffle_buffer_size=buffer if buffer >= batch_size else None,
        local_shuffle_seed=seed if buffer >= batch_size else None,
    )
    return iterator


def train_loop_per_worker(loop_config: dict[str, Any]) -> None:
    """The per-rank body of a pretraining run (``TorchTrainer(train_loop_per_worker=...)``).

    ``loop_config`` keys: ``config`` (RunConfig as JSON), ``steps_per_epoch``,
    ``val_batch_size``, ``mlflow`` (``{"uri", "run_id", "system_metrics"}`` or None),
    ``fault_marker`` (path or None).
    """
    import ray.train
    import ray.train.torch

    from distributed_clr.tracking import EpochLogger

    config = RunConfig.model_validate(loop_config["config"])
    train = config.train
    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    device = ray.train.torch.get_device()
    _configure_worker_logging()

    torch.manual_seed(train.seed)  # identical initial weights on every rank
    model = build_model(config)
    model = ray.train.torch.prepare_model(model)
    if train.compile:
        model = torch.compile(model)  # type: ignore[assignment]
    trainer = Trainer(model, config, device, loop_config["steps_per_epoch"], world)
    generator = torch.Generator(device=device)
    generator.manual_seed(epoch_seed(train.seed, 0, rank))
    torch.manual_seed(epoch_seed(train.seed, 2, rank))

    state = TrainState(world_size=world)
    mlflow_info = loop_config.get("mlflow")
    state.mlflow_run_id = mlflow_info["run_id"] if mlflow_info else None
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as directory:
            payload = load_checkpoint(directory)
        unwrap(model).load_state_dict(payload["model"])
        trainer.optimizer.load_state_dict(payload["optimizer"])
        trainer.scheduler.load_state_dict(payload["scheduler"])
        state = payload["train_state"]
        state.resumes += 1
        rng = payload["rng"]
        if len(rng) == world:
            restore_rng(rng[rank], generator)
        else:
            log.warning(
                "checkpoint was written by %d workers, this run has %d: RNG streams restart "
                "from the seed",
                len(rng),
                world,
            )
            generator.manual_seed(epoch_seed(train.seed, 0, rank, state.epoch + 1))
        if rank == 0:
            log.info("resuming after epoch %d (checkpoint %s)", state.epoch, checkpoint.path)

    epoch_logger = None
    if rank == 0 and mlflow_info:
        epoch_logger = EpochLogger(
            mlflow_info["uri"], mlflow_info["run_id"], system_metrics=mlflow_info["system_metrics"]
        )
        epoch_logger.backfill(state.history)
    try:
        _run_epochs(trainer, state, config, rank, generator, loop_config, epoch_logger)
    finally:
        if epoch_logger is not None:
            epoch_logger.close()


def _configure_worker_logging() -> None:
    package = logging.getLogger("distributed_clr")
    if not package.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        package.addHandler(handler)
        package.setLevel(logging.INFO)


def _run_epochs(
    trainer: Trainer,
    state: TrainState,
    config: RunConfig,
    rank: int,
    generator: torch.Generator,
    loop_config: dict[str, Any],
    epoch_logger: Any,
) -> None:
    import ray.train

    train = config.train
    if state.stopped_early or state.epoch + 1 >= train.epochs:
        if rank == 0:
            log.info("nothing to do: the run finished after epoch %d", state.epoch)
        return
    train_shard = ray.train.get_dataset_shard("train")
    val_shard = ray.train.get_dataset_shard("val")
    probe_per_rank = math.ceil(train.probe_events / max(1, distributed.world_size()))
    for epoch in range(state.epoch + 1, train.epochs):
        start = time.perf_counter()
        shuffle_seed = epoch_seed(train.seed, 3, epoch, rank) % 2**32
        metrics = trainer.train_epoch(
            _batches(
                train_shard, train.batch_size, trainer.device, config, shuffle_seed, ("label",)
            ),
            generator,
        )
        # After the training pass: the controller has long registered the previous checkpoint.
        _maybe_inject_fault(train, epoch, loop_config.get("fault_marker"))
        val_generator = torch.Generator(device=trainer.device)
        val_generator.manual_seed(epoch_seed(train.seed, 4, rank))  # same views every epoch
        val_metrics, probe = trainer.validate(
            _batches(
                val_shard,
                loop_config["val_batch_size"],
                trainer.device,
                config,
                None,
                ("label", "event_id"),
            ),
            val_generator,
            probe_per_rank,
        )
        metrics.update(val_metrics)
        gathered = _gather_objects(probe)
        metrics["val_probe_auc"] = probe_auc(gathered, config) if rank == 0 else math.nan
        metrics["epoch_time_s"] = time.perf_counter() - start
        metrics["epoch"] = float(epoch)

        val_loss = metrics["val_loss"]
        if val_loss < state.best_val_loss:
            state.best_val_loss, state.best_epoch, state.epochs_since_best = val_loss, epoch, 0
        else:
            state.epochs_since_best += 1
        patience = train.early_stopping_patience
        state.stopped_early = patience is not None and state.epochs_since_best >= patience
        state.epoch = epoch
        state.history.append(dict(metrics))
        metrics["best_val_loss"] = state.best_val_loss
        rng = _gather_objects(capture_rng(generator))
        _report(trainer, state, config, rank, metrics, rng)
        if epoch_logger is not None:
            epoch_logger.log_epoch(metrics, epoch)
        if rank == 0:
            log.info(
                "epoch %d: train loss %.4f, val loss %.4f, probe AUC %.3f, %.0f events/s, lr %.2e",
                epoch,
                metrics["train_loss"],
                val_loss,
                metrics["val_probe_auc"],
                metrics["events_per_s"],
                metrics["lr"],
            )
        if state.stopped_early:
            if rank == 0:
                log.info(
                    "early stopping after epoch %d: no better val loss for %d epochs (best %.4f "
                    "at epoch %d)",
                    epoch,
                    state.epochs_since_best,
                    state.best_val_loss,
                    state.best_epoch,
                )
            break


def _report(
    trainer: Trainer,
    state: TrainState,
    config: RunConfig,
    rank: int,
    metrics: dict[str, float],
    rng: list[dict[str, Any]],
) -> None:
    import ray.train

    # Ray keeps checkpoints by score; a NaN would sort arbitrarily.
    report = {
        k: (v if math.isfinite(v) or k != "val_loss" else float("inf")) for k, v in metrics.items()
    }
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
