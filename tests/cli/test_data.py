"""The data subcommands and the demo, through the command line."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from distributed_clr.cli import main


def test_generate_rejects_bad_flags(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["generate", "--events", "0", "--out", str(tmp_path / "x")]) == 2
    assert "generate.events" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_prepare_names_a_missing_input(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["prepare", str(tmp_path / "absent"), "--out", str(tmp_path / "out")]) == 2
    assert "absent does not exist" in capsys.readouterr().err


def test_import_lhco_command(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    values = np.zeros((4, 2101))
    values[:, :6] = [50.0, 0.1, 0.2, 20.0, -0.3, 1.0]
    values[:, -1] = [0, 1, 0, 1]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pd.DataFrame(values).to_hdf(tmp_path / "f.h5", key="df", mode="w")
    out = tmp_path / "raw"
    assert main(["import-lhco", str(tmp_path / "f.h5"), "--out", str(out)]) == 0
    assert "4 events in 1 shards (background 2, signal 2, unlabelled 0)" in capsys.readouterr().out
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["complete"]
    assert manifest["command"].startswith("dclr import-lhco")


@pytest.mark.ray
def test_demo_runs_end_to_end_and_reuses_finished_stages(
    ray_session: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    args = ["demo", "--preset", "debug", "--out", str(tmp_path / "demo"), "--set"]
    args += [f"tracking.uri={uri}", "--set", "tracking.system_metrics=false"]
    assert main(args) == 0
    captured = capsys.readouterr()
    first = captured.out
    assert "Traceback" not in captured.err  # a successful run prints no Ray internals
    assert "PlacementGroupCleaner" not in captured.err + first
    assert "demo finished" in first
    assert "dijet events" in first
    assert "supervised classifiers on the test split" in first
    assert "latent/fcn" in first
    assert "highlevel/lct" in first
    assert "event/fcn" in first
    assert "CWoLa (idealised, fcn)" in first
    assert f"mlflow ui --backend-store-uri {uri}" in first
    demo = tmp_path / "demo"
    dijets = json.loads((demo / "dijets" / "manifest.json").read_text())
    assert dijets["complete"]
    assert dijets["rows"] > 0
    for name in ("classify", "cwola"):
        summary = json.loads((demo / name / "summary.json").read_text())
        assert summary["results"], name
        assert (demo / name / "scores.parquet").exists()

    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("distributed_clr").experiment_id])
    kinds = sorted(r.data.tags["dclr.kind"] for r in runs)
    assert kinds == ["evaluate", "evaluate", "pretrain"]
    pretrain_run = next(r for r in runs if r.data.tags["dclr.kind"] == "pretrain")
    assert "train_loss" in pretrain_run.data.metrics
    assert all(
        r.data.tags.get("mlflow.parentRunId") == pretrain_run.info.run_id
        for r in runs
        if r.data.tags["dclr.kind"] == "evaluate"
    )
    stamps = {p: p.stat().st_mtime_ns for p in demo.rglob("*.parquet")}

    assert main(args) == 0  # a rerun reuses every finished stage
    assert {p: p.stat().st_mtime_ns for p in demo.rglob("*.parquet")} == stamps
    assert len(client.search_runs([runs[0].info.experiment_id])) == 3
