"""The local significance of an excess, by hand and in its limits."""

from __future__ import annotations

import math

import pytest

from distributed_clr.stats import local_significance


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
