"""Shared machinery of the batched augmentations: layouts, phi wrapping, jet axes, ordering.

Conventions (see ``distributed_clr.storage.reader.constituents``): ``x`` is (B, 2, N, 3) float
holding (pT [GeV], eta, phi [rad]) of each jet's constituents in absolute coordinates, ``mask``
is (B, 2, N) bool, True for real constituents; padding is exactly zero. Every function here is
batched (no Python loop over events or constituents) and runs on whatever device ``x`` is on.

Internally the augmentations work on ``Planes``: one contiguous (B, 2, N) tensor per feature
plus the mask as float weights (1 real, 0 padding). Element-wise work on contiguous planes with
float masks avoids strided access and boolean kernels (``torch.where`` on a 100k-element plane
took ~30x longer than a multiplication on the development CPU), which is most of the pipeline's
speed. ``Augmenter`` converts once per pipeline; each public ``(x, mask)`` function converts on
its own.

Layout after augmentation: padding stays exactly zero (a multiplication by the 0/1 weight, so a
padded zero may carry a sign bit: -0.0 == 0) and masked; phi stays in (-pi, pi]. Real
constituents stay in front of the padding ("compact"), except after ``mask_objects``.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor

PT, ETA, PHI = 0, 1, 2
"""Feature indices in the last axis of ``x``."""

TWO_PI = 2 * math.pi
_TINY = 1e-12


class Planes(NamedTuple):
    """Events as contiguous per-feature planes, each (B, 2, N), on one device.

    ``weight`` is the mask as 0/1 floats of the planes' dtype; ``mask`` the same as bool.
    Invariant: pt, eta and phi are exactly zero where weight is 0.
    """

    pt: Tensor
    eta: Tensor
    phi: Tensor
    weight: Tensor
    mask: Tensor

    def with_mask(self, weight: Tensor) -> Planes:
        """The planes restricted to ``weight`` (B, 2, N) 0/1 floats: zeroed and masked outside."""
        return Planes(self.pt * weight, self.eta * weight, self.phi * weight, weight, weight > 0)


def check_inputs(x: Tensor, mask: Tensor) -> None:
    """Raise ValueError unless x is (B, 2, N, 3) floating and mask bool with x's leading shape."""
    if x.ndim < 3 or x.shape[-1] != 3:
        raise ValueError(f"x must be (B, 2, N, 3) as (pT, eta, phi), got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"x must be a floating tensor, got {x.dtype}")
    if mask.dtype != torch.bool or mask.shape != x.shape[:-1]:
        raise ValueError(
            f"mask must be bool with shape {tuple(x.shape[:-1])}, "
            f"got {mask.dtype} {tuple(mask.shape)}"
        )


def to_planes(x: Tensor, mask: Tensor) -> Planes:
    """x (B, 2, N, 3) and mask (B, 2, N) -> Planes (padding forced to zero)."""
    check_inputs(x, mask)
    weight = mask.to(x.dtype)
    planes = x.movedim(-1, 0).clone(memory_format=torch.contiguous_format)  # always a copy
    pt, eta, phi = (plane.mul_(weight) for plane in planes.unbind(0))
    return Planes(pt, eta, phi, weight, mask)


def from_planes(planes: Planes) -> tuple[Tensor, Tensor]:
    """Planes -> (x (B, 2, N, 3) contiguous, mask (B, 2, N) bool)."""
    pt = planes.pt
    x = torch.empty((*pt.shape, 3), dtype=pt.dtype, device=pt.device)
    x[..., PT] = pt
    x[..., ETA] = planes.eta
    x[..., PHI] = planes.phi
    return x, planes.mask


def _phi_bounds_of(dtype: torch.dtype) -> tuple[float, float]:
    """(lowest, highest) representable phi in (-pi, pi] for ``dtype``."""
    high = torch.tensor(math.pi, dtype=dtype)
    low = torch.nextafter(-high, torch.zeros((), dtype=dtype))
    return float(low), float(high)


_PHI_BOUNDS = {
    dtype: _phi_bounds_of(dtype)
    for dtype in (torch.float16, torch.bfloat16, torch.float32, torch.float64)
}
"""Computed once at import: a plain lookup inside the model, which ``torch.compile`` traces
without touching tensors (a cached function there would be traced anew, with a warning)."""


def _phi_bounds(dtype: torch.dtype) -> tuple[float, float]:
    bounds = _PHI_BOUNDS.get(dtype)
    return bounds if bounds is not None else _phi_bounds_of(dtype)


def wrap_phi(phi: Tensor) -> Tensor:
    """Map angles [rad] into (-pi, pi] (the torch twin of ``data.particles.wrap_phi``).

    phi - 2 pi round(phi / 2 pi), clamped to the representable (-pi, pi] of the dtype: float
    rounding next to the branch cut cannot leave the interval, and a value that lands on
    exactly -pi becomes the next float above it (the same direction to within 1 ulp). Any
    shape; zero maps to zero.
    """
    low, high = _phi_bounds(phi.dtype)
    turns = torch.mul(phi, 1 / TWO_PI).round_()
    return torch.sub(phi, turns, alpha=TWO_PI).clamp_(low, high)


def jet_frame(pt: Tensor, eta: Tensor, phi: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Jet axis and constituent offsets from planes (B, 2, N) whose padding has pT = 0.

    The axis is the pT-weighted centroid in (eta, phi). phi is measured as the wrapped offset
    from the jet's leading (highest-pT) constituent, so a jet across phi = +-pi is handled:
    with c the pT-weighted mean of those offsets, phi_axis = wrap(phi_lead + c) and a
    constituent's d_phi = wrap(phi - phi_lead) - c (equal to wrap(phi - phi_axis) for any jet
    narrower than pi). An empty jet gets the axis (0, phi of slot 0).

    Returns:
        (eta_axis, phi_axis), each (B, 2, 1), and (d_eta, d_phi), each (B, 2, N) (meaningless
        at padding).
    """
    lead = pt.max(dim=-1, keepdim=True).indices
    phi_ref = phi.gather(-1, lead)
    total = pt.sum(dim=-1, keepdim=True).clamp_min_(_TINY)
    eta_axis = (pt * eta).sum(dim=-1, keepdim=True).div_(total)
    offset = wrap_phi(phi - phi_ref)
    centre = (pt * offset).sum(dim=-1, keepdim=True).div_(total)
    return eta_axis, wrap_phi(phi_ref + centre), eta - eta_axis, offset.sub_(centre)


def axis_of(pt: Tensor, eta: Tensor, phi: Tensor) -> tuple[Tensor, Tensor]:
    """Jet axis (eta_axis, phi_axis), each (B, 2, 1), of planes (B, 2, N); see ``jet_frame``."""
    eta_axis, phi_axis, _, _ = jet_frame(pt, eta, phi)
    return eta_axis, phi_axis


def jet_axis(x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """The jet axis (eta_axis, phi_axis), each (B, 2): pT-weighted (eta, phi) centroid.

    See ``axis_of``; x (B, 2, N, 3) (pT [GeV], eta, phi [rad]), mask (B, 2, N) bool.
    """
    planes = to_planes(x, mask)
    eta_axis, phi_axis = axis_of(planes.pt, planes.eta, planes.phi)
    return eta_axis.squeeze(-1), phi_axis.squeeze(-1)


def is_compact(weight: Tensor, count: Tensor | None = None) -> bool:
    """Whether every jet's real slots come first: the indices of n real slots sum to n(n-1)/2.

    weight (B, 2, N) 0/1 floats; count (B, 2, 1), its sum over slots, if already known.
    """
    slot = torch.arange(weight.shape[-1], device=weight.device, dtype=weight.dtype)
    n = weight.sum(dim=-1, keepdim=True) if count is None else count
    index_sum = (weight * slot).sum(dim=-1, keepdim=True)  # exact: integers below 2**24
    return bool((index_sum == n * (n - 1) / 2).all())  # one host sync on GPU


def compact(planes: Planes) -> Planes:
    """Move each jet's real slots to the front, keeping their order (padding after them)."""
    weight = planes.weight
    rank_real = weight.cumsum(dim=-1) - 1
    rank_free = (1 - weight).cumsum(dim=-1) - 1
    n_real = weight.sum(dim=-1, keepdim=True)
    position = (weight * rank_real + (1 - weight) * (n_real + rank_free)).long()

    def move(plane: Tensor) -> Tensor:
        return torch.zeros_like(plane).scatter_(-1, position, plane)

    moved = move(weight)
    return Planes(move(planes.pt), move(planes.eta), move(planes.phi), moved, moved > 0)


def sort_constituents(x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """Reorder each jet's slots: real constituents first, pT-descending, then the padding.

    x (B, 2, N, 3), mask (B, 2, N) -> the same shapes and constituents; stable for ties. For
    consumers that need pT order after augmentations that change pT (collinear_split, pt_smear).
    """
    key = torch.where(mask, x[..., PT], -1.0)
    order = torch.sort(key, dim=-1, descending=True, stable=True).indices
    x = x.gather(-2, order.unsqueeze(-1).expand_as(x))
    return x, mask.gather(-1, order)
