"""The distributed helpers: identities alone, exact under two real gloo processes."""

from __future__ import annotations

import pytest
import torch

from distributed_clr import distributed
from tests.multiproc import run_on_ranks

UNEQUAL = (3, 5)  # the last batch of an epoch is often short: all-gather padded, all-reduce
EQUAL = (4, 4)  # a training step's full batches: one all-gather, a reduce-scatter


def _inputs(rank: int, rows: tuple[int, int] = UNEQUAL) -> torch.Tensor:
    gen = torch.Generator().manual_seed(100 + rank)
    return torch.randn(rows[rank], 4, generator=gen, dtype=torch.float64)


def _rank_loss(rank: int, gathered: torch.Tensor) -> torch.Tensor:
    """A different non-linear function of *all* rows on each rank, as a contrastive loss is."""
    weights = torch.linspace(-1.0, 1.0, gathered.numel(), dtype=gathered.dtype).view_as(gathered)
    return (torch.tanh(gathered * (rank + 1)) * weights).sum() + (gathered**2).sum() * 0.1 * rank


def _gather_worker(rank: int, world: int, rows: tuple[int, int] = UNEQUAL) -> dict[str, object]:
    x = _inputs(rank, rows).requires_grad_(True)
    gathered = distributed.all_gather_with_grad(x)
    _rank_loss(rank, gathered).backward()
    mean = distributed.all_reduce_mean(torch.tensor(float(rank)))
    return {
        "rank": distributed.rank(),
        "world": distributed.world_size(),
        "gathered": gathered.detach(),
        "grad": x.grad,
        "mean": float(mean),
        "objects": distributed.all_gather_objects({"rank": rank}),
    }


def test_helpers_are_identities_without_a_process_group() -> None:
    assert distributed.rank() == 0
    assert distributed.world_size() == 1
    assert not distributed.is_distributed()
    assert distributed.all_gather_objects({"a": 1}) == [{"a": 1}]
    x = torch.randn(3, 2, requires_grad=True)
    assert distributed.all_gather_with_grad(x) is x
    assert torch.equal(distributed.all_reduce_mean(x), x.detach())


@pytest.mark.parametrize("rows", [UNEQUAL, EQUAL], ids=["unequal", "equal"])
def test_all_gather_and_gradient_match_single_process_reference(rows: tuple[int, int]) -> None:
    results = run_on_ranks(_gather_worker, 2, rows)

    # Reference: one process holds the concatenated batch and the sum of every rank's loss.
    inputs = [_inputs(r, rows).requires_grad_(True) for r in range(2)]
    full = torch.cat(inputs)
    sum(_rank_loss(r, full) for r in range(2)).backward()

    for r, res in enumerate(results):
        assert res["rank"] == r
        assert res["world"] == 2
        assert res["objects"] == [{"rank": 0}, {"rank": 1}]
        assert res["mean"] == 0.5
        torch.testing.assert_close(res["gathered"], full.detach(), rtol=0, atol=0)
        torch.testing.assert_close(res["grad"], inputs[r].grad)
