"""VICReg: variance-invariance-covariance regularisation, on the global batch under DDP.

Reference: A. Bardes, J. Ponce, Y. LeCun, "VICReg: Variance-Invariance-Covariance
Regularization for Self-Supervised Learning", ICLR 2022 (arXiv:2105.04906), Eqs. (1)-(6).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from distributed_clr import distributed
from distributed_clr.losses.ntxent import check_pair


class VICRegTerms(NamedTuple):
    """The three unweighted VICReg terms, each a () tensor."""

    invariance: torch.Tensor
    """s(Z, Z'): mean squared difference of the two views, over events and dimensions."""
    variance: torch.Tensor
    """v(Z) + v(Z'): mean over dimensions of max(0, gamma - sqrt(Var + eps)), per view."""
    covariance: torch.Tensor
    """c(Z) + c(Z'): sum of squared off-diagonal covariances / D, per view."""


def _variance(z: torch.Tensor, gamma: float, eps: float) -> torch.Tensor:
    """v(Z) for z (N, D): hinge on the unbiased per-dimension standard deviation."""
    std = torch.sqrt(z.var(dim=0) + eps)
    return F.relu(gamma - std).mean()


def _covariance(z: torch.Tensor) -> torch.Tensor:
    """c(Z) for z (N, D): squared off-diagonal entries of the unbiased covariance, over D."""
    N, D = z.shape
    centred = z - z.mean(dim=0)
    cov = centred.T @ centred / (N - 1)
    diagonal = torch.eye(D, dtype=torch.bool, device=z.device)
    return cov.masked_fill(diagonal, 0.0).pow(2).sum() / D


def _check_weight(name: str, value: float, *, positive: bool = False) -> float:
    number = float(value)
    if not math.isfinite(number) or number < 0 or (positive and number == 0):
        bound = "> 0" if positive else ">= 0"
        raise ValueError(f"{name} must be a finite number {bound}, got {value!r}")
    return number


class VICRegLoss(nn.Module):
    """VICReg loss of two views (paper Eq. 6)::

        l = invariance * s(Z, Z') + variance * [v(Z) + v(Z')] + covariance * [c(Z) + c(Z')]

    with s the mean squared error, v(Z) = mean_d max(0, gamma - sqrt(Var(z_d) + eps)) and
    c(Z) = sum_{i != j} C(Z)_ij^2 / D (unbiased variance and covariance over the batch). The
    authors' code halves the variance term (an effective variance weight of variance / 2);
    this follows the paper's equation.

    Under DDP (``gather_distributed`` and a process group with more than one rank) both views
    are gathered from every rank with ``all_gather_with_grad`` and *all three* terms are
    computed on the global batch: variance and covariance are batch statistics and must be, and
    the invariance term then weighs every event equally too. Every rank thus returns the same
    value, the single-process loss on the concatenated batch, for any local batch sizes; DDP's
    gradient average over ranks then gives exactly the single-process gradient.

    Args:
        invariance: weight lambda of the invariance term (>= 0).
        variance: weight mu of the variance term (>= 0).
        covariance: weight nu of the covariance term (>= 0).
        gamma: target standard deviation per dimension (> 0).
        eps: added to the variance before the square root, for stability (> 0).
        gather_distributed: under DDP use the global batch (otherwise this rank's only).
    """

    def __init__(
        self,
        invariance: float = 25.0,
        variance: float = 25.0,
        covariance: float = 1.0,
        gamma: float = 1.0,
        eps: float = 1e-4,
        gather_distributed: bool = True,
    ) -> None:
        super().__init__()
        self.invariance = _check_weight("invariance", invariance)
        self.variance = _check_weight("variance", variance)
        self.covariance = _check_weight("covariance", covariance)
        self.gamma = _check_weight("gamma", gamma, positive=True)
        self.eps = _check_weight("eps", eps, positive=True)
        self.gather_distributed = bool(gather_distributed)

    def extra_repr(self) -> str:
        return (
            f"invariance={self.invariance}, variance={self.variance}, "
            f"covariance={self.covariance}, gamma={self.gamma}, eps={self.eps}, "
            f"gather_distributed={self.gather_distributed}"
        )

    def terms(self, z_i: torch.Tensor, z_j: torch.Tensor) -> VICRegTerms:
        """The unweighted terms (for logging and tests).

        Args:
            z_i: (B, D) embeddings of the first view of this rank's events.
            z_j: (B, D) embeddings of the second view, row b the same event as z_i[b].

        Returns:
            The three () terms, on the global batch under DDP (see the class docstring).
        """
        check_pair(z_i, z_j)
        if self.gather_distributed and distributed.is_distributed():
            both = distributed.all_gather_with_grad(torch.stack((z_i, z_j), dim=1))  # (N, 2, D)
            z_i, z_j = both[:, 0], both[:, 1]
        if z_i.shape[0] < 2:
            raise ValueError(
                "VICReg needs at least 2 events in the (global) batch for its variance and "
                f"covariance, got {z_i.shape[0]}"
            )
        return VICRegTerms(
            invariance=F.mse_loss(z_i, z_j),
            variance=_variance(z_i, self.gamma, self.eps) + _variance(z_j, self.gamma, self.eps),
            covariance=_covariance(z_i) + _covariance(z_j),
        )

    def forward(self, z_i: torch.Tensor, z_j: torch.Tensor) -> torch.Tensor:
        """Weighted loss of two views.

        Args:
            z_i: (B, D) embeddings of the first view.
            z_j: (B, D) embeddings of the second view.

        Returns:
            () the weighted sum of the three terms.
        """
        t = self.terms(z_i, z_j)
        return (
            self.invariance * t.invariance
            + self.variance * t.variance
            + self.covariance * t.covariance
        )
