"""The linear classifier test (LCT): scikit-learn's logistic regression (L2, C = 1, lbfgs) on
all training events, with the class-balancing weights; it reads no config and is deterministic
(the seed only fixes sklearn's ``random_state``)."""

from __future__ import annotations

import logging
import warnings

import numpy as np
import numpy.typing as npt
from scipy.special import expit

log = logging.getLogger(__name__)

__all__ = ["LCT_MAX_ITER", "fit_predict_lct"]

FloatArray = npt.NDArray[np.float64]

LCT_MAX_ITER = 1000


def fit_predict_lct(
    x: npt.NDArray[np.float32],
    y: npt.NDArray[np.int64],
    w: FloatArray,
    x_test: npt.NDArray[np.float32],
    seed: int,
) -> FloatArray:
    """Fit on standardised (x, y) with weights ``w``; (M,) float64 P(class 1) of ``x_test``.

    A convergence warning of sklearn is logged, not raised."""
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
