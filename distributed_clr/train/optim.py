"""Optimisers and learning-rate schedules for large-batch contrastive training.

* ``scaled_lr``: the configured lr at ``reference_batch_size``, scaled to the global batch
  linearly (Goyal et al. 2017) or by the square root (often better for Adam-type optimisers).
* ``build_optimizer``: Adam, AdamW, LARS (You et al. 2017) or LAMB (You et al. 2019). Biases and
  normalisation parameters (every parameter with fewer than two dimensions) get neither weight
  decay nor the layer-wise trust ratio, as in SimCLR's large-batch recipe.
* ``build_scheduler``: linear warm-up from zero, then constant or cosine decay to zero at the
  last step, stepped once per optimiser step.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

from distributed_clr.config.schema import OptimizerConfig, ScheduleConfig

__all__ = [
    "LAMB",
    "LARS",
    "build_optimizer",
    "build_scheduler",
    "fused_adam",
    "lr_factor",
    "scaled_lr",
]


def scaled_lr(config: OptimizerConfig, global_batch: int) -> float:
    """The peak learning rate for ``global_batch`` under ``config.lr_scaling``."""
    if global_batch <= 0:
        raise ValueError(f"global batch must be positive, got {global_batch}")
    ratio = global_batch / config.reference_batch_size
    if config.lr_scaling == "linear":
        return config.lr * ratio
    if config.lr_scaling == "sqrt":
        return config.lr * math.sqrt(ratio)
    return config.lr


def _is_excluded(parameter: torch.Tensor) -> bool:
    """Biases and norm weights: no weight decay, no trust ratio."""
    return parameter.ndim < 2


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Two groups: weights (decayed, adapted) and 1-D parameters (``exclude=True``)."""
    decayed: list[nn.Parameter] = []
    excluded: list[nn.Parameter] = []
    for parameter in model.parameters():
        if parameter.requires_grad:
            (excluded if _is_excluded(parameter) else decayed).append(parameter)
    groups: list[dict[str, Any]] = [{"params": decayed, "weight_decay": weight_decay}]
    if excluded:
        groups.append({"params": excluded, "weight_decay": 0.0, "exclude": True})
    return groups


def _trust_scaled(w: torch.Tensor, update: torch.Tensor, coefficient: float) -> torch.Tensor:
    """``update`` times coefficient * ||w|| / ||update|| (one where either norm is zero)."""
    w_norm, u_norm = torch.linalg.vector_norm(w), torch.linalg.vector_norm(update)
    trust = torch.where(
        (w_norm > 0) & (u_norm > 0), coefficient * w_norm / u_norm, torch.ones_like(w_norm)
    )
    return update * trust


