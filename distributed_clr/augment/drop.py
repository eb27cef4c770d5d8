"""Random removal of constituents (soft-radiation / efficiency augmentation)."""

from __future__ import annotations

import torch
from torch import Tensor

from distributed_clr.augment.geometry import Planes, compact, from_planes, to_planes


def random_keep(planes: Planes, generator: torch.Generator, probability: float) -> Planes:
    """Unmask each real slot with ``probability``, always keeping each jet's leading one.

    Planes (B, 2, N) -> Planes with the removed slots zeroed and unmasked, in place (no
    reordering); one draw of shape (B, 2, N). A non-empty jet keeps its highest-pT slot.
    """
    if not 0 <= probability <= 1:
        raise ValueError(f"probability must be in [0, 1], got {probability}")
    pt = planes.pt
    u = torch.rand(pt.shape, generator=generator, device=pt.device, dtype=pt.dtype)
    keep = (u >= probability).to(pt.dtype)
    keep.scatter_(-1, pt.max(dim=-1, keepdim=True).indices, 1.0)
    return planes.with_mask(planes.weight * keep)


def drop_planes(planes: Planes, generator: torch.Generator, probability: float = 0.1) -> Planes:
    """``drop`` on Planes (B, 2, N); one draw of shape (B, 2, N)."""
    return compact(random_keep(planes, generator, probability))


def drop(
    x: Tensor, mask: Tensor, generator: torch.Generator, probability: float = 0.1
) -> tuple[Tensor, Tensor]:
    """Drop each real constituent with ``probability``; never the jet's leading constituent.

    Args:
        x: (B, 2, N, 3) (pT [GeV], eta, phi [rad]); padding zero.
        mask: (B, 2, N) bool, True for real constituents.
        generator: torch.Generator on ``x.device``; one draw of shape (B, 2, N).
        probability: p in [0, 1].

    Returns:
        (x, mask): the survivors moved to the front of each jet in their previous order,
        padding (zero, masked) after them.
    """
    return from_planes(drop_planes(to_planes(x, mask), generator, probability))
