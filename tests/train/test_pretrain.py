"""Pretraining on Ray Train with 2 CPU workers on tiny data: the loss falls, checkpoints and the
MLflow run hold what they should, a crashed worker is restarted once, and an interrupted run
(killed driver) continues at the next epoch when rerun."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from distributed_clr.checkpoint import load_checkpoint
from distributed_clr.cli import main
from distributed_clr.config import apply_overrides, get_preset, to_flat_dict
from distributed_clr.config.schema import RunConfig
from distributed_clr.train import PretrainError, plan_epoch, pretrain

DCLR = str(Path(sys.executable).with_name("dclr"))


def _config(tmp_path: Path, *overrides: str) -> RunConfig:
    return apply_overrides(
        get_preset("debug"),
        [
            f"tracking.uri=sqlite:///{tmp_path}/mlflow.db",
            f"ray.storage_path={tmp_path}/ray_results",
            "tracking.system_metrics=false",
            *overrides,
        ],
    )


def _client(tmp_path: Path) -> Any:
    from mlflow.tracking import MlflowClient

    return MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")


def _steps(client: Any, run_id: str, key: str = "train_loss") -> list[int]:
    return sorted(int(m.step) for m in client.get_metric_history(run_id, key))


def _artifacts(client: Any, run_id: str, path: str | None = None) -> set[str]:
    found = set()
    for item in client.list_artifacts(run_id, path):
        found.add(item.path)
        if item.is_dir:
            found |= _artifacts(client, run_id, item.path)
    return found


def test_plan_epoch_gives_every_rank_the_same_steps() -> None:
    plan = plan_epoch(train_events=1001, val_events=40, batch_size=100, workers=3)
    assert plan.steps_per_epoch == 3  # 333 events per rank -> 3 full batches
    assert plan.val_batch_size == 13
    with pytest.raises(PretrainError, match="needs at least 400"):
        plan_epoch(train_events=399, val_events=40, batch_size=100, workers=4)
    with pytest.raises(PretrainError, match="val split has 3 events"):
        plan_epoch(train_events=1000, val_events=3, batch_size=10, workers=2)


@pytest.mark.ray
def test_pretrain_learns_and_records_everything(
    ray_session: None, prepared: Path, tmp_path: Path
) -> None:
    config = _config(
        tmp_path, "train.epochs=4", "train.optimizer.lr=3e-3", "train.checkpoint.keep=2"
    )
    result = pretrain(config, prepared, "learns")

    losses = [h["train_loss"] for h in result.history]
    assert [int(h["epoch"]) for h in result.history] == [0, 1, 2, 3]
    assert losses[-1] < losses[0], losses
    assert result.epochs == 4
    assert not result.stopped_early

    # Checkpoints: the best 2 by the selection metric (the label-free alignment + uniformity)
    # plus the latest survive; the kept best is the epoch with the lowest value.
    assert result.selection_metric == "val_align_uniform"
    best = load_checkpoint(result.best_checkpoint)
    geometry = {int(h["epoch"]): h["val_align_uniform"] for h in result.history}
    assert best["train_state"].history[-1]["val_align_uniform"] == min(geometry.values())
    assert best["train_state"].epoch == result.best_epoch
    assert result.best_value == min(geometry.values())
    assert best["config"].prepare.num_constituents == 16  # taken from the data
    kept = sorted(p.name for p in Path(result.storage).glob("epoch_*"))
    assert 2 <= len(kept) <= 3
    assert "epoch_00003" in kept
    assert len(best["rng"]) == 2  # both ranks' RNG states
    assert best["train_state"].mlflow_run_id == result.mlflow_run_id

    client = _client(tmp_path)
    run = client.get_run(result.mlflow_run_id)
    assert run.info.status == "FINISHED"
    assert run.data.tags["dclr.kind"] == "pretrain"
    assert run.data.tags["dclr.run_name"] == "learns"
    flat = to_flat_dict(best["config"])
    assert run.data.params["train.optimizer.lr"] == "0.003"
    composition = {k for k in run.data.params if k.startswith("composition.")}
    assert set(run.data.params) - composition == set(flat)
    assert run.data.params["composition.pretrain.train.events"] == str(
        json.loads((prepared / "manifest.json").read_text())["summary"]["splits"]["train"]
    )
    for key in (
        "train_loss",
        "val_loss",
        "val_alignment",
        "val_uniformity",
        "val_view_retrieval",
        "val_align_uniform",
        "lr",
        "events_per_s",
    ):
        assert _steps(client, result.mlflow_run_id, key) == [0, 1, 2, 3], key
    assert 0.0 <= run.data.metrics["val_probe_auc"] <= 1.0
    for name in config.augment.pipeline:  # each augmentation's measured effect
        assert 0.5 < run.data.metrics[f"augment_changed/{name}"] <= 1.0, name
        assert f"augment_input_changed/{name}" in run.data.metrics, name
    artifacts = _artifacts(client, result.mlflow_run_id)
    for expected in (
        "config.yaml",
        "checkpoint/state.pt",
        "checkpoint/config.yaml",
        "plots/loss_curve.png",
        "embeddings/val/manifest.json",
        "embeddings/test/manifest.json",
    ):
        assert expected in artifacts, (expected, sorted(artifacts))
    models = client.search_logged_models(experiment_ids=[run.info.experiment_id])
    assert any(m.source_run_id == result.mlflow_run_id for m in models)

    # dclr embed with the run id: the checkpoint comes from MLflow, every event is embedded.
    out = tmp_path / "embeddings"
    argv = ["embed", "--run", result.mlflow_run_id, "--data", str(prepared), "--out", str(out)]
    assert main([*argv, "--preset", "debug", "--set", f"tracking.uri={config.tracking.uri}"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    prepared_rows = json.loads((prepared / "manifest.json").read_text())["rows"]
    assert manifest["complete"]
    assert manifest["rows"] == prepared_rows
    assert manifest["summary"]["dim"] == config.model.latent_dim

    # The same name again: the run is complete, nothing is retrained or logged twice.
    again = pretrain(config, prepared, "learns")
    assert again.mlflow_run_id == result.mlflow_run_id
    assert again.epochs == 4
    assert _steps(client, result.mlflow_run_id) == [0, 1, 2, 3]


@pytest.mark.ray
def test_background_only_pretraining_records_its_composition(
    ray_session: None, prepared: Path, tmp_path: Path
) -> None:
    """``sample.pretrain.signal=0``: no signal event is trained or validated on, and the
    realised counts are MLflow params and part of the result."""
    config = _config(tmp_path, "train.epochs=1", "sample.pretrain.signal=0")
    result = pretrain(config, prepared, "background_only", log_embeddings=False)

    splits = json.loads((prepared / "manifest.json").read_text())["summary"]["splits"]
    train, val = result.composition["train"], result.composition["val"]
    assert train["signal"] == 0
    assert val["signal"] == 0
    assert 0 < train["events"] == train["background"] < splits["train"]
    params = _client(tmp_path).get_run(result.mlflow_run_id).data.params
    assert params["composition.pretrain.train.signal"] == "0"
    assert params["composition.pretrain.val.signal"] == "0"
    assert params["composition.pretrain.train.background"] == str(train["background"])
    assert params["sample.pretrain.signal"] == "0"
    # the probe is a diagnostic on a fixed balanced subset, whatever the training composition
    probe = result.composition["probe"]
    assert probe["signal"] > 0
    assert probe["background"] > 0


@pytest.mark.ray
def test_crashed_worker_restarts_from_the_last_checkpoint(
    ray_session: None, prepared: Path, tmp_path: Path
) -> None:
    config = _config(
        tmp_path,
        "train.epochs=3",
        "train.faults.fail_rank=1",
        "train.faults.fail_epoch=1",
        "train.faults.max_failures=1",
    )
    result = pretrain(config, prepared, "crash", log_embeddings=False)
    assert (Path(result.storage) / "fault_injected_rank1_epoch1").exists()  # it did crash
    assert result.epochs == 3
    assert [int(h["epoch"]) for h in result.history] == [0, 1, 2]
    # It continued from epoch 0's checkpoint rather than starting over.
    assert load_checkpoint(result.latest_checkpoint)["train_state"].resumes == 1
    client = _client(tmp_path)
    assert _steps(client, result.mlflow_run_id) == [0, 1, 2]  # each epoch once
    assert _steps(client, result.mlflow_run_id, "val_loss") == [0, 1, 2]


@pytest.mark.ray
def test_crash_without_retries_fails_the_run(
    ray_session: None, prepared: Path, tmp_path: Path
) -> None:
    config = _config(
        tmp_path,
        "train.epochs=2",
        "train.faults.fail_rank=0",
        "train.faults.fail_epoch=0",
        "train.faults.max_failures=0",
    )
    with pytest.raises(PretrainError, match="failed"):
        pretrain(config, prepared, "no-retries", log_embeddings=False)
    runs = _client(tmp_path).search_runs(
        [_client(tmp_path).get_experiment_by_name("distributed_clr").experiment_id]
    )
    assert [r.info.status for r in runs] == ["FAILED"]


def test_bad_inputs_fail_before_training(prepared: Path, tmp_path: Path) -> None:
    with pytest.raises(PretrainError, match="train split has"):
        pretrain(_config(tmp_path, "train.batch_size=100000"), prepared, "too-big")
    with pytest.raises(ValueError, match="invalid run name"):
        pretrain(_config(tmp_path), prepared, "../escape")
    from distributed_clr.storage.manifest import DatasetError

    with pytest.raises(DatasetError, match="does not exist"):
        pretrain(_config(tmp_path), tmp_path / "nowhere", "x")


@pytest.mark.ray
def test_killed_run_continues_at_the_next_epoch(
    ray_session: None, prepared: Path, tmp_path: Path
) -> None:
    command = [
        DCLR,
        "pretrain",
        "--data",
        str(prepared),
        "--preset",
        "debug",
        "--run-name",
        "killed",
        "--set",
        "train.epochs=4",
        "--set",
        f"tracking.uri=sqlite:///{tmp_path}/mlflow.db",
        "--set",
        f"ray.storage_path={tmp_path}/ray_results",
        "--set",
        "tracking.system_metrics=false",
    ]
    env = {**os.environ, "RAY_ADDRESS": ""}
    storage = tmp_path / "ray_results" / "killed"
    proc = subprocess.Popen(
        command,
        start_new_session=True,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 240
        while not (storage / "epoch_00001" / "state.pt").exists():
            assert proc.poll() is None, "pretrain ended before it could be killed"
            assert time.monotonic() < deadline, "no checkpoint of epoch 1 within 240 s"
            time.sleep(0.1)
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    assert not (storage / "epoch_00003").exists()

    rerun = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    resumed = [line for line in rerun.stderr.splitlines() if "resuming after epoch" in line]
    assert resumed, rerun.stderr[-2000:]
    # Ray restores the latest checkpoint its controller had registered: epoch 1's (on disk when
    # the driver died) or, if the kill beat the registration, epoch 0's. Never a fresh start.
    assert any(f"after epoch {k} " in resumed[0] for k in (0, 1, 2)), resumed
    state = load_checkpoint(storage / "epoch_00003")["train_state"]
    assert [int(h["epoch"]) for h in state.history] == [0, 1, 2, 3]
    assert state.resumes == 1
    client = _client(tmp_path)
    runs = client.search_runs([client.get_experiment_by_name("distributed_clr").experiment_id])
    assert len(runs) == 1
    assert runs[0].info.status == "FINISHED"
    assert _steps(client, runs[0].info.run_id) == [0, 1, 2, 3]
    assert "run killed: 4 epochs" in rerun.stdout
    json.dumps(state.history)  # plain numbers only
