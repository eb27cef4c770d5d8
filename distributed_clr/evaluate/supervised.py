"""Trans+BC: the encoder's architecture trained end to end as a supervised binary classifier.

The fully supervised reference of the seed paper (Dillon, Mastandrea, Nachman 2023): the same
network that the contrastive run trains (fixed-constant ``Normalizer`` -> ``build_encoder`` of
the encoder's ``ModelConfig``), with one linear output logit instead of the projection head,
trained from scratch on the labelled constituents with binary cross-entropy on logits. It tells
how much of the supervised optimum the self-supervised representation reaches.

Training follows the FCN of ``classifiers`` so that the two are comparable:

* Classes are balanced (each event weighs W / (2 W_c)).
* A stratified, seeded ``classifiers.VALIDATION_FRACTION`` of the training events is held out
  (``classifiers.stratified_holdout``); training stops when its loss has not improved for
  ``trans_bc_patience`` epochs, at most ``trans_bc_epochs``, and the best epoch's weights are
  restored. The test events are never seen before prediction.
* Adam at ``trans_bc_lr`` on mini-batches of ``trans_bc_batch_size``; dropout (the encoder's
  ``dropout``) is off at validation and prediction (``model.eval()``).
* Initialisation, batch order and dropout draw from ``seed`` inside ``torch.random.fork_rng``,
  so the caller's global RNG state is left alone; a seed gives the same scores on a given
  machine, device and thread count.
"""

from __future__ import annotations

import copy
import logging
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F
from scipy.special import expit
from torch import nn

from distributed_clr.augment.normalize import Normalizer
from distributed_clr.config.schema import EvaluateConfig, ModelConfig
from distributed_clr.evaluate.classifiers import VALIDATION_FRACTION, stratified_holdout
from distributed_clr.models import build_encoder

log = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float64]
PREDICT_BATCH = 4096

__all__ = ["TransBC", "TransBCResult", "fit_predict_trans_bc", "resolve_device"]


class TransBC(nn.Module):
    """normalise -> encoder -> linear logit.

    ``forward(x, mask)``: x (B, 2, N, 3) (pT [GeV], eta, phi), mask (B, 2, N) True for real
    constituents; returns (B,) logits of P(signal).
    """

    def __init__(
        self,
        config: ModelConfig,
        constituents_per_jet: int,
        normalizer: Normalizer | None = None,
    ) -> None:
        super().__init__()
        self.features = normalizer or Normalizer()
        self.encoder = build_encoder(config, self.features.num_features, constituents_per_jet)
        self.output = nn.Linear(config.latent_dim, 1)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h: torch.Tensor = self.encoder(self.features(x, mask), mask, x[..., 0])
        logits: torch.Tensor = self.output(h).squeeze(-1)
        return logits


@dataclass
class TransBCResult:
    """Test scores of one trained Trans+BC and how its training went."""

    scores: FloatArray
    """(M,) P(signal) of the test events, float64 in [0, 1]."""
    best_epoch: int
    """0-based epoch whose weights were kept (lowest validation loss)."""
    epochs: int
    """Epochs run (early stopping may end before ``trans_bc_epochs``)."""
    best_val_loss: float
    history: list[dict[str, float]] = field(default_factory=list)
    """Per epoch: epoch, train_loss, val_loss."""


