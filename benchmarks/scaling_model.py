"""A scaling model of contrastive pretraining on 1 to 64 GPUs, on paper (``docs/scaling.md``).

Per training step and per rank it puts side by side: the encoder's compute, the NT-Xent loss
(whose similarity matrix is (2B) x (2Bp) on each rank, so it grows with the number of ranks p
at a fixed per-rank batch B), the embedding all-gather of the forward pass and the reduce-scatter of
its gradient in the backward pass, DDP's bucketed gradient all-reduce and how much of it the
backward pass hides, and the floor set by the CPU issuing one kernel per operator.

Measured here, on the CPU: parameter counts of the models the project builds
(``models.build_model``), training FLOPs (analytic, checked with ``FlopCounterMode``), the
time of one ``Trainer.step`` of the seed paper's model, the operators one step dispatches and the
host syncs among them, the activation memory saved for backward, and the loss's memory and
traffic per element of its similarity matrix. Assumed, for the GPU: vendor peak rates and link
bandwidths, an MFU, per-hop latencies and a per-operator launch cost (all command-line options).

Run: .venv/bin/python benchmarks/scaling_model.py [--seconds 3] [--mfu 0.35] [--gpu h200]
"""

from __future__ import annotations

import argparse
import contextlib
import math
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.multiprocessing.reductions import StorageWeakRef
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten
from torch.utils.flop_counter import FlopCounterMode

from distributed_clr import distributed
from distributed_clr.config import get_preset
from distributed_clr.config.schema import ModelConfig, RunConfig
from distributed_clr.distributed import DDP_OPTIONS
from distributed_clr.losses import build_loss
from distributed_clr.models import build_model
from distributed_clr.train.trainer import Trainer

MiB = 2**20
DDP_FIRST_BUCKET = 1 * MiB
"""DDP's first gradient bucket (``torch.distributed._DEFAULT_FIRST_BUCKET_BYTES``)."""
DDP_BUCKET = 25 * MiB
"""DDP's ``bucket_cap_mb`` default; ``ray.train.torch.prepare_model`` keeps it."""
LOGSUMEXP_EXTRA_BYTES = 16
"""Per matrix element: logsumexp's kernels read their input about three times and write one
temporary of the same size (max, x - max, exp, sum); the operator-level count sees one read."""
STATE_BYTES_PER_PARAM = 20
"""fp32 parameter, gradient, two Adam moments, and DDP's bucket copy of the gradient."""
ADAM_BYTES_PER_PARAM = 28
"""Adam step, fp32: read parameter, gradient, two moments; write parameter and two moments."""


# ------------------------------------------------------------------------------------------------
# the models


@dataclass(frozen=True)
class ModelSize:
    """A transformer size: width, depth, heads and latent size (ff = 2 x width, the default)."""

    name: str
    width: int
    depth: int
    heads: int
    latent: int


def model_sizes(paper: ModelConfig) -> list[ModelSize]:
    """The seed paper's model (from the ``paper_lhco`` preset) and three larger ones."""
    width = paper.width or paper.latent_dim
    return [
        ModelSize("paper", width, paper.depth, paper.heads, paper.latent_dim),
        ModelSize("w256-d4", 256, 4, 8, 256),
        ModelSize("w512-d8", 512, 8, 8, 512),
        ModelSize("w1024-d12", 1024, 12, 16, 512),  # latent_dim is at most 512
    ]


def model_config(paper: ModelConfig, size: ModelSize) -> ModelConfig:
    """The paper preset's model section at ``size`` (validated like any config)."""
    update = {
        "width": size.width,
        "depth": size.depth,
        "heads": size.heads,
        "latent_dim": size.latent,
    }
    return ModelConfig.model_validate(paper.model_copy(update=update).model_dump())


