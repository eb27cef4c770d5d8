"""The one mini-batch training loop of the neural classifiers (the FCN and Trans+BC).

``train_and_predict`` trains a freshly built network on weighted, labelled events and scores
the test events:

* A stratified, seeded ``VALIDATION_FRACTION`` of the training events of each class is held
  out (``stratified_holdout``) for early stopping; the test events are never seen before
  prediction.
* The loss is the binary cross-entropy on logits, weighted per event (class-balanced weights,
  ``checks.balanced_weights``) and normalised by the summed weight of the batch.
* Adam at ``FitSettings.lr`` on mini-batches of ``batch_size`` in a seeded random order, for at
  most ``epochs`` epochs; ``EarlyStopping`` ends training once the validation loss has not
  improved for ``patience`` epochs, and the weights of the best epoch are restored.
* Validation and prediction run in eval mode (dropout off) without gradients.
* Everything random (the holdout, initialisation, batch order, dropout) draws from ``seed``:
  the holdout from ``numpy.random.default_rng(seed)``, the rest inside
  ``torch.random.fork_rng`` after ``torch.manual_seed(seed)`` (initialisation, dropout) and
  from a ``torch.Generator`` seeded ``seed`` (batch order), so the caller's global RNG state is
  left alone and a seed gives identical scores on a given machine, device and thread count.

Tensors stay on the CPU and each batch moves to the training device (``resolve_device``: 'cpu',
'cuda' or 'auto'); on CUDA the device's RNG is forked and seeded too.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F
from scipy.special import expit
from torch import nn

from distributed_clr.classifiers.checks import ClassifierError, balanced_weights
from distributed_clr.config.schema import FCNConfig, TransBCConfig
from distributed_clr.stopping import EarlyStopping

log = logging.getLogger(__name__)

__all__ = [
    "VALIDATION_FRACTION",
    "FitSettings",
    "Logits",
    "TrainingRecord",
    "resolve_device",
    "stratified_holdout",
    "train_and_predict",
]

FloatArray = npt.NDArray[np.float64]
Logits = Callable[[nn.Module, torch.Tensor], torch.Tensor]
"""(model, x batch) -> (B,) logits: how a network is called on its input."""

VALIDATION_FRACTION = 0.2
"""Share of the training events held out (per class) for early stopping."""


@dataclass(frozen=True)
class FitSettings:
    """How one network trains: the optimiser, the epochs and the batch sizes."""

    epochs: int
    patience: int
    lr: float
    batch_size: int
    """Events per optimiser step."""
    predict_batch: int
    """Events per forward pass at prediction."""
    validation_batch: int | None = None
    """Events per forward pass of the validation loss; None: all at once."""

    @classmethod
    def of(
        cls,
        config: FCNConfig | TransBCConfig,
        predict_batch: int,
        validation_batch: int | None = None,
    ) -> FitSettings:
        """The settings of a classifier's config section (both have epochs, patience, lr and
        batch_size)."""
        return cls(
            config.epochs,
            config.patience,
            config.lr,
            config.batch_size,
            predict_batch,
            validation_batch,
        )


@dataclass
class TrainingRecord:
    """How a training went: the epoch kept, the epochs run, and the losses per epoch."""

    best_epoch: int
    """0-based epoch whose weights were kept (lowest validation loss; -1 if none improved)."""
    epochs: int
    """Epochs run (early stopping may end before the maximum)."""
    best_val_loss: float
    history: list[dict[str, float]] = field(default_factory=list)
    """Per epoch: epoch, train_loss, val_loss."""

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready account of the training (for ``summary.json``)."""
        return {
            "best_epoch": self.best_epoch,
            "epochs": self.epochs,
            "best_val_loss": self.best_val_loss,
            "history": self.history,
        }


