"""The idealised CWoLa scan: sample construction, the scan on a planted signal, its
bookkeeping (no test event is trained on, no background event is shared)."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from distributed_clr import classifiers
from distributed_clr.config.schema import EvaluateConfig
from distributed_clr.errors import UserError
from distributed_clr.evaluate.idealised import (
    idealised_samples,
    idealised_scan,
    max_sample_size,
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


def test_too_small_pools_are_a_user_error() -> None:
    with pytest.raises(UserError, match="too small"):
        max_sample_size(1, 0, [0.0])
    with pytest.raises(UserError, match="true labels 0/1"):
        idealised_scan(
            np.zeros((4, 2)), [0, 1, -1, 0], np.zeros((2, 2)), [0, 1], [0.1], "lct", CONFIG, [0]
        )
