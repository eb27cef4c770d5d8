"""The dclr command line: config inspection, logging flags, exit codes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from distributed_clr import __version__
from distributed_clr.cli import main
from distributed_clr.config import get_preset, to_flat_dict


def test_config_show_applies_overrides(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "show", "--preset", "demo", "--set", "model.latent_dim=64"]) == 0
    shown = yaml.safe_load(capsys.readouterr().out)
    assert shown["model"]["latent_dim"] == 64
    assert shown["train"]["batch_size"] == get_preset("demo").train.batch_size


@pytest.mark.parametrize(
    ("override", "key"),
    [("model.latent_dim=-3", "model.latent_dim"), ("model.no_such_key=1", "model.no_such_key")],
)
def test_config_show_rejects_bad_values(
    override: str, key: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["config", "show", "--preset", "demo", "--set", override]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert key in captured.err


def test_config_show_reads_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("preset: paper_lhco\nloss: {temperature: 0.5}\n")
    assert main(["config", "show", "--config", str(path)]) == 0
    shown = yaml.safe_load(capsys.readouterr().out)
    assert shown["loss"]["temperature"] == 0.5
    assert shown["train"]["batch_size"] == 400


def test_config_keys_lists_every_leaf(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "keys"]) == 0
    out = capsys.readouterr().out
    for key in to_flat_dict(get_preset("demo")):
        assert f"{key} = " in out
    assert main(["config", "keys", "train."]) == 0
    out = capsys.readouterr().out
    assert "train.batch_size = 128  [int]" in out
    assert "model." not in out


def test_unknown_preset_is_a_usage_error() -> None:
    with pytest.raises(SystemExit) as info:
        main(["config", "show", "--preset", "nope"])
    assert info.value.code == 2


def test_console_script_version() -> None:
    exe = Path(sys.executable).parent / "dclr"
    result = subprocess.run([str(exe), "--version"], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == f"dclr {__version__}"


def test_quiet_and_verbose_are_exclusive(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["-v", "-q", "config", "show"])
    assert "not allowed with" in capsys.readouterr().err
