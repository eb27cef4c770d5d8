"""Every study at ``ci`` scale, end to end on the tests' small datasets: the report has every
table row filled, the published numbers sit next to ours where the paper has them, MLflow
holds a study run with the sweep and each evaluation as children, and an interrupted study
finishes on a rerun without redoing a finished piece.

``make test`` runs one study end to end (``training-fraction``, interrupted and resumed) and
the checks that need no training; every other study at ``ci`` scale is slow (each trial is a
Ray Train run, about a minute of a 2-core machine): ``make test-slow``.
"""

from __future__ import annotations

import csv
import json
import math
import os
from pathlib import Path
from typing import Any

import pytest

from distributed_clr.studies import STUDIES, run_study
from distributed_clr.studies.report import published
from distributed_clr.tracking import KIND_TAG, PARENT_TAG, client
from tests.data.test_kill import DCLR, _run_until_crash

pytestmark = pytest.mark.ray


def _overrides(tmp: Path) -> list[tuple[str, Any]]:
    return [
        ("tracking.uri", f"sqlite:///{tmp / 'mlflow.db'}"),
        ("tracking.system_metrics", False),
        ("ray.num_cpus", 4),
    ]


def _rows(report_csv: Path) -> list[dict[str, str]]:
    with report_csv.open() as handle:
        return list(csv.DictReader(handle))


def _assert_report(outcome: Any, study: str) -> list[dict[str, str]]:
    rows = _rows(outcome.csv)
    assert rows, "the report has no numbers"
    empty = [
        (r["table"], r["row"], r["column"])
        for r in rows
        if not math.isfinite(float(r["value"])) and not r["note"]
    ]
    assert not empty, f"{study}: unfilled cells {empty[:5]}"
    text = outcome.report.read_text()
    assert "shape and ordering" in text  # the comparison caveat
    assert "## Commands" in text
    assert "## Pieces and run times" in text
    page = outcome.html.read_text()
    assert page.count("data:image/png;base64,") == len(outcome.plots) >= 1
    for plot in outcome.plots:
        assert plot.stat().st_size > 5_000
    return rows


def _assert_mlflow(outcome: Any, uri: str) -> None:
    mlflow = client(uri)
    parent = mlflow.get_run(outcome.parent_run_id)
    assert parent.data.tags[KIND_TAG] == "study"
    assert parent.data.tags.get("dclr.complete") == "true"
    children = mlflow.search_runs(
        [parent.info.experiment_id], f"tags.`{PARENT_TAG}` = '{outcome.parent_run_id}'"
    )
    kinds = {run.data.tags[KIND_TAG] for run in children}
    assert {"sweep", "evaluate"} <= kinds
    pieces = {
        run.data.tags.get("dclr.piece") for run in children if run.data.tags[KIND_TAG] == "evaluate"
    }
    record = json.loads((outcome.directory / "study.json").read_text())
    assert pieces == {p for p, v in record["pieces"].items() if v["kind"] == "evaluate"}
    artifacts = {a.path for a in mlflow.list_artifacts(outcome.parent_run_id, "report")}
    assert {"report/report.md", "report/report.html", "report/results.csv"} <= artifacts


def _published_cells(rows: list[dict[str, str]]) -> int:
    return sum(1 for r in rows if r["published"])


DIJET_STUDIES = [name for name, s in STUDIES.items() if "dijet" in s.kinds and name != "nplm-power"]


@pytest.mark.slow
@pytest.mark.parametrize("study", [s for s in DIJET_STUDIES if s != "training-fraction"])
def test_study_at_ci_scale(study: str, prepared: Path, ray_session: None, tmp_path: Path) -> None:
    outcome = run_study(
        study, [prepared], scale="ci", out=tmp_path / study, overrides=_overrides(tmp_path)
    )
    rows = _assert_report(outcome, study)
    _assert_mlflow(outcome, f"sqlite:///{tmp_path / 'mlflow.db'}")
    tables = {r["table"] for r in rows}
    if study == "augmentation-ablation":
        notes = {r["row"]: r["note"] for r in rows if r["column"] == "note"}
        assert "invariant" in notes["without phi_shift"]
        assert {r["row"] for r in rows} >= {"all augmentations", "untrained encoder"}
    if study == "latent-dim":
        assert {f"latent {d}" for d in (8, 64, 512)} <= {r["row"] for r in rows}
        assert _published_cells(rows) >= 5  # Trans+BC max SIC per size, the event space
    if study == "cwola-scan":
        assert tables == {"fig9", "fstar"}
        assert _published_cells(rows) > 0
    if study == "bumphunt":
        assert any("N=0" in r["row"] for r in rows)  # the closure rows


