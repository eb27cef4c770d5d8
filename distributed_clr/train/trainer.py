"""One rank's optimisation: the contrastive loss of a batch, one step, one training epoch.

``Trainer`` holds the model (possibly DDP-wrapped), the loss, the augmentations, the optimiser
and the schedule of one rank, and has no Ray in it: the Ray Train worker, the benchmark's bare
loop and the distributed-gradient test all drive exactly this code.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterable
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from distributed_clr import distributed
from distributed_clr.augment import Augmenter, make_views
from distributed_clr.checkpoint import unwrap
from distributed_clr.config.schema import AugmentConfig, LossConfig, TrainConfig
from distributed_clr.losses import SupConLoss, build_loss
from distributed_clr.train.optim import build_optimizer, build_scheduler

Batch = dict[str, torch.Tensor]

FINITE_CHECK_STEPS = 50
"""Steps between reads of the non-finite-loss flag: the only host-device synchronisation of a
training epoch besides its end."""

__all__ = ["Batch", "Trainer", "autocast_context", "contrastive_loss", "to_device"]


def autocast_context(
    precision: str, device: torch.device
) -> contextlib.AbstractContextManager[Any]:
    """bf16 autocast on ``device`` (CUDA or CPU) when ``precision`` is 'bf16', else a no-op.

    Matmuls and attention run in bf16; callers compute the loss in fp32 (``contrastive_loss``
    casts the projections back). On CPUs without native bf16 arithmetic this is slower than
    fp32: it is there so that the bf16 path runs, and is tested, without a GPU."""
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def contrastive_loss(
    model: nn.Module,
    loss_fn: nn.Module,
    batch: Batch,
    augmenter: Augmenter,
    generator: torch.Generator,
    precision: str = "fp32",
    labels: str = "label",
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(loss, z1, z2) of one batch: two views, one forward pass over both, the loss in fp32.

    SupCon takes its classes from the batch column ``labels``; a negative value (an unknown
    process) becomes a class of its own, so such an event's only positive is its other view
    (NT-Xent for it)."""
    x, mask = batch["x"], batch["mask"]
    (x1, m1), (x2, m2) = make_views(x, mask, augmenter, generator)
    with autocast_context(precision, x.device):
        z = model(torch.cat([x1, x2]), torch.cat([m1, m2]))
    z1, z2 = z.float().chunk(2)
    if isinstance(loss_fn, SupConLoss):
        loss = loss_fn(torch.stack([z1, z2], dim=1), supcon_classes(batch[labels]))
    else:
        loss = loss_fn(z1, z2)
    return loss, z1, z2


def supcon_classes(labels: torch.Tensor) -> torch.Tensor:
    """int64 classes of a batch: the labels, with each negative (unknown) one replaced by a
    class no other event of any rank has (-1 - (rank * B + i))."""
    classes = labels.long()
    unknown = classes < 0  # replaced unconditionally: asking whether any is would sync
    n = len(classes)
    own = -1 - (distributed.rank() * n + torch.arange(n, device=classes.device))
    return torch.where(unknown, own, classes)


def to_device(batch: Batch, device: torch.device) -> Batch:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def all_reduce_scalar(value: float, device: torch.device, op: str = "sum") -> float:
    """``value`` summed (or maximised, ``op='max'``) over ranks; itself without a process group."""
    if not distributed.is_distributed():
        return value
    tensor = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX if op == "max" else dist.ReduceOp.SUM)
    return float(tensor)


class Trainer:
    """Model, loss, optimiser, schedule and augmentations of one rank.

    ``model`` may be wrapped in DDP; the loss gathers negatives across ranks when ``loss``
    says so. Each part is built from its own config section.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        train: TrainConfig,
        loss: LossConfig,
        augment: AugmentConfig,
        device: torch.device,
        steps_per_epoch: int,
        world_size: int = 1,
    ) -> None:
        self.model = model
        self.train_config = train
        self.device = device
        self.steps_per_epoch = steps_per_epoch
        self.global_batch = train.batch_size * world_size
        self.loss_fn = build_loss(loss).to(device)
        self.labels = loss.supcon_label if loss.name == "supcon" else "label"
        """The batch column SupCon's classes come from."""
        # Validation runs rank by rank (no collectives inside), so its loss gathers nothing.
        self.val_loss_fn = build_loss(loss.model_copy(update={"gather_distributed": False}))
        self.val_loss_fn = self.val_loss_fn.to(device)
        self.augmenter = Augmenter(augment)
        self.optimizer = build_optimizer(unwrap(model), train.optimizer, self.global_batch)
        self.scheduler = build_scheduler(
            self.optimizer, train.schedule, train.epochs, steps_per_epoch
        )
        self._since_check = torch.zeros((), device=device)
        """Steps since the last ``check_finite``, counted on the device."""
        self._first_bad = torch.full((), math.nan, device=device)
        """Which of those steps first had a non-finite loss (NaN: none)."""
        self._check_base: int | None = None
        """The optimiser step of the first step since the last check (host side)."""

    def step(self, batch: Batch, generator: torch.Generator) -> torch.Tensor:
        """One optimisation step; returns the detached loss.

        Nothing here waits for the device: a non-finite loss is noted on the device
        (``_first_bad``) and raised by ``check_finite``, which ``train_epoch`` calls every
        ``FINITE_CHECK_STEPS`` steps and at the end of the epoch."""
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        if self._check_base is None:
            self._check_base = int(self.scheduler.last_epoch)
        with distributed.equal_sizes():  # full batches on every rank (drop_last)
            loss, _, _ = contrastive_loss(
                self.model,
                self.loss_fn,
                batch,
                self.augmenter,
                generator,
                self.train_config.precision,
                self.labels,
            )
            bad = ~torch.isfinite(loss.detach())
            self._first_bad = torch.where(
                bad & self._first_bad.isnan(), self._since_check, self._first_bad
            )
            self._since_check += 1
            loss.backward()  # type: ignore[no-untyped-call]
        grad_clip = self.train_config.optimizer.grad_clip
        if grad_clip is not None:
            nn.utils.clip_grad_norm_(self.model.parameters(), grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        return loss.detach()

    def check_finite(self) -> None:
        """Raise ``FloatingPointError`` if a step since the last check had a non-finite loss
        (one read of a device scalar)."""
        first_bad = float(self._first_bad)
        base = self._check_base or 0
        self._check_base = None
        self._since_check.zero_()
        if not math.isnan(first_bad):
            self._first_bad.fill_(math.nan)
            raise FloatingPointError(
                f"the training loss was not finite at step {base + int(first_bad)}; lower "
                "train.optimizer.lr, set train.optimizer.grad_clip, or check the input data"
            )

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
            batch = to_device(batch, self.device)
            total += self.step(batch, generator)
            events += int(batch["x"].shape[0])
            if steps % FINITE_CHECK_STEPS == 0:
                self.check_finite()
        self.check_finite()
        elapsed = time.perf_counter() - start
        mean_loss = distributed.all_reduce_mean(total / max(steps, 1))
        global_events = all_reduce_scalar(events, self.device)
        slowest = all_reduce_scalar(elapsed, self.device, op="max")
        return {
            "train_loss": float(mean_loss),
            "lr": float(self.scheduler.get_last_lr()[0]),
            "events_per_s": global_events / slowest if slowest > 0 else math.nan,
            "train_time_s": slowest,
        }
