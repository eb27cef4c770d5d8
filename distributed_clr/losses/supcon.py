"""Supervised contrastive loss (SupCon), with the global batch as candidates under DDP.

Reference: P. Khosla et al., "Supervised Contrastive Learning", NeurIPS 2020
(arXiv:2004.11362), Eq. (2), the 'L_out' form (the 1/|P(a)| average outside the log).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from distributed_clr import distributed
from distributed_clr.losses.ntxent import (
    Reduction,
    check_reduction,
    check_temperature,
)


class SupConLoss(nn.Module):
    """Supervised contrastive loss, 'L_out' form.

    Over all B*V L2-normalised embeddings of a batch (V views of B events), with
    s(a, b) = cos(a, b) / temperature, A(a) every embedding but the anchor a and P(a) those in
    A(a) with the anchor's label::

        l_a = -1/|P(a)| sum_{p in P(a)} [ s(a, p) - log sum_{k in A(a)} exp s(a, k) ]

    Anchors with no positive (|P(a)| = 0: a unique label and V = 1) are left out of the mean;
    if no anchor has one the loss is a zero that still carries a graph. Unlike the authors'
    code there is no ``temperature / base_temperature`` factor (it is 1 at their defaults).

    Under DDP (``gather_distributed`` and a process group with more than one rank) embeddings
    and labels are gathered from every rank, and each rank computes l_a for its own anchors
    against all global candidates, as ``NTXentLoss`` does: with equal numbers of anchors with
    positives on every rank (always so for V >= 2 and equal B), the mean of the rank losses and
    the DDP-averaged gradients equal the single-process ones; ``reduction='sum'`` makes the sum
    over ranks exact for any sizes. With all labels distinct and V = 2 this is NT-Xent with the
    positive in the denominator.

    Args:
        temperature: softmax temperature (> 0).
        gather_distributed: under DDP take candidates from every rank (otherwise this rank only).
        reduction: 'mean' over this rank's anchors that have positives, or their 'sum'.
    """

    def __init__(
        self,
        temperature: float = 0.1,
        gather_distributed: bool = True,
        reduction: Reduction = "mean",
    ) -> None:
        super().__init__()
        self.temperature = check_temperature(temperature)
        self.gather_distributed = bool(gather_distributed)
        self.reduction = check_reduction(reduction)

    def extra_repr(self) -> str:
        return (
            f"temperature={self.temperature}, gather_distributed={self.gather_distributed}, "
            f"reduction={self.reduction!r}"
        )

    def forward(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Loss of labelled embeddings.

        Args:
            z: (B, V, D) embeddings of V views of B events, or (B, D) for a single view.
            labels: (B,) integer class of each event (e.g. the physics process).

        Returns:
            () the mean (or sum) over this rank's anchors that have at least one positive.
        """
        if z.ndim == 2:
            z = z.unsqueeze(1)
        if z.ndim != 3:
            raise ValueError(f"z must be (B, V, D) or (B, D), got shape {tuple(z.shape)}")
        B, V, D = z.shape
        if B < 1 or V < 1 or D < 1:
            raise ValueError(f"need B, V, D >= 1, got z of shape {tuple(z.shape)}")
        if labels.shape != (B,):
            raise ValueError(
                f"labels must have shape (B,) = ({B},) to match z, got {tuple(labels.shape)}"
            )
        if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
            raise ValueError(f"labels must be an integer tensor, got dtype {labels.dtype}")

        local = F.normalize(z, dim=-1)
        if self.gather_distributed:
            everything, offset = distributed.gather_with_offset(local)  # (N, V, D)
            all_labels, _ = distributed.gather_with_offset(labels)  # (N,)
        else:
            everything, offset, all_labels = local, 0, labels
        anchors = local.reshape(B * V, D)  # event-major: row b * V + v
        candidates = everything.reshape(-1, D)  # (N V, D)
        logits = anchors @ candidates.T / self.temperature  # (B V, N V)

        rows = torch.arange(B * V, device=logits.device)
        # By comparison, not index assignment (which would wait for the device on a GPU).
        own = torch.arange(logits.shape[1], device=logits.device) == (offset * V + rows)[:, None]
        anchor_labels = labels.repeat_interleave(V)
        candidate_labels = all_labels.repeat_interleave(V)
        positive = (anchor_labels[:, None] == candidate_labels[None, :]) & ~own
        log_prob = logits - torch.logsumexp(logits.masked_fill(own, -math.inf), dim=1, keepdim=True)

        count = positive.sum(dim=1)
        has_positive = count > 0
        mean_log_prob = torch.where(positive, log_prob, 0.0).sum(dim=1) / count.clamp(min=1)
        per_anchor = torch.where(has_positive, -mean_log_prob, 0.0)
        total = per_anchor.sum()
        if self.reduction == "sum":
            return total
        return total / has_positive.sum().clamp(min=1)
