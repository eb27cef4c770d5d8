"""Validation of a pretraining epoch: the contrastive loss on held-out events, alignment and
uniformity, and the linear-probe AUC that sweeps select on.

The validation loss runs rank by rank (no collectives inside the pass, so it cannot hang) at
the per-worker batch, then one all-reduce combines the ranks. It is comparable across epochs of
a run, not across worker counts or temperatures; the probe AUC is the cross-run metric.
"""

from __future__ import annotations

import math
import typing
from collections.abc import Iterable

import numpy as np
import torch
import torch.distributed as dist

from distributed_clr import distributed
from distributed_clr.checkpoint import unwrap
from distributed_clr.classifiers import fit_predict
from distributed_clr.config.schema import DataConfig
from distributed_clr.losses import alignment, uniformity
from distributed_clr.models import ContrastiveModel
from distributed_clr.seeds import derive_seed, splitmix64
from distributed_clr.stats.metrics import binary_metrics
from distributed_clr.train.feed import batches
from distributed_clr.train.trainer import (
    Batch,
    Trainer,
    autocast_context,
    contrastive_loss,
    to_device,
)

__all__ = ["Probe", "Validator", "probe_auc", "validate"]

Probe = dict[str, torch.Tensor]
"""Representations ``h`` (K, D), ``label`` (K,) and ``event_id`` (K,) of validation events."""


@torch.no_grad()
def validate(
    trainer: Trainer, batches: Iterable[Batch], generator: torch.Generator, probe_events: int
) -> tuple[dict[str, float], Probe]:
    """Validation loss, alignment and uniformity (mean over this rank's batches, then over
    ranks, weighted by batch count), and up to ``probe_events`` representations with their
    labels and event ids for the linear probe."""
    trainer.model.eval()
    plain = typing.cast("ContrastiveModel", unwrap(trainer.model))
    precision = trainer.train_config.precision
    sums = torch.zeros(3, device=trainer.device, dtype=torch.float64)
    count = 0
    probe: dict[str, list[torch.Tensor]] = {"h": [], "label": [], "event_id": []}
    kept = 0
    for raw in batches:
        batch = to_device(raw, trainer.device)
        loss, z1, z2 = contrastive_loss(
            plain, trainer.val_loss_fn, batch, trainer.augmenter, generator, precision
        )
        terms = torch.stack([loss, alignment(z1, z2), uniformity(torch.cat([z1, z2]))])
        sums += terms.to(sums.dtype)
        count += 1
        if kept < probe_events:
            take = min(probe_events - kept, int(batch["x"].shape[0]))
            with autocast_context(precision, trainer.device):
                h = plain.represent(batch["x"][:take], batch["mask"][:take])
            probe["h"].append(h.float().cpu())
            probe["label"].append(batch["label"][:take].cpu())
            probe["event_id"].append(batch["event_id"][:take].cpu())
            kept += take
    totals = torch.cat([sums, torch.tensor([count], device=trainer.device, dtype=sums.dtype)])
    if distributed.is_distributed():
        dist.all_reduce(totals)
    n = float(totals[3])
    names = ("val_loss", "val_alignment", "val_uniformity")
    metrics = {name: float(totals[i]) / n if n else math.nan for i, name in enumerate(names)}
    return metrics, {k: torch.cat(v) if v else torch.empty(0) for k, v in probe.items()}


def probe_auc(probes: list[Probe], seed: int) -> float:
    """Linear-probe ROC AUC on labelled validation representations (NaN if unlabelled).

    Events with even ``splitmix64(event_id)`` train a logistic regression, the others are
    scored; labels -1 (unknown) are ignored. Contrastive losses at different temperatures are
    not comparable, so this is what sweeps select on.
    """
    parts = [p for p in probes if len(p["h"])]
    if not parts:
        return math.nan
    h = torch.cat([p["h"] for p in parts]).numpy()
    label = torch.cat([p["label"] for p in parts]).numpy().astype(np.int64)
    event_id = torch.cat([p["event_id"] for p in parts]).numpy()
    known = label >= 0
    h, label, event_id = h[known], label[known], event_id[known]
    fit = (splitmix64(event_id.astype(np.uint64)) & np.uint64(1)) == 0
    for part in (fit, ~fit):
        if len(np.unique(label[part])) < 2:
            return math.nan
    scores = fit_predict("lct", h[fit], label[fit], h[~fit], None, seed)
    return float(binary_metrics(label[~fit], scores, min_background=1)["auc"])


class Validator:
    """One epoch's validation on one rank: the same views every epoch (a generator reseeded
    from the run seed), this rank's share of the probe events, and the probe AUC on rank 0
    (NaN elsewhere) from every rank's representations."""

    def __init__(
        self, trainer: Trainer, shard: object, data: DataConfig, batch_size: int, rank: int
    ) -> None:
        self.trainer, self.shard, self.data, self.batch_size, self.rank = (
            trainer,
            shard,
            data,
            batch_size,
            rank,
        )
        train = trainer.train_config
        self.seed = train.seed
        self.probe_per_rank = math.ceil(train.probe_events / max(1, distributed.world_size()))

    def __call__(self) -> dict[str, float]:
        device = self.trainer.device
        generator = torch.Generator(device=device)
        generator.manual_seed(derive_seed(self.seed, 4, self.rank, bits=63))
        extra = ("label", "event_id")
        feed = batches(self.shard, self.batch_size, device, self.data, None, extra)
        metrics, probe = validate(self.trainer, feed, generator, self.probe_per_rank)
        probes = typing.cast("list[Probe]", distributed.all_gather_objects(probe))
        metrics["val_probe_auc"] = probe_auc(probes, self.seed) if self.rank == 0 else math.nan
        return metrics
