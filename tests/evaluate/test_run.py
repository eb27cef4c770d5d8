"""The evaluation commands end to end: a tiny untrained encoder's checkpoint, its embeddings of
the prepared W' + QCD events, then classify, the idealised CWoLa scan and the bump hunt, their
files, their bookkeeping (no test event is ever trained on), MLflow, and the CLI."""

from __future__ import annotations

import argparse
import json
import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import torch
from sklearn.metrics import roc_auc_score

from distributed_clr.config import EvaluateConfig, RayConfig, TrackingConfig, get_preset
from distributed_clr.storage.reader import column_to_numpy
from distributed_clr.evaluate import classifiers
from distributed_clr.evaluate import run as run_module
from distributed_clr.evaluate.cli import add_parser
from distributed_clr.embed import embed
from distributed_clr.evaluate.inputs import load_inputs
from distributed_clr.evaluate.run import classify, cwola
from tests.evaluate.test_inputs import write_embeddings

pytestmark = pytest.mark.ray

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
PARENT_NAME = "enc-test"


@dataclass
class Encoder:
    checkpoint: Path
    embeddings: Path
    data: Path
    tracking: TrackingConfig
    parent_run_id: str


@pytest.fixture(scope="module")
def encoder(prepared: Path, tmp_path_factory: pytest.TempPathFactory) -> Encoder:
    """A debug-preset model (untrained) saved as a checkpoint that names an MLflow pretraining
    run in a temporary SQLite store, and its embeddings of every split of ``prepared``."""
    from distributed_clr import tracking
    from distributed_clr.checkpoint import TrainState, capture_rng, save_checkpoint
    from distributed_clr.models import build_model
    from distributed_clr.train.optim import build_optimizer, build_scheduler

    root = tmp_path_factory.mktemp("encoder")
    tracking_config = TrackingConfig(uri=f"sqlite:///{root / 'mlflow.db'}", system_metrics=False)
    config = get_preset("debug").model_copy(update={"tracking": tracking_config})
    _, parent_id, _ = tracking.open_run(config, PARENT_NAME, "pretrain")
    torch.manual_seed(0)
    model = build_model(config)
    optimizer = build_optimizer(model, config.train, config.train.batch_size)
    scheduler = build_scheduler(optimizer, config.train, 1)
    checkpoint = save_checkpoint(
        root / "checkpoint",
        model=model,
        optimizer=optimizer,
        scheduler=scheduler,
        state=TrainState(epoch=0, mlflow_run_id=parent_id),
        config=config,
        rng=[capture_rng(None)],
    )
    embeddings = root / "embeddings"
    embed(checkpoint, prepared, embeddings, RayConfig(num_cpus=4), actors=1)
    return Encoder(checkpoint, embeddings, prepared, tracking_config, parent_id)


def fast_config(**update: Any) -> EvaluateConfig:
    """The debug preset's evaluation, with an FCN that trains long enough on ~340 events to
    learn the mass windows of the W' jets (a fraction of a second per fit)."""
    config = get_preset("debug").evaluate
    fcn = {"fcn_epochs": 50, "fcn_patience": 10, "fcn_lr": 3e-3}
    return config.model_copy(update={**fcn, **update})


