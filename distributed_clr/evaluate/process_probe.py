"""The SM-process linear probe: how well a representation separates the background's processes.

The 2025 paper judges an object-level representation also by the structure it gives the
background: a linear classifier of the SM process (W, Z, ttbar, QCD, ...) trained on the
representation of the train split and scored on the test split. ``process_probe`` fits a
multinomial logistic regression on standardised features of the events with a known process
id (``process_id >= 0``; the signal label is not used) and reports the test accuracy with a
68% bootstrap interval, the chance level (the largest class's share, what a constant guess
scores) and each process's recall. It runs inside ``evaluate classify`` for every feature set
of object-level events whose train split holds at least two processes.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import numpy.typing as npt

from distributed_clr.evaluate.inputs import EvaluationInputs

log = logging.getLogger(__name__)

__all__ = ["process_probe"]

MAX_ITER = 1_000


def process_probe(
    train: EvaluationInputs,
    test: EvaluationInputs,
    feature_set: str,
    seed: int,
    replicates: int = 200,
) -> dict[str, Any] | None:
    """The probe's result for ``feature_set`` (module docstring); None when the train split
    has fewer than two known processes or the test split none of them."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    fit_rows = train.process_id >= 0
    classes = np.unique(train.process_id[fit_rows])
    score_rows = np.isin(test.process_id, classes)
    if len(classes) < 2 or not score_rows.any():
        return None
    x_fit = train.features[feature_set][fit_rows].reshape(int(fit_rows.sum()), -1)
    x_test = test.features[feature_set][score_rows].reshape(int(score_rows.sum()), -1)
    y_fit, y_test = train.process_id[fit_rows], test.process_id[score_rows]
    model = make_pipeline(
        StandardScaler(), LogisticRegression(max_iter=MAX_ITER, random_state=seed)
    )
    model.fit(x_fit, y_fit)
    correct = model.predict(x_test) == y_test
    accuracy = float(correct.mean())
    low, high = _bootstrap(correct, seed, replicates)
    counts = {int(c): int((y_test == c).sum()) for c in classes}
    result = {
        "accuracy": accuracy,
        "interval": [low, high],
        "chance": max(counts.values()) / len(y_test),
        "processes": [int(c) for c in classes],
        "test_events": counts,
        "train_events": {int(c): int((y_fit == c).sum()) for c in classes},
        "recall": {int(c): float(correct[y_test == c].mean()) for c in classes if counts[int(c)]},
    }
    log.info(
        "%s: SM process probe accuracy %.3f [%.3f, %.3f] over %d processes (chance %.3f)",
        feature_set, accuracy, low, high, len(classes), result["chance"],
    )  # fmt: skip
    return result


def _bootstrap(correct: npt.NDArray[np.bool_], seed: int, replicates: int) -> tuple[float, float]:
    """The 68% percentile interval of the accuracy over bootstrap resamples of the test events."""
    rng = np.random.default_rng(seed)
    n = len(correct)
    means = np.array([correct[rng.integers(0, n, n)].mean() for _ in range(replicates)])
    low, high = np.quantile(means, [0.16, 0.84])
    return float(low), float(high)
