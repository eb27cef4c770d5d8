"""Event-level operations on flat particle arrays, and the Arrow round trip."""

from __future__ import annotations

import numpy as np

from distributed_clr.physics.particles import Particles, from_arrow, to_arrow


def _p(counts: list[int], start: float = 1.0) -> Particles:
    n = sum(counts)
    pt = np.arange(start, start + n)
    return Particles(pt, -pt, pt / 100, np.array(counts, dtype=np.int64))


def test_take_events_head_and_concat_keep_event_boundaries() -> None:
    p = _p([2, 0, 3, 1])
    kept = p.take_events(np.array([True, True, False, True]))
    assert kept.counts.tolist() == [2, 0, 1]
    assert kept.pt.tolist() == [1.0, 2.0, 6.0]
    head = p.head(3)
    assert head.counts.tolist() == [2, 0, 3]
    assert head.pt.tolist() == [1.0, 2.0, 3.0, 4.0, 5.0]
    both = Particles.concat([head, _p([1], start=10.0)])
    assert both.counts.tolist() == [2, 0, 3, 1]
    assert both.pt.tolist() == [1.0, 2.0, 3.0, 4.0, 5.0, 10.0]
    assert len(Particles.concat([]).counts) == 0


def test_arrow_round_trip_with_per_event_labels() -> None:
    p = _p([2, 0, 3])
    table = to_arrow(p, np.arange(3, dtype=np.int64), np.array([0, 1, -1], np.int8), "toy")
    assert table.column("label").to_pylist() == [0, 1, -1]
    assert (
        to_arrow(p, np.arange(3, dtype=np.int64), 1, "toy").column("label").to_pylist() == [1] * 3
    )
    back = from_arrow(table)
    assert back.counts.tolist() == [2, 0, 3]
    assert np.array_equal(back.pt, p.pt.astype(np.float32))
