"""CWoLa: sample construction, the idealised scan on a planted signal, the dijet fit, the bump
hunt on a toy m_jj spectrum."""

from __future__ import annotations

import json
import logging
import math
from typing import Any

import numpy as np
import pytest

from distributed_clr.config.schema import EvaluateConfig
from distributed_clr.evaluate import classifiers
from distributed_clr.evaluate.cwola import (
    SQRT_S,
    bump_hunt,
    dijet_expected_counts,
    fit_dijet_function,
    idealised_samples,
    idealised_scan,
    local_significance,
    max_sample_size,
    mjj_bins,
    signal_count,
)

CONFIG = EvaluateConfig()

# ------------------------------------------------------------------------------------------------
# samples


@pytest.mark.parametrize("fraction", [0.0, 0.001, 0.1, 0.5, 1.0])
def test_idealised_samples_sizes_and_disjoint_background(fraction: float) -> None:
    n = 1000
    s1, s2_bkg, s2_sig = idealised_samples(3000, 1200, fraction, n, np.random.default_rng(0))
    n_sig = signal_count(fraction, n)
    assert len(s1) == n
    assert len(s2_sig) == n_sig == round(fraction * n)
    assert len(s2_bkg) + len(s2_sig) == n
    assert np.intersect1d(s1, s2_bkg).size == 0  # no background event in both samples
    for indices, pool in ((s1, 3000), (s2_bkg, 3000), (s2_sig, 1200)):
        assert len(np.unique(indices)) == len(indices)
        assert indices.min(initial=0) >= 0
        assert indices.max(initial=0) < pool
    if fraction == 1.0:
        assert len(s2_bkg) == 0
    if fraction == 0.0:
        assert len(s2_sig) == 0


def test_idealised_samples_are_seeded_and_nested_across_fractions() -> None:
    a = idealised_samples(500, 100, 0.1, 200, np.random.default_rng(4))
    b = idealised_samples(500, 100, 0.1, 200, np.random.default_rng(4))
    for left, right in zip(a, b, strict=True):
        np.testing.assert_array_equal(left, right)
    richer = idealised_samples(500, 100, 0.3, 200, np.random.default_rng(4))
    np.testing.assert_array_equal(richer[0], a[0])  # same sample 1
    assert set(a[2].tolist()) <= set(richer[2].tolist())  # signal of f = 0.1 within f = 0.3


