"""Trans+BC: the encoder's architecture trained end to end as a supervised binary classifier.

The fully supervised reference of the seed paper (Dillon, Mastandrea, Nachman 2023): the same
network that the contrastive run trains (fixed-constant ``Normalizer`` -> ``build_encoder`` of
the encoder's ``ModelConfig``), with one linear output logit instead of the projection head,
trained from scratch on the labelled constituents with binary cross-entropy on logits. It tells
how much of the supervised optimum the self-supervised representation reaches.

It trains with the loop of the FCN (``fit.train_and_predict``), so that the two are comparable:
balanced classes, a stratified seeded holdout for early stopping (``TransBCConfig.patience``, at
most ``epochs``), the best epoch's weights restored, Adam at ``lr`` on mini-batches of
``batch_size``, dropout (the encoder's ``dropout``) off at validation and prediction, everything
seeded inside ``torch.random.fork_rng``. It trains on ``TransBCConfig.device``; the validation
loss and the predictions run in chunks of ``PREDICT_BATCH`` events.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from distributed_clr.augment.normalize import Normalizer
from distributed_clr.classifiers.checks import (
    ClassifierError,
    check_constituents,
)
from distributed_clr.classifiers.fit import (
    FitSettings,
    TrainingRecord,
    resolve_device,
    train_and_predict,
)
from distributed_clr.config.schema import ModelConfig, TransBCConfig
from distributed_clr.models import build_encoder
from distributed_clr.storage.formats import dijet_layout

log = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float64]
PREDICT_BATCH = 4096
TRANS_BC = "trans_bc"
"""Classifier name of Trans+BC (it reads the feature set ``constituents``)."""

__all__ = ["TRANS_BC", "TransBC", "TransBCResult", "describe", "fit_predict_trans_bc"]


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
        self.features = normalizer or Normalizer(frame=config.inputs)
        layout = dijet_layout(constituents_per_jet)
        self.encoder = build_encoder(config, self.features.num_features, layout)
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
    training: TrainingRecord

    @property
    def best_epoch(self) -> int:
        """0-based epoch whose weights were kept (lowest validation loss)."""
        return self.training.best_epoch

    @property
    def epochs(self) -> int:
        """Epochs run (early stopping may end before ``TransBCConfig.epochs``)."""
        return self.training.epochs

    @property
    def best_val_loss(self) -> float:
        return self.training.best_val_loss

    @property
    def history(self) -> list[dict[str, float]]:
        """Per epoch: epoch, train_loss, val_loss."""
        return self.training.history


def _logits(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    out: torch.Tensor = model(x, x[..., 0] > 0)
    return out


def fit_predict_trans_bc(
    x_train: npt.ArrayLike,
    y_train: npt.ArrayLike,
    x_test: npt.ArrayLike,
    model: ModelConfig,
    config: TransBCConfig,
    seed: int,
) -> TransBCResult:
    """Train Trans+BC on (x_train, y_train) and score x_test (see the module docstring).

    Args:
        x_train: (N, 2, C, 3) training constituents (pT [GeV], eta, phi), zero-padded.
        y_train: (N,) labels 0/1, at least 2 events of each class.
        x_test: (M, 2, C, 3) events to score.
        model: the encoder architecture (the contrastive run's ``model`` section).
        config: the Trans+BC training settings.
        seed: seeds the holdout, initialisation, batch order and dropout.
    """
    train = check_constituents(x_train, "x_train")
    test = check_constituents(x_test, "x_test")
    if train.shape[1:] != test.shape[1:]:
        raise ClassifierError(f"x_train {train.shape} and x_test {test.shape} differ per event")
    labels = np.asarray(y_train)
    if labels.shape != (len(train),) or not np.isin(labels, (0, 1)).all():
        raise ClassifierError(f"y_train must be {len(train)} labels 0/1, got shape {labels.shape}")
    labels = labels.astype(np.int64)
    device = resolve_device(config.device)
    settings = FitSettings.of(config, predict_batch=PREDICT_BATCH, validation_batch=PREDICT_BATCH)
    scores, record = train_and_predict(
        lambda: TransBC(model, train.shape[2]),
        _logits,
        train,
        labels,
        None,
        test,
        settings,
        seed,
        device=device,
        what="Trans+BC",
    )
    log.info(
        "Trans+BC (seed %d): best validation loss %.4f at epoch %d of %d",
        seed,
        record.best_val_loss,
        record.best_epoch + 1,
        record.epochs,
    )
    return TransBCResult(scores, record)


def describe(result: TransBCResult) -> dict[str, Any]:
    """A JSON-ready account of the training (for ``summary.json``)."""
    return result.training.to_dict()
