"""The dijet-function sideband fit: it recovers the function, its uncertainty is calibrated,
and it scales with the centre-of-mass energy."""

from __future__ import annotations

import math

import numpy as np
import pytest

from distributed_clr.stats import dijet_expected_counts, fit_dijet_function

SQRT_S = 13_000.0
TRUE_PARAMS = {"log_p0": 0.0, "p1": 10.0, "p2": 5.0, "p3": 0.0}


def test_fit_recovers_the_dijet_function_from_sidebands() -> None:
    """Asimov data (counts = expectation) of a 3-parameter dijet function: the 3- and
    4-parameter fits to the sidebands predict the signal region exactly."""
    edges = np.linspace(2500.0, 4500.0, 21)  # 100 GeV bins, the SR [3300, 3700] on edges
    scale = 2e5 / dijet_expected_counts(edges, TRUE_PARAMS, sqrt_s=SQRT_S).sum()
    params = {**TRUE_PARAMS, "log_p0": math.log(scale)}
    truth = dijet_expected_counts(edges, params, sqrt_s=SQRT_S)
    sr = (edges[:-1] >= 3300) & (edges[1:] <= 3700)
    for n_params in (3, 4):
        fit = fit_dijet_function(edges, truth, ~sr, n_params, sqrt_s=SQRT_S)
        assert fit.converged
        assert fit.expected(edges)[sr].sum() == pytest.approx(truth[sr].sum(), rel=1e-4)
        assert fit.deviance == pytest.approx(0.0, abs=1e-3)
        assert fit.ndf == int((~sr).sum()) - n_params
    three = fit_dijet_function(edges, truth, ~sr, 3, sqrt_s=SQRT_S)
    assert three.params["p1"] == pytest.approx(10.0, rel=1e-2)
    assert three.params["p2"] == pytest.approx(5.0, rel=1e-2)
    # A power law cannot describe it.
    assert fit_dijet_function(edges, truth, ~sr, 2, sqrt_s=SQRT_S).deviance > 1.0
    with pytest.raises(ValueError, match="needs >= 5 bins"):
        fit_dijet_function(edges[:5], truth[:4], np.ones(4, dtype=bool), 4, sqrt_s=SQRT_S)


def test_fit_uncertainty_matches_the_spread_of_refits() -> None:
    """The propagated uncertainty of B agrees with the scatter of B over Poisson replicas."""
    edges = np.linspace(2800.0, 4200.0, 15)  # 100 GeV bins, the SR [3300, 3700] on edges
    sr = (edges[:-1] >= 3300) & (edges[1:] <= 3700)
    scale = 2e4 / dijet_expected_counts(edges, TRUE_PARAMS, sqrt_s=SQRT_S).sum()
    truth = dijet_expected_counts(edges, {**TRUE_PARAMS, "log_p0": math.log(scale)}, sqrt_s=SQRT_S)
    rng = np.random.default_rng(0)
    totals, sigmas = [], []
    for _ in range(60):
        fit = fit_dijet_function(edges, rng.poisson(truth), ~sr, 3, sqrt_s=SQRT_S)
        total, sigma = fit.expected_total(edges, sr)
        totals.append(total)
        sigmas.append(sigma)
    assert np.mean(totals) == pytest.approx(truth[sr].sum(), rel=0.01)
    assert np.std(totals) == pytest.approx(np.mean(sigmas), rel=0.3)


@pytest.mark.parametrize("factor", [0.5, 3.0])
def test_sqrt_s_scales_the_mass(factor: float) -> None:
    """The dijet function depends on m_jj only through x = m_jj / sqrt(s): at sqrt(s) times k
    with every mass times k, the density per GeV is 1/k as large over bins k times as wide, so
    the expected counts are the same; so are the fit's predictions of the signal region."""
    edges = np.linspace(2500.0, 4500.0, 21)
    sr = (edges[:-1] >= 3300) & (edges[1:] <= 3700)
    params = {**TRUE_PARAMS, "log_p0": math.log(1e6)}
    truth = dijet_expected_counts(edges, params, sqrt_s=SQRT_S)
    scaled = {**params, "log_p0": params["log_p0"] - math.log(factor)}
    np.testing.assert_allclose(
        dijet_expected_counts(edges * factor, scaled, sqrt_s=SQRT_S * factor), truth, rtol=1e-10
    )
    counts = np.random.default_rng(1).poisson(truth)
    fit = fit_dijet_function(edges, counts, ~sr, 3, sqrt_s=SQRT_S)
    fit_scaled = fit_dijet_function(edges * factor, counts, ~sr, 3, sqrt_s=SQRT_S * factor)
    assert fit_scaled.converged
    np.testing.assert_allclose(fit_scaled.expected(edges * factor), fit.expected(edges), rtol=1e-5)
    assert fit_scaled.expected_total(edges * factor, sr) == pytest.approx(
        fit.expected_total(edges, sr), rel=1e-5
    )
    # Another sqrt(s) at the same masses is another function.
    assert not np.allclose(dijet_expected_counts(edges, params, sqrt_s=SQRT_S * factor), truth)
    with pytest.raises(ValueError, match="within"):
        fit_dijet_function(edges, counts, ~sr, 3, sqrt_s=4000.0)
    with pytest.raises(ValueError, match="sqrt_s"):
        dijet_expected_counts(edges, params, sqrt_s=0.0)
