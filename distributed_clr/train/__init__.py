"""Distributed contrastive pretraining: the per-worker loop, the Ray Train driver, optimisers
and checkpoints."""

from distributed_clr.checkpoint import TrainState, load_checkpoint, load_model
from distributed_clr.train.driver import PretrainError, PretrainResult, pretrain

__all__ = [
    "PretrainError",
    "PretrainResult",
    "TrainState",
    "load_checkpoint",
    "load_model",
    "pretrain",
]
