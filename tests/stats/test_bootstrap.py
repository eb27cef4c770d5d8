"""The bootstrap interval of AUC and max SIC covers the point estimate and has the width of the
metric's real sampling spread (measured on independent toy test sets)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from distributed_clr.stats import binary_metrics, bootstrap_intervals


def _toy(n: int, seed: int, separation: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = (rng.random(n) < 0.3).astype(np.int8)
    scores = rng.normal(separation * labels, 1.0)
    return labels, scores


def test_interval_width_matches_the_spread_over_independent_test_sets() -> None:
    labels, scores = _toy(4000, seed=0)
    point = binary_metrics(labels, scores)
    intervals = bootstrap_intervals(labels, scores, replicates=300, seed=1)
    for name in ("auc", "max_sic"):
        low, high = intervals[name]
        assert low < point[name] < high, (name, low, point[name], high)
    # The truth: the metrics' spread over many independent test sets of the same size.
    independent = [binary_metrics(*_toy(4000, seed=s)) for s in range(100, 160)]
    for name in ("auc", "max_sic"):
        spread = float(np.std([m[name] for m in independent], ddof=1))
        half_width = 0.5 * (intervals[name][1] - intervals[name][0])
        assert 0.6 * spread < half_width < 1.6 * spread, (name, half_width, spread)


def test_more_events_give_narrower_intervals_and_seeds_fix_them() -> None:
    small = bootstrap_intervals(*_toy(1000, seed=2), seed=0)
    large = bootstrap_intervals(*_toy(16000, seed=2), seed=0)
    width = {k: (v[1] - v[0]) for k, v in small.items()}
    assert (large["auc"][1] - large["auc"][0]) < 0.5 * width["auc"]  # ~1/4 expected
    labels, scores = _toy(1000, seed=2)
    assert bootstrap_intervals(labels, scores, seed=3) == bootstrap_intervals(
        labels, scores, seed=3
    )
    assert bootstrap_intervals(labels, scores, seed=3) != bootstrap_intervals(
        labels, scores, seed=4
    )


def test_ties_and_unresolved_sic() -> None:
    labels = np.array([0] * 30 + [1] * 30)
    scores = np.zeros(60)  # one tied score: AUC exactly 0.5 in every replicate
    intervals = bootstrap_intervals(labels, scores, min_background=40, replicates=20)
    assert intervals["auc"] == (0.5, 0.5)
    assert all(math.isnan(v) for v in intervals["max_sic"])  # no cut passes 40 background
    with pytest.raises(ValueError, match="replicates"):
        bootstrap_intervals(labels, scores, replicates=5)
    with pytest.raises(ValueError, match="no signal"):
        bootstrap_intervals(np.zeros(10), np.zeros(10))
