"""Translation of each jet as a whole in the (eta, phi) plane."""

from __future__ import annotations

import torch
from torch import Tensor

from distributed_clr.augment.geometry import Planes, from_planes, to_planes, wrap_phi


def translate_planes(planes: Planes, generator: torch.Generator, width: float = 0.1) -> Planes:
    """``translate`` on Planes (B, 2, N); one draw of shape (2, B, 2, 1)."""
    if width < 0:
        raise ValueError(f"width must be >= 0, got {width}")
    pt, eta, phi, weight, _ = planes
    shape = (2, *pt.shape[:-1], 1)
    delta = torch.randn(shape, generator=generator, device=pt.device, dtype=pt.dtype).mul_(width)
    new_eta = torch.addcmul(eta, delta[0], weight)
    new_phi = wrap_phi(torch.addcmul(phi, delta[1], weight)).mul_(weight)
    return planes._replace(eta=new_eta, phi=new_phi)


def translate(
    x: Tensor, mask: Tensor, generator: torch.Generator, width: float = 0.1
) -> tuple[Tensor, Tensor]:
    """Move every jet by its own (d_eta, d_phi), each ~ N(0, width), independent per jet.

    Args:
        x: (B, 2, N, 3) (pT [GeV], eta, phi [rad]); padding zero.
        mask: (B, 2, N) bool, True for real constituents.
        generator: torch.Generator on ``x.device``; one draw of shape (2, B, 2, 1).
        width: standard deviation of the shift, >= 0 [rad / units of eta].

    Returns:
        (x, mask): x (B, 2, N, 3) translated, phi in (-pi, pi], padding zero; mask unchanged.
    """
    return from_planes(translate_planes(to_planes(x, mask), generator, width))
