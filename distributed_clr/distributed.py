"""Process-group helpers that reduce to the identity in a single process.

Every function here works with or without ``torch.distributed`` initialised, so the training loop
and the losses have one code path: on a laptop ``world_size()`` is 1 and ``all_gather_with_grad(x)``
returns ``x``; under DDP they speak to the process group.
"""

from __future__ import annotations

import contextlib
import contextvars
import typing
from collections.abc import Iterator
from typing import Any

import torch
import torch.distributed as dist

DDP_OPTIONS: dict[str, Any] = {"gradient_as_bucket_view": True, "forward_sync_buffers": False}
"""How pretraining wraps its model in ``DistributedDataParallel``. ``gradient_as_bucket_view``:
each gradient is a view into DDP's communication bucket, which saves two copies per parameter
tensor in every backward. ``forward_sync_buffers=False``: the module buffers are broadcast
from rank 0 once, when DDP wraps the model, and not again before every forward (torch's
replacement for the deprecated ``broadcast_buffers=False``, which also skipped the first
broadcast); the models' buffers are constants (the object transformer's slot types) or, with
batch norm on several GPUs, running statistics that SyncBatchNorm keeps equal on every rank
(batch norm on several CPU workers is refused)."""


def is_distributed() -> bool:
    """True when a default process group with more than one rank is initialised."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    """This process's global rank (0 without a process group)."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def world_size() -> int:
    """Number of ranks (1 without a process group)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


class _AllGatherWithGrad(torch.autograd.Function):
    """Concatenate every rank's tensor along dim 0, letting gradients flow back to each source.

    ``dist.all_gather`` alone cuts the graph: the gathered copies are leaves. Here each rank's
    backward receives d(own loss)/d(gathered); the gradient of the *sum* of all ranks' losses
    with respect to this rank's input is the sum of those over ranks, at this rank's rows: a
    reduce-scatter where every rank holds as many rows (a training step), else an all-reduce
    sliced at the rank's rows. DDP then averages parameter gradients over ranks, which gives
    the gradient of the mean rank loss, exactly what a single process computes on the
    concatenated batch.
    """

    @staticmethod
    def forward(ctx: Any, tensor: torch.Tensor, sizes: list[int]) -> torch.Tensor:
        me = dist.get_rank()
        ctx.offset = sum(sizes[:me])
        ctx.size = sizes[me]
        ctx.equal = len(set(sizes)) == 1
        if ctx.equal:  # a training step's full batches: one collective into one buffer
            gathered = tensor.new_empty((tensor.shape[0] * len(sizes), *tensor.shape[1:]))
            dist.all_gather_single(gathered, tensor.contiguous())
            return gathered
        largest = max(sizes)
        padded = tensor
        if tensor.shape[0] < largest:  # all_gather needs equal shapes: pad, gather, unpad
            pad = tensor.new_zeros((largest - tensor.shape[0], *tensor.shape[1:]))
            padded = torch.cat([tensor, pad], dim=0)
        buffers = [torch.empty_like(padded) for _ in sizes]
        dist.all_gather(buffers, padded.contiguous())
        return torch.cat([buf[:n] for buf, n in zip(buffers, sizes, strict=True)], dim=0)

    @staticmethod
    def backward(ctx: Any, *grad_outputs: torch.Tensor) -> tuple[torch.Tensor, None]:
        grad = grad_outputs[0].contiguous()
        if ctx.equal:
            # Only this rank's rows of the summed gradient are needed: a reduce-scatter sends
            # half the bytes of an all-reduce and writes a new buffer, leaving autograd's.
            mine = grad.new_empty((ctx.size, *grad.shape[1:]))
            dist.reduce_scatter_single(mine, grad, op=dist.ReduceOp.SUM)
            return mine, None
        # A copy: the incoming gradient buffer belongs to autograd and may be shared.
        summed = grad.clone()
        dist.all_reduce(summed, op=dist.ReduceOp.SUM)
        return summed[ctx.offset : ctx.offset + ctx.size], None


_EQUAL_SIZES: contextvars.ContextVar[bool] = contextvars.ContextVar("equal_sizes", default=False)


@contextlib.contextmanager
def equal_sizes() -> Iterator[None]:
    """Within this block every rank gathers tensors of the same first dimension (a training
    step's full batches), so ``gather_with_offset`` does not exchange sizes: one all-gather
    and one host-device synchronisation fewer per call."""
    token = _EQUAL_SIZES.set(True)
    try:
        yield
    finally:
        _EQUAL_SIZES.reset(token)


def _gather_sizes(size: int, device: torch.device) -> list[int]:
    if _EQUAL_SIZES.get():
        return [size] * dist.get_world_size()
    mine = torch.tensor([size], dtype=torch.int64, device=device)
    sizes = [torch.zeros_like(mine) for _ in range(dist.get_world_size())]
    dist.all_gather(sizes, mine)
    return [int(s.item()) for s in sizes]


def gather_with_offset(tensor: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Gather ``tensor`` (N_r, ...) from every rank into (sum_r N_r, ...), in rank order, and
    the offset of this rank's rows in it.

    Ranks may hold different N_r. Gradients flow back to every rank's input (see
    ``_AllGatherWithGrad``); every rank must call this (and its backward) the same number of
    times. Without a process group this returns ``(tensor, 0)``.
    """
    if not is_distributed():
        return tensor, 0
    sizes = _gather_sizes(tensor.shape[0], tensor.device)
    gathered = _AllGatherWithGrad.apply(tensor, sizes)  # type: ignore[no-untyped-call]
    return typing.cast(torch.Tensor, gathered), sum(sizes[: dist.get_rank()])


def all_gather_with_grad(tensor: torch.Tensor) -> torch.Tensor:
    """``gather_with_offset`` without the offset."""
    return gather_with_offset(tensor)[0]


def all_reduce_mean(value: torch.Tensor) -> torch.Tensor:
    """Mean of ``value`` over ranks (a detached copy); the value itself without a process group."""
    if not is_distributed():
        return value.detach().clone()
    out = value.detach().clone()
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out / world_size()


def all_gather_objects(obj: Any) -> list[Any]:
    """Every rank's picklable ``obj``, in rank order; ``[obj]`` without a process group."""
    if not is_distributed():
        return [obj]
    out: list[Any] = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out
