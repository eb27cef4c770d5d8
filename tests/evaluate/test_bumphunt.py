"""The CWoLa bump hunt on a toy m_jj spectrum: a classifier cut raises the significance of a
planted resonance, background alone stays insignificant, and missing fits are NaN."""

from __future__ import annotations

import json
import logging
import math

import numpy as np
import pytest

from distributed_clr.config.schema import BumpHuntConfig, EvaluateConfig
from distributed_clr.errors import UserError
from distributed_clr.evaluate.bumphunt import bump_hunt, mjj_bins

CONFIG = EvaluateConfig()
SQRT_S = CONFIG.bumphunt.sqrt_s
TRUE_PARAMS = {"log_p0": 0.0, "p1": 10.0, "p2": 5.0, "p3": 0.0}


def sample_dijet(n: int, low: float, high: float, rng: np.random.Generator) -> np.ndarray:
    """m_jj [GeV] from the dijet density with TRUE_PARAMS, by inverse transform on a grid."""
    grid = np.linspace(low, high, 20_001)
    x = grid / SQRT_S
    density = (1 - x) ** TRUE_PARAMS["p1"] / x ** TRUE_PARAMS["p2"]
    cdf = np.r_[0.0, np.cumsum(0.5 * (density[1:] + density[:-1]))]
    return np.interp(rng.uniform(size=n), cdf / cdf[-1], grid)


