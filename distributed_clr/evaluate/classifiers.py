"""The classifiers that judge a representation: one fit loop for LCT and FCN.

``fit_predict`` trains on (x_train, y_train) and scores x_test; ``fit_predict_folds`` does k-fold
cross-training so that every event is scored by a classifier that never saw it (the bump hunt).

Common to both classifiers:

* Features are standardised with the mean and standard deviation of the training set only.
* Classes are balanced: each event's weight is its ``sample_weight`` (1 by default) times
  ``W / (2 W_c)``, W_c the summed weight of its class and W the total, so both classes weigh the
  same. CWoLa samples are unbalanced (sideband vs signal region, or samples of different sizes);
  without this the classifier would learn the class ratio rather than the difference.
* The test set is never used for any choice; scores are P(class 1) in [0, 1], in float64.

LCT (linear classifier test): scikit-learn's ``LogisticRegression`` (L2, C = 1, lbfgs) on all
training events.

FCN: an MLP (``fcn_hidden`` ReLU layers with dropout ``fcn_dropout``, one logit), trained with
the weighted binary cross-entropy on logits and Adam at ``fcn_lr`` in mini-batches of
``fcn_batch_size`` for at most ``fcn_epochs`` epochs. A stratified, seeded 20% of the training
events is held out; training stops when its (weighted) loss has not improved for
``fcn_patience`` epochs, and the weights of the best epoch are restored. Dropout is off at
prediction (``model.eval()``). It runs on the CPU with the torch thread count as set; a given
seed gives identical scores on a given machine and thread count (initialisation, shuffling and
dropout all draw from that seed, inside ``torch.random.fork_rng`` so the caller's global RNG
state is left alone).
"""

from __future__ import annotations

import copy
import logging
import warnings
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F
from scipy.special import expit
from torch import nn

from distributed_clr.config.schema import ClassifierName, EvaluateConfig

log = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float64]

CLASSIFIER_NAMES: tuple[ClassifierName, ...] = ("lct", "fcn")
VALIDATION_FRACTION = 0.2
"""Share of the FCN training events held out (per class) for early stopping."""
LCT_MAX_ITER = 1000
PREDICT_BATCH = 65_536


# ------------------------------------------------------------------------------------------------
# input checks


def _check_matrix(x: npt.ArrayLike, name: str) -> npt.NDArray[Any]:
    array = np.asarray(x)
    if array.ndim != 2 or array.shape[0] == 0 or array.shape[1] == 0:
        raise ValueError(
            f"{name} must be a non-empty 2-D (events, features) array, got {array.shape}"
        )
    if not np.issubdtype(array.dtype, np.number) or np.issubdtype(array.dtype, np.complexfloating):
        raise ValueError(f"{name} must be real-valued, got dtype {array.dtype}")
    finite = np.isfinite(array)
    if not finite.all():
        row, column = np.argwhere(~finite)[0]
        raise ValueError(
            f"{name} contains {int((~finite).sum())} NaN/inf values "
            f"(first at row {row}, column {column})"
        )
    return array


def _check_labels(y: npt.ArrayLike, rows: int, name: str) -> npt.NDArray[np.int64]:
    labels = np.asarray(y)
    if labels.shape != (rows,):
        raise ValueError(f"{name} must be 1-D with {rows} entries, got shape {labels.shape}")
    if not np.isin(labels, (0, 1)).all():
        values = np.unique(labels[~np.isin(labels, (0, 1))])[:5].tolist()
        raise ValueError(f"{name} must be 0 or 1; found {values}")
    counts = np.bincount(labels.astype(np.int64), minlength=2)
    if counts.min() == 0:
        raise ValueError(f"{name} has only one class ({counts[0]} of 0, {counts[1]} of 1)")
    return labels.astype(np.int64)


def _check_weights(w: npt.ArrayLike | None, labels: npt.NDArray[np.int64]) -> FloatArray:
    if w is None:
        weights = np.ones(len(labels))
    else:
        weights = np.asarray(w, dtype=np.float64)
        if weights.shape != labels.shape:
            raise ValueError(f"sample_weight must have shape {labels.shape}, got {weights.shape}")
        if not np.isfinite(weights).all() or (weights < 0).any():
            raise ValueError("sample_weight must be finite and non-negative")
    per_class = np.bincount(labels, weights=weights, minlength=2)
    if per_class.min() <= 0:
        raise ValueError(f"each class needs a positive total sample_weight, got {per_class}")
    # Balance: both classes carry half the total weight, and the mean weight is 1.
    return weights * len(labels) / (2.0 * per_class[labels])


