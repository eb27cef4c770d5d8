"""Everything the "fast on GPUs" issue measures, on one CUDA device, in one go (under 8 minutes).

Sections, each recorded with a status (ok, skipped with a reason, failed with a message); a
failed section does not stop the others, and makes the exit status 1:

``gpu_tests``
    ``pytest -m gpu -q``: the tests that need a CUDA device (on CPU they skip).
``flops``
    The FLOPs of one training step counted analytically (``train_step_flops``) and by
    ``torch.utils.flop_counter.FlopCounterMode`` on a forward + backward of the same step.
``train_step``
    Events/s and model FLOP utilisation (MFU) of the real training step (``Trainer.step``: two
    augmented views, one forward over both, the loss in fp32, backward, optimiser step) of the
    paper-size transformer (preset ``paper_lhco``: width 128, 2 layers, 4 heads; 50 constituents
    per jet), fp32 and bf16, per-GPU batch 1,024 and 4,096, the events resident on the device.
``augment_share``
    ``make_views`` (both views of a batch, on the device) timed alone, against the whole step.
``seed_vs_ours``
    A loop written the way the seed code trains (per-event numpy augmentations on the host, batch
    400, fp32, the augmented views copied to the device every step) against ours (the raw batch
    copied to the device, device-side augmentations, batch 1,024, the faster precision of
    ``train_step``), with the same model, loss, optimiser and events, on the same device.
``ray_train``
    ``dclr pretrain --workers 1 --gpu`` (Ray Train, backend nccl) on a synthetic prepared
    dataset: exit status, wall time and the events/s the run reports.

Each measurement runs for a fixed time (``--seconds``) after a few warm-up steps, with the device
synchronised before the clock is read, so the total stays within budget whatever the device.
The JSON (``--out``) is rewritten atomically after every section: a run cut short keeps what it
measured. ``--dry-run`` runs the same code on CPU at tiny sizes (the ``debug`` preset's model,
batches of 32 and 64, a fraction of a second per measurement, the Ray run on gloo for one epoch
of 300 events): CI runs it (tests/benchmarks/test_device_check.py).

Run: benchmarks/device_check.sh [--dry-run] [--out device_check.json] [--skip SECTION]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import importlib.util
import json
import logging
import math
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from functools import cached_property, partial
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from distributed_clr.augment import Augmenter, make_views
from distributed_clr.config import apply_overrides, get_preset
from distributed_clr.config.schema import ModelConfig, RunConfig
from distributed_clr.losses import build_loss
from distributed_clr.models import build_model
from distributed_clr.train.optim import build_optimizer
from distributed_clr.train.trainer import Trainer, contrastive_loss

log = logging.getLogger("device_check")

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SECTIONS = ("gpu_tests", "flops", "train_step", "augment_share", "seed_vs_ours", "ray_train")
PRECISIONS = ("fp32", "bf16")

Figures = dict[str, Any]


# ------------------------------------------------------------------------------------------------
# sizes


@dataclass(frozen=True)
class Sizes:
    """What one run measures, and how long each part may take."""

    preset: str
    """The preset whose model, loss and optimiser are measured (augmentations: both views)."""
    constituents: int
    """Constituents per jet."""
    batches: tuple[int, ...]
    """Per-device batches of ``train_step`` and ``augment_share``."""
    seconds: float
    """Timed seconds per measurement (after the warm-up steps)."""
    warmup_steps: int
    flop_batch: int
    """Batch of the FLOP cross-check."""
    seed_batch: int
    ours_batch: int
    pool_events: int
    """Synthetic events every in-process section draws its batches from."""
    ray_events: int
    ray_epochs: int
    pytest_timeout: float
    ray_timeout: float


GPU_SIZES = Sizes(
    preset="paper_lhco",
    constituents=50,
    batches=(1024, 4096),
    seconds=8.0,
    warmup_steps=5,
    flop_batch=64,
    seed_batch=400,
    ours_batch=1024,
    pool_events=8192,
    ray_events=60_000,
    ray_epochs=3,
    pytest_timeout=150.0,
    ray_timeout=180.0,
)
"""About 4-5 minutes on an H200, at most 8 (the commands' timeouts, 2.5 + 3 minutes, and about
2 minutes for the in-process sections): the gpu tests ~1 minute; 4 step measurements of 8 s, 2
of make_views of 4 s and 2 loops of 12 s, with warm-up and the FLOP count ~1.5 minutes; the Ray
run ~1.5 minutes, most of it starting Ray."""

DRY_SIZES = Sizes(
    preset="debug",
    constituents=24,  # toy_dijets (augment_throughput.py) fills 20 or more
    batches=(32, 64),
    seconds=0.3,
    warmup_steps=1,
    flop_batch=8,
    seed_batch=32,
    ours_batch=64,
    pool_events=256,
    ray_events=300,
    ray_epochs=1,
    pytest_timeout=240.0,
    ray_timeout=400.0,  # ~60 s on an idle 2-core machine; a loaded one can take minutes
)


# ------------------------------------------------------------------------------------------------
# FLOPs


@dataclass(frozen=True)
class StepFlops:
    """Matmul FLOPs of one contrastive training step, by part (forward unless named)."""

    embed: int
    """The two-layer constituent embedding."""
    attention_projections: int
    """qkv and the output projection of every layer."""
    attention_scores: int
    """q k^T and the attention-weighted sum of the values, every layer and head."""
    feed_forward: int
    head: int
    """The output layer (when width != latent size) and the projection head."""
    loss: int
    """The contrastive loss's similarity matrix of the 2B projections."""
    first_layer: int
    """The forward FLOPs of the first embedding layer, whose input needs no gradient."""

    @property
    def forward(self) -> int:
        return (
            self.embed
            + self.attention_projections
            + self.attention_scores
            + self.feed_forward
            + self.head
            + self.loss
        )

    @property
    def train_step(self) -> int:
        """Forward + backward: the backward pass of a matmul costs twice its forward (the
        gradients of its two operands), except the first layer's (its weight's only)."""
        return 3 * self.forward - self.first_layer


