"""Binary classification metrics for anomaly detection: ROC, SIC, rejection, and their spread.

A working point is a cut ``score >= threshold``; the signal efficiency is the true positive rate
(TPR) and the background efficiency the false positive rate (FPR). The significance improvement
characteristic SIC = TPR / sqrt(FPR) is the factor by which the cut multiplies S / sqrt(B).

Small background efficiencies are noisy: a cut passing 2 of 10 000 background events has FPR =
2e-4 give or take 70%. Following the seed paper (Dillon, Mastandrea, Nachman 2023), SIC and the
rejection 1 / FPR are therefore only reported at working points whose FPR rests on at least
``min_background`` background test events passing the cut.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

DEFAULT_TPRS = (0.2, 0.3, 0.5, 0.7)


def check_binary(labels: npt.ArrayLike, scores: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
    """Validate a labelled score set; returns (labels, scores) as 1-D float64 arrays.

    Raises:
        ValueError: labels other than 0/1, one class absent, different lengths, non-1-D input,
            or NaN/inf scores.
    """
    y = np.asarray(labels)
    s = np.asarray(scores, dtype=np.float64)
    if y.ndim != 1 or s.ndim != 1:
        raise ValueError(f"labels and scores must be 1-D, got shapes {y.shape} and {s.shape}")
    if y.shape != s.shape:
        raise ValueError(f"labels and scores differ in length: {len(y)} labels, {len(s)} scores")
    if y.dtype == np.bool_:
        y = y.astype(np.int8)
    if not np.issubdtype(y.dtype, np.number):
        raise ValueError(f"labels must be numeric 0/1, got dtype {y.dtype}")
    bad = ~np.isin(y, (0, 1))
    if bad.any():
        values = np.unique(y[bad])[:5].tolist()
        raise ValueError(f"labels must be 0 (background) or 1 (signal); found {values}")
    y = y.astype(np.float64)
    n_signal = int(y.sum())
    if n_signal == 0 or n_signal == len(y):
        absent = "signal (1)" if n_signal == 0 else "background (0)"
        raise ValueError(f"labels contain no {absent} events; both classes are needed")
    finite = np.isfinite(s)
    if not finite.all():
        first = int(np.flatnonzero(~finite)[0])
        raise ValueError(
            f"scores contain {int((~finite).sum())} NaN/inf values (first at index {first})"
        )
    return y, s


def _check_min_background(min_background: int) -> None:
    if min_background < 1:
        raise ValueError(f"min_background must be >= 1, got {min_background}")


def working_points(
    labels: npt.ArrayLike, scores: npt.ArrayLike
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Event counts passing each distinct cut ``score >= threshold``, tightest first.

    Returns:
        (signal_pass, background_pass, thresholds), each (K,) for the K distinct scores; the
        counts are cumulative (non-decreasing) and the thresholds decreasing.
    """
    y, s = check_binary(labels, scores)
    order = np.argsort(-s, kind="stable")
    s_sorted = s[order]
    # The last index of each run of equal scores: a cut can only fall between distinct values.
    last = np.r_[np.flatnonzero(np.diff(s_sorted)), len(s_sorted) - 1]
    signal_pass = np.cumsum(y[order])[last]
    background_pass = (last + 1) - signal_pass
    return signal_pass, background_pass.astype(np.float64), s_sorted[last]


