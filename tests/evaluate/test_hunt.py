"""The bump-hunt study on toys: the leakage check refuses features that carry m_jj and passes
blind ones, and the injection study closes on background alone and finds an injected signal,
more significantly the more is injected."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from distributed_clr.config.schema import EvaluateConfig, SampleConfig
from distributed_clr.evaluate import EvaluationError
from distributed_clr.evaluate.bumphunt import leakage
from distributed_clr.evaluate.hunt import hunt_study
from distributed_clr.evaluate.inputs import EvaluationInputs
from tests.evaluate.test_bumphunt import sample_dijet

CONFIG = EvaluateConfig(repeats=2)


def toy(n_background: int, n_signal: int, seed: int) -> EvaluationInputs:
    """Dijet-like background in [2.6, 4.4] TeV and a 3.5 TeV resonance (width 100 GeV).

    Feature sets: ``blind`` (two features independent of m_jj; signal shifted by 2.5 sigma in
    both) and ``leaky`` (the blind features plus a noisy copy of m_jj)."""
    rng = np.random.default_rng(seed)
    mjj = np.r_[sample_dijet(n_background, 2600.0, 4400.0, rng), rng.normal(3500, 100, n_signal)]
    label = np.r_[np.zeros(n_background), np.ones(n_signal)].astype(np.int8)
    blind = rng.normal(size=(len(mjj), 2)) + 2.5 * label[:, None]
    leaky = np.c_[blind, (mjj - 3500.0) / 300.0 + 0.3 * rng.normal(size=len(mjj))]
    n = len(mjj)
    return EvaluationInputs(
        event_id=np.arange(n, dtype=np.int64),
        dataset_code=np.zeros(n, dtype=np.int32),
        dataset_names=["toy"],
        label=label,
        process=np.where(label == 1, "wprime_xy", "qcd_dijet").astype(object),
        split=np.full(n, "test"),
        fold=rng.integers(0, 5, n).astype(np.int8),
        mjj=mjj,
        features={"blind": blind.astype(np.float32), "leaky": leaky.astype(np.float32)},
    )


def test_the_leakage_check_refuses_features_that_carry_mjj() -> None:
    events = toy(40_000, 0, seed=0)
    blind = leakage(events.mjj, events.features["blind"], events.fold, "lct", CONFIG, 0)
    leaky = leakage(events.mjj, events.features["leaky"], events.fold, "lct", CONFIG, 0)
    assert not blind.refused
    assert blind.reason == ""
    assert abs(blind.sideband_auc - 0.5) < 0.03
    assert abs(blind.mjj_r2) < 0.01
    assert leaky.refused
    assert leaky.sideband_auc > 0.9
    assert leaky.mjj_r2 > 0.5
    assert "max_sideband_auc" in leaky.reason
    assert "max_mjj_r2" in leaky.reason
    assert leaky.lower_events > leaky.upper_events > 1000  # a falling spectrum


def test_a_study_with_only_leaky_features_is_refused_and_says_how_to_override(
    tmp_path: Path,
) -> None:
    events = toy(20_000, 500, seed=1)
    sample = SampleConfig.model_validate({"bumphunt": {"signal": [0]}})
    with pytest.raises(EvaluationError, match=r"leaky: .*allow_leaky=true"):
        hunt_study(CONFIG, events, ["leaky"], "lct", sample, tmp_path)
    allowed = CONFIG.model_copy(
        update={"bumphunt": CONFIG.bumphunt.model_copy(update={"allow_leaky": True})}
    )
    summary, *_ = hunt_study(allowed, events, ["leaky"], "lct", sample, tmp_path)
    entry = summary["results"]["leaky"]
    assert entry["refused"] is False
    assert "leakage check refused it" in entry["warning"]


def test_injection_study_closes_without_signal_and_rises_with_it(tmp_path: Path) -> None:
    events = toy(60_000, 3000, seed=2)
    sample = SampleConfig.model_validate({"bumphunt": {"signal": [0, 150, 600]}})
    summary, tables, plots, metrics = hunt_study(
        CONFIG, events, ["blind", "leaky"], "lct", sample, tmp_path
    )
    assert summary["results"]["leaky"]["refused"] is True  # the blind set is still hunted
    assert "injections" not in summary["results"]["leaky"]
    result = summary["results"]["blind"]
    assert [h["signal_injected"] for h in result["injections"]] == [0, 0, 150, 150, 600, 600]
    for hunt in result["injections"]:
        assert hunt["composition"]["signal"] == hunt["signal_injected"]
        assert hunt["composition"]["background"] == 60_000
        for cut in hunt["cuts"]:
            assert cut["fit"]["ndf"] >= 8
            assert 0.0 <= cut["fit_p_value"] <= 1.0
    z = {
        cut: {int(n): stats["significance_with_uncertainty"]["mean"] for n, stats in row.items()}
        for cut, row in result["z_vs_injected"].items()
    }
    for cut, by_amount in z.items():
        assert abs(by_amount[0]) < 2.0, (cut, by_amount)  # closure: no signal, no bump
    cut = z["eff_0.1"]
    assert cut[0] < cut[150] < cut[600], cut
    assert cut[600] > 5.0
    best = {n: max(z[c][n] for c in z) for n in (0, 150, 600)}  # the most sensitive cut
    assert best[0] < 2.0 < best[150] < best[600], best
    # (At 1% with 600 signal events the sidebands hold mostly signal tails: the fit is loose
    # and the profiled Z small, not fake; the tighter cut is not always the more sensitive.)
    truth = result["z_vs_injected"]["eff_0.1"]["600"]["s_over_b"]["mean"]
    assert truth > result["z_vs_injected"]["eff_1"]["600"]["s_over_b"]["mean"]  # the cut enriches
    assert {p.name for p in plots} >= {"z_vs_injected.png", "mjj_spectra_blind.png"}
    assert metrics["bumphunt/significance_with_uncertainty/blind/lct/eff_0.1/n_600"] == cut[600]
    assert {t.column("signal_injected")[0].as_py() for t in tables} == {0, 150, 600}
