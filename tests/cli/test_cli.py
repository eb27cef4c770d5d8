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


def test_flags_win_over_set_and_name_their_key() -> None:
    from distributed_clr.cli import build_parser
    from distributed_clr.cli.options import config_from

    args = build_parser().parse_args(
        ["pretrain", "--data", "d", "--set", "ray.num_workers=3", "--workers", "5", "--gpu"]
    )
    config = config_from(args)
    assert (config.ray.num_workers, config.ray.use_gpu) == (5, True)
    assert args.workers == 5
    args = build_parser().parse_args(["pretrain", "--data", "d", "--set", "ray.num_workers=3"])
    assert config_from(args).ray.num_workers == 3  # no flag: --set stands
    help_text = build_parser()._subparsers._group_actions[0].choices["pretrain"].format_help()  # type: ignore[union-attr]
    assert "(ray.num_workers)" in help_text


def test_repeated_flags_collect_a_list_once() -> None:
    from distributed_clr.cli import build_parser
    from distributed_clr.cli.options import config_from

    argv = ["evaluate", "classify", "--embeddings", "e", "--out", "o"]
    argv += ["--feature-set", "latent", "--feature-set", "event", "--feature-set", "latent"]
    args = build_parser().parse_args(argv)
    assert config_from(args).evaluate.feature_sets == ["latent", "event"]


def test_exit_codes_user_error_run_error_and_bug(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from distributed_clr.cli import data as data_commands
    from distributed_clr.errors import RunError, UserError

    def raiser(error: BaseException) -> object:
        def handler(args: object) -> int:
            raise error

        return handler

    for error, code in ((UserError("bad input\nsecond line"), 2), (RunError("it broke\nmore"), 1)):
        monkeypatch.setattr(data_commands, "_cmd_prepare", raiser(error))
        assert main(["prepare", "raw", "--out", "o"]) == code
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1, err
    monkeypatch.setattr(data_commands, "_cmd_prepare", raiser(ValueError("a bug")))
    with pytest.raises(ValueError, match="a bug"):  # a programming error keeps its traceback
        main(["prepare", "raw", "--out", "o"])


def test_tables_align_columns() -> None:
    from distributed_clr.cli.tables import mean_std, number, table

    text = table(["name", "value"], [["a", 1], ["long name", 22]], right=[1])
    lines = text.splitlines()
    assert lines == ["  name       value", "  a              1", "  long name     22"]
    assert table(None, [["x", "y"]]) == "  x  y\n"
    assert number(float("nan")) == "n/a"
    assert mean_std({"mean": 0.5, "std": 0.01, "n": 3}) == "0.500 +- 0.010"
    assert mean_std({"mean": 0.5, "std": 0.0, "n": 1}) == "0.500"
