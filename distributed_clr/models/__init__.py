"""Encoders, the projection head, and the model the training loop trains."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import torch
from torch import nn

from distributed_clr.config.schema import ModelConfig
from distributed_clr.models.heads import ProjectionHead
from distributed_clr.models.mlp import MLPEncoder
from distributed_clr.models.reference import ReferenceEncoder
from distributed_clr.models.transformer import NUM_JETS, TransformerEncoder

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
    """Input normalisation: raw (B, 2, N, 3) (pT, eta, phi) + mask -> (B, 2, N, F) features."""

    @property
    def num_features(self) -> int: ...

    def __call__(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor: ...


def _transformer(config: ModelConfig, in_features: int, slots: int) -> nn.Module:
    del slots
    return TransformerEncoder(config, in_features)


def _mlp(config: ModelConfig, in_features: int, slots: int) -> nn.Module:
    return MLPEncoder(config, in_features, slots)


def _reference(config: ModelConfig, in_features: int, slots: int) -> nn.Module:
    del slots
    return ReferenceEncoder(config, in_features)


ENCODERS: dict[str, Callable[[ModelConfig, int, int], nn.Module]] = {
    "transformer": _transformer,
    "mlp": _mlp,
    "reference": _reference,
}


def build_encoder(config: ModelConfig, in_features: int, constituents_per_jet: int) -> nn.Module:
    """The encoder named by ``config.name``."""
    return ENCODERS[config.name](config, in_features, NUM_JETS * constituents_per_jet)


class ContrastiveModel(nn.Module):
    """normalise -> encoder -> projection head.

    ``forward(x, mask)`` returns the head output (B, latent_dim) for the contrastive loss;
    ``represent(x, mask)`` returns the downstream representation chosen by
    ``config.representation`` ('encoder', 'head1' or 'head').
    """

    def __init__(self, config: ModelConfig, features: Features, constituents_per_jet: int):
        super().__init__()
        self.features = features
        self.encoder = build_encoder(config, features.num_features, constituents_per_jet)
        self.head = ProjectionHead(config.latent_dim, config.head_dim or config.latent_dim)
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


def build_model(config: ModelConfig, constituents_per_jet: int) -> ContrastiveModel:
    """The untrained contrastive model: fixed-constant normalisation, the encoder named by
    ``config.name``, and the projection head (the one place that builds it)."""
    from distributed_clr.augment.normalize import Normalizer

    features = Normalizer(frame=config.inputs, pt_scale=config.reference_pt_scale)
    return ContrastiveModel(config, features, constituents_per_jet)