def resonance_toy(n_signal: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """60k dijet-like background events in [2.6, 4.4] TeV and a 3.5 TeV resonance (width
    100 GeV); two features, N(0, 1) for background (independent of m_jj) and N(3, 1) for signal."""
    rng = np.random.default_rng(seed)
    n_background = 60_000
    mjj = np.r_[
        sample_dijet(n_background, 2600.0, 4400.0, rng), rng.normal(3500.0, 100.0, n_signal)
    ]
    x = rng.normal(size=(len(mjj), 2))
    x[n_background:] += 3.0
    folds = rng.integers(0, 5, len(mjj))
    return mjj, x, folds


def test_bump_hunt_classifier_cut_raises_the_significance() -> None:
    mjj, x, folds = resonance_toy(n_signal=250, seed=0)
    result = bump_hunt(
        mjj, x, folds, (3300.0, 3700.0), 500.0, "lct", CONFIG, seed=0, bin_width=100.0
    )
    no_cut, *cuts = result.cuts
    assert no_cut.efficiency == 1.0
    assert no_cut.n_selected == len(result.event_index) == len(result.scores)
    assert ((mjj[result.event_index] >= 2800) & (mjj[result.event_index] < 4200)).all()
    assert np.isfinite(result.scores).all()
    assert no_cut.observed == int(((result.mjj >= 3300) & (result.mjj < 3700)).sum())
    assert no_cut.significance_with_uncertainty < 3.0  # hidden in the bare spectrum
    for z in ("significance", "significance_with_uncertainty"):
        best = max(getattr(cut, z) for cut in cuts)
        assert best > getattr(no_cut, z) + 3.0
        assert best > 5.0
    assert cuts[-1].n_selected == pytest.approx(0.01 * no_cut.n_selected, abs=2)
    summary = json.loads(json.dumps(result.to_dict(), allow_nan=False))
    assert len(summary["cuts"]) == 3


@pytest.mark.parametrize("sideband_width", [500.0, 200.0])
def test_bump_hunt_background_only_is_not_significant(sideband_width: float) -> None:
    mjj, x, folds = resonance_toy(n_signal=0, seed=1)
    # 100 GeV bins: with 200 GeV sidebands, two bins per side and a 3-parameter fit.
    result = bump_hunt(
        mjj, x, folds, (3300.0, 3700.0), sideband_width, "lct", CONFIG, seed=0, bin_width=100.0
    )
    for cut in result.cuts:
        assert cut.fit is not None
        assert cut.fit.n_params == (4 if sideband_width == 500.0 else 3)
        assert abs(cut.significance_with_uncertainty) < 2.0, cut.to_dict()
        # Z with B taken as known ignores the fit's uncertainty: over 30 such toys its spread is
        # 1.8 (the profiled Z's 1.0), so only the profiled Z is held to closure.
        assert abs(cut.significance) < 4.0, cut.to_dict()
        spread = math.sqrt(cut.expected + cut.expected_uncertainty**2)
        assert abs(cut.observed - cut.expected) < 3 * spread, cut.to_dict()
        if sideband_width == 200.0:  # a long extrapolation from two bins per side
            assert cut.expected_uncertainty > math.sqrt(cut.expected)


def test_bump_hunt_without_enough_events_reports_nan(caplog: pytest.LogCaptureFixture) -> None:
    rng = np.random.default_rng(3)
    mjj = rng.uniform(2800.0, 4200.0, 300)
    x = rng.normal(size=(300, 2))
    folds = rng.integers(0, 3, 300)
    with caplog.at_level(logging.WARNING, logger="distributed_clr.evaluate.bumphunt"):
        result = bump_hunt(mjj, x, folds, (3300.0, 3700.0), 500.0, "lct", CONFIG, seed=0)
    tight = result.cuts[-1]  # 3 events left: no fit
    assert tight.fit is None
    assert math.isnan(tight.significance)
    assert math.isnan(tight.expected)
    assert math.isnan(tight.significance_with_uncertainty)
    assert np.isnan(tight.expected_counts).all()
    assert "B and Z are NaN" in caplog.text
    assert (
        json.loads(json.dumps(result.to_dict(), allow_nan=False))["cuts"][2]["significance"] is None
    )


def test_bump_hunt_refuses_bad_settings() -> None:
    mjj = np.linspace(2900, 4100, 100)
    x = np.zeros((100, 1))
    folds = np.arange(100) % 2
    with pytest.raises(ValueError, match="low < high"):
        bump_hunt(mjj, x, folds, (3700.0, 3300.0), 200.0, "lct", CONFIG, 0)
    with pytest.raises(ValueError, match="must agree"):
        bump_hunt(mjj, x[:50], folds, (3300.0, 3700.0), 200.0, "lct", CONFIG, 0)
    with pytest.raises(ValueError, match="efficiencies"):
        bump_hunt(mjj, x, folds, (3300.0, 3700.0), 200.0, "lct", CONFIG, 0, (0.0,))
    with pytest.raises(ValueError, match="both the signal region"):
        bump_hunt(mjj + 2000, x, folds, (3300.0, 3700.0), 200.0, "lct", CONFIG, 0)


def test_mjj_bins_put_the_signal_region_on_bin_edges() -> None:
    edges = mjj_bins((3300.0, 3700.0), 250.0, 100.0)
    assert 3300.0 in edges
    assert 3700.0 in edges
    assert edges[0] == 3050.0
    assert edges[-1] == 3950.0
    assert np.diff(edges).max() <= 100.0 + 1e-9


def test_bump_hunt_takes_sqrt_s_from_its_config() -> None:
    mjj = np.linspace(2900, 4100, 100)
    x = np.zeros((100, 1))
    folds = np.arange(100) % 2
    low_energy = CONFIG.model_copy(
        update={"bumphunt": BumpHuntConfig(signal_region=(1000.0, 2000.0), sqrt_s=3000.0)}
    )
    with pytest.raises(UserError, match=r"below sqrt\(s\) = 3800 GeV"):
        bump_hunt(mjj, x, folds, (3300.0, 3700.0), 200.0, "lct", CONFIG, 0, sqrt_s=3800.0)
    with pytest.raises(UserError, match=r"below sqrt\(s\) = 3000 GeV"):
        bump_hunt(mjj, x, folds, (2300.0, 2700.0), 400.0, "lct", low_energy, 0)


def test_cuts_keep_the_same_fraction_of_every_fold() -> None:
    """Each fold's classifier has its own offset (its training folds' SR fraction); ranking
    within folds removes it, so a cut cannot select whole folds."""
    from distributed_clr.evaluate.bumphunt import fold_ranks

    rng = np.random.default_rng(0)
    folds = rng.integers(0, 5, 10_000)
    scores = 0.01 * rng.normal(size=10_000) + 0.05 * folds  # offsets dominate the spread
    ranks = fold_ranks(scores, folds)
    assert ranks.min() > 0
    assert ranks.max() == 1.0
    kept = ranks > 0.9
    per_fold = np.bincount(folds[kept], minlength=5) / np.bincount(folds, minlength=5)
    np.testing.assert_allclose(per_fold, 0.1, atol=0.002)
    assert np.bincount(folds[scores > np.quantile(scores, 0.9)], minlength=5)[:4].sum() == 0
    for k in range(5):  # the order within a fold is the classifier's
        members = folds == k
        assert (np.argsort(ranks[members]) == np.argsort(scores[members])).all()