class LARS(Optimizer):
    """Layer-wise adaptive rate scaling on SGD with momentum.

    For each parameter tensor w with gradient g (weight decay folded in: g + wd w), the update
    is lr * eta * ||w|| / ||g + wd w|| * (g + wd w) through a momentum buffer. Groups marked
    ``exclude=True`` (biases, norms) take plain momentum SGD steps. eta is the trust
    coefficient; a zero norm falls back to a trust ratio of one.
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float,
        momentum: float = 0.9,
        weight_decay: float = 0.0,
        trust_coefficient: float = 0.001,
    ) -> None:
        if lr <= 0 or not 0 <= momentum < 1 or weight_decay < 0 or trust_coefficient <= 0:
            raise ValueError(
                f"LARS needs lr > 0, 0 <= momentum < 1, weight_decay >= 0, trust > 0; got "
                f"lr={lr}, momentum={momentum}, weight_decay={weight_decay}, "
                f"trust_coefficient={trust_coefficient}"
            )
        defaults = {
            "lr": lr,
            "momentum": momentum,
            "weight_decay": weight_decay,
            "trust_coefficient": trust_coefficient,
            "exclude": False,
        }
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for w in group["params"]:
                if w.grad is None:
                    continue
                update = w.grad
                if not group["exclude"]:
                    if group["weight_decay"]:
                        update = update.add(w, alpha=group["weight_decay"])
                    update = _trust_scaled(w, update, group["trust_coefficient"])
                state = self.state[w]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.clone(update).detach()
                else:
                    state["momentum_buffer"].mul_(group["momentum"]).add_(update)
                w.add_(state["momentum_buffer"], alpha=-group["lr"])
        return loss


class LAMB(Optimizer):
    """Adam moments with a layer-wise trust ratio (LAMB).

    r = m_hat / (sqrt(v_hat) + eps) + wd w; w <- w - lr * ||w|| / ||r|| * r. Excluded groups
    (biases, norms) use the Adam direction without decay or trust ratio.
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-6,
        weight_decay: float = 0.0,
    ) -> None:
        if lr <= 0 or not all(0 <= b < 1 for b in betas) or eps <= 0 or weight_decay < 0:
            raise ValueError(
                f"LAMB needs lr > 0, betas in [0, 1), eps > 0, weight_decay >= 0; got lr={lr}, "
                f"betas={betas}, eps={eps}, weight_decay={weight_decay}"
            )
        defaults = {
            "lr": lr,
            "betas": betas,
            "eps": eps,
            "weight_decay": weight_decay,
            "exclude": False,
        }
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for w in group["params"]:
                if w.grad is None:
                    continue
                state = self.state[w]
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(w)
                    state["exp_avg_sq"] = torch.zeros_like(w)
                state["step"] += 1
                m, v = state["exp_avg"], state["exp_avg_sq"]
                m.mul_(beta1).add_(w.grad, alpha=1 - beta1)
                v.mul_(beta2).addcmul_(w.grad, w.grad, value=1 - beta2)
                m_hat = m / (1 - beta1 ** state["step"])
                v_hat = v / (1 - beta2 ** state["step"])
                update = m_hat / (v_hat.sqrt() + group["eps"])
                if not group["exclude"]:
                    if group["weight_decay"]:
                        update = update.add(w, alpha=group["weight_decay"])
                    update = _trust_scaled(w, update, 1.0)
                w.add_(update, alpha=-group["lr"])
        return loss


def fused_adam(model: nn.Module) -> bool | None:
    """True where every parameter is on CUDA (Adam and AdamW then use their fused kernel),
    else None (PyTorch's default: foreach where it applies)."""
    parameters = list(model.parameters())
    return True if parameters and all(p.is_cuda for p in parameters) else None


def build_optimizer(model: nn.Module, config: OptimizerConfig, global_batch: int) -> Optimizer:
    """The optimiser ``config.name`` names, at the lr scaled to ``global_batch``."""
    lr = scaled_lr(config, global_batch)
    groups = parameter_groups(model, config.weight_decay)
    # On CUDA, Adam's fused kernel: a few launches per step instead of one per operation and
    # tensor list, and its step counters on the device instead of read back with .item().
    fused = fused_adam(model)
    if config.name == "adam":
        # Adam's weight decay is L2 in the gradient; keep it off 1-D parameters as well.
        plain = [{k: v for k, v in g.items() if k != "exclude"} for g in groups]
        return torch.optim.Adam(plain, lr=lr, fused=fused)
    if config.name == "adamw":
        plain = [{k: v for k, v in g.items() if k != "exclude"} for g in groups]
        return torch.optim.AdamW(plain, lr=lr, fused=fused)
    if config.name == "lars":
        return LARS(groups, lr=lr, weight_decay=config.weight_decay)
    if config.name == "lamb":
        return LAMB(groups, lr=lr, weight_decay=config.weight_decay)
    raise ValueError(f"unknown optimizer '{config.name}'")


def lr_factor(step: int, warmup_steps: int, total_steps: int, schedule: str) -> float:
    """Multiplier of the peak lr at optimiser step ``step`` (0-based).

    Warm-up rises linearly to one over ``warmup_steps`` (the first step already moves, at
    1/warmup_steps); ``cosine`` then decays to zero at ``total_steps``.
    """
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "constant":
        return 1.0
    decay_steps = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / decay_steps)
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def build_scheduler(
    optimizer: Optimizer, config: ScheduleConfig, epochs: int, steps_per_epoch: int
) -> LambdaLR:
    """Per-step schedule: ``config.warmup_epochs`` of linear warm-up, then ``config.name``
    (constant, or cosine to zero) over the rest of the ``epochs`` epochs."""
    if steps_per_epoch <= 0:
        raise ValueError(f"steps_per_epoch must be positive, got {steps_per_epoch}")
    warmup = round(config.warmup_epochs * steps_per_epoch)
    total = epochs * steps_per_epoch
    schedule = config.name
    return LambdaLR(optimizer, lambda step: lr_factor(step, warmup, total, schedule))
