"""Encoders, the projection head, and the model the training loop trains."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import torch
from torch import nn

from distributed_clr.config.errors import ConfigError
from distributed_clr.config.schema import ModelConfig
from distributed_clr.models.heads import ProjectionHead
from distributed_clr.models.mlp import MLPEncoder
from distributed_clr.models.reference import ReferenceEncoder
from distributed_clr.models.transformer import TransformerEncoder
from distributed_clr.storage.formats import EventLayout, dijet_layout

__all__ = [
    "ENCODERS",
    "ContrastiveModel",
    "Features",
    "MLPEncoder",
    "ProjectionHead",
    "ReferenceEncoder",
    "TransformerEncoder",
    "build_encoder",
    "build_model",
]


class Features(Protocol):
    """Input normalisation: raw (B, S, N, 3) (pT, eta, phi) + mask -> (B, S, N, F) features."""

    @property
    def num_features(self) -> int: ...

    @property
    def invariances(self) -> frozenset[str]:
        """Augmentations the features cannot see by construction."""
        ...

    def __call__(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor: ...


def _transformer(config: ModelConfig, in_features: int, layout: EventLayout) -> nn.Module:
    types = None if layout.kind == "dijet" else layout.token_types
    return TransformerEncoder(config, in_features, token_types=types)


def _mlp(config: ModelConfig, in_features: int, layout: EventLayout) -> nn.Module:
    return MLPEncoder(config, in_features, layout.groups * layout.slots)


def _reference(config: ModelConfig, in_features: int, layout: EventLayout) -> nn.Module:
    if layout.kind != "dijet":
        raise ConfigError(
            "model.name=reference is the seed paper's dijet encoder; object-level events take "
            "model.name=mlp or transformer"
        )
    return ReferenceEncoder(config, in_features)


ENCODERS: dict[str, Callable[[ModelConfig, int, EventLayout], nn.Module]] = {
    "transformer": _transformer,
    "mlp": _mlp,
    "reference": _reference,
}


def build_encoder(config: ModelConfig, in_features: int, layout: EventLayout) -> nn.Module:
    """The encoder named by ``config.name`` for events of ``layout``."""
    return ENCODERS[config.name](config, in_features, layout)


class ContrastiveModel(nn.Module):
    """normalise -> encoder -> projection head.

    ``forward(x, mask)`` returns the head output (B, latent_dim) for the contrastive loss;
    ``represent(x, mask)`` returns the downstream representation chosen by
    ``config.representation`` ('encoder', 'head1' or 'head').
    """

    def __init__(self, config: ModelConfig, features: Features, layout: EventLayout):
        super().__init__()
        self.features = features
        self.layout = layout
        self.encoder = build_encoder(config, features.num_features, layout)
        self.head = ProjectionHead(
            config.latent_dim, config.head_dim or config.latent_dim, config.head_out
        )
        self.representation = config.representation

    def _encode(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.encoder(self.features(x, mask), mask, x[..., 0])
        return out

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        _, out = self.head(self._encode(x, mask))
        projected: torch.Tensor = out
        return projected

    def represent(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h = self._encode(x, mask)
        if self.representation == "encoder":
            return h
        first, out = self.head(h)
        chosen: torch.Tensor = first if self.representation == "head1" else out
        return chosen


def build_model(config: ModelConfig, layout: EventLayout | int) -> ContrastiveModel:
    """The untrained contrastive model for events of ``layout`` (an int: dijets of that many
    constituents per jet): fixed-constant normalisation (``Normalizer`` for dijets,
    ``ObjectNormalizer`` for objects), the encoder named by ``config.name``, and the
    projection head (the one place that builds it)."""
    from distributed_clr.augment.normalize import Normalizer, ObjectNormalizer

    if isinstance(layout, int):
        layout = dijet_layout(layout)
    features: Features
    if layout.kind == "objects":
        features = ObjectNormalizer()
    else:
        features = Normalizer(frame=config.inputs, pt_scale=config.reference_pt_scale)
    return ContrastiveModel(config, features, layout)
