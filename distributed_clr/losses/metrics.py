"""Alignment and uniformity of embeddings, for logging.

Reference: T. Wang, P. Isola, "Understanding Contrastive Representation Learning through
Alignment and Uniformity on the Hypersphere", ICML 2020 (arXiv:2005.10242), Eqs. (4)-(5).
Both are computed on this rank's batch only (no gathering); embeddings are L2-normalised here.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from distributed_clr.losses.ntxent import check_pair


def alignment(z_i: torch.Tensor, z_j: torch.Tensor, alpha: float = 2.0) -> torch.Tensor:
    """Mean ||f(x) - f(y)||^alpha over positive pairs; 0 for identical views, at most 2^alpha.

    Args:
        z_i: (B, D) embeddings of the first view.
        z_j: (B, D) embeddings of the second view, row b the same event as z_i[b].
        alpha: exponent (> 0).

    Returns:
        () the mean over the B pairs of the normalised embeddings.
    """
    check_pair(z_i, z_j)
    if not (math.isfinite(alpha) and alpha > 0):
        raise ValueError(f"alpha must be a finite number > 0, got {alpha!r}")
    diff = F.normalize(z_i, dim=-1) - F.normalize(z_j, dim=-1)
    return diff.pow(2).sum(dim=1).pow(alpha / 2).mean()


def uniformity(z: torch.Tensor, t: float = 2.0) -> torch.Tensor:
    """log mean_{i < j} exp(-t ||f(x_i) - f(x_j)||^2); 0 when collapsed, lower is more uniform.

    Args:
        z: (N, D) embeddings, N >= 2.
        t: scale of the Gaussian potential (> 0).

    Returns:
        () the log of the mean potential over the N (N - 1) / 2 distinct pairs.
    """
    if z.ndim != 2 or z.shape[0] < 2 or z.shape[1] < 1:
        raise ValueError(f"z must be (N, D) with N >= 2 and D >= 1, got shape {tuple(z.shape)}")
    if not (math.isfinite(t) and t > 0):
        raise ValueError(f"t must be a finite number > 0, got {t!r}")
    unit = F.normalize(z, dim=-1)
    i, j = torch.triu_indices(z.shape[0], z.shape[0], offset=1, device=z.device)
    squared = (unit[i] - unit[j]).pow(2).sum(dim=1)  # (N (N - 1) / 2,)
    return torch.logsumexp(-t * squared, dim=0) - math.log(squared.numel())
