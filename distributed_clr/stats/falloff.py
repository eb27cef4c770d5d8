"""Where a scan over the signal fraction falls to random: f* with its bootstrap interval.

A weakly supervised scan measures a metric (AUC, max SIC, FPR at a fixed TPR) at signal
fractions f, once per seed. A fraction is *better than random* when its seed mean exceeds the
mean of the no-signal (f = 0) seeds by more than ``sigmas`` combined standard errors of the
two means (for a metric where lower is better, falls below it by as much); where the f = 0
mean is worse than a random classifier's value (its two background samples differ by chance),
that value is the level instead. The *fall-off
fraction* f* is where the scan, read from large f down, stops being better than random: the
margin over random is interpolated linearly in log f between the last fraction that is and
the first that is not. Without an f = 0 point the metric's value for a random classifier
(``RANDOM_LEVEL``) is the level, with no error of its own.

The interval comes from resampling the seeds with replacement (the same seeds at every
fraction: a seed's samples are nested across f) and reading f* off each resampled curve; the
16th and 84th percentiles bracket 68%. f* outside the scan is reported as a bound: ``below``
(the curve never reaches random above the smallest nonzero fraction) or ``above`` (it is
random everywhere).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

__all__ = ["RANDOM_LEVEL", "FallOff", "falloff_fraction"]


def _standard_error(values: npt.NDArray[np.float64]) -> float:
    return float(np.std(values, ddof=1) / math.sqrt(values.size)) if values.size > 1 else 0.0


RANDOM_LEVEL = {"auc": 0.5, "max_sic": 1.0, "fpr_at_tpr_0.5": 0.5}
"""A random classifier's value of each metric (the level without an f = 0 point)."""

Bound = Literal["", "below", "above"]


@dataclass(frozen=True)
class FallOff:
    """f* of one scan."""

    fraction: float
    """f*, or the scan's end it lies beyond (see ``bound``)."""
    low: float
    """16th percentile of f* over seed resamples."""
    high: float
    """84th percentile of f* over seed resamples."""
    bound: Bound
    """'' (inside the scan), 'below' (f* < ``fraction``, the smallest nonzero f) or 'above'
    (f* > ``fraction``, the largest f)."""
    level: float
    """The random level the curve was compared with."""


def _crossing(
    log_f: npt.NDArray[np.float64], margin: npt.NDArray[np.float64]
) -> tuple[float, Bound]:
    """Walk down from the largest fraction while the margin over random stays positive."""
    better = margin > 0
    if not better[-1]:
        return float(np.exp(log_f[-1])), "above"
    index = len(margin) - 1
    while index > 0 and better[index - 1]:
        index -= 1
    if index == 0:
        return float(np.exp(log_f[0])), "below"
    # Linear in log f between the last point at random (index - 1) and the first above it.
    a, b = margin[index - 1], margin[index]
    t = 0.0 if b == a else -a / (b - a)
    return float(np.exp(log_f[index - 1] + t * (log_f[index] - log_f[index - 1]))), ""


def falloff_fraction(
    fractions: npt.ArrayLike,
    values: npt.ArrayLike,
    *,
    metric: str = "auc",
    higher_is_better: bool = True,
    sigmas: float = 2.0,
    resamples: int = 200,
    seed: int = 0,
) -> FallOff:
    """f* of a scan (module docstring).

    Args:
        fractions: the scanned signal fractions, shape (F,), 0 allowed.
        values: the metric, shape (F, seeds); NaN where a seed has no value.
        metric: picks the random level when the scan has no f = 0 point.
        higher_is_better: False for a metric like the FPR at fixed TPR.
        sigmas: how far above the no-signal spread (in standard errors of the mean) a point
            must be to count as better than random.
        resamples: seed resamples behind the interval.
        seed: of the resampling.
    """
    f = np.asarray(fractions, dtype=np.float64)
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 2 or v.shape[0] != f.shape[0]:
        raise ValueError(f"values must be (fractions, seeds) = ({f.size}, S), got {v.shape}")
    if np.any(f < 0) or np.any(~np.isfinite(f)):
        raise ValueError("fractions must be finite and non-negative")
    order = np.argsort(f)
    f, v = f[order], v[order]
    sign = 1.0 if higher_is_better else -1.0
    zero = f == 0
    scan = ~zero
    if scan.sum() < 1:
        raise ValueError("the scan needs at least one nonzero fraction")
    log_f = np.log(f[scan])

    def margin_of(sample: npt.NDArray[np.float64]) -> tuple[npt.NDArray[np.float64], float]:
        """Per nonzero fraction: how far the seed mean is better than random, minus
        ``sigmas`` combined standard errors; and the random level."""
        if zero.any():
            null = sample[zero].ravel()
            null = null[np.isfinite(null)]
            centre = float(np.mean(null)) if null.size else math.nan
            null_se = _standard_error(null)
            known = RANDOM_LEVEL.get(metric)
            if known is not None and sign * (known - centre) > 0:
                # A no-signal scan worse than a random classifier (its two background pools
                # differ by chance): random is the level to beat.
                centre = known
        else:
            known = RANDOM_LEVEL.get(metric)
            if known is None:
                raise ValueError(f"no f = 0 point and no random level known for metric {metric!r}")
            centre, null_se = known, 0.0
        rows = sample[scan]
        margins = np.full(rows.shape[0], -np.inf)
        for i, row in enumerate(rows):
            finite = row[np.isfinite(row)]
            if finite.size == 0 or not math.isfinite(centre):
                continue  # a fraction without any value counts as random
            spread = math.hypot(_standard_error(finite), null_se)
            margins[i] = sign * (float(np.mean(finite)) - centre) - sigmas * spread
        return margins, centre

    margins, level = margin_of(v)
    fraction, bound = _crossing(log_f, margins)
    rng = np.random.default_rng(seed)
    seeds = v.shape[1]
    draws = []
    for _ in range(resamples if seeds > 1 else 0):
        pick = rng.integers(0, seeds, size=seeds)
        draws.append(_crossing(log_f, margin_of(v[:, pick])[0])[0])
    if draws:
        low, high = (float(x) for x in np.percentile(draws, [16, 84]))
        low, high = min(low, fraction), max(high, fraction)
    else:
        low = high = fraction
    return FallOff(fraction, low, high, bound, level)