def _standardise(
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


# ------------------------------------------------------------------------------------------------
# LCT


def _fit_predict_lct(
    x: npt.NDArray[np.float32],
    y: npt.NDArray[np.int64],
    w: FloatArray,
    x_test: npt.NDArray[np.float32],
    seed: int,
) -> FloatArray:
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(max_iter=LCT_MAX_ITER, random_state=seed % 2**32)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        model.fit(x, y, sample_weight=w)
    for warning in caught:
        if issubclass(warning.category, ConvergenceWarning):
            log.warning("LCT: %s", warning.message)
        else:  # not ours to swallow
            warnings.warn_explicit(
                warning.message, warning.category, warning.filename, warning.lineno
            )
    logits = np.asarray(model.decision_function(x_test), dtype=np.float64)
    return np.asarray(expit(logits), dtype=np.float64)


# ------------------------------------------------------------------------------------------------
# FCN


def build_fcn(in_features: int, config: EvaluateConfig) -> nn.Sequential:
    """The FCN: Linear-ReLU-Dropout per ``config.fcn_hidden`` entry, then one output logit."""
    layers: list[nn.Module] = []
    size = in_features
    for hidden in config.fcn_hidden:
        layers += [nn.Linear(size, hidden), nn.ReLU(), nn.Dropout(config.fcn_dropout)]
        size = hidden
    layers.append(nn.Linear(size, 1))
    return nn.Sequential(*layers)


def stratified_holdout(
    y: npt.NDArray[np.int64], fraction: float, rng: np.random.Generator
) -> npt.NDArray[np.bool_]:
    """A boolean mask holding out ``fraction`` of each class (at least one event, at least one
    left for training); needs two events per class."""
    holdout = np.zeros(len(y), dtype=bool)
    for label in (0, 1):
        members = np.flatnonzero(y == label)
        if len(members) < 2:
            raise ValueError(
                f"the FCN needs at least 2 training events of class {label} "
                f"(one for early stopping), got {len(members)}"
            )
        n_hold = min(max(1, round(fraction * len(members))), len(members) - 1)
        holdout[rng.choice(members, size=n_hold, replace=False)] = True
    return holdout


def _weighted_bce(model: nn.Module, x: torch.Tensor, y: torch.Tensor, w: torch.Tensor) -> Any:
    logits = model(x).squeeze(-1)
    return (F.binary_cross_entropy_with_logits(logits, y, reduction="none") * w).sum() / w.sum()


def _predict_logits(model: nn.Module, x: torch.Tensor) -> FloatArray:
    model.eval()
    with torch.no_grad():
        parts = [
            model(x[i : i + PREDICT_BATCH]).squeeze(-1) for i in range(0, len(x), PREDICT_BATCH)
        ]
    return torch.cat(parts).double().numpy()


def _fit_predict_fcn(
    x: npt.NDArray[np.float32],
    y: npt.NDArray[np.int64],
    w: FloatArray,
    x_test: npt.NDArray[np.float32],
    config: EvaluateConfig,
    seed: int,
) -> FloatArray:
    rng = np.random.default_rng(seed)
    holdout = stratified_holdout(y, VALIDATION_FRACTION, rng)
    x_all = torch.from_numpy(np.ascontiguousarray(x))
    y_all = torch.from_numpy(y.astype(np.float32))
    w_all = torch.from_numpy(w.astype(np.float32))
    train_idx = torch.from_numpy(np.flatnonzero(~holdout))
    x_val, y_val, w_val = (t[torch.from_numpy(holdout)] for t in (x_all, y_all, w_all))

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # initialisation and dropout
        generator = torch.Generator().manual_seed(seed)  # batch order
        model = build_fcn(x.shape[1], config)
        optimiser = torch.optim.Adam(model.parameters(), lr=config.fcn_lr)
        best_loss, best_state, best_epoch, stale = (
            float("inf"),
            copy.deepcopy(model.state_dict()),
            0,
            0,
        )
        for epoch in range(config.fcn_epochs):
            model.train()
            order = train_idx[torch.randperm(len(train_idx), generator=generator)]
            for start in range(0, len(order), config.fcn_batch_size):
                batch = order[start : start + config.fcn_batch_size]
                optimiser.zero_grad(set_to_none=True)
                loss = _weighted_bce(model, x_all[batch], y_all[batch], w_all[batch])
                loss.backward()
                optimiser.step()
            model.eval()
            with torch.no_grad():
                val_loss = float(_weighted_bce(model, x_val, y_val, w_val))
            if val_loss < best_loss:
                best_loss, best_epoch, stale = val_loss, epoch, 0
                best_state = copy.deepcopy(model.state_dict())
            else:
                stale += 1
                if stale >= config.fcn_patience:
                    break
        model.load_state_dict(best_state)
        log.debug(
            "FCN: best validation loss %.5f at epoch %d of %d", best_loss, best_epoch + 1, epoch + 1
        )
        logits = _predict_logits(model, torch.from_numpy(np.ascontiguousarray(x_test)))
    return np.asarray(expit(logits), dtype=np.float64)


# ------------------------------------------------------------------------------------------------
# the one entry point


def fit_predict(
    name: ClassifierName,
    x_train: npt.ArrayLike,
    y_train: npt.ArrayLike,
    x_test: npt.ArrayLike,
    config: EvaluateConfig,
    seed: int,
    *,
    sample_weight: npt.ArrayLike | None = None,
) -> FloatArray:
    """Train classifier ``name`` on (x_train, y_train) and score x_test.

    Args:
        name: 'lct' (logistic regression) or 'fcn' (MLP, see the module docstring).
        x_train: (N, F) training features; NaN/inf are refused.
        y_train: (N,) labels 0/1, both present.
        x_test: (M, F) events to score.
        config: the FCN hyperparameters (``fcn_*``); LCT reads none.
        seed: seeds the FCN's validation split, initialisation, batch order and dropout.
        sample_weight: (N,) non-negative per-event weights, multiplied by the class balancing.

    Returns:
        (M,) float64 scores in [0, 1], larger meaning more like class 1.
    """
    if name not in CLASSIFIER_NAMES:
        raise ValueError(f"unknown classifier {name!r}; expected one of {list(CLASSIFIER_NAMES)}")
    train = _check_matrix(x_train, "x_train")
    test = _check_matrix(x_test, "x_test")
    if train.shape[1] != test.shape[1]:
        raise ValueError(f"x_train has {train.shape[1]} features but x_test has {test.shape[1]}")
    labels = _check_labels(y_train, len(train), "y_train")
    weights = _check_weights(sample_weight, labels)
    scaled_train, scaled_test = _standardise(train, test)
    if name == "lct":
        return _fit_predict_lct(scaled_train, labels, weights, scaled_test, seed)
    return _fit_predict_fcn(scaled_train, labels, weights, scaled_test, config, seed)


def fold_seed(seed: int, fold: int) -> int:
    """An independent seed for the classifier of one fold, derived from (seed, fold)."""
    return int(np.random.SeedSequence([seed, fold]).generate_state(1, dtype=np.uint32)[0])


def fit_predict_folds(
    name: ClassifierName,
    x: npt.ArrayLike,
    y: npt.ArrayLike,
    folds: npt.ArrayLike,
    config: EvaluateConfig,
    seed: int,
) -> FloatArray:
    """k-fold cross-training: each event is scored by a classifier trained on the other folds.

    Args:
        x: (N, F) features.
        y: (N,) labels 0/1.
        folds: (N,) integer fold of each event (e.g. the ``fold`` column); at least 2 distinct.
        config, seed: as for ``fit_predict``; fold k's classifier gets ``fold_seed(seed, k)``.

    Returns:
        (N,) float64 scores. Scores of different folds come from different classifiers.
    """
    features = _check_matrix(x, "x")
    labels = _check_labels(y, len(features), "y")
    fold = np.asarray(folds)
    if fold.shape != labels.shape or not np.issubdtype(fold.dtype, np.integer):
        raise ValueError(
            f"folds must be integers of shape {labels.shape}, got {fold.dtype} {fold.shape}"
        )
    distinct = np.unique(fold)
    if len(distinct) < 2:
        raise ValueError(f"k-fold cross-training needs at least 2 folds, got {distinct.tolist()}")
    scores = np.full(len(labels), np.nan)
    for k in distinct.tolist():
        held = fold == k
        scores[held] = fit_predict(
            name, features[~held], labels[~held], features[held], config, fold_seed(seed, k)
        )
        log.debug(
            "fold %s: trained on %d events, scored %d", k, int((~held).sum()), int(held.sum())
        )
    return scores
