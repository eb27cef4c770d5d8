"""Early stopping: one helper for pretraining and for every classifier that trains by epochs.

``EarlyStopping`` watches one value per epoch (a validation loss); ``update`` says whether it
improved, and ``stop`` becomes true once ``patience`` epochs in a row brought no improvement.
Its state (best value, best epoch, epochs since the best) is plain numbers, so a checkpoint can
carry it and a resumed run stops exactly where an uninterrupted one would have.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["EarlyStopping"]


@dataclass
class EarlyStopping:
    """Patience on a value that should go down (``mode='min'``) or up (``mode='max'``).

    ``patience`` None never stops. A NaN never counts as an improvement.
    """

    patience: int | None
    mode: str = "min"
    best: float = math.inf
    """The best value seen (inf, or -inf for 'max', before the first)."""
    best_epoch: int = -1
    stale: int = 0
    """Epochs since the best one."""

    def __post_init__(self) -> None:
        if self.mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', got {self.mode!r}")
        if self.patience is not None and self.patience < 1:
            raise ValueError(f"patience must be at least 1 or None, got {self.patience}")
        if self.mode == "max" and self.best == math.inf and self.best_epoch < 0:
            self.best = -math.inf

    def update(self, value: float, epoch: int) -> bool:
        """Record ``value`` of ``epoch``; True when it is the best so far."""
        better = value < self.best if self.mode == "min" else value > self.best
        if better:
            self.best, self.best_epoch, self.stale = value, epoch, 0
        else:
            self.stale += 1
        return better

    @property
    def stop(self) -> bool:
        """True once ``patience`` epochs in a row brought no improvement."""
        return self.patience is not None and self.stale >= self.patience
