"""The MLflow layout of evaluations: a child run of the encoder's run per evaluation, reused by
a rerun, with the settings as params, the metrics and the files."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from distributed_clr.evaluate import classify, cwola
from tests.evaluate.helpers import NO_TRANS_BC, PARENT_NAME, Encoder, fast_config

pytestmark = pytest.mark.ray


def _artifacts(mlflow_client: Any, run_id: str, path: str | None = None) -> Iterator[str]:
    for item in mlflow_client.list_artifacts(run_id, path):
        if item.is_dir:
            yield from _artifacts(mlflow_client, run_id, item.path)
        else:
            yield item.path


def test_results_go_to_a_child_of_the_encoder_run(encoder: Encoder, tmp_path: Path) -> None:
    from distributed_clr import tracking

    config = fast_config(
        feature_sets=["latent", "highlevel"], classifiers=["lct"], trans_bc=NO_TRANS_BC
    )
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


def test_evaluations_of_other_events_get_runs_of_their_own(
    encoder: Encoder, tmp_path: Path
) -> None:
    """The same classifier test on fewer training events is another measurement: it must not
    log into (and overwrite) the run of the full one."""
    from distributed_clr.config.schema import RoleSample, SampleConfig

    config = fast_config(feature_sets=["highlevel"], classifiers=["lct"], trans_bc=NO_TRANS_BC)
    full = classify(
        config, encoder.embeddings, encoder.data, tmp_path / "full", tracking=encoder.tracking
    )
    fewer = classify(
        config,
        encoder.embeddings,
        encoder.data,
        tmp_path / "fewer",
        tracking=encoder.tracking,
        sample=SampleConfig(classify_train=RoleSample(background=40, signal=40)),
    )
    assert fewer["mlflow"]["run_id"] != full["mlflow"]["run_id"]
    assert fewer["composition"]["classify_train"]["background"] == 40
