"""Log-normal smearing of constituent transverse momenta (energy-scale / resolution)."""

from __future__ import annotations

import torch
from torch import Tensor

from distributed_clr.augment.geometry import Planes, from_planes, to_planes


def pt_smear_planes(planes: Planes, generator: torch.Generator, width: float = 0.1) -> Planes:
    """``pt_smear`` on Planes (B, 2, N); one draw of shape (B, 2, N)."""
    if width < 0:
        raise ValueError(f"width must be >= 0, got {width}")
    pt = planes.pt
    z = torch.randn(pt.shape, generator=generator, device=pt.device, dtype=pt.dtype)
    factor = z.mul_(width).sub_(0.5 * width**2).exp_()
    return planes._replace(pt=pt * factor)  # padding: 0 * factor = 0


def pt_smear(
    x: Tensor, mask: Tensor, generator: torch.Generator, width: float = 0.1
) -> tuple[Tensor, Tensor]:
    """Multiply each real constituent's pT by exp(width * z - width**2 / 2), z ~ N(0, 1).

    The factor is log-normal with relative width ~``width`` and mean exactly 1, so the expected
    jet pT is unchanged; pT stays strictly positive. Slots keep their place, so the pT order
    may change (``geometry.sort_constituents`` restores it).

    Args:
        x: (B, 2, N, 3) (pT [GeV], eta, phi [rad]); padding zero.
        mask: (B, 2, N) bool, True for real constituents.
        generator: torch.Generator on ``x.device``; one draw of shape (B, 2, N).
        width: sigma of log(pT), >= 0.

    Returns:
        (x, mask): x with smeared pT, padding zero; mask unchanged.
    """
    return from_planes(pt_smear_planes(to_planes(x, mask), generator, width))