def train_step_flops(
    model: ModelConfig, in_features: int, constituents: int, batch: int
) -> StepFlops:
    """The matmul FLOPs (2 per multiply-add) of one training step of the transformer encoder.

    A step encodes 2 x ``batch`` sequences (the two views of each event) of T = 2 x
    ``constituents`` tokens of ``in_features`` features, in a model of width W, feed-forward
    size F, latent size D, head hidden size H and output size O (``ModelConfig``). Padding is
    computed like any token, so T is the full length; the layers see S = T tokens, or T + 1 with
    a class token (added after the embedding). Per sequence, forward:

    - embedding MLP: 2 T (in_features W + W^2)
    - each layer: qkv 6 S W^2; scores q k^T 2 S^2 W; weighted sum of values 2 S^2 W;
      output projection 2 S W^2; feed-forward 4 S W F
    - output layer 2 W D (only when W != D); projection head 2 (D H + H O)

    and once per step the loss's similarity matrix of the 2B projections: 2 (2B)^2 O.
    Element-wise work (layer norms, softmax, GELU, the augmentations, the optimiser) is not
    counted: it is not matmul work, and MFU counts model matmul FLOPs only (no recomputation).
    """
    if model.name != "transformer":
        raise ValueError(f"train_step_flops counts the transformer, not model.name={model.name}")
    width = model.width or model.latent_dim
    ff = model.ff_dim or 2 * width
    latent = model.latent_dim
    hidden = model.head_dim or latent
    out = model.head_out or latent
    t = 2 * constituents
    s = t + (1 if model.pooling == "cls" else 0)
    sequences = 2 * batch
    first = 2 * t * in_features * width
    return StepFlops(
        embed=sequences * (first + 2 * t * width * width),
        attention_projections=sequences * model.depth * 8 * s * width * width,
        attention_scores=sequences * model.depth * 4 * s * s * width,
        feed_forward=sequences * model.depth * 4 * s * width * ff,
        head=sequences
        * ((2 * width * latent if width != latent else 0) + 2 * hidden * (latent + out)),
        loss=2 * sequences * sequences * out,
        first_layer=sequences * first,
    )


def counted_flops(trainer: Trainer, batch: dict[str, torch.Tensor], precision: str) -> int:
    """FLOPs of a forward + backward of ``trainer``'s step counted by ``FlopCounterMode``.

    Attention runs on the math backend here: FlopCounterMode has no formula for CPU's fused
    kernel, and the fused GPU kernels' backward counts a recomputation of the scores, which
    model FLOPs leave out."""
    generator = torch.Generator(device=batch["x"].device).manual_seed(0)
    counter = FlopCounterMode(display=False)
    with counter, sdpa_kernel(SDPBackend.MATH):
        loss, _, _ = contrastive_loss(
            trainer.model, trainer.loss_fn, batch, trainer.augmenter, generator, precision
        )
        loss.backward()  # type: ignore[no-untyped-call]
    trainer.model.zero_grad(set_to_none=True)
    return int(counter.get_total_flops())


