"""The representation benchmark (``benchmarks/representation.py``) at a tiny size: every row
and curve point is filled, intervals bracket their means, and a rerun reuses every stage.

Slow (a few minutes on two cores): ``make test-slow``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "representation.py"


def _run(workdir: Path) -> str:
    args = [
        sys.executable,
        str(SCRIPT),
        "--out",
        str(workdir / "bench"),
        "--preset",
        "debug",
        "--qcd-events",
        "800",
        "--signal-events",
        "300",
        "--fractions",
        "0.5",
        "--latent-dims",
        "4,8",
        "--set",
        "train.epochs=3",
    ]
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{workdir / 'mlflow.db'}"}
    result = subprocess.run(args, cwd=workdir, env=env, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr[-4000:]
    return result.stdout


def test_benchmark_fills_every_row_and_reuses_finished_stages(tmp_path: Path) -> None:
    output = _run(tmp_path)
    assert "trained - untrained latent FCN AUC" in output
    out = tmp_path / "bench" / "default"
    results = json.loads((out / "results.json").read_text())

    table = results["table"]
    assert set(table) == {"trained", "untrained", "event", "highlevel"}
    for features, scores in table.items():
        assert set(scores) == {"lct", "fcn"}, features
        for row in scores.values():
            assert 0.0 <= row["auc_low"] <= row["auc"] <= row["auc_high"] <= 1.0
            assert row["max_sic_low"] <= row["max_sic"] <= row["max_sic_high"]

    # The epochs curve: the untrained encoder at 0, then every kept epoch.
    assert sorted(int(k) for k in results["epochs"]) == [0, 1, 2, 3]
    # The events curve: half the pretraining sample, then all of it (the main run).
    sizes = sorted(int(k) for k in results["events"])
    assert len(sizes) == 2
    assert sizes[0] < sizes[1]
    assert abs(sizes[0] - sizes[1] / 2) <= 2
    # The latent curve: the config's size (8, the main run) and 4, each trained and untrained.
    assert sorted(int(k) for k in results["latent"]) == [4, 8]
    assert results["latent"]["8"]["trained"] == results["table"]["trained"]
    for pair in results["latent"].values():
        assert set(pair) == {"trained", "untrained"}
        for scores in pair.values():
            assert 0.0 <= scores["fcn"]["auc_low"] <= scores["fcn"]["auc_high"] <= 1.0
    small = results["latent"]["4"]
    assert small["trained"]["fcn"]["auc"] != small["untrained"]["fcn"]["auc"]
    for plot in ("epochs.png", "events.png", "latent.png"):
        assert (out / "plots" / plot).stat().st_size > 0
    assert (out / "results.csv").read_text().count("\n") > 10

    # The untrained encoder is the run's starting point, not its result.
    trained = results["table"]["trained"]["fcn"]["auc"]
    assert results["epochs"]["0"]["fcn"]["auc"] == results["table"]["untrained"]["fcn"]["auc"]
    assert results["events"][str(sizes[1])]["fcn"]["auc"] == trained

    start = time.perf_counter()
    _run(tmp_path)
    again = json.loads((out / "results.json").read_text())
    assert again["table"] == results["table"], "a rerun must reuse the recorded evaluations"
    assert time.perf_counter() - start < 120
