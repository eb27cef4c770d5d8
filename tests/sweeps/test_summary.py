"""The summary table ranks trials by their best epoch and names their status; the plots put
the metric against a param; both are written atomically."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from distributed_clr.config import get_preset
from distributed_clr.sweeps import (
    SearchSpace,
    SweepResult,
    TrialRecord,
    metric_vs_param_figure,
    space_from_dict,
    summarize,
)
from distributed_clr.sweeps.summary import write_results


def _space_and_records() -> tuple[SearchSpace, list[TrialRecord]]:
    space = space_from_dict(
        {"params": {"loss.temperature": {"grid": [0.1, 0.5]}, "model.latent_dim": {"grid": [8]}}},
        get_preset("debug"),
        name="t",
    )

    def history(*aucs: float) -> list[dict[str, float]]:
        return [
            {"epoch": float(e), "val_probe_auc": a, "val_loss": 3.0 - e} for e, a in enumerate(aucs)
        ]

    records = [
        TrialRecord(
            "a_00000",
            "TERMINATED",
            {"loss.temperature": 0.1, "model.latent_dim": 8},
            history(0.6, 0.7),
        ),
        TrialRecord(
            "a_00001",
            "ERROR",
            {"loss.temperature": 0.5, "model.latent_dim": 8},
            history(0.9),
            "Traceback\nPretrainError: boom",
        ),
        TrialRecord("a_00002", "PENDING", {"loss.temperature": 0.3, "model.latent_dim": 8}),
    ]
    return space, records


def test_summary_and_plots_from_trial_records(tmp_path: Path) -> None:
    space, records = _space_and_records()
    summary = summarize(records, space, "s", "val_probe_auc", "max")
    assert list(summary["trial"]) == ["s-a_00001", "s-a_00000", "s-a_00002"]
    assert list(summary["status"]) == ["error", "complete", "incomplete"]
    assert summary.loc[1, "best_val_probe_auc"] == 0.7
    assert summary.loc[1, "best_epoch"] == 1
    assert summary.loc[0, "error"] == "PretrainError: boom"
    assert summary.loc[1, "val_loss"] == 2.0
    assert summary.loc[1, "epochs"] == 2
    assert math.isnan(summary.loc[2, "best_val_probe_auc"])
    by_loss = summarize(records, space, "s", "val_loss", "min")
    assert by_loss.loc[0, "trial"] == "s-a_00000"
    figure = metric_vs_param_figure(summary, "loss.temperature", "val_probe_auc", space)
    assert figure.axes[0].get_xscale() == "log"


def test_results_are_written_and_the_result_ranks_them(tmp_path: Path) -> None:
    space, records = _space_and_records()
    summary = summarize(records, space, "s", "val_probe_auc", "max")
    csv, plots = write_results(summary, space, "val_probe_auc", tmp_path / "summary")
    assert csv == tmp_path / "summary" / "summary.csv"
    assert list(pd.read_csv(csv)["trial"]) == list(summary["trial"])
    assert [p.name for p in plots] == [
        "val_probe_auc_vs_temperature.png",
        "val_probe_auc_vs_latent_dim.png",
    ]
    assert all(p.stat().st_size > 0 for p in plots)
    assert sorted(p.name for p in (tmp_path / "summary").iterdir()) == sorted(
        ["summary.csv", *(p.name for p in plots)]
    )  # no temporary files left
    result = SweepResult("s", str(tmp_path), summary, "val_probe_auc", "max", csv, plots)
    assert result.best is not None
    assert result.best["trial"] == "s-a_00001"
    assert result.failed == 1


def test_an_ablation_names_what_each_trial_leaves_out_and_marks_invariant_ones() -> None:
    full = ["rotate", "distort", "eta_shift", "phi_shift"]
    space = space_from_dict(
        {"params": {"augment.pipeline": {"grid": [full, full[1:], full[:3]]}}},
        get_preset("debug"),
        name="t",
    )
    records = [
        TrialRecord(f"a_{i:05d}", "TERMINATED", {"augment.pipeline": p}, [])
        for i, p in enumerate([full, full[1:], full[:3]])
    ]
    absolute = summarize(records, space, "s", "val_loss", "min", inputs="absolute")
    notes = dict(zip(absolute["trial_id"], absolute["note"], strict=True))
    assert notes == {
        "a_00000": "all augmentations",
        "a_00001": "without rotate",
        "a_00002": "without phi_shift (no-op: inputs invariant to it)",
    }
    records[1].params["model.inputs"] = "jet_frame"  # a trial's own inputs win
    jet = summarize(records, space, "s", "val_loss", "min", inputs="absolute")
    assert "no-op" not in dict(zip(jet["trial_id"], jet["note"], strict=True))["a_00001"]
    frame = summarize(records, space, "s", "val_loss", "min", inputs="jet_frame")
    assert "no-op" in dict(zip(frame["trial_id"], frame["note"], strict=True))["a_00002"]
    plain, _ = _space_and_records()
    assert "note" not in summarize(_space_and_records()[1], plain, "s", "val_loss", "min")
