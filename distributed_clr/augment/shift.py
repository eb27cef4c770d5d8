"""Event-wide shifts in eta (a longitudinal boost) and in phi (a rotation about the beam)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from distributed_clr.augment.geometry import TWO_PI, Planes, from_planes, to_planes, wrap_phi


def _per_event(planes: Planes, generator: torch.Generator) -> Tensor:
    """U[0, 1) draws of shape (B, 1, 1): one per event, broadcast over jets and slots."""
    pt = planes.pt
    shape = (*pt.shape[:-2], 1, 1)
    return torch.rand(shape, generator=generator, device=pt.device, dtype=pt.dtype)


def eta_shift_planes(planes: Planes, generator: torch.Generator, max_shift: float = 1.0) -> Planes:
    """``eta_shift`` on Planes (B, 2, N); one draw of shape (B, 1, 1)."""
    if max_shift < 0:
        raise ValueError(f"max_shift must be >= 0, got {max_shift}")
    delta = _per_event(planes, generator).mul_(2 * max_shift).sub_(max_shift)
    return planes._replace(eta=torch.addcmul(planes.eta, delta, planes.weight))


def phi_shift_planes(planes: Planes, generator: torch.Generator) -> Planes:
    """``phi_shift`` on Planes (B, 2, N); one draw of shape (B, 1, 1)."""
    delta = _per_event(planes, generator).mul_(-TWO_PI).add_(math.pi)  # [0, 1) -> (-pi, pi]
    phi = wrap_phi(torch.addcmul(planes.phi, delta, planes.weight)).mul_(planes.weight)
    return planes._replace(phi=phi)


def eta_shift(
    x: Tensor, mask: Tensor, generator: torch.Generator, max_shift: float = 1.0
) -> tuple[Tensor, Tensor]:
    """Add one delta ~ U(-max_shift, max_shift) per event to the eta of all its constituents.

    For massless constituents eta is the rapidity, so this is a boost along the beam: every
    invariant mass (jet masses, m_jj) and every pT is unchanged.

    Args:
        x: (B, 2, N, 3) (pT [GeV], eta, phi [rad]); padding zero.
        mask: (B, 2, N) bool, True for real constituents.
        generator: torch.Generator on ``x.device``; one draw of shape (B, 1, 1).
        max_shift: half-width of the uniform shift, >= 0.

    Returns:
        (x, mask): x (B, 2, N, 3) shifted in eta, padding zero; mask unchanged.
    """
    return from_planes(eta_shift_planes(to_planes(x, mask), generator, max_shift))


def phi_shift(x: Tensor, mask: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """Rotate each event about the beam axis: one delta ~ U(-pi, pi] per event added to phi.

    Args:
        x: (B, 2, N, 3) (pT [GeV], eta, phi [rad]); padding zero.
        mask: (B, 2, N) bool, True for real constituents.
        generator: torch.Generator on ``x.device``; one draw of shape (B, 1, 1).

    Returns:
        (x, mask): x (B, 2, N, 3) with phi shifted and wrapped into (-pi, pi], padding zero.
    """
    return from_planes(phi_shift_planes(to_planes(x, mask), generator))
