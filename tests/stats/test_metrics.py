"""Metrics: agreement with sklearn, the minimum-background rule of SIC, hand-computed cases."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from sklearn import metrics as skm

from distributed_clr.stats.metrics import (
    aggregate,
    binary_metrics,
    json_safe,
    roc_curve,
    sic_curve,
)


def _random_scores(seed: int, n: int = 3000) -> tuple[np.ndarray, np.ndarray]:
    """Overlapping classes with many tied scores (rounded), so that ties are exercised."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    scores = np.round(rng.normal(size=n) + 0.8 * labels, 1)
    return labels, scores


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_roc_and_auc_agree_with_sklearn(seed: int) -> None:
    labels, scores = _random_scores(seed)
    fpr, tpr, thresholds = roc_curve(labels, scores)
    ref_fpr, ref_tpr, ref_thresholds = skm.roc_curve(labels, scores, drop_intermediate=False)
    np.testing.assert_allclose(fpr, ref_fpr, rtol=0, atol=1e-12)
    np.testing.assert_allclose(tpr, ref_tpr, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(thresholds, ref_thresholds)
    assert binary_metrics(labels, scores)["auc"] == pytest.approx(
        skm.roc_auc_score(labels, scores), abs=1e-12
    )


@pytest.mark.parametrize("min_background", [1, 20, 200])
def test_sic_curve_matches_brute_force_from_sklearn(min_background: int) -> None:
    labels, scores = _random_scores(3)
    fpr, tpr, _ = skm.roc_curve(labels, scores, drop_intermediate=False)
    n_background = int((labels == 0).sum())
    keep = np.round(fpr * n_background) >= min_background
    got_tpr, got_sic = sic_curve(labels, scores, min_background)
    np.testing.assert_allclose(got_tpr, tpr[keep])
    np.testing.assert_allclose(got_sic, tpr[keep] / np.sqrt(fpr[keep]))
    assert binary_metrics(labels, scores, min_background)["max_sic"] == pytest.approx(
        np.max(tpr[keep] / np.sqrt(fpr[keep]))
    )


def _three_cuts() -> tuple[np.ndarray, np.ndarray]:
    """100 signal and 100 background events at three score values:

    score >= 3: 40 signal,  5 background -> TPR 0.4, FPR 0.05, SIC 0.4 / sqrt(0.05) = 1.789
    score >= 2: 70 signal, 25 background -> TPR 0.7, FPR 0.25, SIC 0.7 / 0.5 = 1.4
    score >= 1: everything               -> SIC 1
    """
    signal = np.r_[np.full(40, 3.0), np.full(30, 2.0), np.full(30, 1.0)]
    background = np.r_[np.full(5, 3.0), np.full(20, 2.0), np.full(75, 1.0)]
    return np.r_[np.ones(100), np.zeros(100)], np.r_[signal, background]


def test_max_sic_excludes_cuts_resting_on_few_background_events() -> None:
    labels, scores = _three_cuts()
    unrestricted = binary_metrics(labels, scores, min_background=5)["max_sic"]
    assert unrestricted == pytest.approx(0.4 / math.sqrt(0.05))
    # The tightest cut passes only 5 background events: with the default rule it is not used.
    assert binary_metrics(labels, scores, min_background=20)["max_sic"] == pytest.approx(1.4)
    tpr, sic = sic_curve(labels, scores, min_background=20)
    np.testing.assert_allclose(tpr, [0.7, 1.0])
    np.testing.assert_allclose(sic, [1.4, 1.0])
    # No cut passes 101 of the 100 background events: nothing to report.
    assert math.isnan(binary_metrics(labels, scores, min_background=101)["max_sic"])
    assert sic_curve(labels, scores, min_background=101)[0].size == 0


def _hand_case() -> tuple[np.ndarray, np.ndarray]:
    signal = [10.0, 9.0, 8.0, 7.0]
    background = [9.5, 8.5, 6.0, 5.0, 4.0, 3.0, 2.0, 1.0, 0.0, -1.0]
    return np.r_[np.ones(4), np.zeros(10)], np.r_[signal, background]


def test_fpr_and_rejection_at_fixed_tpr_by_hand() -> None:
    labels, scores = _hand_case()
    # Tightest cut with TPR >= 0.5 is score >= 9: signal 10 and 9, background 9.5 -> FPR 0.1.
    strict = binary_metrics(labels, scores, min_background=1, tprs=(0.2, 0.5, 0.7))
    assert strict["fpr_at_tpr_0.5"] == pytest.approx(0.1)
    assert strict["rejection_at_tpr_0.5"] == pytest.approx(10.0)
    assert strict["fpr_at_tpr_0.2"] == 0.0  # score >= 10 passes no background
    assert math.isnan(strict["rejection_at_tpr_0.2"])  # never infinite
    assert strict["fpr_at_tpr_0.7"] == pytest.approx(0.2)  # all signal needs score >= 7
    assert strict["auc"] == pytest.approx(35 / 40)
    assert strict["n_signal"] == 4
    assert strict["n_background"] == 10
    # With the default rule one background event is too few to quote a rejection.
    default = binary_metrics(labels, scores)
    assert default["fpr_at_tpr_0.5"] == pytest.approx(0.1)
    assert math.isnan(default["rejection_at_tpr_0.5"])
    assert set(default) == {
        "auc",
        "max_sic",
        "n_signal",
        "n_background",
        *(f"{kind}_at_tpr_{t}" for kind in ("fpr", "rejection") for t in (0.2, 0.3, 0.5, 0.7)),
    }


@pytest.mark.parametrize(
    ("labels", "scores", "match"),
    [
        ([0, 1, 2], [0.1, 0.2, 0.3], "0 .background. or 1"),
        ([0, 0, 0], [0.1, 0.2, 0.3], "no signal"),
        ([1, 1], [0.1, 0.2], "no background"),
        ([0, 1, 1], [0.1, 0.2], "differ in length"),
        ([0, 1, 1], [0.1, float("nan"), 0.3], "NaN/inf values .first at index 1"),
        ([0, 1], [0.1, float("inf")], "NaN/inf"),
        ([[0, 1]], [[0.1, 0.2]], "1-D"),
    ],
)
def test_bad_input_raises(labels: list[Any], scores: list[Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        binary_metrics(labels, scores)
    with pytest.raises(ValueError, match=match):
        roc_curve(labels, scores)


def test_bad_settings_raise() -> None:
    labels, scores = _hand_case()
    with pytest.raises(ValueError, match="min_background"):
        binary_metrics(labels, scores, min_background=0)
    with pytest.raises(ValueError, match="TPRs"):
        binary_metrics(labels, scores, tprs=(1.5,))


def test_aggregate_ignores_nan_and_counts_values() -> None:
    stats = aggregate(
        [
            {"auc": 0.6, "max_sic": math.nan, "only_nan": math.nan},
            {"auc": 0.8, "max_sic": 2.0, "only_nan": math.nan},
            {"auc": 0.7, "max_sic": 4.0},
        ]
    )
    assert stats["auc"]["mean"] == pytest.approx(0.7)
    assert stats["auc"]["std"] == pytest.approx(0.1)  # sample std (ddof = 1)
    assert stats["auc"]["n"] == 3
    assert stats["max_sic"] == pytest.approx({"mean": 3.0, "std": math.sqrt(2.0), "n": 2})
    assert math.isnan(stats["only_nan"]["mean"])
    assert stats["only_nan"]["n"] == 0
    assert aggregate([{"auc": 0.5}])["auc"] == {"mean": 0.5, "std": 0.0, "n": 1.0}


def test_json_safe_replaces_non_finite() -> None:
    got = json_safe({"a": math.nan, "b": [np.float32(1.5), math.inf], 3: np.int64(2)})
    assert got == {"a": None, "b": [1.5, None], "3": 2}
