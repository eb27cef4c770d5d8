"""Training objectives (NT-Xent, SupCon, VICReg) and representation metrics."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from distributed_clr.config.schema import LossConfig
from distributed_clr.losses.metrics import alignment, uniformity
from distributed_clr.losses.ntxent import NTXentLoss
from distributed_clr.losses.supcon import SupConLoss
from distributed_clr.losses.vicreg import VICRegLoss, VICRegTerms

__all__ = [
    "LOSSES",
    "NTXentLoss",
    "SupConLoss",
    "VICRegLoss",
    "VICRegTerms",
    "alignment",
    "build_loss",
    "uniformity",
]


def _ntxent(config: LossConfig) -> nn.Module:
    return NTXentLoss(
        temperature=config.temperature,
        positive_in_denominator=config.positive_in_denominator,
        gather_distributed=config.gather_distributed,
    )


def _supcon(config: LossConfig) -> nn.Module:
    return SupConLoss(temperature=config.temperature, gather_distributed=config.gather_distributed)


def _vicreg(config: LossConfig) -> nn.Module:
    return VICRegLoss(
        invariance=config.vicreg_invariance,
        variance=config.vicreg_variance,
        covariance=config.vicreg_covariance,
        gather_distributed=config.gather_distributed,
    )


LOSSES: dict[str, Callable[[LossConfig], nn.Module]] = {
    "ntxent": _ntxent,
    "supcon": _supcon,
    "vicreg": _vicreg,
}
"""The one map from ``LossConfig.name`` to the loss it builds."""


def build_loss(config: LossConfig) -> nn.Module:
    """The loss module ``config`` describes (``config.name`` picks it, see ``LOSSES``)."""
    try:
        builder = LOSSES[config.name]
    except KeyError:
        raise ValueError(
            f"unknown loss {config.name!r}; expected one of {sorted(LOSSES)}"
        ) from None
    return builder(config)
