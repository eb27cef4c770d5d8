"""The fully connected network (FCN): an MLP on a feature matrix, trained by the shared loop.

``FCNConfig.hidden`` Linear-ReLU-Dropout(``dropout``) layers, then one output logit, trained
with ``fit.train_and_predict`` (weighted BCE, Adam at ``lr``, mini-batches of ``batch_size``, at
most ``epochs`` epochs, early stopping with ``patience``) on the CPU with the torch thread count
as set. The validation loss is computed in one pass, prediction in chunks of ``PREDICT_BATCH``.
"""

from __future__ import annotations

import logging

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from distributed_clr.classifiers.fit import FitSettings, TrainingRecord, train_and_predict
from distributed_clr.config.schema import FCNConfig

log = logging.getLogger(__name__)

__all__ = ["PREDICT_BATCH", "build_fcn", "fit_predict_fcn"]

FloatArray = npt.NDArray[np.float64]

PREDICT_BATCH = 65_536


def build_fcn(in_features: int, config: FCNConfig) -> nn.Sequential:
    """The FCN: Linear-ReLU-Dropout per ``config.hidden`` entry, then one output logit."""
    layers: list[nn.Module] = []
    size = in_features
    for hidden in config.hidden:
        layers += [nn.Linear(size, hidden), nn.ReLU(), nn.Dropout(config.dropout)]
        size = hidden
    layers.append(nn.Linear(size, 1))
    return nn.Sequential(*layers)


def _logits(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    out: torch.Tensor = model(x).squeeze(-1)
    return out


def fit_predict_fcn(
    x: npt.NDArray[np.float32],
    y: npt.NDArray[np.int64],
    w: FloatArray,
    x_test: npt.NDArray[np.float32],
    config: FCNConfig,
    seed: int,
) -> tuple[FloatArray, TrainingRecord]:
    """Train the FCN on standardised (x, y) with weights ``w`` and score ``x_test``.

    Returns:
        ((M,) float64 P(class 1), how the training went).
    """
    settings = FitSettings.of(config, predict_batch=PREDICT_BATCH)
    scores, record = train_and_predict(
        lambda: build_fcn(x.shape[1], config),
        _logits,
        x,
        y,
        w,
        x_test,
        settings,
        seed,
        what="the FCN",
    )
    log.debug(
        "FCN: best validation loss %.5f at epoch %d of %d",
        record.best_val_loss,
        record.best_epoch + 1,
        record.epochs,
    )
    return scores, record
