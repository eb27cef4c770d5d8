"""``dclr demo``: the whole method on generated data, and the summary it prints."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from distributed_clr.cli.options import add_config_options, add_scaling_flags, config_from
from distributed_clr.cli.tables import measured, number, table

if TYPE_CHECKING:
    from distributed_clr.demo import DemoResult

__all__ = ["add_parser", "summary_text"]


def summary_text(result: DemoResult) -> str:
    """The demo's facts, stage times, classifier results and CWoLa scan as text tables."""
    facts = [[key, number(value)] for key, value in result.facts.items()]
    times = [[key, f"{seconds:.1f} s"] for key, seconds in result.timings.items()]
    times.append(["total", f"{sum(result.timings.values()):.1f} s"])
    text = table(None, facts) + "\n  time per stage:\n" + table(None, times, right=[1])
    classified = result.classify.get("results", {})
    if classified:
        rows = [
            [
                key,
                measured(entry["aggregate"], "auc"),
                measured(entry["aggregate"], "max_sic", 2),
            ]
            for key, entry in classified.items()
        ]
        text += (
            "\nsupervised classifiers on the test split (mean +- std over repeats [68% bootstrap "
            "interval over the test events]):\n"
        )
        text += table(["features / classifier", "AUC", "max SIC"], rows, right=[1, 2])
    scans = result.cwola.get("results", {})
    if scans:
        fractions = result.cwola.get("fractions", [])
        rows = []
        for feature_set, scan in scans.items():
            aggregated = scan.get("aggregated", {})
            cells = [measured(aggregated.get(f"{f:g}", {}), "auc") for f in fractions]
            rows.append([feature_set, *cells])
        columns = range(1, len(fractions) + 1)
        text += (
            f"\nCWoLa (idealised, {result.cwola.get('classifier', '?')}): test AUC against the "
            "signal fraction f (mean +- std over repeats [68% bootstrap interval])\n"
        )
        text += table(["features", *(f"f={f:g}" for f in fractions)], rows, right=columns)
    return text


def _cmd_demo(args: argparse.Namespace) -> int:
    from distributed_clr.demo import run_demo

    result = run_demo(config_from(args), args.out, scale=args.scale)
    sys.stdout.write(f"\ndemo finished; everything is under {result.directory}/\n\n")
    sys.stdout.write(summary_text(result))
    if result.mlflow_run_id:
        sys.stdout.write(
            f"\nMLflow run {result.mlflow_run_id} (and its evaluation child runs); browse with\n"
            f"  mlflow ui --backend-store-uri {result.tracking_uri}\n"
        )
    return 0


def add_parser(commands: Any) -> None:
    """Register ``demo``."""
    demo = commands.add_parser(
        "demo",
        help="run the method end to end on generated data",
        description="Generate QCD and W' events, prepare dijets, pretrain, embed, and run the "
        "classifier tests and an idealised CWoLa scan, on local Ray (or RAY_ADDRESS). Finished "
        "stages are reused on a rerun.",
    )
    demo.add_argument("--out", type=Path, default=Path("demo_data"), help="working directory")
    demo.add_argument("--scale", type=float, default=1.0, help="multiply every stage's size")
    add_scaling_flags(demo, "train on GPUs")
    add_config_options(demo)
    demo.set_defaults(handler=_cmd_demo)
