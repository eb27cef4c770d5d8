"""Encoder forward+backward throughput, against PyTorch's stock transformer of the same size.

Both encoders get the same events (B, 2 jets x N constituents, 3 features), the same width,
depth, heads and feed-forward size; the reference is ``nn.TransformerEncoder`` with a key
padding mask and masked-mean pooling, in its default form (ReLU, post-norm) and in ours (GELU,
pre-norm). Ours runs with IR-safe attention (the log pT-fraction bias) as trained, and without
it (a boolean mask). Reported: events/s of a training step (forward, backward,
no optimiser) for each, and their ratio. Runs on CUDA when available (also in bf16 autocast).

Run: .venv/bin/python benchmarks/encoder_throughput.py [--batch 256] [--constituents 50]
     [--compile]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch
from torch import nn

from distributed_clr.config import ModelConfig
from distributed_clr.models import TransformerEncoder


class Reference(nn.Module):
    def __init__(
        self, width: int, depth: int, heads: int, ff: int, like_ours: bool = False
    ) -> None:
        super().__init__()
        self.embed = nn.Linear(3, width)
        layer = nn.TransformerEncoderLayer(
            width,
            heads,
            ff,
            dropout=0.0,
            batch_first=True,
            activation="gelu" if like_ours else "relu",
            norm_first=like_ours,
        )
        self.encoder = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        del w
        b = x.shape[0]
        flat_mask = mask.reshape(b, -1)
        h = self.encoder(self.embed(x.reshape(b, -1, 3)), src_key_padding_mask=~flat_mask)
        m = flat_mask.unsqueeze(-1).to(h.dtype)
        return (h * m).sum(1) / m.sum(1).clamp_min(1)


def events_per_second(
    step: Callable[[], None], batch: int, seconds: float, device: torch.device
) -> float:
    for _ in range(3):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        step()
        n += 1
    if device.type == "cuda":
        torch.cuda.synchronize()  # a sync point: wait for queued kernels before reading the clock
    return n * batch / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--constituents", type=int, default=50)
    parser.add_argument("--latent", type=int, default=128)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument(
        "--compile", action="store_true", help="also time ours under torch.compile (inductor)"
    )
    args = parser.parse_args()

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(0)
    config = ModelConfig(latent_dim=args.latent, heads=4, depth=2, dropout=0.0)
    models = {
        "ours, IR-safe": TransformerEncoder(config, in_features=3).to(device),
        "ours, bool mask": TransformerEncoder(config, in_features=3, ir_safe_attention=False).to(
            device
        ),
        "stock (relu, post-norm)": Reference(args.latent, 2, 4, 2 * args.latent).to(device),
        "stock (gelu, pre-norm)": Reference(args.latent, 2, 4, 2 * args.latent, True).to(device),
    }
    if args.compile:
        models["ours, IR-safe, compiled"] = torch.compile(
            TransformerEncoder(config, in_features=3).to(device)
        )

    b, n = args.batch, args.constituents
    pt = torch.rand(b, 2, n, device=device) * 100
    counts = torch.randint(10, n + 1, (b, 2, 1), device=device)
    mask = torch.arange(n, device=device) < counts
    x = torch.stack([pt, torch.randn_like(pt), torch.randn_like(pt)], -1) * mask.unsqueeze(-1)

    precisions = [torch.float32] + ([torch.bfloat16] if device.type == "cuda" else [])
    print(f"device {device}, batch {b}, 2 x {n} constituents, width {args.latent}, depth 2")
    for dtype in precisions:
        results = {}
        for name, model in models.items():

            def step(model: nn.Module = model, dtype: torch.dtype = dtype) -> None:
                with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
                    out = model(x, mask, x[..., 0])
                out.float().square().mean().backward()

            results[name] = events_per_second(step, b, args.seconds, device)
            print(f"  {dtype!s:15s} {name:25s} {results[name]:10.0f} events/s (fwd+bwd)")
        for ours in [name for name in models if name.startswith("ours")]:
            for stock in ("stock (relu, post-norm)", "stock (gelu, pre-norm)"):
                ratio = results[ours] / results[stock]
                print(f"  {dtype!s:15s} {ours} / {stock}: {ratio:.2f}")


if __name__ == "__main__":
    main()