def roc_curve(
    labels: npt.ArrayLike, scores: npt.ArrayLike
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """The ROC curve at every distinct threshold.

    Equals ``sklearn.metrics.roc_curve(labels, scores, drop_intermediate=False)``: the first
    point is (0, 0) at threshold +inf, then one point per distinct score, tightest cut first.

    Args:
        labels: (B,) 0 background, 1 signal.
        scores: (B,) larger means more signal-like.

    Returns:
        (fpr, tpr, thresholds), each (K + 1,).
    """
    signal_pass, background_pass, thresholds = working_points(labels, scores)
    fpr = np.r_[0.0, background_pass / background_pass[-1]]
    tpr = np.r_[0.0, signal_pass / signal_pass[-1]]
    return fpr, tpr, np.r_[np.inf, thresholds]


def sic_curve(
    labels: npt.ArrayLike, scores: npt.ArrayLike, min_background: int = 20
) -> tuple[FloatArray, FloatArray]:
    """The significance improvement TPR / sqrt(FPR) at the statistically resolved cuts.

    Only working points where at least ``min_background`` background events pass the cut are
    returned (so FPR >= min_background / n_background > 0): tighter cuts have a background
    efficiency too poorly measured to quote, and would make the maximum SIC a fluctuation.

    Args:
        labels: (B,) 0 background, 1 signal.
        scores: (B,) larger means more signal-like.
        min_background: the fewest background events a working point may rest on (>= 1).

    Returns:
        (tpr, sic), each (K,) with K possibly 0, tightest cut first.
    """
    _check_min_background(min_background)
    signal_pass, background_pass, _ = working_points(labels, scores)
    keep = background_pass >= min_background
    tpr = signal_pass[keep] / signal_pass[-1]
    fpr = background_pass[keep] / background_pass[-1]
    return tpr, tpr / np.sqrt(fpr)


def _metric_key(prefix: str, tpr: float) -> str:
    return f"{prefix}_at_tpr_{tpr:g}"


def binary_metrics(
    labels: npt.ArrayLike,
    scores: npt.ArrayLike,
    min_background: int = 20,
    tprs: Sequence[float] = DEFAULT_TPRS,
) -> dict[str, float]:
    """AUC, maximum SIC, and background efficiency and rejection at fixed signal efficiencies.

    Keys:
        ``auc``: area under the ROC curve (ties count one half, as in sklearn).
        ``max_sic``: the largest SIC over the cuts that ``sic_curve`` keeps (at least
        ``min_background`` background events passing); NaN if no cut qualifies.
        ``fpr_at_tpr_<t>`` for each t in ``tprs``: the FPR of the tightest cut whose TPR is at
        least t (no interpolation; it may be 0).
        ``rejection_at_tpr_<t>``: 1 / that FPR, or NaN where fewer than ``min_background``
        background events pass that cut, so that it is never infinite nor a fluctuation.
        ``n_signal``, ``n_background``: the test events behind the numbers.

    Raises:
        ValueError: bad labels or scores (see ``check_binary``), min_background < 1, or a
            target TPR outside (0, 1].
    """
    _check_min_background(min_background)
    for t in tprs:
        if not 0.0 < t <= 1.0:
            raise ValueError(f"target TPRs must lie in (0, 1], got {t}")
    from sklearn.metrics import roc_auc_score  # imported here: sklearn is slow to import

    y, s = check_binary(labels, scores)
    signal_pass, background_pass, _ = working_points(y, s)
    n_signal, n_background = signal_pass[-1], background_pass[-1]
    tpr = signal_pass / n_signal
    fpr = background_pass / n_background

    out: dict[str, float] = {"auc": float(roc_auc_score(y, s))}
    keep = background_pass >= min_background
    out["max_sic"] = float(np.max(tpr[keep] / np.sqrt(fpr[keep]))) if keep.any() else math.nan
    for t in tprs:
        # tpr is non-decreasing, so the first point reaching t is the tightest such cut. A small
        # tolerance keeps t = 0.5 reachable when 0.5 is exactly a count ratio.
        index = int(np.searchsorted(tpr, t - 1e-12, side="left"))
        out[_metric_key("fpr", t)] = float(fpr[index])
        resolved = background_pass[index] >= min_background
        out[_metric_key("rejection", t)] = float(1.0 / fpr[index]) if resolved else math.nan
    out["n_signal"] = float(n_signal)
    out["n_background"] = float(n_background)
    return out


def aggregate(results: Iterable[Mapping[str, float]]) -> dict[str, dict[str, float]]:
    """Mean, standard deviation and count of each metric over repeated measurements.

    NaN values (a metric that was not measurable in one repeat, e.g. ``max_sic`` with too
    little background) are left out; ``n`` counts the values that were used. The standard
    deviation is the sample one (ddof = 1), 0 for a single value; mean and std are NaN where no
    value is left. A key missing from some dicts is treated like a NaN there.

    Returns:
        {metric: {"mean": ..., "std": ..., "n": ...}}, metrics in order of first appearance.
    """
    values: dict[str, list[float]] = {}
    for result in results:
        for key, value in result.items():
            values.setdefault(key, []).append(float(value))
    out: dict[str, dict[str, float]] = {}
    for key, seq in values.items():
        array = np.asarray(seq, dtype=np.float64)
        array = array[~np.isnan(array)]
        n = len(array)
        with np.errstate(invalid="ignore"):  # an infinite value gives an infinite mean, NaN std
            mean = float(array.mean()) if n else math.nan
            std = float(array.std(ddof=1)) if n > 1 else (0.0 if n == 1 else math.nan)
        out[key] = {"mean": mean, "std": std, "n": float(n)}
    return out


def json_safe(value: Any) -> Any:
    """``value`` with every non-finite float replaced by None, recursively (strict JSON)."""
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, np.ndarray):
        return json_safe(value.tolist())
    return value