def resolve_device(name: str) -> torch.device:
    """'cpu', 'cuda' (an error without a GPU) or 'auto' (a GPU if present)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ClassifierError(
            "evaluate.trans_bc.device is 'cuda' but no CUDA device is available; use 'cpu' or "
            "'auto'"
        )
    if name not in ("cpu", "cuda"):
        raise ClassifierError(f"unknown device {name!r}; expected 'cpu', 'cuda' or 'auto'")
    return torch.device(name)


def stratified_holdout(
    y: npt.NDArray[np.int64],
    fraction: float,
    rng: np.random.Generator,
    *,
    what: str = "the classifier",
) -> npt.NDArray[np.bool_]:
    """A boolean mask holding out ``fraction`` of each class (at least one event, at least one
    left for training); needs two events per class (``what`` names the classifier in the
    error)."""
    holdout = np.zeros(len(y), dtype=bool)
    for label in (0, 1):
        members = np.flatnonzero(y == label)
        if len(members) < 2:
            raise ClassifierError(
                f"{what} needs at least 2 training events of class {label} "
                f"(one for early stopping), got {len(members)}"
            )
        n_hold = min(max(1, round(fraction * len(members))), len(members) - 1)
        holdout[rng.choice(members, size=n_hold, replace=False)] = True
    return holdout


def _loss(
    model: nn.Module,
    logits: Logits,
    x: torch.Tensor,
    y: torch.Tensor,
    w: torch.Tensor,
    device: torch.device,
) -> torch.Tensor:
    """The weighted mean binary cross-entropy of one batch."""
    x, y, w = x.to(device), y.to(device), w.to(device)
    loss = F.binary_cross_entropy_with_logits(logits(model, x), y, reduction="none")
    return (loss * w).sum() / w.sum()


def _validation_loss(
    model: nn.Module,
    logits: Logits,
    x: torch.Tensor,
    y: torch.Tensor,
    w: torch.Tensor,
    device: torch.device,
    batch: int | None,
) -> float:
    """The weighted mean loss over all of (x, y, w) in eval mode: in one pass, or in chunks of
    ``batch`` events averaged with their weights."""
    model.eval()
    with torch.no_grad():
        if batch is None:
            return float(_loss(model, logits, x, y, w, device))
        total, weight = 0.0, 0.0
        for start in range(0, len(x), batch):
            part = slice(start, start + batch)
            part_weight = float(w[part].sum())
            total += float(_loss(model, logits, x[part], y[part], w[part], device)) * part_weight
            weight += part_weight
    return total / weight


def _predict(
    model: nn.Module, logits: Logits, x: torch.Tensor, device: torch.device, batch: int
) -> FloatArray:
    """P(class 1) of every event, in eval mode, float64."""
    model.eval()
    with torch.no_grad():
        parts = [
            logits(model, x[start : start + batch].to(device)).double().cpu()
            for start in range(0, len(x), batch)
        ]
    values = torch.cat(parts).numpy() if parts else np.zeros(0)
    return np.asarray(expit(values), dtype=np.float64)


def train_and_predict(
    build: Callable[[], nn.Module],
    logits: Logits,
    x: npt.NDArray[np.float32],
    y: npt.NDArray[np.int64],
    w: npt.ArrayLike | None,
    x_test: npt.NDArray[np.float32],
    settings: FitSettings,
    seed: int,
    *,
    device: torch.device | None = None,
    what: str = "the classifier",
) -> tuple[FloatArray, TrainingRecord]:
    """Train ``build()`` on (x, y, w) and score ``x_test`` (see the module docstring).

    Args:
        build: makes the untrained network (called once, after the RNG is seeded).
        logits: how the network is called on a batch of inputs.
        x: (N, ...) float32 training inputs, checked by the caller.
        y: (N,) labels 0/1.
        w: (N,) per-event weights (class-balanced by the caller); None: the class-balancing
            weights of unit events (``checks.balanced_weights``).
        x_test: (M, ...) float32 inputs to score.
        settings: the optimiser, epochs and batch sizes.
        seed: seeds the holdout, initialisation, batch order and dropout.
        device: where the network trains (default the CPU).
        what: names the classifier in messages.

    Returns:
        ((M,) float64 P(class 1) of the test events, the ``TrainingRecord``).
    """
    device = device or torch.device("cpu")
    holdout = stratified_holdout(y, VALIDATION_FRACTION, np.random.default_rng(seed), what=what)
    x_all = torch.from_numpy(np.ascontiguousarray(x))
    y_all = torch.from_numpy(y.astype(np.float32))
    weights = balanced_weights(None, y) if w is None else np.asarray(w)
    w_all = torch.from_numpy(weights.astype(np.float32))
    train_idx = torch.from_numpy(np.flatnonzero(~holdout))
    held = torch.from_numpy(holdout)
    x_val, y_val, w_val = x_all[held], y_all[held], w_all[held]

    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)  # initialisation and dropout (CPU and CUDA)
        generator = torch.Generator().manual_seed(seed)  # batch order
        model = build().to(device)
        optimiser = torch.optim.Adam(model.parameters(), lr=settings.lr)
        stopping = EarlyStopping(settings.patience)
        best_state = copy.deepcopy(model.state_dict())
        history: list[dict[str, float]] = []
        epoch = -1
        for epoch in range(settings.epochs):
            model.train()
            order = train_idx[torch.randperm(len(train_idx), generator=generator)]
            total, weight = 0.0, 0.0
            for start in range(0, len(order), settings.batch_size):
                batch = order[start : start + settings.batch_size]
                optimiser.zero_grad(set_to_none=True)
                loss = _loss(model, logits, x_all[batch], y_all[batch], w_all[batch], device)
                loss.backward()  # type: ignore[no-untyped-call]
                optimiser.step()
                batch_weight = float(w_all[batch].sum())
                total += float(loss.detach()) * batch_weight  # a sync point; epochs are short
                weight += batch_weight
            val_loss = _validation_loss(
                model, logits, x_val, y_val, w_val, device, settings.validation_batch
            )
            history.append({"epoch": epoch, "train_loss": total / weight, "val_loss": val_loss})
            log.debug(
                "%s epoch %d: train loss %.4f, val loss %.4f", what, epoch, total / weight, val_loss
            )
            if stopping.update(val_loss, epoch):
                best_state = copy.deepcopy(model.state_dict())
            elif stopping.stop:
                break
        model.load_state_dict(best_state)
        x_score = torch.from_numpy(np.ascontiguousarray(x_test))
        scores = _predict(model, logits, x_score, device, settings.predict_batch)
    record = TrainingRecord(stopping.best_epoch, epoch + 1, stopping.best, history)
    return scores, record
