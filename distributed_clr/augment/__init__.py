"""Batched physics-symmetry augmentations of dijet events, and the encoder's input features.

Every augmentation is a pure torch function ``(x, mask, generator, **params) -> (x, mask)`` on
x (B, 2, N, 3) = (pT [GeV], eta, phi [rad]) and mask (B, 2, N) bool (object-level events are
(B, 1, 19, 3); ``check_pipeline`` says which augmentations apply to them), on CPU or GPU, with every
random draw taken from the given ``torch.Generator`` (which must live on ``x.device``). Padding
stays exactly zero and masked, and phi stays in (-pi, pi].

``Augmenter(config)`` applies ``AugmentConfig.pipeline`` in order; ``make_views`` makes the two
views of contrastive training; ``normalize`` turns (x, mask) into encoder features with fixed
constants.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import partial
from typing import Protocol

import torch
from torch import Tensor

from distributed_clr.augment.distort import distort, distort_planes
from distributed_clr.augment.drop import drop, drop_planes
from distributed_clr.augment.effects import Effect, effects
from distributed_clr.augment.geometry import (
    Planes,
    from_planes,
    jet_axis,
    sort_constituents,
    to_planes,
    wrap_phi,
)
from distributed_clr.augment.mask_inputs import mask_inputs, mask_inputs_planes
from distributed_clr.augment.mask_objects import mask_objects, mask_objects_planes
from distributed_clr.augment.normalize import (
    DEFAULT_NORMALIZER,
    FEATURE_NAMES,
    NUM_FEATURES,
    OBJECT_FEATURES,
    Normalizer,
    ObjectNormalizer,
    normalize,
)
from distributed_clr.augment.rotate import rotate, rotate_planes
from distributed_clr.augment.shift import eta_shift, eta_shift_planes, phi_shift, phi_shift_planes
from distributed_clr.augment.smear import pt_smear, pt_smear_planes
from distributed_clr.augment.split import collinear_split, collinear_split_planes
from distributed_clr.augment.translate import translate, translate_planes
from distributed_clr.config.errors import ConfigError
from distributed_clr.config.schema import OBJECT_AUGMENTATIONS, AugmentConfig

Events = tuple[Tensor, Tensor]
"""(x (B, 2, N, 3), mask (B, 2, N))."""


class PlanesStep(Protocol):
    """A configured augmentation step on Planes: (planes, generator) -> planes."""

    def __call__(self, planes: Planes, generator: torch.Generator) -> Planes: ...


AUGMENTATIONS: Mapping[str, Callable[..., Events]] = {
    "rotate": rotate,
    "distort": distort,
    "collinear_split": collinear_split,
    "eta_shift": eta_shift,
    "phi_shift": phi_shift,
    "translate": translate,
    "drop": drop,
    "pt_smear": pt_smear,
    "mask_objects": mask_objects,
    "mask_inputs": mask_inputs,
}
"""Registry: augmentation name (as in ``AugmentConfig.pipeline``) -> batched function."""

PLANES_FUNCTIONS: Mapping[str, Callable[..., Planes]] = {
    "rotate": rotate_planes,
    "distort": distort_planes,
    "collinear_split": collinear_split_planes,
    "eta_shift": eta_shift_planes,
    "phi_shift": phi_shift_planes,
    "translate": translate_planes,
    "drop": drop_planes,
    "pt_smear": pt_smear_planes,
    "mask_objects": mask_objects_planes,
    "mask_inputs": mask_inputs_planes,
}
"""The same augmentations on ``Planes`` (what ``Augmenter`` chains, converting only once)."""


def _parameters(name: str, config: AugmentConfig) -> dict[str, float | int | str]:
    """The keyword parameters of augmentation ``name`` taken from ``config``."""
    table: dict[str, dict[str, float | int | str]] = {
        "rotate": {},
        "distort": {"strength": config.distort_strength, "pt_min": config.distort_pt_min},
        "collinear_split": {"max_splits": config.split_max, "choice": config.split_choice},
        "eta_shift": {"max_shift": config.eta_shift_max},
        "phi_shift": {},
        "translate": {"width": config.translate_width},
        "drop": {"probability": config.drop_probability},
        "pt_smear": {"width": config.pt_smear},
        "mask_objects": {"probability": config.mask_probability},
        "mask_inputs": {"probability": config.input_mask_probability},
    }
    return table[name]


def get_augmentation(name: str) -> Callable[..., Events]:
    """The registered function called ``name``; ValueError listing the allowed names if none."""
    try:
        return AUGMENTATIONS[name]
    except KeyError:
        allowed = ", ".join(AUGMENTATIONS)
        raise ValueError(f"unknown augmentation '{name}'; allowed: {allowed}") from None


def check_pipeline(pipeline: list[str] | tuple[str, ...], kind: str) -> None:
    """ConfigError unless every augmentation of ``pipeline`` applies to ``kind`` events:
    object-level events allow only ``OBJECT_AUGMENTATIONS``."""
    if kind != "objects":
        return
    wrong = [name for name in pipeline if name not in OBJECT_AUGMENTATIONS]
    if wrong:
        raise ConfigError(
            f"augment.pipeline has {', '.join(wrong)}, which act(s) on jet constituents, not on "
            f"object-level events; object augmentations are {', '.join(OBJECT_AUGMENTATIONS)} "
            "(preset paper_adc uses mask_inputs)"
        )


class Augmenter:
    """The configured pipeline: ``Augmenter(config)(x, mask, generator) -> (x, mask)``.

    Steps run in ``config.pipeline`` order, each drawing from the same generator, so one seed
    fixes the whole pipeline's output on a given device; the result equals calling the public
    functions one after the other with that generator. The events are converted to ``Planes``
    once for the whole pipeline.
    """

    def __init__(self, config: AugmentConfig) -> None:
        self.config = config
        self.names: tuple[str, ...] = tuple(config.pipeline)
        for name in self.names:
            get_augmentation(name)  # ValueError for unknown names
        self.steps: tuple[PlanesStep, ...] = tuple(
            partial(PLANES_FUNCTIONS[name], **_parameters(name, config)) for name in self.names
        )

    def __call__(self, x: Tensor, mask: Tensor, generator: torch.Generator) -> Events:
        """Augment x (B, 2, N, 3) and mask (B, 2, N); returns new tensors of the same shapes
        (the inputs themselves for an empty pipeline)."""
        if not self.steps:
            return x, mask
        planes = to_planes(x, mask)
        for step in self.steps:
            planes = step(planes, generator)
        return from_planes(planes)

    def __repr__(self) -> str:
        return f"Augmenter({' -> '.join(self.names) or 'identity'})"


def make_views(
    x: Tensor,
    mask: Tensor,
    config: AugmentConfig | Augmenter,
    generator: torch.Generator,
) -> tuple[Events, Events]:
    """The two views ((x1, m1), (x2, m2)) of a batch for contrastive training.

    ``views='both'``: each view is augmented independently (view 1 drawn first).
    ``views='anchor'``: view 1 is the input itself (the same tensors, not a copy), view 2 is
    augmented.

    Args:
        x: (B, 2, N, 3) (pT [GeV], eta, phi [rad]); padding zero.
        mask: (B, 2, N) bool, True for real constituents.
        config: the augmentation config, or an Augmenter already built from one.
        generator: torch.Generator on ``x.device``.
    """
    augmenter = config if isinstance(config, Augmenter) else Augmenter(config)
    views = augmenter.config.views
    if views not in ("both", "anchor"):
        raise ValueError(f"unknown views '{views}'; allowed: both, anchor")
    first = augmenter(x, mask, generator) if views == "both" else (x, mask)
    return first, augmenter(x, mask, generator)


__all__ = [
    "AUGMENTATIONS",
    "DEFAULT_NORMALIZER",
    "FEATURE_NAMES",
    "NUM_FEATURES",
    "OBJECT_FEATURES",
    "PLANES_FUNCTIONS",
    "Augmenter",
    "Effect",
    "Events",
    "Normalizer",
    "ObjectNormalizer",
    "Planes",
    "PlanesStep",
    "check_pipeline",
    "collinear_split",
    "distort",
    "drop",
    "effects",
    "eta_shift",
    "from_planes",
    "get_augmentation",
    "jet_axis",
    "make_views",
    "mask_inputs",
    "mask_objects",
    "normalize",
    "phi_shift",
    "pt_smear",
    "rotate",
    "sort_constituents",
    "to_planes",
    "translate",
    "wrap_phi",
]
