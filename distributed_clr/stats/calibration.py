"""Calibrating a test statistic with toys, and the discovery power of a test.

* ``chi2_calibration(t0)``: the null toys' statistics against a chi2 distribution: the degrees
  of freedom by the method of moments (mean of t0, the definition used for NPLM) and by maximum
  likelihood, and the Kolmogorov-Smirnov p-value of t0 against chi2(mean). The KS p-value uses
  degrees of freedom fitted on the same toys, so it is conservative (a true chi2 passes more
  often than the nominal rate).
* ``p_values(t, t0, dof)``: the asymptotic p-value chi2(dof).sf(t) and the empirical one,
  (1 + #{t0 >= t}) / (1 + N0), which can never be below 1 / (1 + N0): with N0 null toys the
  empirical significance is capped at Phi^-1(1 - 1 / (1 + N0)) (2.6 for 100 toys).
* ``significance(p)`` and its inverse ``gaussian_tail(z)``: Z = Phi^-1(1 - p), finite for
  every p in [0, 1] (p is floored at ``P_FLOOR`` = 1e-300, Z = 37.05).
* ``power(z, thresholds)``: the fraction of toys with Z > Z_alpha and its Clopper-Pearson
  interval (68% by default).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import stats

__all__ = [
    "POWER_LEVEL",
    "chi2_calibration",
    "clopper_pearson",
    "gaussian_tail",
    "p_values",
    "power",
    "significance",
]

POWER_LEVEL = 0.68
"""Confidence level of the power intervals."""
P_FLOOR = 1e-300
"""The smallest p-value turned into a significance (Z = 37.0)."""


def _finite(values: npt.ArrayLike, what: str) -> npt.NDArray[np.float64]:
    array = np.asarray(values, dtype=np.float64).ravel()
    if not len(array):
        raise ValueError(f"{what} is empty")
    if not np.isfinite(array).all():
        raise ValueError(f"{what} holds {int((~np.isfinite(array)).sum())} non-finite values")
    return array


def chi2_calibration(t0: npt.ArrayLike) -> dict[str, Any]:
    """Degrees of freedom of the null distribution and how well chi2 describes it.

    Returns:
        {"toys", "dof" (mean of t0), "dof_fit" (maximum likelihood, location 0, scale 1, on
        the positive t0 only: biased low when some t0 are negative),
        "dispersion" (var(t0) / 2 dof), "ks_pvalue" (t0 against chi2(dof)), "t0_mean",
        "t0_std", "t0_median"}; with fewer than two toys, or a non-positive mean, the fit, the
        dispersion and the KS p-value are NaN.
    """
    values = _finite(t0, "the null statistics t0")
    dof = float(values.mean())
    out: dict[str, Any] = {
        "toys": len(values),
        "dof": dof,
        "dof_fit": math.nan,
        "dispersion": math.nan,
        "ks_pvalue": math.nan,
        "t0_mean": dof,
        "t0_std": float(values.std(ddof=1)) if len(values) > 1 else math.nan,
        "t0_median": float(np.median(values)),
    }
    if len(values) < 2 or not dof > 0:
        return out
    out["dispersion"] = float(values.var(ddof=1) / (2.0 * dof))
    positive = values[values > 0]
    if len(positive) >= 2:
        fitted, _, _ = stats.chi2.fit(positive, dof, floc=0, fscale=1)
        out["dof_fit"] = float(fitted)
    out["ks_pvalue"] = float(stats.kstest(values, stats.chi2(dof).cdf).pvalue)
    return out


def p_values(
    t: npt.ArrayLike, t0: npt.ArrayLike, dof: float
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """(asymptotic, empirical) p-values of each t (module docstring); NaN for a NaN t."""
    values = np.asarray(t, dtype=np.float64)
    null = np.sort(_finite(t0, "the null statistics t0"))
    asymptotic = stats.chi2.sf(values, dof) if dof > 0 else np.full(values.shape, math.nan)
    at_least = len(null) - np.searchsorted(null, values, side="left")
    empirical = np.where(np.isnan(values), np.nan, (1.0 + at_least) / (1.0 + len(null)))
    return np.asarray(asymptotic, dtype=np.float64), empirical.astype(np.float64)


def significance(p: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Z = Phi^-1(1 - p), elementwise (NaN stays NaN)."""
    values = np.asarray(p, dtype=np.float64)
    return np.asarray(stats.norm.isf(np.clip(values, P_FLOOR, 1.0)), dtype=np.float64)


def gaussian_tail(z: float) -> float:
    """P(Z > z) of a standard normal: the p-value of significance ``z`` (the inverse of
    ``significance``)."""
    return float(stats.norm.sf(z))


def clopper_pearson(k: int, n: int, level: float = POWER_LEVEL) -> tuple[float, float]:
    """The Clopper-Pearson interval of a binomial fraction k / n at ``level``."""
    if n <= 0 or not 0 <= k <= n:
        raise ValueError(f"need 0 <= k <= n and n > 0, got k={k}, n={n}")
    alpha = 1.0 - level
    low = 0.0 if k == 0 else float(stats.beta.ppf(alpha / 2, k, n - k + 1))
    high = 1.0 if k == n else float(stats.beta.ppf(1 - alpha / 2, k + 1, n - k))
    return low, high


def power(
    z: npt.ArrayLike, thresholds: Sequence[float], level: float = POWER_LEVEL
) -> dict[str, dict[str, float]]:
    """{"<Z_alpha>": {"power", "low", "high", "toys"}}: the fraction of ``z`` above each
    threshold with its Clopper-Pearson interval (NaN toys are not counted)."""
    values = np.asarray(z, dtype=np.float64)
    values = values[~np.isnan(values)]
    out: dict[str, dict[str, float]] = {}
    for threshold in thresholds:
        if not len(values):
            out[f"{threshold:g}"] = {
                "power": math.nan, "low": math.nan, "high": math.nan, "toys": 0
            }  # fmt: skip
            continue
        k = int((values > threshold).sum())
        low, high = clopper_pearson(k, len(values), level)
        out[f"{threshold:g}"] = {
            "power": k / len(values),
            "low": low,
            "high": high,
            "toys": len(values),
        }
    return out