def resolve_device(name: str) -> torch.device:
    """'cpu', 'cuda' (an error without a GPU) or 'auto' (a GPU if present)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            "evaluate.trans_bc_device is 'cuda' but no CUDA device is available; use 'cpu' or "
            "'auto'"
        )
    if name not in ("cpu", "cuda"):
        raise ValueError(f"unknown device {name!r}; expected 'cpu', 'cuda' or 'auto'")
    return torch.device(name)


def _check_constituents(x: npt.ArrayLike, name: str) -> npt.NDArray[np.float32]:
    array = np.asarray(x, dtype=np.float32)
    if array.ndim != 4 or array.shape[1] != 2 or array.shape[3] != 3 or len(array) == 0:
        raise ValueError(
            f"{name} must be non-empty constituents of shape (B, 2, N, 3), got {array.shape}"
        )
    if not np.isfinite(array).all():
        raise ValueError(f"{name} contains NaN/inf values")
    return array


def _balanced_weights(labels: npt.NDArray[np.int64]) -> npt.NDArray[np.float32]:
    counts = np.bincount(labels, minlength=2).astype(np.float64)
    return (len(labels) / (2.0 * counts[labels])).astype(np.float32)


def _loss(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    w: torch.Tensor,
    device: torch.device,
) -> torch.Tensor:
    x, y, w = x.to(device), y.to(device), w.to(device)
    logits = model(x, x[..., 0] > 0)
    loss = F.binary_cross_entropy_with_logits(logits, y, reduction="none")
    return (loss * w).sum() / w.sum()


def _evaluate_loss(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    w: torch.Tensor,
    device: torch.device,
) -> float:
    """Weighted mean loss over all of (x, y, w), in batches, in eval mode."""
    model.eval()
    total, weight = 0.0, 0.0
    with torch.no_grad():
        for start in range(0, len(x), PREDICT_BATCH):
            part = slice(start, start + PREDICT_BATCH)
            batch_weight = float(w[part].sum())
            total += float(_loss(model, x[part], y[part], w[part], device)) * batch_weight
            weight += batch_weight
    return total / weight


def _predict(model: nn.Module, x: torch.Tensor, device: torch.device) -> FloatArray:
    model.eval()
    parts = []
    with torch.no_grad():
        for start in range(0, len(x), PREDICT_BATCH):
            batch = x[start : start + PREDICT_BATCH].to(device)
            parts.append(model(batch, batch[..., 0] > 0).double().cpu())
    logits = torch.cat(parts).numpy() if parts else np.zeros(0)
    return np.asarray(expit(logits), dtype=np.float64)


def fit_predict_trans_bc(
    x_train: npt.ArrayLike,
    y_train: npt.ArrayLike,
    x_test: npt.ArrayLike,
    model_config: ModelConfig,
    config: EvaluateConfig,
    seed: int,
) -> TransBCResult:
    """Train Trans+BC on (x_train, y_train) and score x_test (see the module docstring).

    Args:
        x_train: (N, 2, C, 3) training constituents (pT [GeV], eta, phi), zero-padded.
        y_train: (N,) labels 0/1, at least 2 events of each class.
        x_test: (M, 2, C, 3) events to score.
        model_config: the encoder architecture (the contrastive run's ``model`` section).
        config: ``trans_bc_*`` settings.
        seed: seeds the holdout, initialisation, batch order and dropout.
    """
    train = _check_constituents(x_train, "x_train")
    test = _check_constituents(x_test, "x_test")
    if train.shape[1:] != test.shape[1:]:
        raise ValueError(f"x_train {train.shape} and x_test {test.shape} differ per event")
    labels = np.asarray(y_train)
    if labels.shape != (len(train),) or not np.isin(labels, (0, 1)).all():
        raise ValueError(f"y_train must be {len(train)} labels 0/1, got shape {labels.shape}")
    labels = labels.astype(np.int64)
    device = resolve_device(config.trans_bc_device)
    holdout = stratified_holdout(labels, VALIDATION_FRACTION, np.random.default_rng(seed))
    weights = _balanced_weights(labels)

    x_all = torch.from_numpy(np.ascontiguousarray(train))
    y_all = torch.from_numpy(labels.astype(np.float32))
    w_all = torch.from_numpy(weights)
    train_idx = torch.from_numpy(np.flatnonzero(~holdout))
    held = torch.from_numpy(holdout)
    x_val, y_val, w_val = x_all[held], y_all[held], w_all[held]

    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)  # initialisation and dropout (CPU and CUDA)
        generator = torch.Generator().manual_seed(seed)  # batch order
        model = TransBC(model_config, train.shape[2]).to(device)
        optimiser = torch.optim.Adam(model.parameters(), lr=config.trans_bc_lr)
        best_loss, best_epoch, stale = math.inf, -1, 0
        best_state = copy.deepcopy(model.state_dict())
        history: list[dict[str, float]] = []
        epoch = -1
        for epoch in range(config.trans_bc_epochs):
            model.train()
            order = train_idx[torch.randperm(len(train_idx), generator=generator)]
            total, weight = 0.0, 0.0
            for start in range(0, len(order), config.trans_bc_batch_size):
                batch = order[start : start + config.trans_bc_batch_size]
                optimiser.zero_grad(set_to_none=True)
                loss = _loss(model, x_all[batch], y_all[batch], w_all[batch], device)
                loss.backward()  # type: ignore[no-untyped-call]
                optimiser.step()
                batch_weight = float(w_all[batch].sum())
                total += float(loss.detach()) * batch_weight  # a sync point; epochs are short
                weight += batch_weight
            val_loss = _evaluate_loss(model, x_val, y_val, w_val, device)
            history.append({"epoch": epoch, "train_loss": total / weight, "val_loss": val_loss})
            log.debug(
                "Trans+BC epoch %d: train loss %.4f, val loss %.4f", epoch, total / weight, val_loss
            )
            if val_loss < best_loss:
                best_loss, best_epoch, stale = val_loss, epoch, 0
                best_state = copy.deepcopy(model.state_dict())
            else:
                stale += 1
                if stale >= config.trans_bc_patience:
                    break
        model.load_state_dict(best_state)
        scores = _predict(model, torch.from_numpy(np.ascontiguousarray(test)), device)
    log.info(
        "Trans+BC (seed %d): best validation loss %.4f at epoch %d of %d",
        seed,
        best_loss,
        best_epoch + 1,
        epoch + 1,
    )
    return TransBCResult(scores, best_epoch, epoch + 1, best_loss, history)


def describe(result: TransBCResult) -> dict[str, Any]:
    """A JSON-ready account of the training (for ``summary.json``)."""
    return {
        "best_epoch": result.best_epoch,
        "epochs": result.epochs,
        "best_val_loss": result.best_val_loss,
        "history": result.history,
    }
