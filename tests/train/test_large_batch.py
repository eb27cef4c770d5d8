"""The large-batch recipe at the size it is meant for: LARS and LAMB at a global batch of 4,096
over two gloo workers (2,048 each) take the same step as one process with the whole batch, at
the learning rate scaled to 4,096, and a few such steps lower the loss."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from distributed_clr.config import get_preset
from distributed_clr.config.schema import RunConfig
from distributed_clr.distributed import DDP_OPTIONS
from distributed_clr.models import build_model
from distributed_clr.train.optim import scaled_lr
from distributed_clr.train.trainer import Trainer
from tests.multiproc import run_on_ranks

GLOBAL_BATCH, CONSTITUENTS, STEPS = 4096, 8, 3


def _config(optimizer: str, per_worker: int) -> RunConfig:
    config = get_preset("debug")
    return config.model_copy(
        update={
            "prepare": config.prepare.model_copy(update={"num_constituents": CONSTITUENTS}),
            "augment": config.augment.model_copy(update={"pipeline": []}),
            "train": config.train.model_copy(
                update={
                    "batch_size": per_worker,
                    "optimizer": config.train.optimizer.model_copy(
                        update={
                            "name": optimizer,
                            "lr": 0.01 if optimizer == "lars" else 1e-3,
                            "lr_scaling": "sqrt",
                            "reference_batch_size": 256,
                            "weight_decay": 1e-6,
                        }
                    ),
                }
            ),
        }
    )


def _events() -> dict[str, torch.Tensor]:
    """One global batch of dijet-like events (the same at every step, so that the loss can
    only fall if the steps fit it)."""
    g = torch.Generator().manual_seed(100)
    pt = 1000.0 * torch.rand(GLOBAL_BATCH, 2, CONSTITUENTS, generator=g).pow(4)
    eta = torch.randn(GLOBAL_BATCH, 2, 1, generator=g) + 0.3 * torch.randn(
        GLOBAL_BATCH, 2, CONSTITUENTS, generator=g
    )
    phi = torch.rand(GLOBAL_BATCH, 2, 1, generator=g) * 6 - 3
    phi = phi + 0.3 * torch.randn(GLOBAL_BATCH, 2, CONSTITUENTS, generator=g)
    x = torch.stack([pt, eta, phi], dim=-1)
    return {"x": x, "mask": pt > 0, "label": torch.zeros(GLOBAL_BATCH, dtype=torch.int8)}


def _train(rank: int, world: int, optimizer: str) -> dict[str, object]:
    """STEPS steps at the global batch; this rank's losses, lr and weights after the first."""
    config = _config(optimizer, GLOBAL_BATCH // world)
    torch.manual_seed(0)
    model: nn.Module = build_model(config.model, CONSTITUENTS)
    if world > 1:
        model = nn.parallel.DistributedDataParallel(model, **DDP_OPTIONS)
    trainer = Trainer(
        model,
        train=config.train,
        loss=config.loss,
        augment=config.augment,
        device=torch.device("cpu"),
        steps_per_epoch=STEPS,
        world_size=world,
    )
    share = GLOBAL_BATCH // world
    generator = torch.Generator().manual_seed(0)
    losses: list[float] = []
    first: dict[str, torch.Tensor] = {}
    local = {k: v[rank * share : (rank + 1) * share] for k, v in _events().items()}
    for step in range(STEPS):
        losses.append(float(trainer.step(local, generator)))
        if step == 0:
            plain = model.module if world > 1 else model
            first = {n: p.detach().clone() for n, p in plain.named_parameters()}
    trainer.check_finite()
    return {
        "losses": losses,
        "lr": trainer.optimizer.param_groups[0]["initial_lr"],
        "global_batch": trainer.global_batch,
        "first": first,
    }


@pytest.mark.parametrize("optimizer", ["lars", "lamb"])
def test_two_workers_at_global_batch_4096_step_like_one_process(optimizer: str) -> None:
    single = _train(0, 1, optimizer)
    ranks = run_on_ranks(_train, 2, optimizer)
    config = _config(optimizer, GLOBAL_BATCH)
    for result in (single, *ranks):
        assert result["global_batch"] == GLOBAL_BATCH
        assert result["lr"] == pytest.approx(scaled_lr(config.train.optimizer, GLOBAL_BATCH))
    # NT-Xent gathers both workers' projections: the mean of the ranks' losses is the loss of
    # the whole batch, before and after the first update.
    mean = [(a + b) / 2 for a, b in zip(ranks[0]["losses"], ranks[1]["losses"], strict=True)]
    assert mean[:2] == pytest.approx(single["losses"][:2], rel=1e-4)
    # One update, the same everywhere: identical on the two ranks, and equal to the single
    # process's on every weight matrix (1-D parameters take sign-like Adam/momentum steps in
    # LAMB that amplify float noise in gradients that vanish analytically).
    for name, weight in single["first"].items():
        torch.testing.assert_close(ranks[0]["first"][name], ranks[1]["first"][name], rtol=0, atol=0)
        if weight.ndim >= 2:
            torch.testing.assert_close(ranks[0]["first"][name], weight, rtol=1e-4, atol=1e-5)
    assert single["losses"][-1] < single["losses"][0], single["losses"]
    assert mean[-1] < mean[0], mean
