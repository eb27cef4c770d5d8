"""Optimisers and schedules: closed forms for one step, convergence, lr scaling, warm-up/cosine."""

from __future__ import annotations

import copy
import itertools
import math

import pytest
import torch
from torch import nn

from distributed_clr.config import OptimizerConfig, ScheduleConfig
from distributed_clr.train.optim import (
    LAMB,
    LARS,
    build_optimizer,
    build_scheduler,
    lr_factor,
    parameter_groups,
    scaled_lr,
)


@pytest.mark.parametrize(
    ("rule", "expected"), [("none", 0.1), ("linear", 0.1 * 4096 / 256), ("sqrt", 0.1 * 4.0)]
)
def test_lr_scaling_rules(rule: str, expected: float) -> None:
    config = OptimizerConfig(lr=0.1, lr_scaling=rule, reference_batch_size=256)
    assert scaled_lr(config, 4096) == pytest.approx(expected)


def test_warmup_then_cosine_reaches_zero_and_is_monotone() -> None:
    warmup, total = 10, 110
    factors = [lr_factor(step, warmup, total, "cosine") for step in range(total + 1)]
    assert factors[0] == pytest.approx(0.1)  # the first step already moves
    assert factors[warmup - 1] == pytest.approx(1.0)
    assert factors[warmup] == pytest.approx(1.0)
    assert factors[warmup + 50] == pytest.approx(0.5)  # half way through the decay
    assert factors[total] == pytest.approx(0.0, abs=1e-12)
    assert all(a <= b for a, b in itertools.pairwise(factors[:warmup]))
    assert all(a >= b for a, b in itertools.pairwise(factors[warmup:]))
    assert lr_factor(500, 0, 100, "constant") == 1.0


def test_scheduler_steps_per_optimiser_step() -> None:
    model = nn.Linear(3, 1)
    optimizer = build_optimizer(model, OptimizerConfig(lr=0.5), global_batch=256)
    schedule = ScheduleConfig(name="cosine", warmup_epochs=1)
    scheduler = build_scheduler(optimizer, schedule, epochs=4, steps_per_epoch=5)
    lrs = []
    for _ in range(20):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert lrs[0] == pytest.approx(0.5 / 5)
    assert max(lrs) == pytest.approx(0.5)
    assert lrs[4] == pytest.approx(0.5)
    assert lrs[-1] < 0.05


def test_biases_and_norms_are_excluded_from_decay() -> None:
    model = nn.Sequential(nn.Linear(4, 8), nn.LayerNorm(8), nn.Linear(8, 2))
    groups = parameter_groups(model, weight_decay=0.1)
    decayed, excluded = groups
    assert {p.ndim for p in decayed["params"]} == {2}
    assert {p.ndim for p in excluded["params"]} == {1}
    assert excluded["weight_decay"] == 0.0
    assert excluded["exclude"]
    assert len(decayed["params"]) + len(excluded["params"]) == len(list(model.parameters()))


def test_lars_first_step_matches_closed_form() -> None:
    w0 = torch.tensor([[3.0, 4.0]])  # ||w|| = 5
    grad = torch.tensor([[0.6, -0.8]])  # ||g|| = 1
    w = nn.Parameter(w0.clone())
    w.grad = grad.clone()
    lr, eta, wd = 0.5, 0.01, 0.1
    LARS([w], lr=lr, weight_decay=wd, trust_coefficient=eta).step()
    update = grad + wd * w0
    trust = eta * w0.norm() / update.norm()
    torch.testing.assert_close(w.data, w0 - lr * trust * update)

    bias = nn.Parameter(torch.tensor([1.0, 2.0]))
    bias.grad = torch.tensor([0.5, 0.5])
    LARS([{"params": [bias], "exclude": True, "weight_decay": 0.0}], lr=lr).step()
    torch.testing.assert_close(bias.data, torch.tensor([1.0, 2.0]) - lr * torch.tensor([0.5, 0.5]))


def test_lamb_first_step_matches_closed_form() -> None:
    w0 = torch.tensor([[1.0, -2.0, 2.0]])  # ||w|| = 3
    grad = torch.tensor([[0.1, 0.2, -0.4]])
    w = nn.Parameter(w0.clone())
    w.grad = grad.clone()
    lr, eps, wd = 0.1, 1e-6, 0.01
    LAMB([w], lr=lr, eps=eps, weight_decay=wd).step()
    # After one step the bias-corrected moments are g and g^2.
    update = grad / (grad.abs() + eps) + wd * w0
    torch.testing.assert_close(w.data, w0 - lr * w0.norm() / update.norm() * update)


@pytest.mark.parametrize("name", ["adam", "adamw", "lars", "lamb"])
def test_every_optimiser_fits_a_linear_regression(name: str) -> None:
    torch.manual_seed(0)
    x = torch.randn(256, 5)
    y = x @ torch.tensor([1.0, -2.0, 0.5, 0.0, 3.0]) + 0.3
    model = nn.Linear(5, 1)
    lr = {"adam": 0.05, "adamw": 0.05, "lars": 1.0, "lamb": 0.05}[name]
    optimizer = build_optimizer(model, OptimizerConfig(name=name, lr=lr), global_batch=256)
    initial = nn.functional.mse_loss(model(x).squeeze(1), y).item()
    for _ in range(300):
        optimizer.zero_grad()
        loss = nn.functional.mse_loss(model(x).squeeze(1), y)
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.01 * initial
    assert math.isfinite(loss.item())


def test_optimisers_reject_nonsense() -> None:
    w = nn.Parameter(torch.ones(2, 2))
    with pytest.raises(ValueError, match="LARS"):
        LARS([w], lr=-1.0)
    with pytest.raises(ValueError, match="LAMB"):
        LAMB([w], lr=0.1, betas=(1.0, 0.9))
    with pytest.raises(ValueError, match="global batch"):
        scaled_lr(OptimizerConfig(), 0)


@pytest.mark.parametrize("name", ["adam", "adamw"])
def test_adam_is_fused_only_for_parameters_on_cuda(name: str) -> None:
    model = nn.Linear(4, 2)
    optimizer = build_optimizer(model, OptimizerConfig(name=name), 64)
    assert not optimizer.defaults["fused"]  # on the CPU, PyTorch's default implementation
    from distributed_clr.train.optim import fused_adam

    assert fused_adam(nn.Module()) is None  # no parameters: nothing to fuse


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("name", ["adam", "adamw"])
def test_fused_adam_on_cuda_takes_the_default_implementations_steps(name: str) -> None:
    """The fused kernel chosen on CUDA gives the foreach implementation's parameters after a
    few steps, and keeps its step counters on the device."""
    torch.manual_seed(0)
    models = [nn.Sequential(nn.Linear(16, 32), nn.GELU(), nn.Linear(32, 4)).cuda()]
    models.append(copy.deepcopy(models[0]))
    config = OptimizerConfig(name=name, weight_decay=1e-2)
    fused = build_optimizer(models[0], config, 256)
    assert fused.defaults["fused"]
    reference = type(fused)(
        [{k: v for k, v in g.items() if k != "exclude"} for g in parameter_groups(models[1], 1e-2)],
        lr=fused.defaults["lr"],
        foreach=True,
    )
    x = torch.randn(64, 16, device="cuda")
    for _ in range(5):
        for model, optimizer in zip(models, (fused, reference), strict=True):
            optimizer.zero_grad()
            model(x).square().mean().backward()
            optimizer.step()
    for a, b in zip(models[0].parameters(), models[1].parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    state = fused.state[next(models[0].parameters())]
    assert state["step"].is_cuda