def test_idealised_samples_refuse_small_pools() -> None:
    with pytest.raises(ValueError, match=r"need 190 background events .* the pool has 150"):
        idealised_samples(150, 100, 0.1, 100, np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"need 50 signal events; the pool has 20"):
        idealised_samples(1000, 20, 0.5, 100, np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        idealised_samples(1000, 20, 1.5, 100, np.random.default_rng(0))


def test_max_sample_size_is_the_largest_feasible() -> None:
    # f = 0 needs 2n background events; f = 0.1 needs round(0.1 n) <= 50 signal events.
    assert max_sample_size(1000, 50, [0.0, 0.1]) == 500
    assert max_sample_size(1000, 30, [0.0, 0.1]) == 304  # 0.1 * 304 rounds to 30
    assert max_sample_size(1000, 80, [0.5, 1.0]) == 80  # pure signal sample 2
    for pools, fractions in (((1000, 30), [0.0, 0.1]), ((777, 13), [0.01, 0.2, 0.7])):
        n = max_sample_size(*pools, fractions)

        def feasible(size: int, pools: tuple[int, int] = pools, fractions: Any = fractions) -> bool:
            try:
                for f in fractions:
                    idealised_samples(*pools, f, size, np.random.default_rng(0))
            except ValueError:
                return False
            return True

        assert feasible(n)
        assert not feasible(n + 1)
    with pytest.raises(ValueError, match="too small"):
        max_sample_size(1, 0, [0.0])


# ------------------------------------------------------------------------------------------------
# the idealised scan

DIMS = 64


def planted_signal(n_background: int, n_signal: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Background N(0, 1) in 64 dims; signal shifted by 1 in two of them. Many dims keep a
    classifier trained on noise (f = 0) close to random for the true labels."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n_background + n_signal, DIMS)).astype(np.float32)
    x[n_background:, :2] += 1.0
    return x, np.r_[np.zeros(n_background), np.ones(n_signal)].astype(np.int8)


def test_scan_finds_planted_signal_and_nothing_at_f_zero() -> None:
    x_train, y_train = planted_signal(40_000, 3_000, seed=0)
    x_test, y_test = planted_signal(4_000, 4_000, seed=1)
    seeds = [0, 1, 2, 3]
    result = idealised_scan(x_train, y_train, x_test, y_test, [0.0, 0.1], "lct", CONFIG, seeds)
    assert result.n_per_sample == 20_000
    assert len(result.points) == 8
    assert result.scores.shape == (8, 8_000)
    auc = {(p.fraction, p.seed): p.metrics["auc"] for p in result.points}
    for seed in seeds:
        assert auc[0.1, seed] > 0.7
        assert abs(auc[0.0, seed] - 0.5) < 0.1
    stats = result.aggregated()
    assert abs(stats[0.0]["auc"]["mean"] - 0.5) < 0.05
    assert stats[0.1]["auc"]["n"] == 4
    assert stats[0.1]["max_sic"]["mean"] > stats[0.0]["max_sic"]["mean"] + 0.3
    assert [p.n_signal for p in result.points] == [0] * 4 + [2_000] * 4

    table = result.scores_table()
    assert table.num_rows == 8 * 8_000
    assert table.column_names == ["event_index", "score", "seed", "fraction"]
    assert table.column("event_index").to_numpy()[8_000:8_003].tolist() == [0, 1, 2]
    summary = json.loads(json.dumps(result.to_dict(), allow_nan=False))
    assert summary["aggregated"]["0.1"]["auc"]["n"] == 4
    mean_std = result.mean_std()
    assert set(mean_std[0.1]) == {"auc", "max_sic", "fpr_at_tpr_0.5"}


def test_scan_never_trains_on_test_events_nor_shares_background(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Column 0 carries an event id; a stand-in classifier checks every training set."""
    rng = np.random.default_rng(2)
    n_train, n_test = 3_000, 1_000
    x_train = np.c_[np.arange(n_train), rng.normal(size=n_train)]
    y_train = (rng.uniform(size=n_train) < 0.2).astype(np.int64)
    x_test = np.c_[n_train + np.arange(n_test), rng.normal(size=n_test)]
    y_test = rng.integers(0, 2, n_test)
    calls = []

    def recorder(
        name: str, x: np.ndarray, target: np.ndarray, x_score: np.ndarray, *a: Any, **k: Any
    ) -> np.ndarray:
        ids = x[:, 0].astype(int)
        sample1, sample2 = ids[target == 0], ids[target == 1]
        assert np.intersect1d(sample1, sample2).size == 0
        assert len(np.unique(ids)) == len(ids)
        assert ids.max() < n_train  # only training events
        assert (y_train[sample1] == 0).all()
        np.testing.assert_array_equal(x_score[:, 0], x_test[:, 0])  # scores the test set
        calls.append((len(sample1), len(sample2), int(y_train[sample2].sum())))
        return rng.uniform(size=len(x_score))

    monkeypatch.setattr(classifiers, "fit_predict", recorder)
    result = idealised_scan(
        x_train, y_train, x_test, y_test, [0.0, 0.05, 1.0], "fcn", CONFIG, [0, 1]
    )
    n = result.n_per_sample
    assert n == max_sample_size(int((y_train == 0).sum()), int(y_train.sum()), [0.0, 0.05, 1.0])
    assert [c[2] for c in calls] == [0, 0, signal_count(0.05, n), signal_count(0.05, n), n, n]
    assert all(c[0] == c[1] == n for c in calls)


def test_scan_refuses_unlabelled_training_events() -> None:
    x = np.zeros((10, 2))
    y = np.r_[np.zeros(5), -np.ones(5)]
    with pytest.raises(ValueError, match="true labels 0/1"):
        idealised_scan(x, y, x, y, [0.1], "lct", CONFIG, [0])


# ------------------------------------------------------------------------------------------------
# the dijet fit and significance

TRUE_PARAMS = {"log_p0": 0.0, "p1": 10.0, "p2": 5.0, "p3": 0.0}


def test_local_significance_by_hand() -> None:
    assert local_significance(100, 100.0) == 0.0
    assert local_significance(0, 8.0) == pytest.approx(-4.0)  # -sqrt(2 B)
    assert local_significance(10, 5.0) == pytest.approx(math.sqrt(2 * (10 * math.log(2) - 5)))
    assert local_significance(5, 10.0) < 0
    assert local_significance(10_100, 10_000.0) == pytest.approx(1.0, abs=0.01)  # ~ S / sqrt(B)
    assert math.isnan(local_significance(3, math.nan))
    assert math.isnan(local_significance(3, 0.0))
    # With an uncertain background: smaller, tending to the known-B value as sigma -> 0.
    assert local_significance(150, 100.0, 10.0) < local_significance(150, 100.0)
    assert local_significance(150, 100.0, 1e-4) == pytest.approx(
        local_significance(150, 100.0), rel=1e-6
    )
    # Large B: Z ~ (N - B) / sqrt(B + sigma^2).
    assert local_significance(10_200, 10_000.0, 100.0) == pytest.approx(2 / math.sqrt(2), rel=0.02)
    assert local_significance(0, 8.0, 2.0) < 0
    assert math.isnan(local_significance(3, 1.0, -1.0))


def test_fit_recovers_the_dijet_function_from_sidebands() -> None:
    """Asimov data (counts = expectation) of a 3-parameter dijet function: the 3- and
    4-parameter fits to the sidebands predict the signal region exactly."""
    edges = mjj_bins((3300.0, 3700.0), 800.0, 100.0)
    scale = 2e5 / dijet_expected_counts(edges, TRUE_PARAMS).sum()
    params = {**TRUE_PARAMS, "log_p0": math.log(scale)}
    truth = dijet_expected_counts(edges, params)
    sr = (edges[:-1] >= 3300) & (edges[1:] <= 3700)
    for n_params in (3, 4):
        fit = fit_dijet_function(edges, truth, ~sr, n_params)
        assert fit.converged
        assert fit.expected(edges)[sr].sum() == pytest.approx(truth[sr].sum(), rel=1e-4)
        assert fit.deviance == pytest.approx(0.0, abs=1e-3)
        assert fit.ndf == int((~sr).sum()) - n_params
    three = fit_dijet_function(edges, truth, ~sr, 3)
    assert three.params["p1"] == pytest.approx(10.0, rel=1e-2)
    assert three.params["p2"] == pytest.approx(5.0, rel=1e-2)
    # A power law cannot describe it.
    assert fit_dijet_function(edges, truth, ~sr, 2).deviance > 1.0
    with pytest.raises(ValueError, match="needs >= 5 bins"):
        fit_dijet_function(edges[:5], truth[:4], np.ones(4, dtype=bool), 4)


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
    result = bump_hunt(mjj, x, folds, (3300.0, 3700.0), 500.0, "lct", CONFIG, seed=0)
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
    assert result.scores_table().num_rows == len(result.event_index)


@pytest.mark.parametrize("sideband_width", [500.0, 200.0])
def test_bump_hunt_background_only_is_not_significant(sideband_width: float) -> None:
    mjj, x, folds = resonance_toy(n_signal=0, seed=1)
    result = bump_hunt(mjj, x, folds, (3300.0, 3700.0), sideband_width, "lct", CONFIG, seed=0)
    for cut in result.cuts:
        assert cut.fit is not None
        assert cut.fit.n_params == (4 if sideband_width == 500.0 else 3)
        assert abs(cut.significance_with_uncertainty) < 2.0, cut.to_dict()
        assert abs(cut.significance) < 3.0, cut.to_dict()
        assert cut.expected == pytest.approx(cut.observed, rel=0.25)
        if sideband_width == 200.0:  # a long extrapolation from two bins per side
            assert cut.expected_uncertainty > math.sqrt(cut.expected)


def test_fit_uncertainty_matches_the_spread_of_refits() -> None:
    """The propagated uncertainty of B agrees with the scatter of B over Poisson replicas."""
    edges = mjj_bins((3300.0, 3700.0), 500.0, 100.0)
    sr = (edges[:-1] >= 3300) & (edges[1:] <= 3700)
    scale = 2e4 / dijet_expected_counts(edges, TRUE_PARAMS).sum()
    truth = dijet_expected_counts(edges, {**TRUE_PARAMS, "log_p0": math.log(scale)})
    rng = np.random.default_rng(0)
    totals, sigmas = [], []
    for _ in range(60):
        fit = fit_dijet_function(edges, rng.poisson(truth), ~sr, 3)
        total, sigma = fit.expected_total(edges, sr)
        totals.append(total)
        sigmas.append(sigma)
    assert np.mean(totals) == pytest.approx(truth[sr].sum(), rel=0.01)
    assert np.std(totals) == pytest.approx(np.mean(sigmas), rel=0.3)


def test_bump_hunt_without_enough_events_reports_nan(caplog: pytest.LogCaptureFixture) -> None:
    rng = np.random.default_rng(3)
    mjj = rng.uniform(2800.0, 4200.0, 300)
    x = rng.normal(size=(300, 2))
    folds = rng.integers(0, 3, 300)
    with caplog.at_level(logging.WARNING, logger="distributed_clr.evaluate.cwola"):
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
