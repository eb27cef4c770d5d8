"""The config tree: presets, YAML, dotted overrides, validation errors, the flat round trip."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from distributed_clr.config import (
    PRESETS,
    ConfigError,
    RunConfig,
    apply_overrides,
    from_flat_dict,
    get_preset,
    load_yaml,
    resolve_config,
    to_flat_dict,
    to_yaml,
)
from distributed_clr.config.schema import Section


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_flat_round_trip_is_lossless_through_json(name: str) -> None:
    config = get_preset(name)
    flat = to_flat_dict(config)
    # What Ray and MLflow receive: JSON-compatible scalars and lists under dotted keys.
    through_json = json.loads(json.dumps(flat))
    assert from_flat_dict(through_json) == config
    assert all("." in key for key in flat)
    assert flat["model.latent_dim"] == config.model.latent_dim


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_yaml_round_trip(name: str, tmp_path: Path) -> None:
    config = get_preset(name)
    path = tmp_path / "config.yaml"
    path.write_text(to_yaml(config))
    assert resolve_config(preset="debug", files=[path]) == config


def test_paper_preset_holds_the_seed_paper_settings() -> None:
    c = get_preset("paper_lhco")
    assert c.prepare.num_constituents == 50
    assert (c.model.name, c.model.heads, c.model.depth, c.model.latent_dim) == (
        "transformer",
        4,
        2,
        128,
    )
    assert c.model.width is None  # width follows the latent size, as in the paper
    assert c.loss.temperature == 0.1
    assert (c.train.batch_size, c.train.optimizer.lr, c.train.optimizer.name) == (400, 1e-4, "adam")
    assert c.train.early_stopping_patience == 20
    assert c.train.batch_size * c.ray.num_workers == 400  # the paper's global batch
    assert c.sample.classify_test.signal_to_background == 1.0  # the balanced standard test set
    assert c.sample.pretrain.everything
    cwola = get_preset("paper_lhco_cwola")
    assert cwola.sample.pretrain.signal == 0  # a background-only encoder for CWoLa
    assert cwola.model_copy(update={"sample": c.sample}) == c  # nothing else differs
    reference = get_preset("paper_lhco_reference")
    assert (reference.model.name, reference.model.inputs) == ("reference", "paper")
    assert reference.model_copy(update={"model": c.model}) == c


def test_search_preset_is_mjj_blind_and_background_only() -> None:
    c = get_preset("search")
    assert c.model.inputs == "jet_frame"
    assert c.sample.pretrain.signal == 0
    assert "event" not in c.evaluate.feature_sets  # absolute constituents carry m_jj
    assert {"latent", "event_frame", "highlevel"} <= set(c.evaluate.feature_sets)
    assert c.sample.bumphunt.signal is not None
    assert c.sample.bumphunt.signal[0] == 0
    assert c.generate.events >= 20_000  # enough for a closure test


def test_presets_are_fresh_copies() -> None:
    a = get_preset("demo")
    a.augment.pipeline.append("drop")
    assert "drop" not in get_preset("demo").augment.pipeline


def test_unknown_preset_lists_the_available_ones() -> None:
    with pytest.raises(ConfigError, match=r"unknown preset 'nope'.*demo.*paper_lhco"):
        get_preset("nope")


def test_overrides_parse_yaml_values() -> None:
    c = apply_overrides(
        get_preset("demo"),
        [
            "train.batch_size=4096",
            "train.optimizer.lr=1e-4",
            "train.optimizer.grad_clip=null",
            "augment.pipeline=[rotate, distort]",
            "model.name=mlp",
            "generate.pythia_settings.PartonLevel:MPI=off",
        ],
    )
    assert c.train.batch_size == 4096
    assert c.train.optimizer.lr == pytest.approx(1e-4)
    assert c.train.optimizer.grad_clip is None
    assert c.augment.pipeline == ["rotate", "distort"]
    assert c.model.name == "mlp"
    assert c.generate.pythia_settings == {"PartonLevel:MPI": "off"}


def test_later_overrides_win() -> None:
    c = resolve_config("demo", overrides=["model.latent_dim=16", "model.latent_dim=64"])
    assert c.model.latent_dim == 64


@pytest.mark.parametrize(
    ("override", "pattern"),
    [
        ("model.no_such_key=1", r"unknown config key 'model\.no_such_key'.*Allowed: name, "),
        ("model.latnet_dim=8", r"Did you mean 'latent_dim'"),
        ("nosection.key=1", r"unknown config key 'nosection\.key'.*top level"),
        ("model=3", r"names a whole section"),
        ("model.latent_dim.x=3", r"'model\.latent_dim' is a value, not a section"),
        ("model.latent_dim=-3", r"'model\.latent_dim': -3 \(.*greater than or equal to 4"),
        ("model.latent_dim=1024", r"'model\.latent_dim': 1024 \(.*less than or equal to 512"),
        (
            "train.optimizer.name=sgd",
            r"'train\.optimizer\.name': 'sgd' \(.*'adam', 'adamw', 'lars' or 'lamb'",
        ),
        ("train.batch_size=abc", r"'train\.batch_size': 'abc'"),
        ("loss.temperature=0", r"'loss\.temperature': 0 "),
        ("model.heads=3", r"invalid config in 'model': heads \(3\) must divide"),
        ("generate.x_mass=4000", r"must be below wprime_mass"),
        ("prepare.train_fraction=0.9", r"exceeds 1"),
        ("train.faults.fail_rank=1", r"fail_rank and fail_epoch must be set together"),
        ("evaluate.bumphunt.signal_region=[3700, 3300]", r"low < high"),
        ("latent_dim", r"must look like key\.path=value"),
        ("=3", r"must look like key\.path=value"),
        ("model..name=x", r"empty path element"),
    ],
)
def test_bad_overrides_name_the_key_and_what_is_allowed(override: str, pattern: str) -> None:
    with pytest.raises(ConfigError, match=pattern):
        resolve_config("demo", overrides=[override])


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("train.lr", "train.optimizer.lr"),
        ("train.optimizer", "train.optimizer.name"),
        ("train.warmup_epochs", "train.schedule.warmup_epochs"),
        ("train.fail_rank", "train.faults.fail_rank"),
        ("train.keep_checkpoints", "train.checkpoint.keep"),
        ("evaluate.fcn_epochs", "evaluate.fcn.epochs"),
        ("evaluate.trans_bc", "evaluate.trans_bc.enabled"),
        ("evaluate.cwola_fractions", "evaluate.cwola.fractions"),
        ("evaluate.signal_region", "evaluate.bumphunt.signal_region"),
    ],
)
def test_renamed_keys_name_their_new_place(old: str, new: str, tmp_path: Path) -> None:
    message = rf"config key '{re.escape(old)}' was renamed to '{re.escape(new)}'"
    with pytest.raises(ConfigError, match=message):
        resolve_config("demo", overrides=[f"{old}=1"])
    section, _, key = old.partition(".")
    path = tmp_path / "old.yaml"
    path.write_text(f"{section}:\n  {key}: 1\n")
    with pytest.raises(ConfigError, match=message):
        resolve_config("demo", files=[path])


def test_removed_keys_say_why() -> None:
    with pytest.raises(ConfigError, match=r"'data\.path' was removed: .*--data"):
        resolve_config("demo", overrides=["data.path=/x"])


def test_all_errors_are_reported_at_once() -> None:
    with pytest.raises(ConfigError) as info:
        resolve_config("demo", overrides=["model.latent_dim=-3", "train.batch_size=0"])
    assert "model.latent_dim" in str(info.value)
    assert "train.batch_size" in str(info.value)


@given(st.integers(min_value=-1000, max_value=2000))
@settings(max_examples=40, deadline=None)
def test_latent_dim_bounds(value: int) -> None:
    valid = 4 <= value <= 512
    try:
        c = resolve_config("debug", overrides=[f"model.latent_dim={value}", "model.heads=1"])
    except ConfigError:
        assert not valid
    else:
        assert valid
        assert c.model.latent_dim == value


def test_yaml_file_merges_over_preset_and_names_its_base(tmp_path: Path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text("preset: paper_lhco\ntrain:\n  batch_size: 1024\nmodel: {latent_dim: 64}\n")
    c = resolve_config(files=[path])
    assert c.train.batch_size == 1024
    assert c.model.latent_dim == 64
    assert c.train.optimizer.lr == 1e-4  # the rest comes from paper_lhco
    # An explicit preset wins over the file's, and overrides win over the file.
    c = resolve_config("demo", files=[path], overrides=["train.batch_size=8"])
    assert c.train.batch_size == 8
    assert c.train.optimizer.lr == get_preset("demo").train.optimizer.lr


@pytest.mark.parametrize(
    ("text", "pattern"),
    [
        ("train:\n  batchsize: 3\n", r"run\.yaml: unknown config key 'train\.batchsize'"),
        ("train: [1, 2]\n", r"'train'"),
        ("- a\n- b\n", r"must hold a mapping"),
        ("train: {batch_size: 3\n", r"not valid YAML"),
        ("model:\n  latent_dim: 2\n", r"'model\.latent_dim': 2"),
    ],
)
def test_bad_yaml_files(tmp_path: Path, text: str, pattern: str) -> None:
    path = tmp_path / "run.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=pattern):
        resolve_config("demo", files=[path])


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"cannot read config file .*absent\.yaml"):
        load_yaml(tmp_path / "absent.yaml")


def test_empty_yaml_file_is_the_preset(tmp_path: Path) -> None:
    path = tmp_path / "empty.yaml"
    path.write_text("")
    assert resolve_config("demo", files=[path]) == get_preset("demo")


def test_assignment_is_validated() -> None:
    c = get_preset("demo")
    with pytest.raises(ValueError, match="latent_dim"):
        c.model.latent_dim = 0


def _sections(model: type[Section]) -> list[type[Section]]:
    found = [model]
    for field in model.model_fields.values():
        if isinstance(field.annotation, type) and issubclass(field.annotation, Section):
            found += _sections(field.annotation)
    return found


@pytest.mark.parametrize("section", _sections(RunConfig)[1:], ids=lambda s: s.__name__)
def test_every_field_is_documented(section: type[Section]) -> None:
    undocumented = [name for name, f in section.model_fields.items() if not f.description]
    assert not undocumented, f"{section.__name__} fields without a docstring: {undocumented}"
