"""Augmentation throughput: the batched torch pipeline against a per-event numpy loop.

Both paths apply the default dijet pipeline (rotate, distort, collinear_split, eta_shift,
phi_shift; ``AugmentConfig`` defaults) to the same toy dijets (two ~1 TeV jets with 2-3 prongs,
N = 50 slots per jet, 20-50 real constituents). The torch path runs ``Augmenter`` on CPU in
batches of 1024 events; the reference loops over events with numpy, one jet at a time, doing
the same operations (same axis definition, hardest constituents split). The project goal is a
ratio >= 50x. The torch figure is given with torch's default thread count and with one thread
(the reference is single-threaded).

Run: .venv/bin/python benchmarks/augment_throughput.py [--events 8192] [--reference-events 2048]
"""

from __future__ import annotations

import argparse
import math
import time
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from distributed_clr.augment import Augmenter
from distributed_clr.config import AugmentConfig

Array = npt.NDArray[Any]


def toy_dijets(events: int, slots: int, seed: int) -> tuple[Array, Array]:
    """x (events, 2, slots, 3) float32 (pT [GeV], eta, phi), pT-descending, zero-padded; mask."""
    rng = np.random.default_rng(seed)
    shape = (events, 2)
    jet_pt = 1000.0 * (1.0 + 0.1 * rng.standard_normal(shape))
    jet_eta = rng.normal(0.0, 1.0, shape)
    phi1 = rng.uniform(-np.pi, np.pi, events)
    jet_phi = np.stack([phi1, phi1 + np.pi], axis=1)
    n_prongs = rng.integers(2, 4, shape)
    prong = (rng.random((*shape, slots)) * n_prongs[..., None]).astype(np.int64)
    prong_offset = np.clip(rng.normal(0.0, 0.15, (*shape, 3, 2)), -0.5, 0.5)
    prong_offset[..., 0, :] = 0.0
    real = np.arange(slots) < rng.integers(20, slots + 1, shape)[..., None]
    weight = np.where(real, 0.01 + rng.exponential(size=(*shape, slots)), 0.0)
    pt = jet_pt[..., None] * weight / weight.sum(-1, keepdims=True)
    offset = np.take_along_axis(prong_offset, prong[..., None], 2)
    eta = jet_eta[..., None] + offset[..., 0] + rng.normal(0.0, 0.04, pt.shape)
    phi = wrap(jet_phi[..., None] + offset[..., 1] + rng.normal(0.0, 0.04, pt.shape))
    order = np.argsort(-pt, axis=-1, kind="stable")
    x = np.stack([np.take_along_axis(a, order, -1) for a in (pt, eta, phi)], axis=-1)
    mask = np.take_along_axis(real, order, -1)
    return np.where(mask[..., None], x, 0.0).astype(np.float32), mask


def wrap(phi: Array) -> Array:
    """Angles into (-pi, pi]."""
    wrapped = np.mod(phi + np.pi, 2 * np.pi) - np.pi
    return np.where(wrapped == -np.pi, np.pi, wrapped)