class TrainingSpy:
    """Records the training and test features of every classifier fit."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: list[tuple[str, npt.NDArray[Any], npt.NDArray[Any]]] = []
        original = classifiers.fit_predict
        original_bc = run_module.fit_predict_trans_bc

        def fit_predict(
            name: Any, x_train: Any, y_train: Any, x_test: Any, *a: Any, **k: Any
        ) -> Any:
            self.calls.append((str(name), np.asarray(x_train), np.asarray(x_test)))
            return original(name, x_train, y_train, x_test, *a, **k)

        def fit_predict_trans_bc(x_train: Any, y_train: Any, x_test: Any, *a: Any, **k: Any) -> Any:
            self.calls.append(("trans_bc", np.asarray(x_train), np.asarray(x_test)))
            return original_bc(x_train, y_train, x_test, *a, **k)

        monkeypatch.setattr(classifiers, "fit_predict", fit_predict)
        monkeypatch.setattr(run_module, "fit_predict_trans_bc", fit_predict_trans_bc)


def shared_rows(a: npt.NDArray[Any], b: npt.NDArray[Any]) -> int:
    """How many rows of ``a`` also occur in ``b`` (exact bytes of each row)."""
    a2 = np.ascontiguousarray(a.reshape(len(a), -1))
    b2 = np.ascontiguousarray(b.reshape(len(b), -1))
    row = np.dtype((np.void, a2.dtype.itemsize * a2.shape[1]))
    return int(np.isin(a2.view(row).ravel(), b2.view(row).ravel()).sum())


def assert_png(path: Path) -> None:
    assert path.read_bytes().startswith(PNG_MAGIC), path


def read_outputs(out: Path) -> tuple[dict[str, Any], pa.Table]:
    summary = json.loads((out / "summary.json").read_text())
    return summary, pq.read_table(out / "scores.parquet")


def group_auc(scores: pa.Table, **where: Any) -> float:
    mask = None
    for column, value in where.items():
        condition = pc.equal(scores[column], value)
        mask = condition if mask is None else pc.and_(mask, condition)
    part = scores.filter(mask)
    assert part.num_rows > 0, where
    return float(roc_auc_score(column_to_numpy(part["label"]), column_to_numpy(part["score"])))


# ------------------------------------------------------------------------------------------------
# classify


def test_classify_end_to_end(
    encoder: Encoder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spy = TrainingSpy(monkeypatch)
    config = fast_config()
    out = tmp_path / "classify"
    result = classify(config, encoder.embeddings, encoder.data, out)
    summary, scores = read_outputs(out)
    assert result == summary
    for name in ("rejection", "sic", "latent_projection"):
        assert_png(out / "plots" / f"{name}.png")
    assert summary["mlflow"] is None  # no tracking asked for

    combinations = {f"{fs}/{c}" for fs in config.feature_sets for c in config.classifiers}
    assert set(summary["results"]) == combinations | {"constituents/trans_bc"}
    test = load_inputs(encoder.embeddings, encoder.data, ["highlevel"], ["test"])
    n_test = summary["splits"]["test"]["events"]
    assert n_test == len(test)
    assert scores.num_rows == len(summary["results"]) * config.repeats * n_test
    assert set(scores["split"].to_pylist()) == {"test"}
    assert scores["left_out_fold"].null_count == scores.num_rows  # seeds, not folds
    assert set(scores["label"].to_pylist()) == {0, 1}

    # summary.json and scores.parquet tell the same story.
    for key, entry in summary["results"].items():
        per_seed = [s["metrics"]["auc"] for s in entry["per_seed"]]
        assert [s["seed"] for s in entry["per_seed"]] == [config.seed, config.seed + 1]
        for seed, auc in zip([config.seed, config.seed + 1], per_seed, strict=True):
            recomputed = group_auc(
                scores, feature_set=entry["feature_set"], classifier=entry["classifier"], seed=seed
            )
            assert recomputed == pytest.approx(auc, abs=1e-12), key
        assert entry["aggregate"]["auc"]["mean"] == pytest.approx(np.mean(per_seed))
        assert entry["aggregate"]["auc"]["n"] == config.repeats
        assert 0.0 <= entry["aggregate"]["fpr_at_tpr_0.5"]["mean"] <= 1.0

    # The W' jets are heavy (500 and 100 GeV): the jet masses separate them from QCD. Their
    # signal windows are not linear in the masses, so the FCN does better than the LCT.
    assert summary["results"]["highlevel/fcn"]["aggregate"]["auc"]["mean"] > 0.8
    assert summary["results"]["highlevel/lct"]["aggregate"]["auc"]["mean"] > 0.75
    bc = summary["results"]["constituents/trans_bc"]["per_seed"]
    assert all(1 <= s["training"]["epochs"] <= config.trans_bc_epochs for s in bc)

    # Bookkeeping: every fit trained on labelled train events only, never on a test event.
    n_train = summary["splits"]["train"]["events"]
    assert len(spy.calls) == len(summary["results"]) * config.repeats
    for name, x_train, x_test in spy.calls:
        assert len(x_train) == n_train, name
        assert len(x_test) == n_test, name
        assert shared_rows(x_train, x_test) == 0, name
    highlevel_fits = [x for name, x, _ in spy.calls if x.shape[1:] == (4,)]
    assert highlevel_fits
    assert all(shared_rows(x, test.features["highlevel"]) == 0 for x in highlevel_fits)


def test_classify_fold_resampling_leaves_out_one_train_fold_per_repeat(
    encoder: Encoder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spy = TrainingSpy(monkeypatch)
    config = fast_config(
        feature_sets=["highlevel"],
        classifiers=["lct"],
        trans_bc=False,
        repeats=3,
        classify_resampling="folds",
    )
    summary = classify(config, encoder.embeddings, encoder.data, tmp_path / "out")
    _, scores = read_outputs(tmp_path / "out")
    train = load_inputs(encoder.embeddings, encoder.data, ["highlevel"], ["train"])
    folds = sorted(np.unique(train.fold).tolist())[:3]
    assert summary["left_out_folds"] == folds
    assert sorted(set(scores["left_out_fold"].to_pylist())) == folds
    entry = summary["results"]["highlevel/lct"]
    assert [s["left_out_fold"] for s in entry["per_seed"]] == folds
    # The deterministic LCT now varies with its training sample.
    assert entry["aggregate"]["auc"]["std"] > 0
    for (_, x_train, _), fold in zip(spy.calls, folds, strict=True):
        kept = train.features["highlevel"][train.fold != fold]
        left_out = train.features["highlevel"][train.fold == fold]
        assert len(x_train) == len(kept)
        assert shared_rows(x_train, kept) == len(kept)
        assert shared_rows(x_train, left_out) == 0
    too_many = config.model_copy(update={"repeats": 50})
    with pytest.raises(ValueError, match="exceeds the 5 folds"):
        classify(too_many, encoder.embeddings, encoder.data, tmp_path / "again")


def test_classify_needs_data_for_trans_bc(encoder: Encoder, tmp_path: Path) -> None:
    config = fast_config(feature_sets=["latent"])
    with pytest.raises(ValueError, match=r"Trans\+BC .*--data"):
        classify(config, encoder.embeddings, None, tmp_path / "out")
    with pytest.raises(ValueError, match="--data"):
        classify(
            config.model_copy(update={"trans_bc": False, "feature_sets": ["event"]}),
            encoder.embeddings,
            None,
            tmp_path / "out",
        )


# ------------------------------------------------------------------------------------------------
# CWoLa


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
    fractions = config.cwola_fractions
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
    out = tmp_path / "bumphunt"
    summary = cwola(
        config, encoder.embeddings, encoder.data, out, mode="bumphunt", classifier="lct"
    )
    _, scores = read_outputs(out)
    everything = load_inputs(encoder.embeddings, encoder.data, ["latent"])
    assert set(summary["splits"]) == {"train", "val", "test"}
    low, high = config.signal_region
    width = config.sideband_width
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
        cuts = summary["results"][feature_set]["cuts"]
        assert [c["efficiency"] for c in cuts] == config.bumphunt_efficiencies
        for cut in cuts:
            truth = cut["signal_region_truth"]
            assert truth["signal"] + truth["background"] + truth["unknown"] == cut["observed"]
        assert cuts[0]["observed"] == int(column_to_numpy(part["in_signal_region"]).sum())
    # k-fold cross-training: no event is scored by a classifier trained on it.
    assert len(spy.calls) == len(config.feature_sets) * len(np.unique(everything.fold))
    for _, x_train, x_test in spy.calls:
        assert shared_rows(x_train, x_test) == 0


def test_cwola_refuses_unknown_mode_and_classifier(encoder: Encoder, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown CWoLa mode"):
        cwola(fast_config(), encoder.embeddings, None, tmp_path, mode="real")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown classifier"):
        cwola(fast_config(), encoder.embeddings, None, tmp_path, classifier="bdt")  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------------
# unknown labels


def test_unknown_labels_are_left_out_with_a_message(
    prepared: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    def hide_labels(table: pa.Table) -> pa.Table:
        labels = column_to_numpy(table["label"]).copy()
        labels[:40] = -1
        index = table.schema.get_field_index("label")
        return table.set_column(index, table.schema.field("label"), pa.array(labels, pa.int8()))

    embeddings = write_embeddings(prepared, tmp_path / "emb", edit=hide_labels)
    everything = load_inputs(embeddings, None, ["latent"])
    unknown = {
        s: int(((everything.split == s) & (everything.label == -1)).sum())
        for s in ("train", "test")
    }
    assert unknown["train"] > 0
    assert unknown["test"] > 0
    config = fast_config(feature_sets=["latent"], classifiers=["lct"], trans_bc=False)
    with caplog.at_level(logging.WARNING, logger="distributed_clr.evaluate.inputs"):
        summary = classify(config, embeddings, None, tmp_path / "classify")
    assert f"{unknown['test']} of" in caplog.text
    assert "have label -1 (unknown) and are left out of the classifier test" in caplog.text
    for split in ("train", "test"):
        assert summary["splits"][split]["unlabelled_excluded"] == unknown[split]
    _, scores = read_outputs(tmp_path / "classify")
    assert -1 not in scores["label"].to_pylist()
    assert scores.num_rows == config.repeats * summary["splits"]["test"]["events"]

    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="distributed_clr.evaluate.inputs"):
        cwola(config, embeddings, None, tmp_path / "idealised", mode="idealised", classifier="lct")
    assert "left out of the idealised CWoLa scan" in caplog.text
    # The bump hunt needs no labels: unknown events take part.
    cwola(config, embeddings, None, tmp_path / "bump", mode="bumphunt", classifier="lct")
    _, bump_scores = read_outputs(tmp_path / "bump")
    assert -1 in bump_scores["label"].to_pylist()


# ------------------------------------------------------------------------------------------------
# MLflow


def _artifacts(mlflow_client: Any, run_id: str, path: str | None = None) -> Iterator[str]:
    for item in mlflow_client.list_artifacts(run_id, path):
        if item.is_dir:
            yield from _artifacts(mlflow_client, run_id, item.path)
        else:
            yield item.path


def test_results_go_to_a_child_of_the_encoder_run(encoder: Encoder, tmp_path: Path) -> None:
    from distributed_clr import tracking

    config = fast_config(feature_sets=["latent", "highlevel"], classifiers=["lct"], trans_bc=False)
    # The encoder's run comes from the checkpoint the embeddings name.
    summary = classify(
        config, encoder.embeddings, encoder.data, tmp_path / "a", tracking=encoder.tracking
    )
    info = summary["mlflow"]
    mlflow_client = tracking.client(info["uri"])
    child = mlflow_client.get_run(info["run_id"])
    assert child.data.tags["mlflow.parentRunId"] == encoder.parent_run_id
    assert child.data.tags["dclr.kind"] == "evaluate"
    assert info["run_name"].startswith(f"{PARENT_NAME}-classify-")
    assert child.info.status == "FINISHED"
    auc = summary["results"]["highlevel/lct"]["aggregate"]["auc"]
    assert child.data.metrics["auc/highlevel/lct"] == pytest.approx(auc["mean"])
    assert child.data.metrics["auc_std/highlevel/lct"] == pytest.approx(auc["std"])
    assert child.data.params["evaluate.feature_sets"] == json.dumps(["latent", "highlevel"])
    artifacts = set(_artifacts(mlflow_client, info["run_id"]))
    assert {"summary.json", "scores.parquet", "plots/rejection.png", "plots/sic.png"} <= artifacts
    assert "plots/latent_projection.png" in artifacts

    # Rerunning the same evaluation reuses its run; another evaluation gets its own.
    again = classify(
        config, encoder.embeddings, encoder.data, tmp_path / "b", tracking=encoder.tracking
    )
    assert again["mlflow"]["run_id"] == info["run_id"]
    scan = cwola(
        config,
        encoder.embeddings,
        encoder.data,
        tmp_path / "c",
        mode="idealised",
        classifier="lct",
        mlflow_run_id=encoder.parent_run_id,
        tracking=encoder.tracking,
    )
    assert scan["mlflow"]["run_id"] != info["run_id"]
    assert scan["mlflow"]["run_name"].startswith(f"{PARENT_NAME}-cwola-idealised-lct-")
    scan_run = mlflow_client.get_run(scan["mlflow"]["run_id"])
    assert scan_run.data.tags["mlflow.parentRunId"] == encoder.parent_run_id
    assert "cwola/auc/highlevel/lct/f_0.5" in scan_run.data.metrics
    assert "plots/cwola_scan.png" in set(_artifacts(mlflow_client, scan["mlflow"]["run_id"]))

    with pytest.raises(ValueError, match="no MLflow run"):
        classify(
            config,
            encoder.embeddings,
            encoder.data,
            tmp_path / "d",
            mlflow_run_id="0" * 32,
            tracking=encoder.tracking,
        )
    off = encoder.tracking.model_copy(update={"enabled": False})
    latent = config.model_copy(update={"feature_sets": ["latent"]})
    assert (
        classify(latent, encoder.embeddings, None, tmp_path / "e", tracking=off)["mlflow"] is None
    )


# ------------------------------------------------------------------------------------------------
# the CLI


def _run_cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="dclr")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    code: int = args.handler(args)
    return code


def test_cli_prints_a_results_table(
    encoder: Encoder, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    common = [
        "--embeddings",
        str(encoder.embeddings),
        "--data",
        str(encoder.data),
        "--preset",
        "debug",
        "--set",
        "tracking.enabled=false",
        "--set",
        "evaluate.fcn_epochs=5",
    ]
    code = _run_cli(
        [
            "evaluate",
            "classify",
            "--out",
            str(tmp_path / "classify"),
            "--feature-set",
            "highlevel",
            "--set",
            "evaluate.trans_bc=false",
            *common,
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "feature set" in printed
    assert "highlevel" in printed
    assert "latent" not in printed.split("feature set")[1].split("files:")[0]
    assert (tmp_path / "classify" / "summary.json").is_file()

    code = _run_cli(
        [
            "evaluate",
            "cwola",
            "--mode",
            "bumphunt",
            "--classifier",
            "lct",
            "--out",
            str(tmp_path / "bump"),
            "--feature-set",
            "latent",
            *common,
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "CWoLa bump hunt (lct)" in printed
    assert "Z (fit unc.)" in printed
    summary = json.loads((tmp_path / "bump" / "summary.json").read_text())
    assert list(summary["results"]) == ["latent"]
    assert math.isfinite(summary["results"]["latent"]["cuts"][0]["observed"])
