"""``cwola`` end to end on the embeddings of a tiny encoder: the idealised scan and the bump
hunt, their files and bookkeeping, and the modes and classifiers it refuses."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pytest

from distributed_clr.evaluate import cwola
from distributed_clr.evaluate.inputs import load_inputs
from distributed_clr.storage.reader import column_to_numpy
from tests.evaluate.helpers import (
    Encoder,
    TrainingSpy,
    assert_png,
    fast_config,
    group_auc,
    read_outputs,
    shared_rows,
)

pytestmark = pytest.mark.ray


def test_cwola_idealised(encoder: Encoder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spy = TrainingSpy(monkeypatch)
    config = fast_config()
    out = tmp_path / "idealised"
    summary = cwola(
        config, encoder.embeddings, encoder.data, out, mode="idealised", classifier="lct"
    )
    _, scores = read_outputs(out)
    assert_png(out / "plots" / "cwola_scan.png")
    assert_png(out / "plots" / "latent_projection.png")
    fractions = config.cwola.fractions
    assert sorted(set(scores["signal_fraction"].to_pylist())) == sorted(fractions)
    n_test = summary["splits"]["test"]["events"]
    runs = len(fractions) * config.repeats
    assert scores.num_rows == len(config.feature_sets) * runs * n_test
    assert set(scores["split"].to_pylist()) == {"test"}
    assert set(scores["classifier"].to_pylist()) == {"lct"}

    for feature_set in config.feature_sets:
        result = summary["results"][feature_set]
        assert len(result["points"]) == runs
        for point in result["points"]:
            recomputed = group_auc(
                scores,
                feature_set=feature_set,
                seed=point["seed"],
                signal_fraction=point["fraction"],
            )
            assert recomputed == pytest.approx(point["metrics"]["auc"], abs=1e-12)
    # At f = 0.5 the jet masses find the W' signal.
    assert summary["results"]["highlevel"]["aggregated"]["0.5"]["auc"]["mean"] > 0.7

    # Bookkeeping: samples of 2 x n_per_sample training events, none of them a test event.
    n_per_sample = summary["results"]["latent"]["n_per_sample"]
    assert len(spy.calls) == len(config.feature_sets) * runs
    for _, x_train, x_test in spy.calls:
        assert len(x_train) == 2 * n_per_sample
        assert len(x_test) == n_test
        assert shared_rows(x_train, x_test) == 0


def test_cwola_bumphunt(encoder: Encoder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spy = TrainingSpy(monkeypatch)
    config = fast_config(feature_sets=["latent", "highlevel"])
    # The untrained, absolute-input encoder may fail the leakage check: run it anyway here.
    config = config.model_copy(
        update={"bumphunt": config.bumphunt.model_copy(update={"allow_leaky": True})}
    )
    out = tmp_path / "bumphunt"
    summary = cwola(
        config, encoder.embeddings, encoder.data, out, mode="bumphunt", classifier="lct"
    )
    _, scores = read_outputs(out)
    everything = load_inputs(encoder.embeddings, encoder.data, ["latent"])
    assert set(summary["splits"]) == {"train", "val", "test"}
    low, high = config.bumphunt.signal_region
    width = config.bumphunt.sideband_width
    window = (everything.mjj >= low - width) & (everything.mjj < high + width)
    for feature_set in config.feature_sets:
        assert_png(out / "plots" / f"mjj_spectra_{feature_set}.png")
        part = scores.filter(pc.equal(scores["feature_set"], feature_set))
        # Every event of the window is scored once, whatever its split.
        assert part.num_rows == int(window.sum())
        keys = column_to_numpy(part["event_id"])
        assert len(np.unique(keys)) == part.num_rows
        np.testing.assert_array_equal(np.sort(keys), np.sort(everything.event_id[window]))
        mjj = column_to_numpy(part["mjj"])
        np.testing.assert_array_equal(
            column_to_numpy(part["in_signal_region"]), (mjj >= low) & (mjj < high)
        )
        result = summary["results"][feature_set]
        assert 0.0 <= result["leakage"]["sideband_auc"] <= 1.0
        (hunt,) = result["injections"]  # no injection list: one hunt on every event
        cuts = hunt["cuts"]
        assert [c["efficiency"] for c in cuts] == config.bumphunt.efficiencies
        for cut in cuts:
            truth = cut["signal_region_truth"]
            assert truth["signal"] + truth["background"] + truth["unknown"] == cut["observed"]
        assert cuts[0]["observed"] == int(column_to_numpy(part["in_signal_region"]).sum())
    # k-fold cross-training, for the leakage check and the hunt: no event is scored by a
    # classifier trained on it.
    assert len(spy.calls) == 2 * len(config.feature_sets) * len(np.unique(everything.fold))
    for _, x_train, x_test in spy.calls:
        assert shared_rows(x_train, x_test) == 0


def test_cwola_refuses_unknown_mode_and_classifier(encoder: Encoder, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown CWoLa mode"):
        cwola(fast_config(), encoder.embeddings, None, tmp_path, mode="real")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown classifier"):
        cwola(fast_config(), encoder.embeddings, None, tmp_path, classifier="bdt")  # type: ignore[arg-type]
