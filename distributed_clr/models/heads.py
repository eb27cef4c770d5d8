"""The two-layer projection head and the choice of downstream representation."""

from __future__ import annotations

import torch
from torch import nn


class ProjectionHead(nn.Module):
    """latent (B, D) -> layer 1 (B, H) with ReLU -> output (B, O), O = ``out_dim`` or D.

    ``forward`` returns both the first layer's activations (the seed paper's representation)
    and the output the contrastive loss sees.
    """

    def __init__(self, latent_dim: int, hidden_dim: int, out_dim: int | None = None) -> None:
        super().__init__()
        self.layer1 = nn.Sequential(nn.Linear(latent_dim, hidden_dim), nn.ReLU())
        self.layer2 = nn.Linear(hidden_dim, out_dim or latent_dim)

    def forward(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        first: torch.Tensor = self.layer1(h)
        out: torch.Tensor = self.layer2(first)
        return first, out