PEAK_TFLOPS: tuple[tuple[str, dict[str, float]], ...] = (
    ("H100 PCIe", {"bf16": 756.0, "tf32": 378.0, "fp32": 51.2}),
    ("H100 NVL", {"bf16": 835.0, "tf32": 418.0, "fp32": 60.0}),
    ("H200 NVL", {"bf16": 835.0, "tf32": 418.0, "fp32": 60.0}),
    ("H100", {"bf16": 989.4, "tf32": 494.7, "fp32": 66.9}),
    ("H200", {"bf16": 989.4, "tf32": 494.7, "fp32": 66.9}),
    ("A100", {"bf16": 312.0, "tf32": 156.0, "fp32": 19.5}),
)
"""Dense peak TFLOP/s by device name (first match wins; SXM boards unless named), from NVIDIA's
data sheets. fp32 is the non-tensor-core rate; tf32 applies to fp32 matmuls where
TF32 is allowed (``tf32_matmul``)."""


def tf32_matmul() -> bool:
    """Whether fp32 matmuls on CUDA may run in TF32 (off by default in PyTorch)."""
    return bool(torch.backends.cuda.matmul.allow_tf32) or (
        torch.get_float32_matmul_precision() != "highest"
    )


def peak_tflops(
    device: torch.device, precision: str, overrides: dict[str, float]
) -> tuple[float | None, str]:
    """(peak TFLOP/s or None, where it came from / why there is none)."""
    if device.type != "cuda":
        return None, "no peak FLOP/s for a CPU (dry run): MFU is a GPU figure"
    key = precision
    if precision == "fp32" and tf32_matmul():
        key = "tf32"
    if key in overrides:
        return overrides[key], f"--peak-tflops {key}"
    name = torch.cuda.get_device_name(device)
    for pattern, table in PEAK_TFLOPS:
        if pattern in name:
            return table[key], f"{pattern} {key} (data sheet, dense)"
    return None, f"no peak FLOP/s known for {name!r}: pass --peak-tflops {key}=TFLOPS"


# ------------------------------------------------------------------------------------------------
# helpers


