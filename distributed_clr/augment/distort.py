"""Soft, pT-dependent smearing of constituent directions (detector-like resolution)."""

from __future__ import annotations

import torch
from torch import Tensor

from distributed_clr.augment.geometry import Planes, from_planes, to_planes, wrap_phi


def distort_planes(
    planes: Planes, generator: torch.Generator, strength: float = 0.1, pt_min: float = 1.0
) -> Planes:
    """``distort`` on Planes (B, 2, N); one draw of shape (2, B, 2, N)."""
    if strength < 0 or pt_min <= 0:
        raise ValueError(f"need strength >= 0 and pt_min > 0, got {strength}, {pt_min}")
    pt, eta, phi, weight, _ = planes
    noise = torch.randn((2, *pt.shape), generator=generator, device=pt.device, dtype=pt.dtype)
    sigma = torch.div(strength, pt.clamp_min(pt_min)).mul_(weight)  # [rad]; 0 at padding
    new_eta = torch.addcmul(eta, sigma, noise[0])
    new_phi = wrap_phi(torch.addcmul(phi, sigma, noise[1]))
    return planes._replace(eta=new_eta, phi=new_phi)


def distort(
    x: Tensor,
    mask: Tensor,
    generator: torch.Generator,
    strength: float = 0.1,
    pt_min: float = 1.0,
) -> tuple[Tensor, Tensor]:
    """Shift each real constituent's eta and phi by independent N(0, sigma) draws.

    sigma = strength / max(pT, pt_min) [rad, with pT in GeV]: soft constituents move most, and
    the floor ``pt_min`` caps the width of very soft ones at ``strength / pt_min``.

    Args:
        x: (B, 2, N, 3) (pT [GeV], eta, phi [rad]); padding zero.
        mask: (B, 2, N) bool, True for real constituents.
        generator: torch.Generator on ``x.device``; one draw of shape (2, B, 2, N).
        strength: s >= 0 [GeV].
        pt_min: pT floor > 0 [GeV].

    Returns:
        (x, mask): x (B, 2, N, 3) with eta, phi smeared, phi in (-pi, pi], padding zero.
    """
    return from_planes(distort_planes(to_planes(x, mask), generator, strength, pt_min))
