"""What every classifier checks and prepares before training: features, labels, weights.

* Features must be finite real numbers; NaN/inf are refused with the position of the first one.
* Labels must be 0/1 with both classes present.
* Classes are balanced: each event's weight is its ``sample_weight`` (1 by default) times
  ``W / (2 W_c)``, W_c the summed weight of its class and W the total, so both classes weigh the
  same and the mean weight is 1. CWoLa samples are unbalanced (sideband vs signal region, or
  samples of different sizes); without this the classifier would learn the class ratio rather
  than the difference.
* Tabular features are standardised with the mean and standard deviation of the training set
  only, so a test event's score never depends on the other test events.

Problems with the data (NaN, one class, too few events) raise ``ClassifierError``, a
``UserError``: the input is wrong, not the code.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from distributed_clr.errors import UserError

__all__ = [
    "ClassifierError",
    "balanced_weights",
    "check_constituents",
    "check_labels",
    "check_matrix",
    "standardise",
]

FloatArray = npt.NDArray[np.float64]


class ClassifierError(UserError, ValueError):
    """The events given to a classifier cannot be trained on (NaN/inf features, labels other
    than 0/1, one class only, too few events for early stopping, bad weights)."""


def check_matrix(x: npt.ArrayLike, name: str) -> npt.NDArray[Any]:
    """``x`` as a non-empty, finite, real (events, features) array."""
    array = np.asarray(x)
    if array.ndim != 2 or array.shape[0] == 0 or array.shape[1] == 0:
        raise ClassifierError(
            f"{name} must be a non-empty 2-D (events, features) array, got {array.shape}"
        )
    if not np.issubdtype(array.dtype, np.number) or np.issubdtype(array.dtype, np.complexfloating):
        raise ClassifierError(f"{name} must be real-valued, got dtype {array.dtype}")
    finite = np.isfinite(array)
    if not finite.all():
        row, column = np.argwhere(~finite)[0]
        raise ClassifierError(
            f"{name} contains {int((~finite).sum())} NaN/inf values "
            f"(first at row {row}, column {column})"
        )
    return array


def check_labels(y: npt.ArrayLike, rows: int, name: str) -> npt.NDArray[np.int64]:
    """``y`` as (rows,) int64 labels 0/1 with both classes present."""
    labels = np.asarray(y)
    if labels.shape != (rows,):
        raise ClassifierError(f"{name} must be 1-D with {rows} entries, got shape {labels.shape}")
    if not np.isin(labels, (0, 1)).all():
        values = np.unique(labels[~np.isin(labels, (0, 1))])[:5].tolist()
        raise ClassifierError(f"{name} must be 0 or 1; found {values}")
    counts = np.bincount(labels.astype(np.int64), minlength=2)
    if counts.min() == 0:
        raise ClassifierError(f"{name} has only one class ({counts[0]} of 0, {counts[1]} of 1)")
    return labels.astype(np.int64)


def balanced_weights(w: npt.ArrayLike | None, labels: npt.NDArray[np.int64]) -> FloatArray:
    """Per-event weights ``w`` (1 if None) rescaled so that both classes weigh half the total
    and the mean weight is 1 (float64)."""
    if w is None:
        weights = np.ones(len(labels))
    else:
        weights = np.asarray(w, dtype=np.float64)
        if weights.shape != labels.shape:
            raise ClassifierError(
                f"sample_weight must have shape {labels.shape}, got {weights.shape}"
            )
        if not np.isfinite(weights).all() or (weights < 0).any():
            raise ClassifierError("sample_weight must be finite and non-negative")
    per_class = np.bincount(labels, weights=weights, minlength=2)
    if per_class.min() <= 0:
        raise ClassifierError(f"each class needs a positive total sample_weight, got {per_class}")
    return weights * len(labels) / (2.0 * per_class[labels])


def standardise(
    x_train: npt.NDArray[Any], x_test: npt.NDArray[Any]
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """Both sets scaled with the training mean and std (constant features: std 1)."""
    train = x_train.astype(np.float64)
    mean = train.mean(axis=0)
    std = train.std(axis=0)
    std[std == 0] = 1.0
    scaled_train = ((train - mean) / std).astype(np.float32)
    scaled_test = ((x_test.astype(np.float64) - mean) / std).astype(np.float32)
    return scaled_train, scaled_test


def check_constituents(x: npt.ArrayLike, name: str) -> npt.NDArray[np.float32]:
    """``x`` as non-empty, finite float32 constituents (B, 2, N, 3)."""
    array = np.asarray(x, dtype=np.float32)
    if array.ndim != 4 or array.shape[1] != 2 or array.shape[3] != 3 or len(array) == 0:
        raise ClassifierError(
            f"{name} must be non-empty constituents of shape (B, 2, N, 3), got {array.shape}"
        )
    if not np.isfinite(array).all():
        raise ClassifierError(f"{name} contains NaN/inf values")
    return array
