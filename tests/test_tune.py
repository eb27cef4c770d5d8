"""Ray Tune sweeps: space files are checked before anything starts; a 2x2 grid on tiny data
leaves a parent MLflow run with four children, a summary table and plots; a sweep with a failed
trial, rerun under the same name, resumes only that trial."""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from distributed_clr.config import ConfigError, apply_overrides, get_preset, resolve_config
from distributed_clr.config.schema import JET_AUGMENTATIONS, RunConfig
from distributed_clr.tune import (
    Param,
    SearchSpace,
    SweepError,
    TrialRecord,
    add_parser,
    check_search,
    load_space,
    max_concurrent_trials,
    metric_vs_param_figure,
    space_from_dict,
    summarize,
    sweep,
)

SPACES = Path(__file__).resolve().parents[1] / "tune_spaces"


def _space_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "space.yaml"
    path.write_text(text)
    return path


# ------------------------------------------------------------------------------------------------
# space files


def test_unknown_key_is_named_with_the_file(tmp_path: Path) -> None:
    path = _space_file(tmp_path, "params:\n  model.latnet_dim: {grid: [8, 16]}\n")
    with pytest.raises(ConfigError, match=r"model\.latnet_dim") as err:
        load_space(path, get_preset("debug"))
    assert str(path) in str(err.value)
    assert "Did you mean 'latent_dim'" in str(err.value)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("model.latent_dim: {grid: [8, 1000]}", r"value 1000 of 'model.latent_dim' is invalid"),
        ("augment.pipeline: {choice: [[rotate], [spin]]}", "augment.pipeline"),
        ("loss.temperature: {loguniform: [0.0, 1.0]}", "loguniform needs low > 0"),
        ("loss.temperature: {uniform: [0.5, 0.1]}", "needs low < high"),
        ("loss.temperature: {loguniform: [0.1, 20.0]}", "upper bound 20.0 of 'loss.temperature'"),
        ("train.lr: {uniform: [0.1]}", "takes two numbers"),
        ("train.lr: {normal: [0.1, 0.2]}", "unknown kind 'normal'"),
        ("train.lr: [0.1, 0.2]", "exactly one of"),
        ("model.latent_dim: {uniform: [8, 64]}", "use randint or choice"),
        ("train.batch_size: {randint: [16, 64.5]}", "integer bounds"),
        ("train.lr: {grid: [0.1, 0.1]}", "more than once"),
        ("ray.num_workers: {grid: [1, 2]}", "cannot be swept"),
        ("prepare.num_constituents: {grid: [8, 16]}", "already prepared"),
    ],
)
def test_invalid_values_and_bounds_are_rejected(tmp_path: Path, spec: str, message: str) -> None:
    path = _space_file(tmp_path, f"params:\n  {spec}\n")
    with pytest.raises(ConfigError, match=message):
        load_space(path, get_preset("debug"))


def test_combinations_of_discrete_values_are_checked() -> None:
    # heads must divide the width: each value fits the base config, 4 heads in width 6 do not.
    values = {"params": {"model.heads": {"grid": [2, 4]}, "model.latent_dim": {"grid": [6, 8]}}}
    with pytest.raises(ConfigError, match=r"the combination model\.heads=4, model\.latent_dim=6"):
        space_from_dict(values, get_preset("debug"), name="heads")


def test_file_structure_errors(tmp_path: Path) -> None:
    base = get_preset("debug")
    with pytest.raises(ConfigError, match=r"unknown top-level key\(s\) loss.temperature"):
        load_space(_space_file(tmp_path, "loss.temperature: {grid: [0.1]}\n"), base)
    with pytest.raises(ConfigError, match="'params' must map"):
        load_space(_space_file(tmp_path, "description: nothing\n"), base)
    with pytest.raises(ConfigError, match=r"tune\.serch"):
        load_space(
            _space_file(tmp_path, "tune: {serch: grid}\nparams: {train.lr: {grid: [1]}}"), base
        )
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_space(_space_file(tmp_path, "params: {train.lr: [\n"), base)
    with pytest.raises(ConfigError, match="cannot read space file"):
        load_space(tmp_path / "absent.yaml", base)


def test_cli_rejects_a_bad_space_before_anything_starts(tmp_path: Path) -> None:
    space = _space_file(tmp_path, "params:\n  loss.temprature: {grid: [0.1, 0.5]}\n")
    argv = ["tune", "--space", str(space), "--data", str(tmp_path / "data"), "--preset", "debug"]
    argv += [a for o in _overrides(tmp_path) for a in ("--set", o)]
    with pytest.raises(ConfigError, match=r"unknown config key 'loss\.temprature'"):
        _cli(argv)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["space.yaml"]  # no Ray, no MLflow


