"""The masked transformer encoder over the constituents of both jets, or the objects of an event.

Each token is embedded from its (normalised) features plus a learned type embedding: the jet
of a constituent (jet 1 or jet 2), or the type of an object slot (MET, electron, muon, jet);
``storage.formats.EventLayout.token_types`` gives each slot its type. There are no positional
encodings, so the encoder is invariant to
the order of constituents, and padding is masked out of attention and pooling, so extra zero
padding changes nothing.

**IR safety.** With ``pt_weighted`` pooling the event representation is sum_i w_i h_i, with
w_i = pT_i / sum_j pT_j. A soft particle's own term vanishes with its weight, but through
attention it could still move every other h_j. So, by default, attention is pT-weighted too:
log(w_j) is added to the logit of key j, which makes the attention weights proportional to
w_j exp(q.k_j). A particle of vanishing pT then has vanishing influence everywhere, and the
output is continuous in the soft limit (a zero-pT particle is exactly padding).

**Attention kernels.** ``scaled_dot_product_attention`` picks its kernel from the mask it is
given. Without IR-safe weighting the mask is boolean (keys to attend to), which the fused
kernels take as it is; with it, the log-weight bias is passed in the compute dtype of the
queries (bf16 under autocast), the form CUDA's memory-efficient kernel accepts; a float32 bias
against bf16 queries would send it to the unfused math path. On CPU every variant runs in the
fused flash kernel.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from distributed_clr.config.schema import ModelConfig

NUM_JETS = 2


def check_dijet_features(features: torch.Tensor) -> None:
    """Raise ValueError unless ``features`` is (B, 2, N, F): the two jets' constituents."""
    if features.ndim != 4 or features.shape[1] != NUM_JETS:
        raise ValueError(f"expected features of shape (B, 2, N, F), got {tuple(features.shape)}")


def dijet_types(constituents_per_jet: int) -> tuple[int, ...]:
    """The token types of a dijet: each constituent's jet (0 or 1)."""
    return (0,) * constituents_per_jet + (1,) * constituents_per_jet


def output_layer(width: int, latent_dim: int) -> nn.Module:
    """The map from the model width to the latent size (identity when they are equal)."""
    return nn.Identity() if width == latent_dim else nn.Linear(width, latent_dim)


