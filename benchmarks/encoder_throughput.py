"""Encoder forward+backward throughput, against PyTorch's stock transformer of the same size.

Both encoders get the same events (B, 2 jets x N constituents, 3 features), the same width,
depth, heads and feed-forward size; the reference is ``nn.TransformerEncoder`` with a key
padding mask and masked-mean pooling. Reported: events/s of a training step (forward, backward,
no optimiser) for each, and their ratio. Runs on CUDA when available (also in bf16 autocast).

Run: .venv/bin/python benchmarks/encoder_throughput.py [--batch 256] [--constituents 50]
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
    def __init__(self, width: int, depth: int, heads: int, ff: int) -> None:
        super().__init__()
        self.embed = nn.Linear(3, width)
        layer = nn.TransformerEncoderLayer(width, heads, ff, dropout=0.0, batch_first=True)
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
    args = parser.parse_args()

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(0)
    config = ModelConfig(latent_dim=args.latent, heads=4, depth=2, dropout=0.0)
    ours = TransformerEncoder(config, in_features=3).to(device)
    reference = Reference(args.latent, 2, 4, 2 * args.latent).to(device)

    b, n = args.batch, args.constituents
    pt = torch.rand(b, 2, n, device=device) * 100
    counts = torch.randint(10, n + 1, (b, 2, 1), device=device)
    mask = torch.arange(n, device=device) < counts
    x = torch.stack([pt, torch.randn_like(pt), torch.randn_like(pt)], -1) * mask.unsqueeze(-1)

    precisions = [torch.float32] + ([torch.bfloat16] if device.type == "cuda" else [])
    print(f"device {device}, batch {b}, 2 x {n} constituents, width {args.latent}, depth 2")
    for dtype in precisions:
        results = {}
        for name, model in (("distributed_clr", ours), ("nn.TransformerEncoder", reference)):

            def step(model: nn.Module = model, dtype: torch.dtype = dtype) -> None:
                with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
                    out = model(x, mask, x[..., 0])
                out.float().square().mean().backward()

            results[name] = events_per_second(step, b, args.seconds, device)
            print(f"  {dtype!s:15s} {name:22s} {results[name]:10.0f} events/s (fwd+bwd)")
        ratio = results["distributed_clr"] / results["nn.TransformerEncoder"]
        print(f"  {dtype!s:15s} ratio ours / reference: {ratio:.2f}")


if __name__ == "__main__":
    main()
