"""How much each configured augmentation actually changes: ``effects(...)``.

An augmentation that rarely acts (a collinear split with no free slot, a shift of zero width)
or that the encoder cannot see (its features are invariant to it by construction, see
``normalize.INVARIANT``) silently weakens contrastive training and makes an ablation's
"without X" row noise. ``effects`` applies every step of the pipeline on its own to the same
events and measures the fraction of events whose constituents changed and the fraction whose
encoder features changed; a pretraining run logs both for each augmentation.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor

from distributed_clr.augment.geometry import Planes, from_planes, to_planes

__all__ = ["EVENT_TOLERANCE", "FEATURE_TOLERANCE", "Effect", "effects"]

EVENT_TOLERANCE = 1e-5
"""An event changed when a constituent's (pT / jet pT, eta, phi) moved by more than this, or its
mask changed (a relative pT measure, so a 1 TeV jet's float rounding does not count)."""
FEATURE_TOLERANCE = 1e-4
"""An event's features changed when one moved by more than this (features are O(1))."""


@dataclass(frozen=True)
class Effect:
    """What one augmentation did to a sample of events."""

    name: str
    events_changed: float
    """Fraction of events whose constituents (or mask) changed."""
    features_changed: float
    """Fraction of events whose encoder features changed."""
    invariant: bool
    """The encoder's features are invariant to this augmentation by construction."""

    def describe(self) -> str:
        text = (
            f"{self.name}: changed {self.events_changed:.1%} of events, "
            f"{self.features_changed:.1%} of encoder inputs"
        )
        return text + ("; the encoder is invariant to it by construction" if self.invariant else "")


class Pipeline(Protocol):
    """What ``effects`` needs of an ``Augmenter``."""

    @property
    def names(self) -> tuple[str, ...]: ...

    @property
    def steps(self) -> Sequence[Callable[[Planes, torch.Generator], Planes]]: ...


class FeatureMap(Protocol):
    """What ``effects`` needs of a ``Normalizer``."""

    @property
    def invariances(self) -> frozenset[str]: ...

    def __call__(self, x: Tensor, mask: Tensor) -> Tensor: ...


def _changed_events(x: Tensor, mask: Tensor, x2: Tensor, mask2: Tensor) -> Tensor:
    """(B,) bool: the event's constituents or mask differ."""
    jet_pt = (x[..., 0] * mask).sum(dim=-1, keepdim=True).clamp_min(1e-6)  # (B, 2, 1)
    scale = torch.stack(
        (jet_pt.expand_as(x[..., 0]), torch.ones_like(x[..., 1]), torch.ones_like(x[..., 2])),
        dim=-1,
    )
    moved = ((x2 - x).abs() / scale > EVENT_TOLERANCE).flatten(1).any(dim=1)
    return moved | (mask2 != mask).flatten(1).any(dim=1)


def _changed_features(features: Tensor, features2: Tensor) -> Tensor:
    return ((features2 - features).abs() > FEATURE_TOLERANCE).flatten(1).any(dim=1)


def effects(
    augmenter: Pipeline,
    normalizer: FeatureMap,
    x: Tensor,
    mask: Tensor,
    generator: torch.Generator,
) -> list[Effect]:
    """The effect of each step of ``augmenter`` (an ``Augmenter``), applied alone to (x, mask).

    Args:
        augmenter: the configured pipeline; its steps are measured in pipeline order.
        normalizer: the encoder's feature map (a ``Normalizer``), for ``features_changed`` and
            ``invariant``.
        x: (B, 2, N, 3) (pT [GeV], eta, phi [rad]); padding zero. B > 0.
        mask: (B, 2, N) bool.
        generator: torch.Generator on ``x.device`` (one seed fixes every fraction).
    """
    if x.shape[0] == 0:
        raise ValueError("effects needs at least one event")
    features = normalizer(x, mask)
    out = []
    with torch.no_grad():
        for name, step in zip(augmenter.names, augmenter.steps, strict=True):
            x2, mask2 = from_planes(step(to_planes(x, mask), generator))
            events = _changed_events(x, mask, x2, mask2)
            changed = _changed_features(features, normalizer(x2, mask2))
            out.append(
                Effect(
                    name=name,
                    events_changed=float(events.float().mean()),
                    features_changed=float(changed.float().mean()),
                    invariant=name in normalizer.invariances,
                )
            )
    return out
