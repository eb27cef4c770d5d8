"""Sample composition: deterministic, nested, independent of order, with clear errors."""

from __future__ import annotations

import numpy as np
import pytest

from distributed_clr.config import RoleSample
from distributed_clr.sampling import SampleError, choose, event_keys, scaled_like


def _events(n_bkg: int = 1000, n_sig: int = 200) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    label = np.r_[np.zeros(n_bkg, np.int8), np.ones(n_sig, np.int8)]
    process = np.array(["qcd"] * n_bkg + ["wprime"] * (n_sig // 2) + ["other"] * (n_sig // 2))
    keys = event_keys(np.arange(len(label)), ["a"] * len(label))
    return label, process, keys


def test_counts_ratio_and_processes() -> None:
    label, process, keys = _events()
    mask, comp = choose(label, process, keys, RoleSample(background=300, signal=40), 0, what="x")
    assert (comp.background, comp.signal, int(mask.sum())) == (300, 40, 340)
    mask, comp = choose(
        label, process, keys, RoleSample(background=500, signal_to_background=0.1), 0, what="x"
    )
    assert (comp.background, comp.signal) == (500, 50)
    # Without a background count the ratio takes as much background as the signal allows:
    # a balanced set uses every signal event, a small ratio every background event.
    _, comp = choose(label, process, keys, RoleSample(signal_to_background=1.0), 0, what="x")
    assert (comp.background, comp.signal) == (200, 200)
    _, comp = choose(label, process, keys, RoleSample(signal_to_background=0.05), 0, what="x")
    assert (comp.background, comp.signal) == (1000, 50)
    spec = RoleSample(signal_processes=["wprime"])
    mask, comp = choose(label, process, keys, spec, 0, what="x")
    assert comp.signal_by_process == {"wprime": 100}
    assert not (mask & (process == "other")).any()
    mask, comp = choose(label, process, keys, RoleSample(), 0, what="x")
    assert mask.all()
    mask, comp = choose(label, process, keys, RoleSample(signal=0), 0, what="x")
    assert comp.signal == 0
    assert comp.background == 1000


def test_draws_are_nested_seeded_and_independent_of_order() -> None:
    label, process, keys = _events()
    small, _ = choose(label, process, keys, RoleSample(background=100, signal=10), 3, what="x")
    large, _ = choose(label, process, keys, RoleSample(background=400, signal=50), 3, what="x")
    assert (large | ~small).all()  # the small draw is inside the large one
    other, _ = choose(label, process, keys, RoleSample(background=100, signal=10), 4, what="x")
    assert (other != small).any()  # another seed, other events
    perm = np.random.default_rng(0).permutation(len(label))
    shuffled, _ = choose(
        label[perm], process[perm], keys[perm], RoleSample(background=100, signal=10), 3, what="x"
    )
    np.testing.assert_array_equal(shuffled, small[perm])  # file order does not matter


def test_event_keys_separate_datasets() -> None:
    ids = np.arange(50)
    a, b = event_keys(ids, ["a"] * 50), event_keys(ids, ["b"] * 50)
    assert len(np.unique(np.r_[a, b])) == 100


def test_too_many_is_an_error_naming_the_role() -> None:
    label, process, keys = _events()
    with pytest.raises(
        SampleError, match=r"sample.pretrain \(train split\) asks for 2000 background"
    ):
        choose(
            label,
            process,
            keys,
            RoleSample(background=2000),
            0,
            what="sample.pretrain (train split)",
        )
    with pytest.raises(SampleError, match="asks for 300 signal events"):
        choose(label, process, keys, RoleSample(signal=300), 0, what="x")


def test_scaled_like_keeps_the_composition() -> None:
    label, process, keys = _events()
    _, drawn = choose(label, process, keys, RoleSample(background=500, signal=50), 0, what="x")
    val = scaled_like(RoleSample(background=500, signal=50), drawn, 400, 80)
    assert (val.background, val.signal) == (200, 20)
    _, no_signal = choose(label, process, keys, RoleSample(signal=0), 0, what="x")
    only_background = scaled_like(RoleSample(signal=0), no_signal, 400, 80)
    assert (only_background.background, only_background.signal) == (400, 0)
    assert scaled_like(RoleSample(), no_signal, 400, 80) == RoleSample()
