"""The classifiers that judge a representation: LCT, FCN and Trans+BC.

* ``fit_predict(name, ...)`` trains the linear classifier test ('lct', ``lct``) or the fully
  connected network ('fcn', ``fcn``) on a feature matrix and scores the test events;
  ``fit_predict_folds`` does k-fold cross-training so that every event is scored by a classifier
  that never saw it (the bump hunt).
* ``fit_predict_trans_bc`` trains the encoder's architecture end to end on the constituents
  (``trans_bc``), the supervised reference.
* ``make_classifier(name, evaluate_config, model_config)`` gives any of the three behind one
  interface, ``Classifier.fit_predict(x_train, y_train, x_test, seed) -> (scores, record)``, so
  that a driver runs them all through one code path.

Common to all: classes are balanced, tabular features are standardised with the training
statistics only (``checks``), the test set is never used for any choice, and scores are
P(class 1) in [0, 1], in float64. The FCN and Trans+BC share one training loop (``fit``); each
takes only its own config section (``FCNConfig``, ``TransBCConfig`` and the ``ModelConfig``).
Bad input data raises ``ClassifierError``, a ``UserError``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

from distributed_clr.classifiers.checks import (
    ClassifierError,
    balanced_weights,
    check_labels,
    check_matrix,
    standardise,
)
from distributed_clr.classifiers.fcn import build_fcn, fit_predict_fcn
from distributed_clr.classifiers.fit import (
    VALIDATION_FRACTION,
    TrainingRecord,
    resolve_device,
    stratified_holdout,
)
from distributed_clr.classifiers.lct import fit_predict_lct
from distributed_clr.classifiers.trans_bc import (
    TRANS_BC,
    TransBC,
    TransBCResult,
    fit_predict_trans_bc,
)
from distributed_clr.config.schema import (
    ClassifierName,
    EvaluateConfig,
    FCNConfig,
    ModelConfig,
    TransBCConfig,
)
from distributed_clr.seeds import derive_seed

log = logging.getLogger(__name__)

__all__ = [
    "CLASSIFIER_NAMES",
    "DISPLAY_NAMES",
    "TRANS_BC",
    "VALIDATION_FRACTION",
    "Classifier",
    "ClassifierError",
    "TrainingRecord",
    "TransBC",
    "TransBCResult",
    "build_fcn",
    "fit_predict",
    "fit_predict_folds",
    "fit_predict_trans_bc",
    "make_classifier",
    "resolve_device",
    "stratified_holdout",
]

FloatArray = npt.NDArray[np.float64]

CLASSIFIER_NAMES: tuple[ClassifierName, ...] = ("lct", "fcn")
"""The classifiers of feature matrices (``fit_predict``)."""
DISPLAY_NAMES = {"lct": "LCT", "fcn": "FCN", TRANS_BC: "Trans+BC"}


def fit_predict(
    name: ClassifierName,
    x_train: npt.ArrayLike,
    y_train: npt.ArrayLike,
    x_test: npt.ArrayLike,
    fcn: FCNConfig | None,
    seed: int,
    *,
    sample_weight: npt.ArrayLike | None = None,
) -> FloatArray:
    """Train classifier ``name`` on (x_train, y_train) and score x_test.

    Args:
        name: 'lct' (logistic regression) or 'fcn' (MLP).
        x_train: (N, F) training features; NaN/inf are refused.
        y_train: (N,) labels 0/1, both present.
        x_test: (M, F) events to score.
        fcn: the FCN's settings; the LCT reads none (pass None).
        seed: seeds the FCN's validation split, initialisation, batch order and dropout.
        sample_weight: (N,) non-negative per-event weights, multiplied by the class balancing.

    Returns:
        (M,) float64 scores in [0, 1], larger meaning more like class 1.

    Raises:
        ClassifierError: an unknown name, or input that cannot be trained on.
    """
    if name not in CLASSIFIER_NAMES:
        raise ClassifierError(
            f"unknown classifier {name!r}; expected one of {list(CLASSIFIER_NAMES)}"
        )
    if name == "fcn" and fcn is None:
        raise ValueError("the FCN needs its settings (an FCNConfig), got None")
    train = check_matrix(x_train, "x_train")
    test = check_matrix(x_test, "x_test")
    if train.shape[1] != test.shape[1]:
        raise ClassifierError(
            f"x_train has {train.shape[1]} features but x_test has {test.shape[1]}"
        )
    labels = check_labels(y_train, len(train), "y_train")
    weights = balanced_weights(sample_weight, labels)
    scaled_train, scaled_test = standardise(train, test)
    if name == "lct":
        return fit_predict_lct(scaled_train, labels, weights, scaled_test, seed)
    assert fcn is not None
    return fit_predict_fcn(scaled_train, labels, weights, scaled_test, fcn, seed)[0]


def fit_predict_folds(
    name: ClassifierName,
    x: npt.ArrayLike,
    y: npt.ArrayLike,
    folds: npt.ArrayLike,
    fcn: FCNConfig | None,
    seed: int,
) -> FloatArray:
    """k-fold cross-training: each event is scored by a classifier trained on the other folds.

    Args:
        x: (N, F) features.
        y: (N,) labels 0/1.
        folds: (N,) integer fold of each event (e.g. the ``fold`` column); at least 2 distinct.
        fcn, seed: as for ``fit_predict``; fold k's classifier gets ``derive_seed(seed, k)``.

    Returns:
        (N,) float64 scores. Scores of different folds come from different classifiers.
    """
    features = check_matrix(x, "x")
    labels = check_labels(y, len(features), "y")
    fold = np.asarray(folds)
    if fold.shape != labels.shape or not np.issubdtype(fold.dtype, np.integer):
        raise ValueError(
            f"folds must be integers of shape {labels.shape}, got {fold.dtype} {fold.shape}"
        )
    distinct = np.unique(fold)
    if len(distinct) < 2:
        raise ClassifierError(
            f"k-fold cross-training needs at least 2 folds, got {distinct.tolist()}"
        )
    scores = np.full(len(labels), np.nan)
    for k in distinct.tolist():
        held = fold == k
        scores[held] = fit_predict(
            name, features[~held], labels[~held], features[held], fcn, derive_seed(seed, k)
        )
        log.debug(
            "fold %s: trained on %d events, scored %d", k, int((~held).sum()), int(held.sum())
        )
    return scores


# ------------------------------------------------------------------------------------------------
# one interface for the three


class Classifier(Protocol):
    """A classifier ready to train: ``fit_predict`` trains a fresh one per call."""

    @property
    def name(self) -> str:
        """'lct', 'fcn' or 'trans_bc'."""
        ...

    @property
    def display_name(self) -> str:
        """The name in figures: 'LCT', 'FCN', 'Trans+BC'."""
        ...

    def fit_predict(
        self, x_train: npt.ArrayLike, y_train: npt.ArrayLike, x_test: npt.ArrayLike, seed: int
    ) -> tuple[FloatArray, TrainingRecord | None]:
        """(M,) float64 scores of x_test, and the record of a training worth reporting (None
        where there is none to report)."""
        ...


@dataclass(frozen=True)
class _Tabular:
    """The LCT or the FCN on a feature matrix (``fit_predict``). The FCN's training record is
    logged, not reported."""

    name: ClassifierName
    fcn: FCNConfig | None

    @property
    def display_name(self) -> str:
        return DISPLAY_NAMES[self.name]

    def fit_predict(
        self, x_train: npt.ArrayLike, y_train: npt.ArrayLike, x_test: npt.ArrayLike, seed: int
    ) -> tuple[FloatArray, TrainingRecord | None]:
        return fit_predict(self.name, x_train, y_train, x_test, self.fcn, seed), None


@dataclass(frozen=True)
class _TransBC:
    """Trans+BC on the constituents (``fit_predict_trans_bc``); reports its training."""

    model: ModelConfig
    config: TransBCConfig

    name = TRANS_BC
    display_name = DISPLAY_NAMES[TRANS_BC]

    def fit_predict(
        self, x_train: npt.ArrayLike, y_train: npt.ArrayLike, x_test: npt.ArrayLike, seed: int
    ) -> tuple[FloatArray, TrainingRecord | None]:
        result = fit_predict_trans_bc(x_train, y_train, x_test, self.model, self.config, seed)
        return result.scores, result.training


def make_classifier(
    name: str, config: EvaluateConfig, model: ModelConfig | None = None
) -> Classifier:
    """Classifier ``name`` ('lct', 'fcn' or 'trans_bc') with its section of ``config``;
    Trans+BC also needs the encoder architecture ``model``."""
    if name == TRANS_BC:
        if model is None:
            raise ValueError("Trans+BC needs the encoder's architecture (a ModelConfig)")
        return _TransBC(model, config.trans_bc)
    if name not in CLASSIFIER_NAMES:
        raise ClassifierError(
            f"unknown classifier {name!r}; expected one of {[*CLASSIFIER_NAMES, TRANS_BC]}"
        )
    tabular: ClassifierName = "fcn" if name == "fcn" else "lct"
    return _Tabular(tabular, config.fcn if tabular == "fcn" else None)
