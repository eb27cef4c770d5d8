"""f*, where a signal-fraction scan falls to random: found where the curve crosses the
no-signal level, bounded at the scan's ends, with an interval that covers the truth."""

from __future__ import annotations

import numpy as np
import pytest

from distributed_clr.stats.falloff import falloff_fraction

FRACTIONS = np.array([0.0, 1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3, 1.0])


def _scan(f_star: float, seeds: int, noise: float, seed: int = 0) -> np.ndarray:
    """AUC 0.5 below f_star, rising linearly in log f above it, plus seed noise."""
    rng = np.random.default_rng(seed)
    with np.errstate(divide="ignore"):
        rise = np.clip(np.log10(FRACTIONS / f_star), 0, None) * 0.15
    curve = 0.5 + np.where(FRACTIONS > 0, rise, 0.0)
    return curve[:, None] + rng.normal(0, noise, size=(FRACTIONS.size, seeds))


@pytest.mark.parametrize("f_star", [3e-3, 2e-2, 0.1])
def test_recovers_the_fall_off_within_its_interval(f_star: float) -> None:
    """Over noisy repetitions of the same scan, f* lands between the scanned fractions around
    the true fall-off (a little above it: a point must be significantly better than random),
    and the 68% interval of one scan covers the typical estimate about as often as it should."""
    below = FRACTIONS[f_star >= FRACTIONS].max()
    above = FRACTIONS[f_star * 1.01 < FRACTIONS].min()
    noiseless = falloff_fraction(FRACTIONS, _scan(f_star, seeds=20, noise=1e-6)).fraction
    assert below <= noiseless <= above
    results = [
        falloff_fraction(FRACTIONS, _scan(f_star, seeds=20, noise=0.01, seed=s), seed=s)
        for s in range(30)
    ]
    estimates = np.array([r.fraction for r in results])
    typical = float(np.median(estimates))
    assert below <= typical <= above
    covered = np.mean([r.low <= typical <= r.high for r in results])
    assert covered >= 0.4
    assert all(r.low <= r.fraction <= r.high for r in results)


def test_bounds_outside_the_scan() -> None:
    everywhere = falloff_fraction(FRACTIONS, _scan(1e-5, seeds=10, noise=0.005))
    assert everywhere.bound == "below"
    assert everywhere.fraction == pytest.approx(1e-3)
    nowhere = falloff_fraction(FRACTIONS, _scan(10.0, seeds=10, noise=0.005))
    assert nowhere.bound == "above"
    assert nowhere.fraction == pytest.approx(1.0)


def test_lower_is_better_and_wider_interval_with_more_noise() -> None:
    auc = _scan(2e-2, seeds=10, noise=0.01)
    fpr = 1.0 - auc  # FPR-like: falls as the signal grows
    result = falloff_fraction(FRACTIONS, fpr, metric="fpr_at_tpr_0.5", higher_is_better=False)
    assert result.fraction == pytest.approx(falloff_fraction(FRACTIONS, auc).fraction)
    assert 1e-2 <= result.fraction <= 3e-2
    quiet = falloff_fraction(FRACTIONS, _scan(2e-2, seeds=10, noise=0.002))
    loud = falloff_fraction(FRACTIONS, _scan(2e-2, seeds=10, noise=0.03))
    assert loud.high / loud.low > quiet.high / quiet.low


def test_without_a_no_signal_point_uses_the_random_level() -> None:
    values = _scan(2e-2, seeds=10, noise=0.005)[1:]
    result = falloff_fraction(FRACTIONS[1:], values, metric="auc")
    assert result.level >= 0.5
    assert 1e-2 <= result.fraction <= 3e-2
    with pytest.raises(ValueError, match="random level"):
        falloff_fraction(FRACTIONS[1:], values, metric="mystery")
    with pytest.raises(ValueError, match="fractions, seeds"):
        falloff_fraction(FRACTIONS, values)


def test_a_no_signal_scan_below_random_does_not_lower_the_bar() -> None:
    """f = 0 points at AUC 0.4 (pools that differ by chance): points at 0.5 are not signal."""
    values = _scan(2e-2, seeds=10, noise=0.005)
    values[0] -= 0.1
    result = falloff_fraction(FRACTIONS, values)
    assert result.level == pytest.approx(0.5)
    assert 1e-2 <= result.fraction <= 3e-2