@pytest.mark.parametrize("preset", ["debug", "demo", "paper_lhco"])
def test_shipped_spaces_load(preset: str) -> None:
    base = get_preset(preset)
    temperature = load_space(SPACES / "temperature_latent.yaml", base)
    assert temperature.param("loss.temperature") == Param(
        "loss.temperature", "loguniform", (0.03, 1.0)
    )
    assert temperature.param("model.latent_dim").values == (8, 16, 32, 48, 64, 128, 256, 512)

    ablation = load_space(SPACES / "augmentation_ablation.yaml", base)
    pipelines = ablation.param("augment.pipeline").values
    assert ablation.all_grid
    assert ablation.grid_points == 6
    assert pipelines[0] == list(JET_AUGMENTATIONS)
    left_out = [next(iter(set(JET_AUGMENTATIONS) - set(p))) for p in pipelines[1:]]
    assert sorted(left_out) == sorted(JET_AUGMENTATIONS)
    assert all(len(p) == 4 for p in pipelines[1:])

    optimizer = load_space(SPACES / "optimizer.yaml", base)
    assert set(optimizer.keys) == {"train.optimizer", "train.lr", "train.batch_size"}
    assert optimizer.param("train.optimizer").values == ("adam", "lars")
    for space in (temperature, ablation, optimizer):
        check_search(space, resolve_config(preset, overrides=space.settings).tune)


def test_search_algorithm_must_fit_the_space() -> None:
    base = get_preset("debug")
    space = load_space(SPACES / "temperature_latent.yaml", base)
    with pytest.raises(ConfigError, match=r"grid search needs every param as 'grid'.*--search"):
        check_search(space, base.tune.model_copy(update={"search": "grid"}))
    with pytest.raises(ConfigError, match=r"tune\.metric"):
        check_search(space, base.tune.model_copy(update={"search": "random", "metric": "auc"}))


def test_tune_domains_and_decoding() -> None:
    from ray.tune.search.sample import Categorical, Float, Integer

    base = get_preset("debug")
    ablation = load_space(SPACES / "augmentation_ablation.yaml", base)
    grid = ablation.param_space("grid")["augment.pipeline"]
    assert set(grid) == {"grid_search"}
    assert len(grid["grid_search"]) == 6
    # Lists travel as JSON text (Tune would search inside lists) and come back as lists.
    assert ablation.decode({"augment.pipeline": grid["grid_search"][1]}) == {
        "augment.pipeline": list(JET_AUGMENTATIONS[1:])
    }
    assert isinstance(ablation.param_space("optuna")["augment.pipeline"], Categorical)

    space = load_space(SPACES / "optimizer.yaml", base)
    domains = space.param_space("random")
    assert isinstance(domains["train.lr"], Float)
    assert domains["train.lr"].lower == 1e-4
    counts = space_from_dict(
        {"params": {"train.batch_size": {"randint": [16, 64]}}}, base, name="n"
    ).param_space("random")["train.batch_size"]
    assert isinstance(counts, Integer)
    assert (counts.lower, counts.upper) == (16, 65)


@pytest.mark.parametrize("name", ["temperature_latent", "augmentation_ablation", "optimizer"])
def test_optuna_suggests_valid_configs(name: str) -> None:
    from distributed_clr.tune import _search_algorithm

    base = get_preset("debug")
    space = load_space(SPACES / f"{name}.yaml", base)
    config = resolve_config("debug", overrides=[*space.settings, ("tune.search", "optuna")])
    search = _search_algorithm(config, concurrency=3)
    assert search.set_search_properties("val_probe_auc", "max", space.param_space("optuna"))
    for trial in ("t0", "t1", "t2"):
        suggested = search.suggest(trial)
        assert set(suggested) == set(space.keys)
        apply_overrides(base, space.overrides(suggested))  # a valid config


def test_concurrency_follows_the_cluster() -> None:
    config = get_preset("debug").model_copy(deep=True)
    config.ray.num_workers = 1
    # A trial: 0.5 CPU for its driver + 1 worker; one CPU stays free for Ray Data.
    assert max_concurrent_trials(config, {"CPU": 4.0}) == 2
    assert max_concurrent_trials(config, {"CPU": 16.0}) == 10
    config.ray.num_workers = 2
    assert max_concurrent_trials(config, {"CPU": 4.0}) == 1
    with pytest.raises(SweepError, match="the Ray cluster has 3"):
        max_concurrent_trials(config, {"CPU": 3.0})
    config.ray.use_gpu = True
    assert max_concurrent_trials(config, {"CPU": 64.0, "GPU": 8.0}) == 4
    with pytest.raises(SweepError, match="GPUs"):
        max_concurrent_trials(config, {"CPU": 64.0, "GPU": 1.0})
    config.tune.max_concurrent_trials = 3
    assert max_concurrent_trials(config, {"CPU": 64.0, "GPU": 8.0}) == 3


