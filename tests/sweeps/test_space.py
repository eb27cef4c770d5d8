"""Space files are checked before anything starts: unknown, renamed and fixed keys, invalid
values, bounds and combinations, and the file's structure; the shipped spaces load under every
preset."""

from __future__ import annotations

from pathlib import Path

import pytest

from distributed_clr.config import ConfigError, get_preset, resolve_config
from distributed_clr.config.schema import JET_AUGMENTATIONS
from distributed_clr.sweeps import Param, SearchSpace, check_search, load_space, space_from_dict
from tests.sweeps.spaces import SPACES, write_space


def test_unknown_key_is_named_with_the_file(tmp_path: Path) -> None:
    path = write_space(tmp_path, "params:\n  model.latnet_dim: {grid: [8, 16]}\n")
    with pytest.raises(ConfigError, match=r"model\.latnet_dim") as err:
        load_space(path, get_preset("debug"))
    assert str(path) in str(err.value)
    assert "Did you mean 'latent_dim'" in str(err.value)


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("train.lr", "train.optimizer.lr"),
        ("train.optimizer", "train.optimizer.name"),
        ("train.fail_epoch", "train.faults.fail_epoch"),
    ],
)
def test_old_flat_key_is_refused_naming_the_new_one(tmp_path: Path, old: str, new: str) -> None:
    path = write_space(tmp_path, f"params:\n  {old}: {{grid: [1, 2]}}\n")
    with pytest.raises(ConfigError, match=rf"'{old}' was renamed to '{new}'") as err:
        load_space(path, get_preset("debug"))
    assert str(path) in str(err.value)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("model.latent_dim: {grid: [8, 1000]}", r"value 1000 of 'model.latent_dim' is invalid"),
        ("augment.pipeline: {choice: [[rotate], [spin]]}", "augment.pipeline"),
        ("loss.temperature: {loguniform: [0.0, 1.0]}", "loguniform needs low > 0"),
        ("loss.temperature: {uniform: [0.5, 0.1]}", "needs low < high"),
        ("loss.temperature: {loguniform: [0.1, 20.0]}", "upper bound 20.0 of 'loss.temperature'"),
        ("train.optimizer.lr: {uniform: [0.1]}", "takes two numbers"),
        ("train.optimizer.lr: {normal: [0.1, 0.2]}", "unknown kind 'normal'"),
        ("train.optimizer.lr: [0.1, 0.2]", "exactly one of"),
        ("model.latent_dim: {uniform: [8, 64]}", "use randint or choice"),
        ("train.batch_size: {randint: [16, 64.5]}", "integer bounds"),
        ("train.optimizer.lr: {grid: [0.1, 0.1]}", "more than once"),
        ("ray.num_workers: {grid: [1, 2]}", "cannot be swept"),
        ("prepare.num_constituents: {grid: [8, 16]}", "already prepared"),
    ],
)
def test_invalid_values_and_bounds_are_rejected(tmp_path: Path, spec: str, message: str) -> None:
    path = write_space(tmp_path, f"params:\n  {spec}\n")
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
        load_space(write_space(tmp_path, "loss.temperature: {grid: [0.1]}\n"), base)
    with pytest.raises(ConfigError, match="'params' must map"):
        load_space(write_space(tmp_path, "description: nothing\n"), base)
    with pytest.raises(ConfigError, match=r"tune\.serch"):
        load_space(
            write_space(tmp_path, "tune: {serch: grid}\nparams: {train.optimizer.lr: {grid: [1]}}"),
            base,
        )
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_space(write_space(tmp_path, "params: {train.optimizer.lr: [\n"), base)
    with pytest.raises(ConfigError, match="cannot read space file"):
        load_space(tmp_path / "absent.yaml", base)


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
    assert set(optimizer.keys) == {
        "train.optimizer.name",
        "train.optimizer.lr",
        "train.batch_size",
    }
    assert optimizer.param("train.optimizer.name").values == ("adam", "lars")
    for space in (temperature, ablation, optimizer):
        check_search(space, resolve_config(preset, overrides=space.settings).tune)


def test_the_object_space_loads_on_the_object_preset() -> None:
    space = load_space(SPACES / "adc_loss_latent.yaml", get_preset("paper_adc"))
    assert space.all_grid
    assert space.grid_points == 10
    assert space.param("loss.name").values == ("ntxent", "supcon")
    assert space.param("model.latent_dim").values == (4, 8, 16, 32, 64)


def test_search_algorithm_must_fit_the_space() -> None:
    base = get_preset("debug")
    space = load_space(SPACES / "temperature_latent.yaml", base)
    with pytest.raises(ConfigError, match=r"grid search needs every param as 'grid'.*--search"):
        check_search(space, base.tune.model_copy(update={"search": "grid"}))
    # The ranking metric is the one that picks each run's kept checkpoint.
    with pytest.raises(
        ConfigError, match=r"'tune\.metric' was renamed to 'train\.selection_metric'"
    ):
        resolve_config("debug", overrides=["tune.metric=val_probe_auc"])


def test_space_fingerprint_ignores_order() -> None:
    a = SearchSpace("a", (Param("x.y", "grid", (1, 2)), Param("a.b", "choice", ("u",))))
    b = SearchSpace("b", (Param("a.b", "choice", ("u",)), Param("x.y", "grid", (1, 2))))
    assert a.fingerprint() == b.fingerprint()
