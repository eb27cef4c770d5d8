"""Rotation of each jet about its own axis in the (eta, phi) plane."""

from __future__ import annotations

import torch
from torch import Tensor

from distributed_clr.augment.geometry import (
    TWO_PI,
    Planes,
    from_planes,
    jet_frame,
    to_planes,
    wrap_phi,
)


def rotate_planes(planes: Planes, generator: torch.Generator) -> Planes:
    """``rotate`` on Planes (B, 2, N); one draw of shape (B, 2, 1)."""
    pt, eta, phi, weight, _ = planes
    eta_axis, phi_axis, d_eta, d_phi = jet_frame(pt, eta, phi)
    shape = (*pt.shape[:-1], 1)
    theta = torch.rand(shape, generator=generator, device=pt.device, dtype=pt.dtype).mul_(TWO_PI)
    cos, sin = torch.cos(theta), torch.sin(theta)
    new_eta = (cos * d_eta).sub_(sin * d_phi).add_(eta_axis).mul_(weight)
    new_phi = wrap_phi((sin * d_eta).add_(cos * d_phi).add_(phi_axis)).mul_(weight)
    return planes._replace(eta=new_eta, phi=new_phi)


def rotate(x: Tensor, mask: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """Rotate every jet by its own angle theta ~ U(0, 2 pi) about its axis in (eta, phi).

    The axis is the pT-weighted (eta, phi) centroid with phi taken relative to the leading
    constituent (``geometry.jet_frame``); each constituent's offset (d_eta, d_phi) from it, with
    d_phi wrapped, is rotated by theta. The pT values, the axis itself and every constituent's
    distance to the axis are unchanged.

    Args:
        x: (B, 2, N, 3) (pT [GeV], eta, phi [rad]); padding zero.
        mask: (B, 2, N) bool, True for real constituents.
        generator: torch.Generator on ``x.device``; one draw of shape (B, 2, 1).

    Returns:
        (x, mask): x (B, 2, N, 3) rotated, phi in (-pi, pi], padding zero; mask unchanged.
    """
    return from_planes(rotate_planes(to_planes(x, mask), generator))
