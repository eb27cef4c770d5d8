"""Validation of a pretraining epoch, on the val split.

* ``val_loss``, ``val_alignment``, ``val_uniformity``: the contrastive loss and the two
  geometry measures of Wang & Isola (2020) on the validation events of the run's composition
  (``samples.py``). The loss runs rank by rank (no collectives inside the pass, so it cannot
  hang) at the per-worker batch, then one all-reduce combines the ranks. It is comparable
  across epochs of a run, not across temperatures.
* ``val_align_uniform``: the label-free selection metric, alignment + uniformity (Wang & Isola
  2020) of the normalised projections, measured in fixed groups of ``RETRIEVAL_GROUP`` events
  (``align_uniform``): lower is better, and it does not depend on the temperature, the loss,
  the batch size or the number of workers, so trials of a sweep can be ranked by it.
* ``val_view_retrieval``: a diagnostic. For the same events, the fraction whose second
  augmented view finds its own first view as nearest neighbour among ``RETRIEVAL_GROUP``. It is
  not a selection metric: an untrained encoder maps the two views of an event almost onto one
  point (near-perfect retrieval) while crowding all events together, and retrieval falls as
  training spreads the events out (measured on generated QCD: 0.89 at epoch 1, 0.64 at epoch 6,
  while alignment + uniformity improved from -1.53 to -2.38).
* ``val_probe_auc``: a diagnostic. A logistic regression on the representation of the probe's
  fixed, balanced subset (half fit, half scored); NaN when the subset is empty.
"""

from __future__ import annotations

import math
import typing
from collections.abc import Iterable

import numpy as np
import numpy.typing as npt
import torch
import torch.distributed as dist
import torch.nn.functional as F

from distributed_clr import distributed
from distributed_clr.checkpoint import unwrap
from distributed_clr.classifiers import fit_predict
from distributed_clr.config.schema import DataConfig
from distributed_clr.losses import alignment, uniformity
from distributed_clr.models import ContrastiveModel
from distributed_clr.seeds import derive_seed, splitmix64
from distributed_clr.stats.metrics import binary_metrics
from distributed_clr.train.feed import batches
from distributed_clr.train.samples import KEY_COLUMN
from distributed_clr.train.trainer import (
    Batch,
    Trainer,
    autocast_context,
    contrastive_loss,
    to_device,
)

__all__ = [
    "RETRIEVAL_GROUP",
    "Probe",
    "Validator",
    "align_uniform",
    "probe_auc",
    "validate",
    "view_retrieval",
]

Probe = dict[str, torch.Tensor]
"""Representations ``h`` (K, D), ``label`` (K,) and ``key`` (K,) of the probe's events."""

RETRIEVAL_GROUP = 256
"""Events among which a view looks for its partner (a fixed size keeps the metric comparable)."""
RETRIEVAL_EVENTS = 2048
"""At most this many validation events per rank enter the retrieval metric."""


def _member(keys: torch.Tensor, members: torch.Tensor | None) -> torch.Tensor:
    if members is None:
        return torch.ones(len(keys), dtype=torch.bool, device=keys.device)
    return torch.isin(keys, members)


@torch.no_grad()
def validate(
    trainer: Trainer,
    batches: Iterable[Batch],
    generator: torch.Generator,
    loss_keys: torch.Tensor | None = None,
    probe_keys: torch.Tensor | None = None,
) -> tuple[dict[str, float], Probe]:
    """Validation metrics on the events whose ``key`` is in ``loss_keys`` (all when None; the
    mean over this rank's batches, then over ranks, weighted by batch count), and the
    representations of the events whose key is in ``probe_keys`` for the linear probe."""
    trainer.model.eval()
    plain = typing.cast("ContrastiveModel", unwrap(trainer.model))
    precision = trainer.train_config.precision
    sums = torch.zeros(5, device=trainer.device, dtype=torch.float64)
    views: list[tuple[torch.Tensor, torch.Tensor]] = []
    kept = 0
    probe: dict[str, list[torch.Tensor]] = {"h": [], "label": [], "key": []}
    for raw in batches:
        batch = to_device(raw, trainer.device)
        keys = batch.get("key", torch.zeros(len(batch["x"]), dtype=torch.int64))
        use = _member(keys, loss_keys)
        if int(use.sum()) >= 2:
            part = {k: v[use] for k, v in batch.items()}
            loss, z1, z2 = contrastive_loss(
                plain, trainer.val_loss_fn, part, trainer.augmenter, generator, precision,
                trainer.labels,
            )  # fmt: skip
            terms = torch.stack([loss, alignment(z1, z2), uniformity(torch.cat([z1, z2]))])
            sums[:3] += terms.to(sums.dtype)
            sums[3] += 1
            if kept < RETRIEVAL_EVENTS:
                take = min(RETRIEVAL_EVENTS - kept, len(z1))
                views.append((z1[:take], z2[:take]))
                kept += take
        chosen = _member(keys, probe_keys) if probe_keys is not None else None
        if chosen is not None and chosen.any():
            with autocast_context(precision, trainer.device):
                h = plain.represent(batch["x"][chosen], batch["mask"][chosen])
            probe["h"].append(h.float().cpu())
            probe["label"].append(batch["label"][chosen].cpu())
            probe["key"].append(keys[chosen].cpu())
    correct, total = view_retrieval(views)
    geometry, groups = align_uniform(views)
    sums[4] = correct
    extra = torch.tensor([total, geometry, groups], device=trainer.device, dtype=sums.dtype)
    totals = torch.cat([sums, extra])
    if distributed.is_distributed():
        dist.all_reduce(totals)
    n = float(totals[3])
    names = ("val_loss", "val_alignment", "val_uniformity")
    metrics = {name: float(totals[i]) / n if n else math.nan for i, name in enumerate(names)}
    metrics["val_view_retrieval"] = float(totals[4] / totals[5]) if float(totals[5]) else math.nan
    metrics["val_align_uniform"] = float(totals[6] / totals[7]) if float(totals[7]) else math.nan
    return metrics, {k: torch.cat(v) if v else torch.empty(0) for k, v in probe.items()}


