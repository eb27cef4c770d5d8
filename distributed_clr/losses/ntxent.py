"""NT-Xent, the SimCLR contrastive loss, with negatives from the global batch under DDP.

Reference: T. Chen, S. Kornblith, M. Norouzi, G. Hinton, "A Simple Framework for Contrastive
Learning of Visual Representations", ICML 2020 (arXiv:2002.05709), Eq. (1). The variant without
the positive in the denominator is Eq. (1) of B. M. Dillon et al., "Symmetries, safety, and
self-supervision", SciPost Phys. 12, 188 (2022), a decoupled-contrastive-style loss
(C.-H. Yeh et al., "Decoupled Contrastive Learning", ECCV 2022).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from distributed_clr import distributed

Reduction = Literal["mean", "sum"]
"""How per-anchor losses become one number: their mean or their sum over this rank's anchors."""


def check_temperature(temperature: float) -> float:
    """Return ``temperature`` as a float, or raise ValueError unless it is finite and > 0."""
    value = float(temperature)
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"temperature must be a finite number > 0, got {temperature!r}")
    return value


def check_reduction(reduction: str) -> Reduction:
    """Return ``reduction`` if it is 'mean' or 'sum', else raise ValueError."""
    if reduction == "mean":
        return "mean"
    if reduction == "sum":
        return "sum"
    raise ValueError(f"reduction must be 'mean' or 'sum', got {reduction!r}")


def check_pair(z_i: torch.Tensor, z_j: torch.Tensor) -> None:
    """Raise ValueError unless z_i and z_j are two (B, D) views with B >= 1 and D >= 1."""
    if z_i.ndim != 2 or z_j.ndim != 2:
        raise ValueError(
            f"expected two 2-D (B, D) views, got shapes {tuple(z_i.shape)} and {tuple(z_j.shape)}"
        )
    if z_i.shape != z_j.shape:
        raise ValueError(
            f"the two views must have the same shape (B, D), got {tuple(z_i.shape)} "
            f"and {tuple(z_j.shape)}"
        )
    if z_i.shape[0] < 1 or z_i.shape[1] < 1:
        raise ValueError(f"need B >= 1 events and D >= 1 dimensions, got {tuple(z_i.shape)}")


class NTXentLoss(nn.Module):
    """Normalised temperature-scaled cross entropy over two views of each event (SimCLR).

    For the 2N embeddings of a global batch of N events (two views each), L2-normalised, with
    s(a, b) = cos(a, b) / temperature, the loss of anchor a with positive p (the other view of
    the same event) is::

        l_a = -s(a, p) + log sum_{k != a} exp s(a, k)        (positive_in_denominator=True)
        l_a = -s(a, p) + log sum_{k != a, p} exp s(a, k)     (positive_in_denominator=False)

    The anchor itself is never a candidate; the 2N - 2 other embeddings are its negatives. The
    loss is the mean (or sum, ``reduction='sum'``) of l_a over anchors.

    Under DDP (``gather_distributed`` and a process group with more than one rank) every rank
    gathers both views from all ranks, so negatives come from the global batch, and computes
    l_a for its *own* 2 N_r anchors only. With equal local batch sizes the mean of the rank
    losses equals the single-process loss on the concatenated batch, and since DDP averages
    gradients (and ``all_gather_with_grad`` routes every rank's gradient back to the rows'
    owner), so do the gradients. With unequal sizes each rank still averages over its own
    anchors, so anchors on a short rank weigh more; ``reduction='sum'`` makes the sum over ranks
    exactly the single-process sum.

    Args:
        temperature: softmax temperature (> 0).
        positive_in_denominator: keep the positive pair in the denominator (SimCLR) or not
            (Dillon et al. Eq. 1). Without it a global batch needs N >= 2 events.
        gather_distributed: under DDP take negatives from every rank (otherwise this rank only).
        reduction: 'mean' or 'sum' over this rank's anchors.
    """

    def __init__(
        self,
        temperature: float = 0.1,
        positive_in_denominator: bool = True,
        gather_distributed: bool = True,
        reduction: Reduction = "mean",
    ) -> None:
        super().__init__()
        self.temperature = check_temperature(temperature)
        self.positive_in_denominator = bool(positive_in_denominator)
        self.gather_distributed = bool(gather_distributed)
        self.reduction = check_reduction(reduction)

    def extra_repr(self) -> str:
        return (
            f"temperature={self.temperature}, "
            f"positive_in_denominator={self.positive_in_denominator}, "
            f"gather_distributed={self.gather_distributed}, reduction={self.reduction!r}"
        )

    def forward(self, z_i: torch.Tensor, z_j: torch.Tensor) -> torch.Tensor:
        """Loss of two views.

        Args:
            z_i: (B, D) embeddings of the first view of this rank's B events.
            z_j: (B, D) embeddings of the second view, row b the same event as z_i[b].

        Returns:
            () the mean (or sum) over this rank's 2B anchors.
        """
        check_pair(z_i, z_j)
        B, D = z_i.shape
        # Event-major layout: row 2b + v is view v of event b, so the positive of row r is r ^ 1.
        local = F.normalize(torch.stack((z_i, z_j), dim=1), dim=-1)  # (B, 2, D)
        everything, offset = (
            distributed.gather_with_offset(local) if self.gather_distributed else (local, 0)
        )
        if not self.positive_in_denominator and everything.shape[0] < 2:
            raise ValueError(
                "NT-Xent without the positive in the denominator needs at least 2 events in "
                "the (global) batch, otherwise an anchor has no negatives"
            )
        anchors = local.reshape(2 * B, D)
        candidates = everything.reshape(-1, D)  # (2N, D)
        logits = anchors @ candidates.T / self.temperature  # (2B, 2N)

        rows = torch.arange(2 * B, device=logits.device)
        own = 2 * offset + rows  # column of each anchor itself
        partner = own + 1 - 2 * (rows % 2)  # column of its positive: the other view
        positives = logits[rows, partner]
        # Built by comparison: an index assignment of a Python True would copy it to the
        # device and wait for it (a host sync per step on a GPU).
        columns = torch.arange(logits.shape[1], device=logits.device)
        excluded = columns == own[:, None]
        if not self.positive_in_denominator:
            excluded = excluded | (columns == partner[:, None])
        per_anchor = torch.logsumexp(logits.masked_fill(excluded, -math.inf), dim=1) - positives
        return per_anchor.mean() if self.reduction == "mean" else per_anchor.sum()