def sibling(name: str) -> ModuleType:
    """Another benchmark script of this directory, as a module (``benchmarks`` is no package)."""
    module_name = f"_benchmark_{name}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, HERE / f"{name}.py")
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {HERE / name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def seconds_per_step(
    step: Callable[[], object],
    device: torch.device,
    seconds: float,
    warmup: int,
    min_steps: int = 3,
) -> tuple[float, int]:
    """(mean seconds per call of ``step``, calls timed): ``warmup`` untimed calls, then calls
    for at least ``seconds`` and ``min_steps``, the device synchronised before each clock read
    (the loop only queues work; the final synchronisation waits for all of it)."""
    for _ in range(warmup):
        step()
    synchronize(device)
    steps, start = 0, time.perf_counter()
    while steps < min_steps or time.perf_counter() - start < seconds:
        step()
        steps += 1
    synchronize(device)
    return (time.perf_counter() - start) / steps, steps


@dataclass
class Context:
    """Shared by the sections: the device, sizes, config, events and earlier results."""

    device: torch.device
    sizes: Sizes
    config: RunConfig
    x: torch.Tensor
    """(pool_events, 2, N, 3) synthetic dijets on the host."""
    mask: torch.Tensor
    peak_overrides: dict[str, float]
    results: dict[str, Figures] = field(default_factory=dict)

    def trainer(self, precision: str, batch: int) -> Trainer:
        """A fresh model and ``Trainer`` for ``precision`` and per-device ``batch``."""
        torch.manual_seed(0)
        config = apply_overrides(
            self.config, [f"train.precision={precision}", f"train.batch_size={batch}"]
        )
        model = build_model(config.model, self.sizes.constituents).to(self.device)
        return Trainer(
            model,
            train=config.train,
            loss=config.loss,
            augment=config.augment,
            device=self.device,
            steps_per_epoch=1_000_000,
        )

    def batch(self, size: int, start: int = 0) -> dict[str, torch.Tensor]:
        """Events [start, start + size) of the pool (wrapping around), on the host."""
        index = torch.arange(start, start + size) % len(self.x)
        return {"x": self.x[index], "mask": self.mask[index], "label": torch.zeros(size)}

    @cached_property
    def in_features(self) -> int:
        """Features per constituent of the model's input normalisation."""
        return build_model(self.config.model, self.sizes.constituents).features.num_features

    def flops(self, batch: int) -> StepFlops:
        """The analytic FLOPs of a training step at per-device ``batch``."""
        return train_step_flops(self.config.model, self.in_features, self.sizes.constituents, batch)

    def on_device(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {k: v.to(self.device) for k, v in batch.items()}

    def generator(self) -> torch.Generator:
        return torch.Generator(device=self.device).manual_seed(0)


class SkipSectionError(Exception):
    """A section that cannot run here, with the reason."""


class SectionFailedError(Exception):
    """A section that ran and failed, with the figures it did get (a command's exit status)."""

    def __init__(self, message: str, figures: Figures) -> None:
        super().__init__(message)
        self.figures = figures


# ------------------------------------------------------------------------------------------------
# sections


def stop_group(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the process group ``process`` leads (it was started in a session of its own),
    SIGKILL if it is still there 15 s later."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def run_command(command: list[str], timeout: float, log_path: Path) -> tuple[int, float, str]:
    """(exit status, wall seconds, output tail) of ``command`` run from the repository root in
    a session of its own, its output in ``log_path``; on a timeout its whole process group (Ray's
    processes included) gets SIGTERM, then SIGKILL, and the status is 124."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}  # a local Ray, always
    env.setdefault("DCLR_PROGRESS", "0")
    env.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    log.info("running %s", " ".join(command))
    start = time.perf_counter()
    with log_path.open("w") as out:
        process = subprocess.Popen(
            command, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            code = process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            log.error("%s ran past %.0f s: stopping it", command[0], timeout)
            stop_group(process)
            code = 124
        except BaseException:  # this script interrupted: the command's processes go too
            stop_group(process)
            raise
    wall = time.perf_counter() - start
    return code, wall, log_path.read_text(errors="replace")[-3000:]


def section_gpu_tests(ctx: Context) -> Figures:
    """``pytest -m gpu -q`` on the whole suite; on CPU every one of them must skip."""
    with tempfile.TemporaryDirectory(prefix="dclr-device-check-") as tmp:
        command = [sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider"]
        code, wall, tail = run_command(command, ctx.sizes.pytest_timeout, Path(tmp) / "pytest.log")
    counts = {
        word.rstrip("s"): int(n)
        for n, word in re.findall(r"(\d+) (passed|failed|skipped|errors?|deselected)", tail)
    }
    figures: Figures = {
        "command": " ".join(["python", *command[1:]]),
        "exit_status": code,
        "wall_s": wall,
    }
    figures.update(counts)
    if code != 0:
        raise SectionFailedError(f"pytest -m gpu exited with {code}: ...{tail[-1500:]}", figures)
    if ctx.device.type == "cuda" and counts.get("skipped", 0):
        message = f"{counts['skipped']} gpu tests skipped on a CUDA device: ...{tail[-800:]}"
        raise SectionFailedError(message, figures)
    if ctx.device.type != "cuda" and counts.get("passed", 0):
        message = "gpu tests passed without a CUDA device: they are not guarded"
        raise SectionFailedError(message, figures)
    return figures


def section_flops(ctx: Context) -> Figures:
    """The analytic count against FlopCounterMode, at a small batch."""
    sizes = ctx.sizes
    trainer = ctx.trainer("fp32", sizes.flop_batch)
    analytic = ctx.flops(sizes.flop_batch)
    counted = counted_flops(trainer, ctx.on_device(ctx.batch(sizes.flop_batch)), "fp32")
    return {
        "batch": sizes.flop_batch,
        "analytic": analytic.train_step,
        "flop_counter": counted,
        "relative_difference": (analytic.train_step - counted) / counted,
        "analytic_forward_parts": {k: v for k, v in asdict(analytic).items() if k != "first_layer"},
        "per_event_train_step": {str(b): ctx.flops(b).train_step / b for b in sizes.batches},
    }


def section_train_step(ctx: Context) -> Figures:
    """Events/s and MFU of ``Trainer.step`` per precision and batch, events on the device."""
    rows = []
    for precision in PRECISIONS:
        peak, peak_note = peak_tflops(ctx.device, precision, ctx.peak_overrides)
        for size in ctx.sizes.batches:
            if ctx.device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(ctx.device)
            trainer = ctx.trainer(precision, size)
            batch = ctx.on_device(ctx.batch(size))
            generator = ctx.generator()
            flops = ctx.flops(size)
            step_s, steps = seconds_per_step(
                partial(trainer.step, batch, generator),
                ctx.device,
                ctx.sizes.seconds,
                ctx.sizes.warmup_steps,
            )
            achieved = flops.train_step / step_s
            rows.append(
                {
                    "precision": precision,
                    "batch": size,
                    "events_per_s": size / step_s,
                    "step_ms": 1e3 * step_s,
                    "steps_timed": steps,
                    "flops_per_step": flops.train_step,
                    "achieved_tflops": achieved / 1e12,
                    "peak_tflops": peak,
                    "peak_note": peak_note,
                    "mfu": None if peak is None else achieved / (peak * 1e12),
                    "max_memory_gib": (
                        torch.cuda.max_memory_allocated(ctx.device) / 2**30
                        if ctx.device.type == "cuda"
                        else None
                    ),
                }
            )
            log.info(
                "%s batch %d: %.0f events/s, MFU %s",
                precision,
                size,
                size / step_s,
                "n/a" if peak is None else f"{achieved / (peak * 1e12):.1%}",
            )
            del trainer
            if ctx.device.type == "cuda":
                torch.cuda.empty_cache()
    return {
        "model": ctx.config.model.model_dump(mode="json"),
        "constituents_per_jet": ctx.sizes.constituents,
        "tf32_matmul": tf32_matmul(),
        "rows": rows,
    }


def _step_ms(ctx: Context) -> dict[tuple[str, int], float]:
    step = ctx.results.get("train_step")
    if step is None:
        raise SkipSectionError("needs the step times of train_step, which did not run")
    return {(row["precision"], row["batch"]): row["step_ms"] for row in step["rows"]}


def section_augment_share(ctx: Context) -> Figures:
    """``make_views`` alone, against the step times of ``train_step``."""
    step_ms = _step_ms(ctx)
    augmenter = Augmenter(ctx.config.augment)
    rows = []
    for size in ctx.sizes.batches:
        batch = ctx.on_device(ctx.batch(size))
        generator = ctx.generator()
        views_s, steps = seconds_per_step(
            partial(make_views, batch["x"], batch["mask"], augmenter, generator),
            ctx.device,
            ctx.sizes.seconds / 2,
            ctx.sizes.warmup_steps,
        )
        for precision in PRECISIONS:
            step = step_ms.get((precision, size))
            rows.append(
                {
                    "precision": precision,
                    "batch": size,
                    "make_views_ms": 1e3 * views_s,
                    "calls_timed": steps,
                    "step_ms": step,
                    "share": None if step is None else 1e3 * views_s / step,
                }
            )
    return {"pipeline": list(augmenter.names), "views": ctx.config.augment.views, "rows": rows}


def seed_style_loop(ctx: Context, seconds: float) -> tuple[float, int]:
    """(seconds per step, steps) of a loop the way the seed code trains: each batch's two views
    made event by event with numpy on the host (the per-event reference of
    ``augment_throughput.py``), stacked, copied to the device, fp32 forward over both views,
    loss, backward, optimiser step."""
    reference_event = sibling("augment_throughput").reference_event
    size = ctx.sizes.seed_batch
    torch.manual_seed(0)
    model = build_model(ctx.config.model, ctx.sizes.constituents).to(ctx.device)
    loss_fn = build_loss(ctx.config.loss).to(ctx.device)
    optimizer = build_optimizer(model, ctx.config.train.optimizer, size)
    x_host, mask_host = ctx.x.numpy(), ctx.mask.numpy()
    rng = np.random.default_rng(0)
    cursor = iter(range(0, 1 << 62, size))

    def step() -> None:
        start = next(cursor) % (len(x_host) - size + 1)
        views = []
        for _ in range(2):
            events = [
                reference_event(x_host[i], mask_host[i], rng, ctx.config.augment)
                for i in range(start, start + size)
            ]
            x = torch.from_numpy(np.stack([e[0] for e in events])).to(ctx.device)
            mask = torch.from_numpy(np.stack([e[1] for e in events])).to(ctx.device)
            views.append((x, mask))
        model.train()
        optimizer.zero_grad(set_to_none=True)
        z = model(torch.cat([views[0][0], views[1][0]]), torch.cat([views[0][1], views[1][1]]))
        z1, z2 = z.float().chunk(2)
        loss_fn(z1, z2).backward()
        optimizer.step()

    return seconds_per_step(step, ctx.device, seconds, warmup=1)


def section_seed_vs_ours(ctx: Context) -> Figures:
    """The seed-style loop against ours, both copying their batches to the device each step."""
    seconds = 1.5 * ctx.sizes.seconds
    seed_s, seed_steps = seed_style_loop(ctx, seconds)
    seed_rate = ctx.sizes.seed_batch / seed_s

    # the precision train_step found faster at the batch nearest ours (bf16 if it did not run)
    step = ctx.results.get("train_step")
    precision = "bf16" if ctx.device.type == "cuda" else "fp32"
    if step is not None:
        nearest = min(ctx.sizes.batches, key=lambda b: abs(b - ctx.sizes.ours_batch))
        rates = {r["precision"]: r["events_per_s"] for r in step["rows"] if r["batch"] == nearest}
        precision = max(rates, key=rates.__getitem__)
    size = ctx.sizes.ours_batch
    trainer = ctx.trainer(precision, size)
    generator = ctx.generator()
    cursor = iter(range(0, 1 << 62, size))

    def ours() -> None:
        trainer.step(ctx.on_device(ctx.batch(size, next(cursor))), generator)

    ours_s, ours_steps = seconds_per_step(ours, ctx.device, seconds, ctx.sizes.warmup_steps)
    ours_rate = size / ours_s
    return {
        "seed_style": {
            "batch": ctx.sizes.seed_batch,
            "precision": "fp32",
            "augmentations": "per-event numpy on the host",
            "events_per_s": seed_rate,
            "steps_timed": seed_steps,
        },
        "ours": {
            "batch": size,
            "precision": precision,
            "augmentations": "batched torch on the device",
            "events_per_s": ours_rate,
            "steps_timed": ours_steps,
        },
        "speedup": ours_rate / seed_rate,
    }


def section_ray_train(ctx: Context) -> Figures:
    """``dclr pretrain`` with one Ray Train worker on the device (nccl on a GPU, gloo on CPU)."""
    synthetic_dataset = sibling("train_throughput").synthetic_dataset
    from distributed_clr.train.results import result_from_storage

    sizes = ctx.sizes
    gpu = ctx.device.type == "cuda"
    precision = ctx.results.get("seed_vs_ours", {}).get("ours", {}).get("precision")
    precision = precision or ("bf16" if gpu else "fp32")
    batch = ctx.sizes.ours_batch if gpu else ctx.config.train.batch_size
    run_name = "device-check"
    with tempfile.TemporaryDirectory(prefix="dclr-device-check-") as tmp:
        data = synthetic_dataset(Path(tmp) / "data", sizes.ray_events, sizes.constituents)
        storage = Path(tmp) / "ray"
        overrides = {
            "train.epochs": sizes.ray_epochs,
            "train.batch_size": batch,
            "train.precision": precision,
            "train.probe_events": 0,
            "train.early_stopping_patience": "null",
            "augment.views": "both",
            "tracking.enabled": "false",
            "ray.storage_path": storage,
        }
        command = [
            str(Path(sys.executable).with_name("dclr")),
            "pretrain",
            "--data",
            str(data),
            "--run-name",
            run_name,
            "--preset",
            sizes.preset,
            "--workers",
            "1",
            *(["--gpu"] if gpu else []),
            *(arg for key, value in overrides.items() for arg in ("--set", f"{key}={value}")),
        ]
        code, wall, tail = run_command(command, sizes.ray_timeout, Path(tmp) / "dclr.log")
        figures: Figures = {
            "command": " ".join(["dclr", *command[1:]]).replace(tmp, "$TMP"),
            "backend": "nccl" if gpu else "gloo",
            "exit_status": code,
            "wall_s": wall,
            "events": sizes.ray_events,
            "epochs": sizes.ray_epochs,
            "batch": batch,
            "precision": precision,
        }
        if code != 0:
            message = f"dclr pretrain exited with {code}: ...{tail[-1500:]}"
            raise SectionFailedError(message, figures)
        history = result_from_storage(run_name, str(storage), None).history
    rates = [float(h["events_per_s"]) for h in history]
    figures["events_per_s_by_epoch"] = rates
    figures["events_per_s"] = statistics.median(rates[1:]) if len(rates) > 1 else rates[0]
    figures["epoch_time_s"] = [float(h["epoch_time_s"]) for h in history]
    return figures


SECTION_FUNCTIONS: dict[str, Callable[[Context], Figures]] = {
    "gpu_tests": section_gpu_tests,
    "flops": section_flops,
    "train_step": section_train_step,
    "augment_share": section_augment_share,
    "seed_vs_ours": section_seed_vs_ours,
    "ray_train": section_ray_train,
}


# ------------------------------------------------------------------------------------------------
# report


def machine_info(device: torch.device) -> Figures:
    info: Figures = {
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
    if device.type == "cuda":
        info["device_memory_gib"] = torch.cuda.get_device_properties(device).total_memory / 2**30
        info["cudnn"] = torch.backends.cudnn.version()  # type: ignore[no-untyped-call]
    git = subprocess.run(
        ["git", "describe", "--always", "--dirty"], cwd=REPO, capture_output=True, text=True
    )
    info["commit"] = git.stdout.strip() if git.returncode == 0 else None
    return info


def write_json(path: Path, report: Figures) -> None:
    """``report`` to ``path`` atomically (a temporary file in the same folder, then replace)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as out:
            json.dump(report, out, indent=1, default=str, allow_nan=False)
            out.write("\n")
        Path(tmp).replace(path)  # os.replace: atomic within a file system
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def rounded(value: Any) -> Any:
    """Floats to 4 significant digits (NaN and infinities to None), recursively."""
    if isinstance(value, float):
        return float(f"{value:.4g}") if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: rounded(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [rounded(v) for v in value]
    return value


def summary(report: Figures) -> Iterator[str]:
    """The human-readable table of a report."""
    sections = report["sections"]
    yield f"device check on {report['machine']['device_name']} ({report['date']})"
    yield f"{'section':15s} {'status':8s} {'s':>6s}  note"
    for name, section in sections.items():
        note = (section.get("reason") or section.get("message") or "").strip()
        note = note.splitlines()[0] if note else ""
        yield f"{name:15s} {section['status']:8s} {section['seconds']:6.1f}  {note[:90]}"
    step = sections.get("train_step", {}).get("figures")
    share = sections.get("augment_share", {}).get("figures")
    if step:
        shares = {(r["precision"], r["batch"]): r["share"] for r in (share or {}).get("rows", [])}
        yield (
            f"{'precision':9s} {'batch':>6s} {'events/s':>12s} {'ms/step':>8s} {'MFU':>7s} "
            f"{'augment':>7s}"
        )
        for row in step["rows"]:
            mfu = "n/a" if row["mfu"] is None else f"{row['mfu']:.1%}"
            aug = shares.get((row["precision"], row["batch"]))
            aug_text = "n/a" if aug is None else f"{aug:.0%}"
            yield (
                f"{row['precision']:9s} {row['batch']:6d} {row['events_per_s']:12,.0f} "
                f"{row['step_ms']:8.2f} {mfu:>7s} {aug_text:>7s}"
            )
    flops = sections.get("flops", {}).get("figures")
    if flops:
        yield (
            f"FLOPs per step (batch {flops['batch']}): analytic {flops['analytic']:.4g}, "
            f"FlopCounterMode {flops['flop_counter']:.4g} ({flops['relative_difference']:+.2%})"
        )
    loops = sections.get("seed_vs_ours", {}).get("figures")
    if loops:
        seed, ours = loops["seed_style"], loops["ours"]
        yield (
            f"seed-style loop (batch {seed['batch']}, fp32, host numpy): "
            f"{seed['events_per_s']:,.0f} events/s; ours (batch {ours['batch']}, "
            f"{ours['precision']}): {ours['events_per_s']:,.0f} events/s: "
            f"{loops['speedup']:.1f}x"
        )
    ray = sections.get("ray_train", {}).get("figures")
    if ray and "events_per_s" in ray:
        yield (
            f"dclr pretrain ({ray['backend']}, 1 worker, {ray['epochs']} epochs of "
            f"{ray['events']} events): exit {ray['exit_status']}, {ray['wall_s']:.0f} s wall, "
            f"{ray['events_per_s']:,.0f} events/s"
        )


# ------------------------------------------------------------------------------------------------
# main


def run_section(name: str, ctx: Context) -> Figures:
    """Section ``name``'s entry of the report: its status, and its figures, the reason it was
    skipped or the message it failed with. Its figures also go to ``ctx.results``."""
    log.info("section %s", name)
    try:
        figures = SECTION_FUNCTIONS[name](ctx)
    except SkipSectionError as why:
        return {"status": "skipped", "reason": str(why)}
    except SectionFailedError as err:
        log.error("section %s failed: %s", name, err)
        return {"status": "failed", "message": str(err), "figures": err.figures}
    except Exception as err:
        log.error("section %s failed:\n%s", name, traceback.format_exc())
        return {"status": "failed", "message": f"{type(err).__name__}: {err}"}
    finally:
        if ctx.device.type == "cuda":
            torch.cuda.empty_cache()
    ctx.results[name] = figures
    return {"status": "ok", "figures": figures}


def parse_peaks(values: list[str]) -> dict[str, float]:
    """{precision: TFLOP/s} of ``--peak-tflops bf16=989.4`` flags."""
    peaks = {}
    for value in values:
        key, _, number = value.partition("=")
        try:
            peak = float(number)
        except ValueError:
            peak = math.nan
        if key not in ("bf16", "fp32", "tf32") or not peak > 0:
            raise argparse.ArgumentTypeError(
                f"--peak-tflops takes bf16|fp32|tf32=TFLOPS, got {value}"
            )
        peaks[key] = peak
    return peaks


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--dry-run", action="store_true", help="everything on CPU at tiny sizes (for CI)"
    )
    parser.add_argument("--out", type=Path, default=Path("device_check.json"), help="JSON report")
    parser.add_argument(
        "--skip", action="append", choices=SECTIONS, default=[], help="leave out (repeatable)"
    )
    parser.add_argument("--seconds", type=float, help="timed seconds per measurement")
    parser.add_argument(
        "--peak-tflops",
        action="append",
        default=[],
        metavar="PRECISION=TFLOPS",
        help="the device's dense peak for MFU, e.g. bf16=989 (repeatable; bf16, fp32 or tf32)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        peaks = parse_peaks(args.peak_tflops)
    except argparse.ArgumentTypeError as err:
        parser.error(str(err))
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if not args.dry_run and not torch.cuda.is_available():
        parser.error("no CUDA device here; --dry-run runs the same code on CPU at tiny sizes")
    sizes = DRY_SIZES if args.dry_run else GPU_SIZES
    if args.seconds is not None:
        sizes = Sizes(**{**asdict(sizes), "seconds": args.seconds})
    device = torch.device("cpu" if args.dry_run else "cuda")
    if args.dry_run:
        torch.set_num_threads(1)  # a CI machine's other cores stay free; figures mean nothing
    # SIGTERM unwinds like an interruption: a running command is stopped with its processes,
    # and the JSON keeps the sections finished before.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    config = apply_overrides(get_preset(sizes.preset), ["augment.views=both"])
    x, mask = sibling("augment_throughput").toy_dijets(
        sizes.pool_events, sizes.constituents, seed=0
    )
    ctx = Context(
        device=device,
        sizes=sizes,
        config=config,
        x=torch.from_numpy(x),
        mask=torch.from_numpy(mask),
        peak_overrides=peaks,
    )
    report: Figures = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "dry_run": args.dry_run,
        "machine": machine_info(device),
        "sizes": asdict(sizes),
        "sections": {},
    }
    out = args.out.resolve()
    for name in SECTIONS:
        start = time.perf_counter()
        skipped: Figures = {"status": "skipped", "reason": "--skip"}
        section = skipped if name in args.skip else run_section(name, ctx)
        section["seconds"] = time.perf_counter() - start
        report["sections"][name] = section
        write_json(out, rounded(report))
    failed = [n for n, s in report["sections"].items() if s["status"] == "failed"]
    report["failed"] = failed
    write_json(out, rounded(report))
    print("\n".join(summary(rounded(report))))
    print(f"report: {out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
