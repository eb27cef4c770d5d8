"""The seed paper's encoder, rebuilt from its description as the reference to beat.

Dillon, Mastandrea and Nachman (2023) embed each constituent of the two jets with one linear
layer, run stock post-norm transformer layers (ReLU, feed-forward size = width) over all of
them, and pool by summing the outputs weighted by the constituents' rescaled pT. Their
attention adds -1 / pT_rescaled to the logit of every key, so a constituent of pT_rescaled ->
0 (padding included) is never attended to; that is their soft mask. This module does the same
with ``torch.nn.TransformerEncoderLayer``; nothing of our own encoder (``transformer.py``:
pre-norm blocks, jet-identity embedding, normalised pT-weighted attention and pooling) is
used, so the benchmark compares two independent implementations.

One difference, on purpose: the paper rescales pT by a tenth of the largest constituent pT in
the training batch; here it is divided by a fixed ``model.reference_pt_scale`` (100 GeV by
default, the same magnitude for these jets), so that an event's representation does not depend
on the batch it was in. The representation after the first head layer (``representation:
head1``) is the paper's.
"""

from __future__ import annotations

import torch
from torch import nn

from distributed_clr.config.schema import ModelConfig
from distributed_clr.models.transformer import check_dijet_features, output_layer

_FLOOR = 1e4


class ReferenceEncoder(nn.Module):
    """features (B, 2, N, F), mask (B, 2, N), weights = pT [GeV] (B, 2, N) -> (B, latent_dim)."""

    def __init__(self, config: ModelConfig, in_features: int) -> None:
        super().__init__()
        width = config.width or config.latent_dim
        self.heads = config.heads
        self.pt_scale = config.reference_pt_scale
        self.embed = nn.Linear(in_features, width)
        layer = nn.TransformerEncoderLayer(
            width,
            config.heads,
            dim_feedforward=config.ff_dim or width,
            dropout=config.dropout,
            batch_first=True,
        )
        self.layers = nn.TransformerEncoder(layer, config.depth, enable_nested_tensor=False)
        self.out = output_layer(width, config.latent_dim)

    def forward(
        self, features: torch.Tensor, mask: torch.Tensor, weights: torch.Tensor
    ) -> torch.Tensor:
        check_dijet_features(features)
        b, jets, n, f = features.shape
        slots = jets * n
        h = self.embed(features.reshape(b, slots, f))
        mask = mask.reshape(b, slots)
        pt = torch.where(mask, weights.reshape(b, slots).clamp_min(0) / self.pt_scale, 0.0)
        # -1 / pT_rescaled, floored at a large finite value that also stands for padding:
        # exp(-1e4) is exactly 0 in float32, so padding is never attended to, and an event
        # without constituents attends uniformly (its pooled output is zero anyway).
        bias = torch.where(mask, -1.0 / pt.clamp_min(1.0 / _FLOOR), -_FLOOR)
        attn = bias[:, None, None, :].expand(b, self.heads, slots, slots)
        # PyTorch's fused inference path (eval mode, no grad) returns NaN for a per-event float
        # mask of shape (B * heads, S, S); the plain path computes the same layers correctly.
        fastpath = torch.backends.mha.get_fastpath_enabled()
        torch.backends.mha.set_fastpath_enabled(False)
        try:
            h = self.layers(h, mask=attn.reshape(b * self.heads, slots, slots).to(h.dtype))
        finally:
            torch.backends.mha.set_fastpath_enabled(fastpath)
        pooled = (h * pt.unsqueeze(-1).to(h.dtype)).sum(dim=1)
        out: torch.Tensor = self.out(pooled)
        return out
