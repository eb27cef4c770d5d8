"""Random masking of physics objects (object-level events: jets, leptons, photons, MET)."""

from __future__ import annotations

import torch
from torch import Tensor

from distributed_clr.augment.drop import random_keep
from distributed_clr.augment.geometry import Planes, from_planes, to_planes


def mask_objects_planes(
    planes: Planes, generator: torch.Generator, probability: float = 0.1
) -> Planes:
    """``mask_objects`` on Planes (B, S, N); one draw of shape (B, S, N)."""
    return random_keep(planes, generator, probability)


def mask_objects(
    x: Tensor, mask: Tensor, generator: torch.Generator, probability: float = 0.1
) -> tuple[Tensor, Tensor]:
    """Mask each real object slot with ``probability``; never the leading (highest-pT) one.

    Unlike ``drop``, slots are not moved: in object-level events a slot's position can carry
    the object type, so a masked object simply becomes a zero, masked slot where it was.

    Args:
        x: (B, S, N, 3) (pT [GeV], eta, phi [rad]) per object slot; padding zero.
        mask: (B, S, N) bool, True for real objects.
        generator: torch.Generator on ``x.device``; one draw of shape (B, S, N).
        probability: p in [0, 1].

    Returns:
        (x, mask): masked slots zeroed and unmasked; every non-empty group keeps one object.
    """
    return from_planes(mask_objects_planes(to_planes(x, mask), generator, probability))
