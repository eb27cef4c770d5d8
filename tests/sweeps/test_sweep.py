"""Sweeps on Ray: a 2x1 grid on tiny data leaves a parent MLflow run with two children, a
summary table and plots, and is restored (not rerun) by the same command; a sweep with a failed
trial, rerun under the same name, resumes only that trial. A bad space stops ``dclr tune``
before Ray or MLflow start."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from distributed_clr.config import ConfigError, resolve_config
from distributed_clr.config.schema import RunConfig
from distributed_clr.sweeps import SweepError, load_space, space_from_dict, sweep
from tests.sweeps.spaces import write_space


def _overrides(tmp_path: Path, *extra: str) -> list[str]:
    return [
        f"tracking.uri=sqlite:///{tmp_path}/mlflow.db",
        f"ray.storage_path={tmp_path}/ray_results",
        "tracking.system_metrics=false",
        "ray.num_workers=1",
        "train.epochs=2",
        *extra,
    ]


def _client(tmp_path: Path) -> Any:
    from mlflow.tracking import MlflowClient

    return MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")


def _runs(client: Any, kind: str) -> list[Any]:
    experiment = client.get_experiment_by_name("distributed_clr")
    return list(client.search_runs([experiment.experiment_id], f"tags.`dclr.kind` = '{kind}'"))


def _steps(client: Any, run_id: str, key: str = "train_loss") -> list[int]:
    return sorted(int(m.step) for m in client.get_metric_history(run_id, key))


def _artifacts(client: Any, run_id: str, path: str | None = None) -> set[str]:
    found = set()
    for item in client.list_artifacts(run_id, path):
        found.add(item.path)
        if item.is_dir:
            found |= _artifacts(client, run_id, item.path)
    return found


def _cli(argv: list[str]) -> int:
    """``dclr tune`` as the CLI parses it, without the CLI's error handling (errors raise)."""
    from distributed_clr.cli.tune import add_parser

    parser = argparse.ArgumentParser(prog="dclr")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    result: int = args.handler(args)
    return result


def test_cli_rejects_a_bad_space_before_anything_starts(tmp_path: Path) -> None:
    space = write_space(tmp_path, "params:\n  loss.temprature: {grid: [0.1, 0.5]}\n")
    argv = ["tune", "--space", str(space), "--data", str(tmp_path / "data"), "--preset", "debug"]
    argv += [a for o in _overrides(tmp_path) for a in ("--set", o)]
    with pytest.raises(ConfigError, match=r"unknown config key 'loss\.temprature'"):
        _cli(argv)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["space.yaml"]  # no Ray, no MLflow


@pytest.mark.ray
def test_grid_sweep_records_parent_children_summary_and_plots(
    ray_session: None, prepared: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    space_file = write_space(
        tmp_path,
        "params:\n  loss.temperature: {grid: [0.1, 0.5]}\n  model.latent_dim: {grid: [8]}\n",
    )
    overrides = _overrides(tmp_path)
    config = resolve_config("debug", overrides=overrides)
    result = sweep(config, load_space(space_file, config), prepared, "grid")

    assert result.complete
    assert result.failed == 0
    summary = result.summary
    assert len(summary) == 2
    assert set(summary["status"]) == {"complete"}
    assert set(zip(summary["loss.temperature"], summary["model.latent_dim"], strict=True)) == {
        (0.1, 8),
        (0.5, 8),
    }
    assert (summary["epochs"] == 2).all()
    metric = "val_align_uniform"  # the default selection metric: no labels
    assert summary[f"best_{metric}"].between(-4.5, 4.5).all()
    on_disk = pd.read_csv(result.summary_csv)
    assert list(on_disk["trial"]) == list(summary["trial"])
    assert {p.name for p in result.plots} == {
        f"{metric}_vs_temperature.png",
        f"{metric}_vs_latent_dim.png",
    }

    client = _client(tmp_path)
    (parent,) = _runs(client, "sweep")
    assert parent.info.run_id == result.parent_run_id
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["dclr.best_trial"] == summary.loc[0, "trial"]
    assert parent.data.metrics[f"best_{metric}"] == summary.loc[0, f"best_{metric}"]
    assert {
        "summary.csv",
        "space.yaml",
        "config.yaml",
        f"plots/{metric}_vs_temperature.png",
        f"plots/{metric}_vs_latent_dim.png",
    } <= _artifacts(client, parent.info.run_id)

    children = _runs(client, "trial")
    assert len(children) == 2
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parent.info.run_id}
    assert {c.info.run_id for c in children} == set(summary["mlflow_run_id"])
    # Each trial's best value belongs to the checkpoint it kept and embedded (its best epoch).
    for child in children:
        row = summary[summary["mlflow_run_id"] == child.info.run_id].iloc[0]
        kept = int(child.data.metrics["best_epoch"])
        at_kept = {
            int(m.step): m.value for m in client.get_metric_history(child.info.run_id, metric)
        }
        assert row[f"best_{metric}"] == pytest.approx(at_kept[kept])
        assert int(row["best_epoch"]) == kept
    for child in children:
        assert child.info.status == "FINISHED"
        assert child.data.tags["dclr.complete"] == "true"
        row = summary[summary["mlflow_run_id"] == child.info.run_id].iloc[0]
        assert child.data.tags["dclr.run_name"] == row["trial"]
        assert float(child.data.params["loss.temperature"]) == row["loss.temperature"]
        assert int(child.data.params["model.latent_dim"]) == row["model.latent_dim"]
        for key in ("train_loss", "val_loss", "val_probe_auc", "lr"):
            assert _steps(client, child.info.run_id, key) == [0, 1], key
    models = client.search_logged_models(experiment_ids=[parent.info.experiment_id])
    assert {m.source_run_id for m in models} >= set(summary["mlflow_run_id"])

    # The same command again, through the CLI: the finished sweep is restored, nothing reruns.
    argv = ["tune", "--space", str(space_file), "--data", str(prepared), "--name", "grid"]
    argv += ["--preset", "debug", *(a for o in overrides for a in ("--set", o))]
    assert _cli(argv) == 0
    out = capsys.readouterr().out
    assert "sweep grid: 2 trials (complete 2)" in out
    assert f"best: {summary.loc[0, 'trial']}" in out
    assert len(_runs(client, "trial")) == 2
    assert all(_steps(client, c.info.run_id) == [0, 1] for c in children)
    assert [r.info.run_id for r in _runs(client, "sweep")] == [parent.info.run_id]

    # Another space under the same name is refused before anything runs.
    other = space_from_dict({"params": {"loss.temperature": {"grid": [0.2]}}}, config, name="other")
    with pytest.raises(SweepError, match="another search space"):
        sweep(config, other, prepared, "grid")


