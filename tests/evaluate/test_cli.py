"""``dclr evaluate classify`` and ``dclr evaluate cwola`` print a results table
(``cli/evaluate.py``; here because it uses this package's trained-encoder fixture)."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import pytest

from tests.evaluate.helpers import Encoder

pytestmark = pytest.mark.ray


def _run_cli(argv: list[str]) -> int:
    from distributed_clr.cli.evaluate import add_parser

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
        "evaluate.fcn.epochs=5",
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
            "evaluate.trans_bc.enabled=false",
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
            "--set",
            "evaluate.bumphunt.allow_leaky=true",  # an untrained absolute-input encoder
            *common,
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "CWoLa bump hunt (lct)" in printed
    assert "leakage check" in printed
    assert "Z (fit unc.)" in printed
    summary = json.loads((tmp_path / "bump" / "summary.json").read_text())
    assert list(summary["results"]) == ["latent"]
    (hunt,) = summary["results"]["latent"]["injections"]
    assert math.isfinite(hunt["cuts"][0]["observed"])