def forward_flops(config: ModelConfig, in_features: int, tokens: int) -> dict[str, float]:
    """Matmul FLOPs (2 per multiply-add) of one view of one event through encoder and head, by
    part: ``device_check.train_step_flops`` (the one count of the step) for one event, halved."""
    from device_check import train_step_flops

    step = train_step_flops(config, in_features, tokens // 2, batch=1)  # two views, one event
    return {
        "embedding": step.embed / 2,
        "qkv+proj": step.attention_projections / 2,
        "attention": step.attention_scores / 2,
        "feed-forward": step.feed_forward / 2,
        "output+head": step.head / 2,
    }


def loss_flops(batch: int, ranks: int, dim: int) -> float:
    """Matmul FLOPs of one rank's NT-Xent, forward and backward: (2B, D) @ (D, 2Bp), then the
    gradients of both factors."""
    return 6.0 * (2 * batch) * (2 * batch * ranks) * dim


def synthetic_batch(
    events: int, constituents: int, device: torch.device | str = "cpu"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Dijet-like events (B, 2, N, 3) (pT, eta, phi) and their mask (B, 2, N), 60-100% filled."""
    g = torch.Generator().manual_seed(0)
    shape, axes = (events, 2, constituents), (events, 2, 1)
    pt = (1000 * torch.rand(shape, generator=g) ** 4).sort(dim=-1, descending=True).values
    counts = torch.randint(int(0.6 * constituents), constituents + 1, axes, generator=g)
    mask = torch.arange(constituents) < counts
    eta = torch.randn(axes, generator=g) + 0.3 * torch.randn(shape, generator=g)
    phi = torch.rand(axes, generator=g) * 6 - 3 + 0.3 * torch.randn(shape, generator=g)
    x = torch.stack([pt, eta, phi], dim=-1) * mask.unsqueeze(-1)
    return x.to(device), mask.to(device)


# ------------------------------------------------------------------------------------------------
# counting what the operators do


@contextlib.contextmanager
def emulated_ranks(ranks: int) -> Iterator[None]:
    """Make NT-Xent see ``ranks`` ranks without a process group: the gather returns this rank's
    rows followed by random rows for the others (as the real gather does, the whole gathered
    tensor takes part in autograd). Shapes, FLOPs and memory are those of a real rank."""
    real = distributed.gather_with_offset

    def gather(tensor: torch.Tensor) -> tuple[torch.Tensor, int]:
        others = torch.randn((ranks - 1) * tensor.shape[0], *tensor.shape[1:], device=tensor.device)
        return torch.cat([tensor, others]), 0

    distributed.gather_with_offset = gather  # type: ignore[assignment]
    try:
        yield
    finally:
        distributed.gather_with_offset = real  # type: ignore[assignment]


SETITEM_OPS = (torch.ops.aten.index_put_.default, torch.ops.aten.index_put.default)
LIFTED_SCALAR_OPS = (torch.ops.aten.scalar_tensor.default, torch.ops.aten.lift_fresh.default)
DATA_DEPENDENT_OPS = (torch.ops.aten.nonzero.default, torch.ops.aten.masked_select.default)
NO_KERNEL_OPS = (
    torch.ops.aten._local_scalar_dense.default,
    torch.ops.aten.detach.default,
    torch.ops.aten.alias.default,
)
"""Operators that touch a device tensor without launching work on it."""


class HostSyncs:
    """Which operators make the CPU wait for a CUDA device, recognised on any device type:

    - a scalar read (``.item()``, ``bool()``, ``float()``: ``_local_scalar_dense``) of a device
      tensor, or an operator whose output shape depends on the data (``nonzero``,
      ``masked_select``);
    - ``t[index_tensors] = python_scalar`` on a device tensor. For a CUDA tensor, Python's
      setitem makes the scalar a CPU tensor (``THPVariable_setitem``), and ``_index_put_impl_``
      moves it with ``value.to(self.device())``: a blocking copy from pageable memory, so a
      stream synchronize (read in PyTorch's source for torch 2.13, the version installed;
      pull requests upstream in 2026 address it). A lone boolean mask index goes to
      ``masked_fill_`` instead, without the copy. The scalar shows up as the output of
      ``scalar_tensor`` (meta) or ``lift_fresh`` (CPU) just before.
    """

    def __init__(self, device_type: str) -> None:
        self.device_type = device_type
        self.lifted: torch.Tensor | None = None

    def before(self, func: Any, args: Sequence[Any], on_device: bool) -> bool:
        """Whether ``func(*args)`` is a host sync on the device."""
        if func is torch.ops.aten._local_scalar_dense.default or func in DATA_DEPENDENT_OPS:
            return on_device
        if func in SETITEM_OPS and args[0].device.type == self.device_type:
            indices = [i for i in args[1] if i is not None]
            mask_only = len(indices) == 1 and indices[0].dtype == torch.bool
            return args[2] is self.lifted and not mask_only
        return False

    def after(self, func: Any, out: Any) -> None:
        if func in LIFTED_SCALAR_OPS and isinstance(out, torch.Tensor) and out.ndim == 0:
            self.lifted = out


class OperatorCount(TorchDispatchMode):
    """Operators that launch work on ``device_type`` (views excluded), by phase, and the host
    syncs among them (``HostSyncs``). ``segments`` holds, for each stretch between two syncs,
    its operators by phase (the first stretch ends at the first sync, the last one at the end);
    ``sync_phases`` the phase of each sync. Operators on other devices (Adam's step counters
    live on the CPU) launch no kernel there, and their scalar reads are no device syncs; nor do
    views and ``detach``."""

    def __init__(self, device_type: str) -> None:
        super().__init__()
        self.device_type = device_type
        self.phase = "?"
        self.ops: Counter[str] = Counter()
        self.segments: list[Counter[str]] = [Counter()]
        self.sync_phases: list[str] = []
        self.syncs = HostSyncs(device_type)

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        tensors = [t for t in tree_flatten((args, kwargs or {}))[0] if isinstance(t, torch.Tensor)]
        on_device = any(t.device.type == self.device_type for t in tensors)
        sync = self.syncs.before(func, args, on_device)
        if on_device and not func.is_view and func not in NO_KERNEL_OPS:
            self.ops[self.phase] += 1
            self.segments[-1][self.phase] += 1
        out = func(*args, **(kwargs or {}))
        self.syncs.after(func, out)
        if sync:
            self.sync_phases.append(self.phase)
            self.segments.append(Counter())
        return out


SPARSE_OPS = {"aten.index.Tensor", "aten.index_put_.default"}
"""Operators that touch only a few entries (the positives, the diagonal) of a full matrix."""


class MatrixAccounting(TorchDispatchMode):
    """Bytes read and written, and bytes alive, in tensors the size of the similarity matrix.

    Traffic counts each operator reading its inputs and writing its outputs once (matmuls
    excluded: they are timed by FLOPs, counted apart); memory follows every matrix-sized storage
    until it is freed, so the peak includes what autograd saves for backward. Traffic and
    FLOPs are kept by phase and by how many host syncs (``HostSyncs``, on the CPU) preceded
    them: the key "forward/1" is the forward pass after its first sync.
    """

    def __init__(self, numel: int) -> None:
        super().__init__()
        self.numel = numel
        self.phase = "forward"
        self.traffic: Counter[str] = Counter()
        self.matmul_flops: Counter[str] = Counter()
        self.host_syncs = HostSyncs("cpu")
        self.syncs: Counter[str] = Counter()
        self.live: dict[StorageWeakRef, int] = {}
        self.peak = 0

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        sync = self.host_syncs.before(func, args, True)
        out = func(*args, **(kwargs or {}))
        self.host_syncs.after(func, out)
        key = f"{self.phase}/{self.syncs[self.phase]}"
        outputs = [t for t in tree_flatten(out)[0] if self._big(t)]
        inputs = [t for t in tree_flatten((args, kwargs or {}))[0] if self._big(t)]
        name = str(func)
        matmul = name in ("aten.mm.default", "aten.addmm.default", "aten.bmm.default")
        if matmul and isinstance(out, torch.Tensor):
            inner = args[-1].shape[-2] if name != "aten.addmm.default" else args[2].shape[-2]
            self.matmul_flops[key] += 2 * out.numel() * inner
        if not (func.is_view or matmul or name in SPARSE_OPS):
            self.traffic[key] += sum(t.numel() * t.element_size() for t in inputs + outputs)
        for t in outputs:
            storage = t.untyped_storage()
            self.live[StorageWeakRef(storage)] = storage.nbytes()
        self.live = {ref: n for ref, n in self.live.items() if not ref.expired()}
        self.peak = max(self.peak, sum(self.live.values()))
        if sync:
            self.syncs[self.phase] += 1
        return out

    def _big(self, t: object) -> bool:
        return isinstance(t, torch.Tensor) and t.numel() == self.numel

    def total(self, counter: Counter[str], phase: str) -> float:
        return sum(v for k, v in counter.items() if k.split("/")[0] == phase)


@dataclass(frozen=True)
class LossCosts:
    """The loss per element of its (2B) x (2Bp) similarity matrix."""

    forward_bytes: float
    backward_bytes: float
    peak_bytes: float
    forward_syncs: int
    """Host syncs in the loss's forward pass."""
    forward_bytes_before_sync: float
    """Of ``forward_bytes``, the traffic issued before the first of them."""
    matmul_before_sync: float
    """The fraction of the forward matmul FLOPs issued before the first of them."""


def measure_loss_costs(config: RunConfig, flops_check: list[str]) -> LossCosts:
    """Traffic and peak memory of the project's NT-Xent per matrix element, at B = 192 events
    on each of p = 5 emulated ranks (D = 16, so that the matrix dominates), and where in its
    forward pass the host syncs fall."""
    batch, ranks, dim = 192, 5, 16
    numel = (2 * batch) * (2 * batch * ranks)
    loss_fn = build_loss(config.loss)
    z1, z2 = (torch.randn(batch, dim, requires_grad=True) for _ in range(2))
    accounting = MatrixAccounting(numel)
    with emulated_ranks(ranks), accounting:
        loss = loss_fn(z1, z2)
        accounting.phase = "backward"
        loss.backward()
    extra = LOGSUMEXP_EXTRA_BYTES / 2
    forward = accounting.total(accounting.traffic, "forward") / numel + extra
    backward = accounting.total(accounting.traffic, "backward") / numel + extra
    syncs = accounting.syncs["forward"]
    # logsumexp comes after the syncs when there are any
    before = accounting.traffic["forward/0"] / numel + (0.0 if syncs else extra)
    matmul = accounting.total(accounting.matmul_flops, "forward")
    matmul_before = accounting.matmul_flops["forward/0"] / matmul if matmul else 1.0
    # FLOP check of the loss on the meta device (shapes only), at D = 128.
    big_batch, big_dim = 400, 128
    counter = FlopCounterMode(display=False)
    z = [torch.randn(big_batch, big_dim, device="meta", requires_grad=True) for _ in range(2)]
    with emulated_ranks(8), counter:
        loss_fn(z[0], z[1]).backward()
    expected = loss_flops(big_batch, 8, big_dim)
    flops_check.append(
        f"| NT-Xent, B = {big_batch}, p = 8, D = {big_dim} | {expected:.4g} | "
        f"{counter.get_total_flops():.4g} | {counter.get_total_flops() / expected:.3f} |"
    )
    return LossCosts(forward, backward, accounting.peak / numel, syncs, before, matmul_before)


@dataclass
class ModelFacts:
    """What the script measures of one model size."""

    size: ModelSize
    config: ModelConfig
    params: int
    param_sizes: list[int]
    """Parameter element counts in registration order (DDP buckets them in reverse)."""
    train_flops: float
    """Training FLOPs per event: 2 views x (forward + backward = 3 x forward)."""
    counted_flops: float
    """The same from FlopCounterMode (meta device)."""
    activation_bytes: float
    """fp32 bytes saved for backward per event (both views), encoder and head, without the
    attention matrices (what a fused attention kernel saves)."""
    attention_bytes: float
    """fp32 bytes of the (S x S) attention matrices the math attention path saves per event."""
    buffer_bytes: int = 0
    """Module buffers, which DDP (``forward_sync_buffers=True``) broadcasts before each forward."""
    ops: Counter[str] = field(default_factory=Counter)
    """Operators of one training step, by phase."""
    segments: list[Counter[str]] = field(default_factory=list)
    """The same, for each stretch of the step between two host syncs."""
    sync_phases: list[str] = field(default_factory=list)
    """The phase of each host sync of the step."""


def saved_bytes(model: nn.Module, run: Callable[[], torch.Tensor], tokens: int) -> tuple[int, int]:
    """Bytes of the distinct storages autograd saves for backward while ``run`` runs, the
    parameters' own storages excluded: (all, of them the (tokens x tokens) attention
    matrices). The matrices come from the math attention path that runs here; the GPU's fused
    attention kernels keep none."""
    params = {StorageWeakRef(p.untyped_storage()) for p in model.parameters()}
    seen: dict[StorageWeakRef, int] = {}
    square: set[StorageWeakRef] = set()

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        ref = StorageWeakRef(storage)
        if ref not in params:
            seen[ref] = storage.nbytes()
            if t.ndim >= 2 and t.shape[-2:] == (tokens, tokens):
                square.add(ref)
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        run()
    return sum(seen.values()), sum(seen[ref] for ref in square)


def measure_model(config: RunConfig, size: ModelSize) -> ModelFacts:
    """Parameters, FLOPs, activation memory and operators of one model size (meta device)."""
    model_cfg = model_config(config.model, size)
    constituents = config.prepare.num_constituents
    torch.manual_seed(0)
    model = build_model(model_cfg, constituents)
    params = sum(p.numel() for p in model.parameters())
    sizes = [p.numel() for p in model.parameters()]
    buffers = sum(b.numel() * b.element_size() for b in model.buffers())
    in_features = model.features.num_features
    per_view = sum(forward_flops(model_cfg, in_features, 2 * constituents).values())
    model = model.to("meta")

    events = 2
    x, mask = synthetic_batch(events, constituents, "meta")
    both_x, both_mask = torch.cat([x, x]), torch.cat([mask, mask])
    counter = FlopCounterMode(display=False)
    with counter:
        model(both_x, both_mask).square().sum().backward()
    saved, attention = saved_bytes(model, lambda: model(both_x, both_mask), 2 * constituents)
    model.zero_grad(set_to_none=True)
    ops = count_step_ops(config, model, {"x": x, "mask": mask})
    return ModelFacts(
        size=size,
        config=model_cfg,
        params=params,
        param_sizes=sizes,
        train_flops=2 * 3 * per_view,
        counted_flops=counter.get_total_flops() / events,
        activation_bytes=(saved - attention) / events,
        attention_bytes=attention / events,
        buffer_bytes=buffers,
        ops=ops.ops,
        segments=ops.segments,
        sync_phases=ops.sync_phases,
    )


def count_step_ops(
    config: RunConfig, model: nn.Module, batch: dict[str, torch.Tensor]
) -> OperatorCount:
    """Operators and host syncs of one ``Trainer.step`` as a GPU would see them, one rank.

    The project's own ``Trainer`` runs on the meta device (shapes only), so every part takes
    its accelerator path: ``collinear_split`` compacts without asking ``is_compact``, and Adam
    runs with foreach, torch's default on CUDA (its step counters stay on the CPU). Hooks mark
    the phases: augment, encoder forward, loss forward, trainer (the non-finite-loss flag and
    ``train_epoch``'s running sum of the loss), backward, optimizer."""
    trainer = Trainer(
        model,
        train=config.train,
        loss=config.loss,
        augment=config.augment,
        device=torch.device("meta"),
        steps_per_epoch=1_000_000,
    )
    for group in trainer.optimizer.param_groups:
        group["foreach"] = True
    generator = torch.Generator().manual_seed(0)
    trainer.step(batch, generator)  # the first step creates Adam's moments: count a later one
    ops = OperatorCount("meta")

    def mark(name: str) -> Callable[..., None]:
        def hook(*_: Any) -> None:
            ops.phase = name

        return hook

    def loss_done(module: nn.Module, inputs: Any, output: torch.Tensor) -> None:
        ops.phase = "trainer"
        output.register_hook(mark("backward"))  # runs first in the backward pass

    handles = [
        model.register_forward_pre_hook(mark("encoder forward")),
        model.register_forward_hook(mark("loss forward")),
        trainer.loss_fn.register_forward_hook(loss_done),
        trainer.optimizer.register_step_pre_hook(mark("optimizer")),
    ]
    total = torch.zeros((), device="meta")
    try:
        with ops:
            ops.phase = "augment"
            loss = trainer.step(batch, generator)
            ops.phase = "trainer"
            total += loss  # as train_epoch sums the loss on the device
    finally:
        for handle in handles:
            handle.remove()
    return ops


@dataclass(frozen=True)
class CpuStep:
    """One ``Trainer.step`` timed on the CPU."""

    batch: int
    threads: int
    seconds_per_step: float
    events_per_s: float
    gflops: float


def time_cpu_step(config: RunConfig, facts: ModelFacts, batch: int, seconds: float) -> CpuStep:
    """Events/s of the project's ``Trainer.step`` (two views, loss, backward, Adam) on the CPU."""
    torch.manual_seed(0)
    model = build_model(config.model, config.prepare.num_constituents)
    trainer = Trainer(
        model,
        train=config.train,
        loss=config.loss,
        augment=config.augment,
        device=torch.device("cpu"),
        steps_per_epoch=1_000_000,
    )
    x, mask = synthetic_batch(batch, config.prepare.num_constituents)
    step_batch = {"x": x, "mask": mask}
    generator = torch.Generator().manual_seed(0)
    for _ in range(2):
        trainer.step(step_batch, generator)
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds or steps < 3:
        trainer.step(step_batch, generator)
        steps += 1
    per_step = (time.perf_counter() - start) / steps
    dim = config.model.head_out or config.model.latent_dim
    flops = batch * facts.train_flops + loss_flops(batch, 1, dim)
    return CpuStep(
        batch, torch.get_num_threads(), per_step, batch / per_step, flops / per_step / 1e9
    )


# ------------------------------------------------------------------------------------------------
# the GPU side: assumptions and the step model


@dataclass(frozen=True)
class Gpu:
    """Vendor figures of one GPU (SXM form factor, dense, no sparsity)."""

    name: str
    bf16_flops: float
    """Dense bf16 tensor-core peak [FLOP/s] (vendor spec)."""
    fp32_flops: float
    """fp32 peak without TF32 [FLOP/s] (vendor spec): the loss runs in fp32."""
    tf32_flops: float
    """Dense TF32 tensor-core peak [FLOP/s] (vendor spec), if fp32 matmuls may use TF32."""
    hbm: float
    """Memory bandwidth [B/s]."""
    memory: float
    """Memory [B]."""


GPUS = {
    "h100": Gpu("H100 SXM", 989e12, 67e12, 494e12, 3.35e12, 80e9),
    "h200": Gpu("H200 SXM", 989e12, 67e12, 494e12, 4.8e12, 141e9),
}


@dataclass(frozen=True)
class Assumptions:
    """Everything the GPU side of the model assumes (command-line options)."""

    gpu: Gpu
    precision: str
    mfu: float
    fp32_efficiency: float
    nvlink: float
    inter_node: float
    alpha_intra: float
    alpha_inter: float
    gpus_per_node: int
    launch: float
    algorithm: str
    grad_bytes: int
    loss_tf32: bool

    def link(self, ranks: int) -> tuple[float, float]:
        """(bandwidth [B/s], per-hop latency [s]) of a collective over ``ranks`` ranks."""
        if ranks <= self.gpus_per_node:
            return self.nvlink, self.alpha_intra
        return self.inter_node, self.alpha_inter

    def hops(self, ranks: int) -> int:
        """Latency steps of one all-gather: p - 1 on a ring, ceil(log2 p) on a tree."""
        if self.algorithm == "tree":
            return math.ceil(math.log2(ranks))
        return ranks - 1

    def all_reduce(self, nbytes: float, ranks: int) -> float:
        """All-reduce: 2 (p-1)/p x bytes / bandwidth + 2 x hops x alpha (reduce-scatter, then
        all-gather)."""
        if ranks == 1:
            return 0.0
        bandwidth, alpha = self.link(ranks)
        return 2 * (ranks - 1) / ranks * nbytes / bandwidth + 2 * self.hops(ranks) * alpha

    def all_gather(self, total_bytes: float, ranks: int) -> float:
        """All-gather of ``total_bytes`` in all: (p-1)/p x total / bandwidth + hops x alpha."""
        if ranks == 1:
            return 0.0
        bandwidth, alpha = self.link(ranks)
        return (ranks - 1) / ranks * total_bytes / bandwidth + self.hops(ranks) * alpha

    def reduce_scatter(self, total_bytes: float, ranks: int) -> float:
        """Reduce-scatter of ``total_bytes`` in all: (p-1)/p x total / bandwidth + hops x alpha
        (the first half of a ring all-reduce)."""
        return self.all_gather(total_bytes, ranks)

    def broadcast(self, nbytes: float, ranks: int) -> float:
        """Broadcast from one rank: bytes / bandwidth + hops x alpha."""
        if ranks == 1:
            return 0.0
        bandwidth, alpha = self.link(ranks)
        return nbytes / bandwidth + self.hops(ranks) * alpha

    def loss_rate(self) -> float:
        """Achieved FLOP/s of the loss's fp32 matmuls (TF32 only if allowed)."""
        peak = self.gpu.tf32_flops if self.loss_tf32 else self.gpu.fp32_flops
        return peak * self.fp32_efficiency

    def matmul_rate(self) -> float:
        """Achieved encoder FLOP/s at the chosen precision."""
        if self.precision == "bf16":
            return self.gpu.bf16_flops * self.mfu
        return self.gpu.fp32_flops * self.fp32_efficiency


def ddp_buckets(param_sizes: Sequence[int], grad_bytes: int) -> list[float]:
    """DDP's gradient buckets [bytes], in the order they fill during backward (reverse
    registration order, a 1 MiB first bucket, then 25 MiB)."""
    buckets: list[float] = []
    current, cap = 0.0, DDP_FIRST_BUCKET
    for n in reversed(param_sizes):
        current += n * grad_bytes
        if current >= cap:
            buckets.append(current)
            current, cap = 0.0, DDP_BUCKET
    if current:
        buckets.append(current)
    return buckets


def exposed_all_reduce(
    buckets: Sequence[float], backward: float, ranks: int, a: Assumptions
) -> tuple[float, float]:
    """(total, exposed) time of DDP's bucketed all-reduce. A bucket is ready when backward has
    produced its gradients (in proportion to bytes, through the encoder's backward time); the
    buckets reduce one after another on the communication stream; what runs past the end of
    backward is exposed."""
    total_bytes = sum(buckets)
    done, end, total = 0.0, 0.0, 0.0
    for nbytes in buckets:
        done += nbytes
        ready = backward * done / total_bytes
        cost = a.all_reduce(nbytes, ranks)
        end = max(end, ready) + cost
        total += cost
    return total, max(0.0, end - backward)


@dataclass(frozen=True)
class StepTerms:
    """One rank's step (p ranks, B events each): times in seconds, memory in bytes."""

    encoder: float
    loss: float
    loss_memory: float
    activation_memory: float
    buffer_broadcast: float
    embedding_gather: float
    embedding_grad_reduce: float
    grad_reduce_total: float
    grad_reduce_exposed: float
    optimizer: float
    launch_floor: float
    host_syncs: int
    step: float


GROWING = ("loss", "embedding collectives", "gradient all-reduce", "DDP bookkeeping")


def step_terms(
    facts: ModelFacts,
    costs: LossCosts,
    batch: int,
    ranks: int,
    a: Assumptions,
    frozen: str | None = None,
) -> StepTerms:
    """The step model. ``frozen`` names one of ``GROWING`` to hold at its one-rank value (to
    find which term costs most efficiency; DDP's bookkeeping is absent with one rank)."""
    dim = facts.config.head_out or facts.config.latent_dim
    p_loss = 1 if frozen == "loss" else ranks
    p_emb = 1 if frozen == "embedding collectives" else ranks
    p_grad = 1 if frozen == "gradient all-reduce" else ranks

    encoder = batch * facts.train_flops / a.matmul_rate()
    elements = (2 * batch) * (2 * batch * p_loss)
    loss_rate = a.loss_rate()
    fwd_matmul = elements * 2 * dim / loss_rate
    loss_fwd_before = (
        costs.matmul_before_sync * fwd_matmul
        + elements * costs.forward_bytes_before_sync / a.gpu.hbm
    )
    loss_fwd = fwd_matmul + elements * costs.forward_bytes / a.gpu.hbm
    loss_bwd = elements * (4 * dim / loss_rate + costs.backward_bytes / a.gpu.hbm)

    # In a training step every rank has a full batch (drop_last), and Trainer.step runs the
    # loss inside distributed.equal_sizes(): no exchange of batch sizes, one all-gather.
    embeddings = 2 * batch * dim * 4 * p_emb  # fp32 (B, 2, D) of every rank
    gather = a.all_gather(embeddings, p_emb)
    grad_reduce_emb = a.reduce_scatter(embeddings, p_emb)  # each rank keeps its own rows

    buckets = ddp_buckets(facts.param_sizes, a.grad_bytes)
    ddp = ranks > 1 and frozen != "DDP bookkeeping"
    # DDP (only with more than one rank), with the options pretraining passes
    # (distributed.DDP_OPTIONS): with forward_sync_buffers, a broadcast of the module buffers from
    # rank 0 before each forward and its copy back; in backward, per bucket a collective and a
    # division, and without gradient_as_bucket_view per parameter a copy of its gradient into
    # the bucket and one back.
    broadcasts = bool(DDP_OPTIONS.get("forward_sync_buffers", True)) and facts.buffer_bytes > 0
    views = bool(DDP_OPTIONS.get("gradient_as_bucket_view", False))
    broadcast = a.broadcast(facts.buffer_bytes, ranks) if ddp and broadcasts else 0.0
    extra: Counter[str] = Counter()
    if ddp:
        extra["encoder forward"] += 2 if broadcasts else 0
        extra["backward"] += (0 if views else 2 * len(facts.param_sizes)) + 2 * len(buckets)
    if p_emb > 1:
        # Equal batches: one all-gather into one buffer (distributed._AllGatherWithGrad), and
        # in backward one reduce-scatter into this rank's rows.
        extra["loss forward"] += 1
        extra["backward"] += 1
    backward_ops = facts.ops["backward"] + extra["backward"]
    # Buckets fill while the encoder's backward runs: on the GPU, or as fast as the CPU
    # issues it, whichever is slower.
    backward = max(2 / 3 * encoder, backward_ops * a.launch)
    grad_total, grad_exposed = exposed_all_reduce(buckets, backward, p_grad, a)
    optimizer = facts.params * ADAM_BYTES_PER_PARAM / a.gpu.hbm

    # The CPU issues each stretch of the step between two host syncs while the GPU runs it;
    # a stretch takes max(CPU issue time, GPU time). With no sync at the end of a step the CPU
    # goes on into the next one, so the last stretch of a step and the first of the next are
    # one. Each sync adds one t_op: the copy or read, issued once the GPU has drained.
    gpu_by_phase = {
        "encoder forward": encoder / 3 + broadcast,
        "backward": grad_reduce_emb + loss_bwd + backward + grad_exposed,
        "optimizer": optimizer,
    }
    segments = [Counter(segment) for segment in facts.segments] or [Counter()]
    gpu = [0.0] * len(segments)

    def where(phase: str, last: bool = False) -> int:
        found = [i for i, segment in enumerate(segments) if segment[phase]]
        return (found[-1] if last else found[0]) if found else 0

    for phase, n in extra.items():
        segments[where(phase)][phase] += n
    for phase, seconds in gpu_by_phase.items():
        gpu[where(phase)] += seconds
    gpu[where("loss forward")] += gather + loss_fwd_before
    gpu[where("loss forward", last=True)] += loss_fwd - loss_fwd_before
    cpu = [sum(segment.values()) * a.launch for segment in segments]
    if len(segments) > 1:
        cpu[0] += cpu.pop()
        gpu[0] += gpu.pop()
    syncs = len(facts.sync_phases)
    step = sum(max(c, g) for c, g in zip(cpu, gpu, strict=True)) + syncs * a.launch
    return StepTerms(
        encoder=encoder,
        loss=loss_fwd + loss_bwd,
        loss_memory=2 * batch * (2 * batch * ranks) * costs.peak_bytes,
        activation_memory=batch * facts.activation_bytes,
        buffer_broadcast=broadcast,
        embedding_gather=gather,
        embedding_grad_reduce=grad_reduce_emb,
        grad_reduce_total=grad_total,
        grad_reduce_exposed=grad_exposed,
        optimizer=optimizer,
        launch_floor=sum(cpu),
        host_syncs=syncs,
        step=step,
    )


def largest_growth(
    facts: ModelFacts, costs: LossCosts, batch: int, ranks: int, a: Assumptions
) -> str:
    """The growing term whose freezing at its one-rank value saves the most step time."""
    if ranks == 1:
        return "-"
    step = step_terms(facts, costs, batch, ranks, a).step
    saved = {
        name: step - step_terms(facts, costs, batch, ranks, a, frozen=name).step for name in GROWING
    }
    name, seconds = max(saved.items(), key=lambda item: item[1])
    return f"{name} ({seconds / step:.0%})" if seconds > 0 else "none"


# ------------------------------------------------------------------------------------------------
# tables


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:.3g}"


def print_models(facts: list[ModelFacts], a: Assumptions) -> None:
    print("## Models (50 constituents per jet: 100 tokens per event)\n")
    print(
        "| model | width | depth | heads | ff | latent | parameters | grad bytes fp32 | "
        "train GFLOP/event | FlopCounter | saved activations MB/event, fp32 (+ S x S) | "
        "DDP buckets | ops/step (host syncs) |"
    )
    print("|" + " --- |" * 13)
    for f in facts:
        c = f.config
        width = c.width or c.latent_dim
        buckets = ddp_buckets(f.param_sizes, a.grad_bytes)
        print(
            f"| {f.size.name} | {width} | {c.depth} | {c.heads} | {c.ff_dim or 2 * width} | "
            f"{c.latent_dim} | {f.params:,} | {f.params * 4 / MiB:.2f} MiB | "
            f"{f.train_flops / 1e9:.3g} | {f.counted_flops / f.train_flops:.3f} x | "
            f"{f.activation_bytes / 1e6:.3g} (+{f.attention_bytes / 1e6:.3g}) | {len(buckets)} | "
            f"{sum(f.ops.values())} ({len(f.sync_phases)}) |"
        )
    print()


def print_scaling(
    facts: ModelFacts, costs: LossCosts, batch: int, gpus: Sequence[int], a: Assumptions
) -> list[tuple[int, float]]:
    print(f"### {facts.size.name}, B = {batch} events per GPU\n")
    print(
        "| GPUs | encoder ms | loss ms | emb. all-gather ms | emb. grad reduce-scatter ms | "
        "grad all-reduce ms (exposed) | DDP buffer broadcast ms | issue floor ms | step ms | "
        "events/s/GPU | efficiency | memory GB (loss + act.) | largest growth |"
    )
    print("|" + " --- |" * 13)
    base = step_terms(facts, costs, batch, 1, a).step
    efficiencies = []
    for p in gpus:
        t = step_terms(facts, costs, batch, p, a)
        memory = t.loss_memory + t.activation_memory + STATE_BYTES_PER_PARAM * facts.params
        flag = " OOM" if memory > a.gpu.memory else ""
        efficiencies.append((p, base / t.step))
        print(
            f"| {p} | {ms(t.encoder)} | {ms(t.loss)} | {ms(t.embedding_gather)} | "
            f"{ms(t.embedding_grad_reduce)} | {ms(t.grad_reduce_total)} "
            f"({ms(t.grad_reduce_exposed)}) | {ms(t.buffer_broadcast)} | {ms(t.launch_floor)} | "
            f"{ms(t.step)} | "
            f"{batch / t.step:,.0f} | {base / t.step:.2f} | "
            f"{t.loss_memory / 1e9:.2g} + {t.activation_memory / 1e9:.2g}{flag} | "
            f"{largest_growth(facts, costs, batch, p, a)} |"
        )
    print()
    return efficiencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="CPU timing length")
    parser.add_argument("--cpu-batch", type=int, default=32, help="events per CPU step")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--gpu", choices=sorted(GPUS), default="h200")
    parser.add_argument(
        "--precision",
        choices=["bf16", "fp32"],
        default="bf16",
        help="train.precision of the encoder (the loss is fp32 either way)",
    )
    parser.add_argument("--mfu", type=float, default=0.35, help="encoder bf16 MFU (assumed)")
    parser.add_argument(
        "--fp32-efficiency",
        type=float,
        default=0.7,
        help="fraction of the fp32 peak reached by fp32 matmuls (assumed)",
    )
    parser.add_argument(
        "--nvlink-gbs",
        type=float,
        default=450.0,
        help="intra-node bus bandwidth per GPU, GB/s per direction",
    )
    parser.add_argument(
        "--inter-node-gbs",
        type=float,
        default=50.0,
        help="inter-node bandwidth per GPU, GB/s (a 400 Gb/s NIC per GPU)",
    )
    parser.add_argument("--alpha-intra-us", type=float, default=5.0)
    parser.add_argument("--alpha-inter-us", type=float, default=10.0)
    parser.add_argument("--gpus-per-node", type=int, default=8)
    parser.add_argument(
        "--launch-us",
        type=float,
        default=5.0,
        help="CPU time to issue one operator's kernel (eager PyTorch)",
    )
    parser.add_argument(
        "--algorithm",
        choices=["ring", "tree"],
        default="ring",
        help="latency of the collectives: p-1 hops (ring) or log2 p (tree)",
    )
    parser.add_argument(
        "--grad-bytes",
        type=int,
        choices=[2, 4],
        default=4,
        help="bytes per gradient element DDP all-reduces (4: fp32; 2: bf16 hook)",
    )
    parser.add_argument(
        "--loss-tf32",
        action="store_true",
        help="let the loss's fp32 matmuls use TF32 (the project does not enable it)",
    )
    parser.add_argument("--batches", type=int, nargs="+", default=[400, 1024, 4096])
    parser.add_argument("--gpus", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32, 64])
    parser.add_argument("--models", nargs="+", default=None, help="names of the model sizes")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    config = get_preset("paper_lhco")
    a = Assumptions(
        gpu=GPUS[args.gpu],
        precision=args.precision,
        mfu=args.mfu,
        fp32_efficiency=args.fp32_efficiency,
        nvlink=args.nvlink_gbs * 1e9,
        inter_node=args.inter_node_gbs * 1e9,
        alpha_intra=args.alpha_intra_us * 1e-6,
        alpha_inter=args.alpha_inter_us * 1e-6,
        gpus_per_node=args.gpus_per_node,
        launch=args.launch_us * 1e-6,
        algorithm=args.algorithm,
        grad_bytes=args.grad_bytes,
        loss_tf32=args.loss_tf32,
    )
    sizes = [s for s in model_sizes(config.model) if args.models is None or s.name in args.models]
    facts = [measure_model(config, s) for s in sizes]
    flops_check: list[str] = []
    costs = measure_loss_costs(config, flops_check)

    print_models(facts, a)
    print("## FLOP check: analytic vs torch.utils.flop_counter.FlopCounterMode\n")
    print("| what | analytic FLOPs | counted | counted / analytic |")
    print("| --- | --- | --- | --- |")
    for f in facts:
        print(
            f"| {f.size.name}, one event, 2 views, fwd+bwd | {f.train_flops:.4g} | "
            f"{f.counted_flops:.4g} | {f.counted_flops / f.train_flops:.3f} |"
        )
    print("\n".join(flops_check))
    paper = next((f for f in facts if f.size.name == "paper"), None)
    if paper is not None:
        print("\nForward FLOPs of one view of one event, paper model, by part:")
        in_features = build_model(config.model, config.prepare.num_constituents).features
        tokens = 2 * config.prepare.num_constituents
        parts = forward_flops(paper.config, in_features.num_features, tokens)
        print(", ".join(f"{k} {v / 1e6:.3g} M" for k, v in parts.items()))
    where_syncs = (
        f"{costs.forward_syncs} host sync(s) in the forward pass, after "
        f"{costs.forward_bytes_before_sync:.0f} B of its traffic and "
        f"{costs.matmul_before_sync:.0%} of its matmul FLOPs"
        if costs.forward_syncs
        else "no host sync in the forward pass"
    )
    print(
        f"\n## NT-Xent per element of the (2B) x (2Bp) matrix (project loss, measured)\n\n"
        f"traffic forward {costs.forward_bytes:.0f} B, backward {costs.backward_bytes:.0f} B "
        f"(incl. {LOGSUMEXP_EXTRA_BYTES} B for logsumexp's internal passes); "
        f"peak memory {costs.peak_bytes:.0f} B; {where_syncs}\n"
    )
    print("Operators of one Trainer.step by phase (meta device, one rank), and its host syncs:")
    for f in facts:
        phases = ", ".join(f"{k} {v}" for k, v in f.ops.items())
        stretches = " | ".join(
            ", ".join(f"{k} {v}" for k, v in segment.items()) for segment in f.segments
        )
        syncs = (
            f"host syncs in {f.sync_phases}; operators between them: {stretches}"
            if f.sync_phases
            else "no host sync"
        )
        print(f"- {f.size.name}: {phases}; {syncs}")

    if paper is not None:
        cpu = time_cpu_step(config, paper, args.cpu_batch, args.seconds)
        print(
            f"\n## Measured on this CPU: paper model, Trainer.step, batch {cpu.batch}, "
            f"{cpu.threads} thread(s)\n\n"
            f"{cpu.seconds_per_step * 1e3:.0f} ms/step, {cpu.events_per_s:.0f} events/s, "
            f"{cpu.gflops:.1f} GFLOP/s achieved (matmul FLOPs of encoder, head and loss)\n"
        )

    print(
        f"## Scaling on {a.gpu.name}\n\n"
        f"Assumed: encoder {args.precision} at {a.matmul_rate() / 1e12:.0f} TFLOP/s "
        f"(MFU {a.mfu:.0%} of {a.gpu.bf16_flops / 1e12:.0f} if bf16, else "
        f"{a.fp32_efficiency:.0%} of fp32); loss matmuls at {a.loss_rate() / 1e12:.0f} TFLOP/s "
        f"({'TF32' if a.loss_tf32 else 'fp32'}), HBM {a.gpu.hbm / 1e12:.2f} TB/s, "
        f"{a.gpu.memory / 1e9:.0f} GB; {args.algorithm} collectives, NVLink "
        f"{args.nvlink_gbs:.0f} GB/s up to {a.gpus_per_node} GPUs, then {args.inter_node_gbs:.0f} "
        f"GB/s; alpha {args.alpha_intra_us:g} / {args.alpha_inter_us:g} us per hop; "
        f"{args.launch_us:g} us per operator; {args.grad_bytes}-byte gradients.\n"
    )
    summary = []
    for f in facts:
        for batch in args.batches:
            eff = print_scaling(f, costs, batch, args.gpus, a)
            below = next((p for p, e in eff if e < 0.9), None)
            limit = largest_growth(f, costs, batch, below, a) if below else "-"
            at_most = largest_growth(f, costs, batch, args.gpus[-1], a)
            summary.append(
                f"| {f.size.name} | {batch} | "
                + " | ".join(f"{e:.2f}" for _, e in eff)
                + f" | {below or '> ' + str(args.gpus[-1])} | {limit} | {at_most} |"
            )
    print("## Summary: scaling efficiency (step time at 1 GPU / at p GPUs)\n")
    print(
        "| model | B | "
        + " | ".join(f"p={p}" for p in args.gpus)
        + f" | first p below 0.9 | term that grew most there | ... at p={args.gpus[-1]} |"
    )
    print("|" + " --- |" * (len(args.gpus) + 5))
    print("\n".join(summary))
    print(f"\n(script ran {time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