def view_retrieval(views: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[float, int]:
    """(events whose second view's nearest first view is its own, events counted), in groups
    of ``RETRIEVAL_GROUP`` (a remainder smaller than a group is left out, unless it is all)."""
    if not views:
        return 0.0, 0
    z1 = F.normalize(torch.cat([v[0] for v in views]).float(), dim=-1)
    z2 = F.normalize(torch.cat([v[1] for v in views]).float(), dim=-1)
    group = min(RETRIEVAL_GROUP, len(z1))
    correct, total = 0.0, 0
    for start in range(0, len(z1) - group + 1, group):
        a, b = z1[start : start + group], z2[start : start + group]
        nearest = (b @ a.T).argmax(dim=1)
        correct += float((nearest == torch.arange(group, device=a.device)).sum())
        total += group
    return correct, total


def align_uniform(views: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[float, int]:
    """(sum over groups of alignment + uniformity, groups), in groups of ``RETRIEVAL_GROUP``
    events as ``view_retrieval``. Per group of normalised projections (z1, z2): alignment is
    the mean squared distance between an event's two views, uniformity the log of the mean of
    exp(-2 d^2) over every pair of distinct points among the group's 2 x group views."""
    if not views:
        return 0.0, 0
    z1 = F.normalize(torch.cat([v[0] for v in views]).float(), dim=-1)
    z2 = F.normalize(torch.cat([v[1] for v in views]).float(), dim=-1)
    group = min(RETRIEVAL_GROUP, len(z1))
    if group < 2:
        return 0.0, 0
    total, groups = 0.0, 0
    for start in range(0, len(z1) - group + 1, group):
        a, b = z1[start : start + group], z2[start : start + group]
        align = (a - b).pow(2).sum(dim=1).mean()
        points = torch.cat([a, b])
        distances = torch.pdist(points).pow(2)  # every distinct pair once
        uniform = torch.logsumexp(-2.0 * distances, dim=0) - math.log(len(distances))
        total += float(align + uniform)
        groups += 1
    return total, groups


def probe_auc(probes: list[Probe], seed: int) -> float:
    """Linear-probe ROC AUC on the probe's representations (NaN without both classes).

    Events with even ``splitmix64(key)`` train a logistic regression, the others are scored.
    A diagnostic only: it uses the signal labels, so a search does not select on it.
    """
    parts = [p for p in probes if len(p["h"])]
    if not parts:
        return math.nan
    h = torch.cat([p["h"] for p in parts]).numpy()
    label = torch.cat([p["label"] for p in parts]).numpy().astype(np.int64)
    key = torch.cat([p["key"] for p in parts]).numpy()
    fit = (splitmix64(key.view(np.uint64)) & np.uint64(1)) == 0
    for part in (fit, ~fit):
        if len(np.unique(label[part])) < 2:
            return math.nan
    scores = fit_predict("lct", h[fit], label[fit], h[~fit], None, seed)
    return float(binary_metrics(label[~fit], scores, min_background=1)["auc"])


class Validator:
    """One epoch's validation on one rank: the same views every epoch (a generator reseeded
    from the run seed), the run's validation events and the probe's, and the probe AUC on rank
    0 (NaN elsewhere) from every rank's representations."""

    def __init__(
        self,
        trainer: Trainer,
        shard: object,
        data: DataConfig,
        batch_size: int,
        rank: int,
        loss_keys: npt.NDArray[np.int64] | None,
        probe_keys: npt.NDArray[np.int64],
    ) -> None:
        self.trainer, self.shard, self.data, self.batch_size, self.rank = (
            trainer,
            shard,
            data,
            batch_size,
            rank,
        )
        self.seed = trainer.train_config.seed
        device = trainer.device
        # Copies: the plan's arrays arrive read-only through Ray's object store.
        self.loss_keys = (
            None if loss_keys is None else torch.tensor(np.array(loss_keys), device=device)
        )
        self.probe_keys = torch.tensor(np.array(probe_keys), device=device)

    def __call__(self) -> dict[str, float]:
        device = self.trainer.device
        generator = torch.Generator(device=device)
        generator.manual_seed(derive_seed(self.seed, 4, self.rank, bits=63))
        extra = tuple(dict.fromkeys(("label", self.trainer.labels, KEY_COLUMN)))
        feed = batches(self.shard, self.batch_size, device, self.data, None, extra)
        metrics, probe = validate(self.trainer, feed, generator, self.loss_keys, self.probe_keys)
        probes = typing.cast("list[Probe]", distributed.all_gather_objects(probe))
        metrics["val_probe_auc"] = probe_auc(probes, self.seed) if self.rank == 0 else math.nan
        return metrics