def reference_event(
    x: Array, mask: Array, rng: np.random.Generator, config: AugmentConfig
) -> tuple[Array, Array]:
    """The default pipeline on one event, x (2, N, 3) and mask (2, N), with numpy."""
    slots = x.shape[1]
    out = np.zeros_like(x)
    for j in range(2):
        real = x[j][mask[j]]
        pt, eta, phi = real[:, 0], real[:, 1], real[:, 2]
        n = len(pt)
        # rotate about the pT-weighted (eta, phi) centroid, phi relative to the leading one
        lead = int(np.argmax(pt))
        weight = pt / pt.sum()
        eta_axis = float(weight @ eta)
        phi_axis = float(wrap(phi[lead] + weight @ wrap(phi - phi[lead])))
        theta = rng.uniform(0.0, 2 * math.pi)
        cos, sin = math.cos(theta), math.sin(theta)
        d_eta, d_phi = eta - eta_axis, wrap(phi - phi_axis)
        eta = eta_axis + cos * d_eta - sin * d_phi
        phi = wrap(phi_axis + sin * d_eta + cos * d_phi)
        # distort
        sigma = config.distort_strength / np.maximum(pt, config.distort_pt_min)
        eta = eta + sigma * rng.standard_normal(n)
        phi = wrap(phi + sigma * rng.standard_normal(n))
        # collinear split of the k hardest into free slots
        k = min(config.split_max, n, slots - n)
        order = np.argsort(-pt, kind="stable")
        pt, eta, phi = pt[order], eta[order], phi[order]
        ratio = rng.uniform(size=k)
        kept = pt[:k] * ratio
        pt = np.concatenate([kept, pt[k:], pt[:k] - kept])
        eta = np.concatenate([eta, eta[:k]])
        phi = np.concatenate([phi, phi[:k]])
        order = np.argsort(-pt, kind="stable")
        out[j, : n + k] = np.stack([pt[order], eta[order], phi[order]], axis=-1)
    new_mask = out[..., 0] > 0
    # event-wide eta and phi shifts
    out[..., 1] = np.where(new_mask, out[..., 1] + rng.uniform(-1, 1) * config.eta_shift_max, 0)
    out[..., 2] = np.where(new_mask, wrap(out[..., 2] + math.pi - rng.uniform(0, 2 * math.pi)), 0)
    return out, new_mask


def torch_rate(x: torch.Tensor, mask: torch.Tensor, augmenter: Augmenter, batch: int) -> float:
    generator = torch.Generator().manual_seed(0)
    augmenter(x[:batch], mask[:batch], generator)  # warm-up
    start = time.perf_counter()
    for i in range(0, len(x), batch):
        augmenter(x[i : i + batch], mask[i : i + batch], generator)
    return len(x) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=8192)
    parser.add_argument("--reference-events", type=int, default=2048)
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--slots", type=int, default=50)
    args = parser.parse_args()

    config = AugmentConfig()
    augmenter = Augmenter(config)
    x_np, mask_np = toy_dijets(args.events, args.slots, seed=0)
    x, mask = torch.from_numpy(x_np), torch.from_numpy(mask_np)

    threads = torch.get_num_threads()
    fast = torch_rate(x, mask, augmenter, args.batch)
    torch.set_num_threads(1)
    fast_one = torch_rate(x, mask, augmenter, args.batch)
    torch.set_num_threads(threads)

    rng = np.random.default_rng(1)
    n_ref = min(args.reference_events, args.events)
    start = time.perf_counter()
    reference = [reference_event(x_np[i], mask_np[i], rng, config) for i in range(n_ref)]
    slow = n_ref / (time.perf_counter() - start)

    # same operations: both paths add the same number of constituents
    y, m = augmenter(x[:n_ref], mask[:n_ref], torch.Generator().manual_seed(2))
    ref_count = sum(int(r[1].sum()) for r in reference)
    assert int(m.sum()) == ref_count, (int(m.sum()), ref_count)
    assert (y[~m] == 0).all()

    print(f"pipeline: {' -> '.join(config.pipeline)}; {args.slots} slots/jet, batch {args.batch}")
    print(
        f"constituents per event: {mask_np.sum() / args.events:.1f} in, {ref_count / n_ref:.1f} out"
    )
    print(f"torch CPU, {threads} threads: {fast:12,.0f} events/s  ({args.events} events)")
    print(f"torch CPU, 1 thread : {fast_one:12,.0f} events/s")
    print(f"numpy per-event loop: {slow:12,.0f} events/s  ({n_ref} events)")
    ratios = f"{fast / slow:.1f}x ({threads} threads), {fast_one / slow:.1f}x (1 thread)"
    print(f"ratio: {ratios}; goal 50x")


if __name__ == "__main__":
    main()