@pytest.mark.ray
def test_rerun_resumes_only_the_failed_trial(
    ray_session: None, prepared: Path, tmp_path: Path
) -> None:
    # Fault injection: the trial with fail_epoch=1 loses its worker during epoch 1
    # and, with no restarts allowed, fails; the other (fail_epoch=99) never fails.
    config: RunConfig = resolve_config(
        "debug",
        overrides=_overrides(
            tmp_path,
            "train.faults.fail_rank=0",
            "train.faults.fail_epoch=99",
            "train.faults.max_failures=0",
        ),
    )
    space = space_from_dict(
        {"params": {"train.faults.fail_epoch": {"grid": [1, 99]}}}, config, name="f"
    )
    first = sweep(config, space, prepared, "faulty")

    by_fail = first.summary.set_index("train.faults.fail_epoch")
    assert by_fail.loc[1, "status"] == "error"
    assert by_fail.loc[1, "epochs"] == 1
    assert by_fail.loc[99, "status"] == "complete"
    assert by_fail.loc[99, "epochs"] == 2
    assert first.failed == 1
    client = _client(tmp_path)
    (parent,) = _runs(client, "sweep")
    assert parent.info.status == "FAILED"
    done_run = client.get_run(by_fail.loc[99, "mlflow_run_id"])
    failed_run_id = by_fail.loc[1, "mlflow_run_id"]
    assert client.get_run(failed_run_id).info.status == "FAILED"
    assert _steps(client, failed_run_id) == [0]
    done_progress = Path(first.experiment_path, by_fail.loc[99, "trial_id"], "progress.csv")
    done_rows = done_progress.read_text()

    second = sweep(config, space, prepared, "faulty")

    again = second.summary.set_index("train.faults.fail_epoch")
    assert set(again["status"]) == {"complete"}
    assert (again["epochs"] == 2).all()
    assert list(again["trial_id"].sort_index()) == list(by_fail["trial_id"].sort_index())
    assert second.parent_run_id == parent.info.run_id
    assert client.get_run(parent.info.run_id).info.status == "FINISHED"
    children = _runs(client, "trial")
    assert len(children) == 2  # the failed trial continued in its own run
    assert {c.info.run_id for c in children} == set(first.summary["mlflow_run_id"])
    for child in children:
        assert _steps(client, child.info.run_id) == [0, 1]
        assert child.info.status == "FINISHED"
    # The completed trial did not run again.
    assert client.get_run(done_run.info.run_id).info.end_time == done_run.info.end_time
    assert done_progress.read_text() == done_rows


@pytest.mark.ray
def test_a_sweep_on_unlabelled_data_selects_without_labels(
    ray_session: None, unlabelled: Path, tmp_path: Path
) -> None:
    """A black box (every label -1): a small augmentation ablation runs with the default
    metric, each trial's best value is the metric of the checkpoint it kept, the probe is
    skipped (no metric), and the row without phi_shift is marked a no-op."""
    config = resolve_config("debug", overrides=_overrides(tmp_path, "augment.pipeline=[rotate]"))
    space = space_from_dict(
        {"params": {"augment.pipeline": {"grid": [["rotate", "phi_shift"], ["rotate"]]}}},
        config,
        name="ablation",
    )
    result = sweep(config, space, unlabelled, "blind")

    assert result.complete
    assert result.metric == "val_align_uniform"
    summary = result.summary
    assert set(summary["status"]) == {"complete"}
    assert set(summary["note"]) == {
        "all augmentations",
        "without phi_shift (no-op: inputs invariant to it)",
    }
    client = _client(tmp_path)
    for child in _runs(client, "trial"):
        row = summary[summary["mlflow_run_id"] == child.info.run_id].iloc[0]
        kept = int(child.data.metrics["best_epoch"])
        history = client.get_metric_history(child.info.run_id, "val_align_uniform")
        assert row["best_val_align_uniform"] == pytest.approx(
            {int(m.step): m.value for m in history}[kept]
        )
        assert "val_probe_auc" not in child.data.metrics  # no labels, no probe
        params = child.data.params
        assert params["composition.pretrain.train.signal"] == "0"
        assert params["composition.pretrain.train.background"] == "0"
        assert int(params["composition.pretrain.train.unlabelled"]) > 0
        assert child.data.metrics["augment_input_changed/rotate"] > 0.9
        if "phi_shift" in json.loads(row["augment.pipeline"]):
            assert child.data.metrics["augment_changed/phi_shift"] > 0.9
            assert child.data.metrics["augment_input_changed/phi_shift"] == 0.0
