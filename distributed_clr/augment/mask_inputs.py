"""Random masking of the inputs of object-level events (the 2025 paper's SimCLR augmentation)."""

from __future__ import annotations

import torch
from torch import Tensor

from distributed_clr.augment.geometry import Planes, from_planes, to_planes


def mask_inputs_planes(
    planes: Planes, generator: torch.Generator, probability: float = 0.5
) -> Planes:
    """``mask_inputs`` on Planes (B, S, N); one draw of shape (3, B, S, N)."""
    if not 0 <= probability <= 1:
        raise ValueError(f"probability must be in [0, 1], got {probability}")
    pt = planes.pt
    u = torch.rand((3, *pt.shape), generator=generator, device=pt.device, dtype=pt.dtype)
    keep = (u >= probability).to(pt.dtype)
    weight = planes.weight * keep[0]
    return Planes(pt * weight, planes.eta * keep[1] * weight, planes.phi * keep[2] * weight,
                  weight, weight > 0)  # fmt: skip


def mask_inputs(
    x: Tensor, mask: Tensor, generator: torch.Generator, probability: float = 0.5
) -> tuple[Tensor, Tensor]:
    """Set each input (pT, eta or phi of each real slot) to zero with ``probability``.

    The 2025 paper masks each of the 57 inputs of an object-level event independently. Here a
    masked eta or phi becomes 0 (the centre of its range); a masked pT empties the slot, since
    an object of zero pT is no object (its eta and phi are zeroed with it). Slots keep their
    place. MET's eta is always 0, so masking it changes nothing.

    Args:
        x: (B, S, N, 3) (pT [GeV], eta, phi [rad]); padding zero.
        mask: (B, S, N) bool, True for real objects.
        generator: torch.Generator on ``x.device``; one draw of shape (3, B, S, N).
        probability: p in [0, 1].

    Returns:
        (x, mask): masked inputs zeroed; slots whose pT was masked are empty (zero, masked).
    """
    return from_planes(mask_inputs_planes(to_planes(x, mask), generator, probability))
