"""An MLP encoder on the flattened constituents (or physics objects) of an event."""

from __future__ import annotations

import torch
from torch import nn

from distributed_clr.config.schema import ModelConfig


def _norm(kind: str, size: int) -> list[nn.Module]:
    if kind == "layer":
        return [nn.LayerNorm(size)]
    if kind == "batch":
        return [nn.BatchNorm1d(size)]
    return []


class MLPEncoder(nn.Module):
    """features (B, S, N, F) and mask (B, S, N) -> (B, latent_dim).

    Linear -> normalisation (``model.mlp_norm``) -> activation -> dropout per hidden layer,
    then a linear map to the latent size; with ``mlp_hidden`` 96, 64, 48, layer or batch norm
    and LeakyReLU this is the 2025 paper's encoder on the 57 inputs of an object-level event.
    Padding is zeroed before flattening, so the output depends only on real entries; the
    input order is part of the representation (objects have fixed slots), unlike the
    transformer.
    """

    def __init__(self, config: ModelConfig, in_features: int, slots: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        size = slots * in_features
        for hidden in config.mlp_hidden:
            activation = nn.LeakyReLU() if config.mlp_activation == "leaky_relu" else nn.GELU()
            layers += [nn.Linear(size, hidden), *_norm(config.mlp_norm, hidden), activation]
            layers.append(nn.Dropout(config.dropout))
            size = hidden
        layers.append(nn.Linear(size, config.latent_dim))
        self.net = nn.Sequential(*layers)
        self.slots = slots

    def forward(
        self, features: torch.Tensor, mask: torch.Tensor, weights: torch.Tensor | None = None
    ) -> torch.Tensor:
        del weights  # the MLP has no pooling
        b = features.shape[0]
        flat = (features * mask.unsqueeze(-1).to(features.dtype)).reshape(b, -1)
        if flat.shape[1] != self.slots * features.shape[-1]:
            raise ValueError(
                f"MLP encoder built for {self.slots} slots, got {features.shape[1:3].numel()}"
            )
        out: torch.Tensor = self.net(flat)
        return out
