"""``classify`` end to end on the embeddings of a tiny encoder: its files, that summary and
scores agree, that no test event is ever trained on, fold resampling, and its user errors."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from distributed_clr.config.schema import EvaluateConfig
from distributed_clr.errors import UserError
from distributed_clr.evaluate import EvaluationError, classify, cwola
from distributed_clr.evaluate.classify import resampling_plan
from distributed_clr.evaluate.inputs import load_inputs
from distributed_clr.storage.reader import column_to_numpy
from tests.evaluate.helpers import (
    NO_TRANS_BC,
    Encoder,
    TrainingSpy,
    assert_png,
    fast_config,
    group_auc,
    read_outputs,
    shared_rows,
)
from tests.evaluate.test_inputs import toy_inputs, write_embeddings


@pytest.mark.ray
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
        for repeat in entry["per_seed"]:  # each repeat's bootstrap interval holds its AUC
            m = repeat["metrics"]
            assert m["auc_low"] <= m["auc"] <= m["auc_high"], key
            assert m["auc_high"] - m["auc_low"] > 0, key
        assert 0.0 <= entry["aggregate"]["fpr_at_tpr_0.5"]["mean"] <= 1.0

    # The W' jets are heavy (500 and 100 GeV): the jet masses separate them from QCD. Their
    # signal windows are not linear in the masses, so the FCN does better than the LCT.
    assert summary["results"]["highlevel/fcn"]["aggregate"]["auc"]["mean"] > 0.8
    assert summary["results"]["highlevel/lct"]["aggregate"]["auc"]["mean"] > 0.75
    bc = summary["results"]["constituents/trans_bc"]["per_seed"]
    assert all(1 <= s["training"]["epochs"] <= config.trans_bc.epochs for s in bc)

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


@pytest.mark.ray
def test_classify_on_a_balanced_standard_test_set(encoder: Encoder, tmp_path: Path) -> None:
    """``sample.classify_test.signal_to_background=1``: the test events are half signal, drawn
    by event key, recorded as the composition; the train events are untouched."""
    from distributed_clr.config.schema import SampleConfig

    sample = SampleConfig.model_validate({"classify_test": {"signal_to_background": 1.0}})
    config = fast_config(feature_sets=["highlevel"], classifiers=["lct"], trans_bc=NO_TRANS_BC)
    summary = classify(config, encoder.embeddings, encoder.data, tmp_path / "out", sample=sample)
    test = summary["composition"]["classify_test"]
    assert test["signal"] == test["background"] > 0
    assert summary["splits"]["test"]["signal"] == summary["splits"]["test"]["background"]
    every = load_inputs(encoder.embeddings, encoder.data, ["highlevel"], ["train", "test"])
    train_labels = every.label[every.split == "train"]
    assert summary["splits"]["train"]["events"] == int((train_labels >= 0).sum())
    _, scores = read_outputs(tmp_path / "out")
    assert scores.num_rows == config.repeats * test["events"]
    # Asking for more than there is names the role and the counts.
    greedy = SampleConfig.model_validate({"classify_test": {"background": 10**6}})
    with pytest.raises(UserError, match=r"classify_test.*10+"):
        classify(config, encoder.embeddings, encoder.data, tmp_path / "greedy", sample=greedy)


@pytest.mark.ray
def test_classify_fold_resampling_leaves_out_one_train_fold_per_repeat(
    encoder: Encoder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spy = TrainingSpy(monkeypatch)
    config = fast_config(
        feature_sets=["highlevel"],
        classifiers=["lct"],
        trans_bc=NO_TRANS_BC,
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


@pytest.mark.ray
def test_classify_needs_data_for_trans_bc(encoder: Encoder, tmp_path: Path) -> None:
    config = fast_config(feature_sets=["latent"])
    with pytest.raises(ValueError, match=r"Trans\+BC .*--data"):
        classify(config, encoder.embeddings, None, tmp_path / "out")
    with pytest.raises(ValueError, match="--data"):
        classify(
            config.model_copy(update={"trans_bc": NO_TRANS_BC, "feature_sets": ["event"]}),
            encoder.embeddings,
            None,
            tmp_path / "out",
        )


@pytest.mark.ray
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
    config = fast_config(feature_sets=["latent"], classifiers=["lct"], trans_bc=NO_TRANS_BC)
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


def test_the_resampling_plan_and_its_user_error() -> None:
    train = toy_inputs([0, 1] * 5, ["train"] * 10)  # folds 0..4
    seeds = [3, 4, 5]
    assert resampling_plan(EvaluateConfig(), train, seeds) == [(3, None), (4, None), (5, None)]
    folds = EvaluateConfig(classify_resampling="folds")
    assert resampling_plan(folds, train, seeds) == [(3, 0), (4, 1), (5, 2)]
    with pytest.raises(UserError, match="exceeds the 5 folds") as caught:
        resampling_plan(folds, train, list(range(6)))
    assert isinstance(caught.value, EvaluationError)
    assert isinstance(caught.value, ValueError)