class _Block(nn.Module):
    """Pre-norm self-attention + feed-forward, attention through scaled_dot_product_attention."""

    def __init__(self, width: int, heads: int, ff_dim: int, dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(width)
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)
        self.norm2 = nn.LayerNorm(width)
        self.ff = nn.Sequential(
            nn.Linear(width, ff_dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(ff_dim, width)
        )
        self.dropout = nn.Dropout(dropout)
        self.attn_dropout = dropout

    def forward(self, h: torch.Tensor, attend: torch.Tensor) -> torch.Tensor:
        """h (B, S, W); attend (B, 1, 1, S): a boolean mask (True: attend to the key) or an
        additive float bias (-inf for masked keys)."""
        b, s, w = h.shape
        q, k, v = self.qkv(self.norm1(h)).view(b, s, 3, self.heads, w // self.heads).unbind(2)
        if attend.is_floating_point():
            attend = attend.to(q.dtype)
        attended = F.scaled_dot_product_attention(
            q.transpose(1, 2),
            k.transpose(1, 2),
            v.transpose(1, 2),
            attn_mask=attend,
            dropout_p=self.attn_dropout if self.training else 0.0,
        )
        h = h + self.dropout(self.proj(attended.transpose(1, 2).reshape(b, s, w)))
        out: torch.Tensor = h + self.dropout(self.ff(self.norm2(h)))
        return out


class TransformerEncoder(nn.Module):
    """Constituents of two jets (or the objects of an event) -> one event representation.

    ``forward(features, mask, weights)``: features (B, S, N, F), mask (B, S, N) bool (True for
    real entries), weights (B, S, N) non-negative pooling weights (pT; normalised here per
    event). Returns (B, latent_dim). ``token_types`` gives the type of each of the S * N
    flattened slots (default: a dijet's jets, for any N).
    """

    def __init__(
        self,
        config: ModelConfig,
        in_features: int,
        ir_safe_attention: bool = True,
        token_types: tuple[int, ...] | None = None,
    ):
        super().__init__()
        self.fixed_types = token_types is not None
        types = torch.tensor(token_types if token_types is not None else (0, 1))
        self.token_types: torch.Tensor
        self.register_buffer("token_types", types, persistent=False)
        width = config.width or config.latent_dim
        self.pooling = config.pooling
        self.ir_safe = ir_safe_attention and config.pooling == "pt_weighted"
        self.embed = nn.Sequential(
            nn.Linear(in_features, width), nn.GELU(), nn.Linear(width, width)
        )
        self.type_embedding: nn.Embedding = nn.Embedding(int(types.max()) + 1, width)
        self.cls = nn.Parameter(torch.zeros(1, 1, width)) if config.pooling == "cls" else None
        ff_dim = config.ff_dim or 2 * width
        self.blocks = nn.ModuleList(
            _Block(width, config.heads, ff_dim, config.dropout) for _ in range(config.depth)
        )
        self.norm = nn.LayerNorm(width)
        self.out = output_layer(width, config.latent_dim)

    def forward(
        self, features: torch.Tensor, mask: torch.Tensor, weights: torch.Tensor
    ) -> torch.Tensor:
        b, groups, n, f = features.shape
        if self.fixed_types:
            if groups * n != len(self.token_types):
                raise ValueError(
                    f"transformer built for {len(self.token_types)} slots, got {groups * n}"
                )
            types = self.token_types
        else:
            check_dijet_features(features)
            types = self.token_types.repeat_interleave(n)
        slots = groups * n
        h = self.embed(features.reshape(b, slots, f)) + self.type_embedding(types)
        mask = mask.reshape(b, slots)
        w = torch.where(mask, weights.reshape(b, slots).clamp_min(0), 0.0)
        w = w / w.sum(dim=1, keepdim=True).clamp_min(torch.finfo(w.dtype).tiny)

        attend = self._attention_mask(mask, w)
        if self.cls is not None:
            h = torch.cat([self.cls.expand(b, -1, -1).to(h.dtype), h], dim=1)
        for block in self.blocks:
            h = block(h, attend)
        h = self.norm(h)

        if self.cls is not None:
            pooled = h[:, 0]
        elif self.pooling == "mean":
            m = mask.unsqueeze(-1).to(h.dtype)
            pooled = (h * m).sum(1) / m.sum(1).clamp_min(1.0)
        else:
            pooled = (h * w.unsqueeze(-1).to(h.dtype)).sum(1)
        out: torch.Tensor = self.out(pooled)
        return out

    def _attention_mask(self, mask: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """(B, 1, 1, S'): the keys each token attends to (S' = S, plus the CLS token first).

        IR-safe: the float bias log(w_j) (-inf on padding). Otherwise: a boolean mask of the
        real tokens. An event with no token at all would make softmax 0/0: it attends
        uniformly instead (its pooled output is zero for pt-weighted and mean pooling)."""
        b = mask.shape[0]
        if self.ir_safe:
            bias = torch.where(mask, torch.log(w.clamp_min(torch.finfo(w.dtype).tiny)), -torch.inf)
            if self.cls is not None:
                bias = torch.cat([bias.new_zeros(b, 1), bias], dim=1)
            bias = torch.where(torch.isfinite(bias).any(dim=1, keepdim=True), bias, 0.0)
            return bias[:, None, None, :]
        keep = mask
        if self.cls is not None:
            keep = torch.cat([keep.new_ones(b, 1), keep], dim=1)
        keep = keep | ~keep.any(dim=1, keepdim=True)
        return keep[:, None, None, :]
