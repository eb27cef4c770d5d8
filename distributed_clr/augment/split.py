"""Collinear splitting: one constituent becomes two collinear daughters sharing its pT."""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from distributed_clr.augment.geometry import Planes, compact, from_planes, is_compact, to_planes

SplitChoice = Literal["leading", "random"]

RATIO_EPSILON = 1e-6
"""r ~ U(0, 1) is clamped to [eps, 1 - eps] so that neither daughter has pT exactly zero."""


def collinear_split_planes(
    planes: Planes,
    generator: torch.Generator,
    max_splits: int = 10,
    choice: SplitChoice = "leading",
) -> Planes:
    """``collinear_split`` on Planes (B, 2, N).

    Draws (B, 2, K) ratios with K = min(max_splits, N // 2), plus (B, 2, N) keys first for
    ``choice='random'``.
    """
    if max_splits < 0:
        raise ValueError(f"max_splits must be >= 0, got {max_splits}")
    if choice not in ("leading", "random"):
        raise ValueError(f"choice must be 'leading' or 'random', got {choice!r}")
    n_slots = planes.pt.shape[-1]
    width = min(max_splits, n_slots // 2)  # K: no jet can take more splits than this
    if width == 0:
        return planes
    n_real = planes.weight.sum(dim=-1, keepdim=True)  # (B, 2, 1)
    # On an accelerator compacting unconditionally is cheaper than asking whether it is needed
    # (the answer is a host sync); on CPU the check saves the scatters.
    if planes.weight.device.type != "cpu" or not is_compact(planes.weight, n_real):
        planes = compact(planes)
    pt, eta, phi, weight, _ = planes
    device, dtype = pt.device, pt.dtype
    shape = (*pt.shape[:-1], width)

    # Splits per jet, and where their daughters go: first the free (padding) slots, then, for a
    # jet with too few of them, the slots of its softest constituents, which leave the jet.
    n_split = torch.minimum(n_real, torch.full_like(n_real, float(width)))  # (B, 2, 1)
    free = n_slots - n_real
    n_over = (n_split - free).clamp_(min=0)  # constituents replaced by daughters
    position = torch.arange(n_slots, device=device, dtype=dtype)
    replaced = (position >= n_real - n_over) & (position < n_real)  # (B, 2, N)
    keep = (~replaced).to(dtype)
    pt, eta, phi, weight = pt * keep, eta * keep, phi * keep, weight * keep

    # candidate mothers j = 0..K-1 of each jet (slot indices (B, 2, K)); split if j < n_split
    if choice == "leading":  # the first real slots: the hardest for pT-descending input
        slots = torch.arange(width, device=device).expand(shape)
        m_pt, m_eta, m_phi = pt[..., :width], eta[..., :width], phi[..., :width]
    else:  # remaining real slots in random order (others get keys >= 2 and sort last)
        keys = torch.rand(pt.shape, generator=generator, device=device, dtype=dtype)
        slots = keys.add_(2 * (1 - weight)).argsort(dim=-1)[..., :width]
        m_pt, m_eta, m_phi = (plane.gather(-1, slots) for plane in (pt, eta, phi))
    ratio = torch.rand(shape, generator=generator, device=device, dtype=dtype)
    ratio = ratio.clamp_(RATIO_EPSILON, 1 - RATIO_EPSILON)

    j = torch.arange(width, device=device, dtype=dtype)
    split = (n_split - j).clamp_(0, 1)  # (B, 2, K): 1 where mother j is split, else 0
    given = m_pt * split * (1 - ratio)  # the second daughter's pT; 0 if not split
    # daughter j's slot: free slot n_real + j, else the j-th replaced slot (counted from
    # n_real - n_over); a candidate that is not split adds zeros wherever it points
    target = torch.where(j < free, n_real + j, n_real - n_over + (j - free))
    target = target.clamp_(0, n_slots - 1).long()

    # Daughter j adds (given, eta, phi, 1) to its slot, whose values are exact zeros before
    # (padding, or a replaced constituent cleared above). The mother keeps pT - given.
    source = torch.stack((given, m_eta * split, m_phi * split, split))  # (4, B, 2, K)
    out = torch.stack((pt, eta, phi, weight))
    out.scatter_add_(-1, target.expand_as(source), source)
    new_pt, new_eta, new_phi, new_weight = out.unbind(0)
    if choice == "leading":
        new_pt[..., :width] -= given
    else:
        new_pt.scatter_add_(-1, slots, given.neg())
    return Planes(new_pt, new_eta, new_phi, new_weight, new_weight > 0)


def collinear_split(
    x: Tensor,
    mask: Tensor,
    generator: torch.Generator,
    max_splits: int = 10,
    choice: SplitChoice = "leading",
) -> tuple[Tensor, Tensor]:
    """Split up to ``max_splits`` real constituents per jet into two collinear daughters.

    A jet with n real constituents in N slots gets ``min(max_splits, n, N // 2)`` splits. The
    mother keeps fraction r ~ U(0, 1) of its pT (r clamped to [1e-6, 1 - 1e-6]) in its slot;
    the second daughter, at the mother's (eta, phi) with pT_mother - r pT_mother, takes the next
    free slot of the same jet or, when the jet has no free slot left (most jets fill the 30 to
    50 slots kept), the slot of its softest remaining constituent, which leaves the jet. So the
    augmentation acts on full jets too. Daughters are collinear and massless: a jet with enough
    free slots keeps its scalar pT sum and four-momentum (to rounding); a full jet loses only
    its softest constituents.

    ``choice='leading'`` (default) splits the first real slots, which are the hardest
    constituents for pT-descending input (the loader's order, kept by rotate, distort, the
    shifts, translate and drop), i.e. the ones a pT-weighted encoder is most sensitive to;
    ``'random'`` picks them uniformly without replacement (as the seed paper does; slower on
    CPU: one sort per call).

    Args:
        x: (B, 2, N, 3) (pT [GeV], eta, phi [rad]); padding zero.
        mask: (B, 2, N) bool, True for real constituents.
        generator: torch.Generator on ``x.device``.
        max_splits: k >= 0, the most splits per jet.
        choice: which constituents are split, 'leading' or 'random'.

    Returns:
        (x, mask): x (B, 2, N, 3), mask (B, 2, N). Real constituents stay in front of the
        padding (a non-compact input is compacted first); the new daughters follow the jet's
        other constituents, so pT order is not kept (``geometry.sort_constituents`` restores
        it).
    """
    return from_planes(collinear_split_planes(to_planes(x, mask), generator, max_splits, choice))