def test_asha_never_stops_a_trial_at_its_last_epoch() -> None:
    from distributed_clr.tune import _scheduler

    config = get_preset("debug").model_copy(deep=True)
    config.train.epochs, config.tune.grace_period, config.tune.reduction_factor = 6, 2, 3.0
    scheduler = _scheduler(config)
    scheduler.set_search_properties("val_probe_auc", "max")
    rungs = [milestone for milestone, _ in scheduler._brackets[0]._rungs]
    assert rungs
    assert max(rungs) < config.train.epochs
    config.train.epochs = 2  # no epoch after the grace period: no scheduler
    assert _scheduler(config) is None


def test_summary_and_plots_from_trial_records(tmp_path: Path) -> None:
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


# ------------------------------------------------------------------------------------------------
# sweeps on Ray


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
    parser = argparse.ArgumentParser(prog="dclr")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    result: int = args.handler(args)
    return result


@pytest.mark.ray
def test_placement_groups_of_dead_actors_are_released(ray_session: None) -> None:
    """A trial stopped by ASHA takes its Ray Train controller down with it; the controller's
    worker placement group would keep its CPUs until the job ends."""
    import ray
    from ray.util.placement_group import placement_group, placement_group_table

    from distributed_clr.tune import release_orphaned_placement_groups

    @ray.remote(num_cpus=0)
    class Controller:
        def reserve(self) -> str:
            group = placement_group([{"CPU": 1}])
            ray.get(group.ready())
            return str(group.id.hex())

    kept = placement_group([{"CPU": 1}])  # made by the driver, like Tune's trial groups
    ray.get(kept.ready())
    controller = Controller.remote()
    orphan = ray.get(controller.reserve.remote())
    ray.kill(controller)
    for _ in range(50):  # the GCS marks the creator dead shortly after
        if release_orphaned_placement_groups():
            break
        time.sleep(0.1)
    assert placement_group_table()[orphan]["state"] == "REMOVED"
    assert placement_group_table()[kept.id.hex()]["state"] == "CREATED"
    ray.util.remove_placement_group(kept)


@pytest.mark.ray
def test_grid_sweep_records_parent_children_summary_and_plots(
    ray_session: None, prepared: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    space_file = _space_file(
        tmp_path,
        "params:\n  loss.temperature: {grid: [0.1, 0.5]}\n  model.latent_dim: {grid: [8, 16]}\n",
    )
    overrides = _overrides(tmp_path)
    config = resolve_config("debug", overrides=overrides)
    result = sweep(config, load_space(space_file, config), prepared, "grid")

    assert result.complete
    assert result.failed == 0
    summary = result.summary
    assert len(summary) == 4
    assert set(summary["status"]) == {"complete"}
    assert set(zip(summary["loss.temperature"], summary["model.latent_dim"], strict=True)) == {
        (0.1, 8),
        (0.1, 16),
        (0.5, 8),
        (0.5, 16),
    }
    assert (summary["epochs"] == 2).all()
    assert summary["best_val_probe_auc"].between(0.0, 1.0).all()
    on_disk = pd.read_csv(result.summary_csv)
    assert list(on_disk["trial"]) == list(summary["trial"])
    assert {p.name for p in result.plots} == {
        "val_probe_auc_vs_temperature.png",
        "val_probe_auc_vs_latent_dim.png",
    }

    client = _client(tmp_path)
    (parent,) = _runs(client, "sweep")
    assert parent.info.run_id == result.parent_run_id
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["dclr.best_trial"] == summary.loc[0, "trial"]
    assert parent.data.metrics["best_val_probe_auc"] == summary.loc[0, "best_val_probe_auc"]
    assert {
        "summary.csv",
        "space.yaml",
        "config.yaml",
        "plots/val_probe_auc_vs_temperature.png",
        "plots/val_probe_auc_vs_latent_dim.png",
    } <= _artifacts(client, parent.info.run_id)

    children = _runs(client, "trial")
    assert len(children) == 4
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parent.info.run_id}
    assert {c.info.run_id for c in children} == set(summary["mlflow_run_id"])
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
    assert "sweep grid: 4 trials (complete 4)" in out
    assert f"best: {summary.loc[0, 'trial']}" in out
    assert len(_runs(client, "trial")) == 4
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
            tmp_path, "train.fail_rank=0", "train.fail_epoch=99", "train.max_failures=0"
        ),
    )
    space = space_from_dict({"params": {"train.fail_epoch": {"grid": [1, 99]}}}, config, name="f")
    first = sweep(config, space, prepared, "faulty")

    by_fail = first.summary.set_index("train.fail_epoch")
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

    again = second.summary.set_index("train.fail_epoch")
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


def test_space_fingerprint_ignores_order() -> None:
    a = SearchSpace("a", (Param("x.y", "grid", (1, 2)), Param("a.b", "choice", ("u",))))
    b = SearchSpace("b", (Param("a.b", "choice", ("u",)), Param("x.y", "grid", (1, 2))))
    assert a.fingerprint() == b.fingerprint()
