"""Toy calibration and discovery power (``stats.calibration``)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from distributed_clr.stats.calibration import (
    chi2_calibration,
    clopper_pearson,
    gaussian_tail,
    p_values,
    power,
    significance,
)


def test_chi2_calibration_recovers_the_degrees_of_freedom() -> None:
    t0 = stats.chi2(12).rvs(size=2000, random_state=np.random.default_rng(0))
    calibration = chi2_calibration(t0)
    assert calibration["dof"] == pytest.approx(12, rel=0.03)
    assert calibration["dof_fit"] == pytest.approx(12, rel=0.03)
    assert calibration["ks_pvalue"] > 0.01
    assert calibration["dispersion"] == pytest.approx(1.0, abs=0.1)
    # Half the spread around the same mean: a dispersion of 1/4.
    narrow = chi2_calibration(t0.mean() + (t0 - t0.mean()) / 2)
    assert narrow["dispersion"] == pytest.approx(calibration["dispersion"] / 4)
    # A shifted distribution is not chi2 with its own mean as dof.
    shifted = chi2_calibration(t0 + 20)
    assert shifted["ks_pvalue"] < 1e-6


def test_p_values_asymptotic_and_empirical() -> None:
    t0 = np.array([1.0, 2.0, 3.0, 4.0])
    asymptotic, empirical = p_values([2.0, 10.0, 0.0], t0, dof=3.0)
    np.testing.assert_allclose(asymptotic, stats.chi2(3).sf([2.0, 10.0, 0.0]))
    # (1 + #{t0 >= t}) / (1 + N0): 3 of 4 at or above 2; none above 10 (the cap); all above 0.
    np.testing.assert_allclose(empirical, [4 / 5, 1 / 5, 5 / 5])
    # A failed fit (NaN) is no evidence of anything.
    assert np.isnan(p_values([np.nan], t0, dof=3.0)).all()


def test_significance_is_the_one_sided_gaussian_quantile() -> None:
    np.testing.assert_allclose(
        significance([0.5, stats.norm.sf(2.0), stats.norm.sf(5.0)]), [0.0, 2.0, 5.0], atol=1e-9
    )
    assert np.isfinite(significance([0.0])[0])
    for z in (0.0, 1.0, 2.0, 3.0):
        assert significance([gaussian_tail(z)])[0] == pytest.approx(z, abs=1e-9)
    assert gaussian_tail(2.0) == pytest.approx(0.02275, abs=1e-5)


def test_clopper_pearson_bounds() -> None:
    # k = 0: the upper bound solves (1 - p)^n = alpha / 2.
    low, high = clopper_pearson(0, 10, 0.68)
    assert low == 0.0
    assert high == pytest.approx(1 - 0.16 ** (1 / 10))
    low, high = clopper_pearson(10, 10, 0.68)
    assert high == 1.0
    assert low == pytest.approx(0.16 ** (1 / 10))
    low, high = clopper_pearson(30, 100)
    assert low < 0.3 < high
    assert high - low < 0.11
    with pytest.raises(ValueError, match="0 <= k <= n"):
        clopper_pearson(3, 2)


def test_power_counts_toys_above_each_threshold() -> None:
    result = power([0.5, 1.5, 2.5, 3.5, np.nan], [1.0, 3.0])
    assert result["1"]["power"] == 0.75
    assert result["1"]["toys"] == 4
    assert result["3"]["power"] == 0.25
    assert result["3"]["low"] < 0.25 < result["3"]["high"]