def test_interrupted_study_resumes_without_redoing_pieces(
    prepared: Path, ray_session: None, tmp_path: Path
) -> None:
    """Killed right after its first evaluation was recorded, the study finishes on a rerun:
    the pretraining, the embeddings and that evaluation are not redone."""
    out = tmp_path / "training"
    sets = [
        f"{k}={json.dumps(v) if not isinstance(v, str) else v}" for k, v in _overrides(tmp_path)
    ]
    argv = [
        "study",
        "training-fraction",
        "--data",
        str(prepared),
        "--scale",
        "ci",
        "--out",
        str(out),
    ]
    for item in sets:
        argv += ["--set", item]
    _run_until_crash(argv, "study-piece@classify/trained-1")
    record = json.loads((out / "study.json").read_text())
    before = record["pieces"]
    assert "classify/trained-1" in before
    assert "classify/untrained-0.5" not in before
    summary = Path(before["classify/trained-1"]["output"]) / "summary.json"
    stamp = summary.stat().st_mtime_ns
    checkpoint = Path(before["pretrain/latent-128"]["checkpoint"]) / "state.pt"
    checkpoint_stamp = checkpoint.stat().st_mtime_ns

    outcome = run_study(
        "training-fraction", [prepared], scale="ci", out=out, overrides=_overrides(tmp_path)
    )
    after = json.loads((out / "study.json").read_text())["pieces"]
    for piece, facts in before.items():
        assert after[piece]["finished"] == facts["finished"], f"{piece} was redone"
    assert summary.stat().st_mtime_ns == stamp
    assert checkpoint.stat().st_mtime_ns == checkpoint_stamp
    assert outcome.reused == len(before)
    assert len(after) == outcome.pieces
    rows = _assert_report(outcome, "training-fraction")
    assert {r["row"] for r in rows} == {"1", "0.5"}
    assert _published_cells(rows) >= 2  # Trans+BC and FCN at the full training set
    _assert_mlflow(outcome, f"sqlite:///{tmp_path / 'mlflow.db'}")
    # A third run with the same settings reuses everything; other settings are refused.
    again = run_study(
        "training-fraction", [prepared], scale="ci", out=out, overrides=_overrides(tmp_path)
    )
    assert again.reused == again.pieces
    from distributed_clr.errors import UserError

    with pytest.raises(UserError, match="another configuration"):
        run_study(
            "training-fraction",
            [prepared],
            scale="ci",
            out=out,
            overrides=[*_overrides(tmp_path), ("evaluate.fcn.lr", 0.01)],
        )


@pytest.mark.slow
def test_nplm_power_study_on_object_level_events(
    ray_session: None, tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    from distributed_clr.data.adc import import_adc
    from tests.data.test_adc import cocktail_events, four_lepton_events, write_adc

    root = tmp_path_factory.mktemp("study_objects")
    values, ids = cocktail_events(1_200, 3)
    cocktail = write_adc(root / "background_for_training.h5", values, ProcessID=ids)
    signal = write_adc(root / "Ato4l.h5", four_lepton_events(300, 4))
    import_adc(cocktail, root / "bkg", process="cocktail", label=0, process_dataset="ProcessID")
    import_adc(signal, root / "sig", process="Ato4l", label=1)
    outcome = run_study(
        "nplm-power",
        [root / "bkg", root / "sig"],  # combined by the study
        scale="ci",
        out=tmp_path / "nplm",
        overrides=_overrides(tmp_path),
    )
    rows = _assert_report(outcome, "nplm-power")
    labels = {r["row"] for r in rows}
    assert {"SimCLR, latent 4", "SupCon, latent 4", "raw inputs"} <= labels
    assert any(label.startswith("untrained") for label in labels)
    assert all(0.0 <= float(r["value"]) <= 1.0 for r in rows if r["column"].startswith("P(Z>3)"))
    _assert_mlflow(outcome, f"sqlite:///{tmp_path / 'mlflow.db'}")


def test_published_numbers_cite_their_table_and_source() -> None:
    data = published()
    assert set(data["papers"]) == {s.paper for s in STUDIES.values()}
    for key, entry in data["tables"].items():
        assert entry["paper"] in data["papers"], key
        assert entry.get("status") or entry.get("values"), key
        for value in entry.get("values") or []:
            assert value["where"], (key, value)
            assert value["source"], (key, value)
            assert math.isfinite(float(value["value"])), (key, value)
            assert "checked" in value or value["source"] == "paper", (key, value)


def test_cli_lists_studies_and_refuses_bad_input(tmp_path: Path) -> None:
    import subprocess

    listing = subprocess.run([DCLR, "study", "--list"], capture_output=True, text=True, check=True)
    for name in STUDIES:
        assert name in listing.stdout
    bad = subprocess.run(
        [DCLR, "study", "cwola-scan", "--data", str(tmp_path), "--scale", "huge"],
        capture_output=True, text=True, env={**os.environ, "RAY_ADDRESS": ""},
    )  # fmt: skip
    assert bad.returncode == 2
    assert "unknown scale 'huge'" in bad.stderr


def test_bad_study_input_is_refused_before_anything_runs(prepared: Path, tmp_path: Path) -> None:
    from distributed_clr.errors import UserError

    out = tmp_path / "refused"
    with pytest.raises(UserError, match=r"varies model\.latent_dim itself"):
        run_study("latent-dim", [prepared], out=out, overrides=[("model.latent_dim", 32)])
    with pytest.raises(UserError, match="does not exist"):
        run_study("augmentation-ablation", [tmp_path / "missing"], out=out)
    assert not (out / "study.json").exists()  # nothing was started
