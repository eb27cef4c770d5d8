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
    text += _probe_text(result) + _nplm_text(result)
    return text


def _probe_text(result: DemoResult) -> str:
    trained = result.classify.get("process_probe") or {}
    if not trained:
        return ""
    initial = result.untrained_classify.get("process_probe") or {}
    rows = []
    for feature_set, entry in trained.items():
        name = "latent (trained)" if feature_set == "latent" else f"{feature_set} (raw inputs)"
        rows.append([name, _accuracy(entry), f"{entry['chance']:.3f}"])
        if feature_set == "latent" and "latent" in initial:
            rows.append(["latent (untrained)", _accuracy(initial["latent"]), ""])
    return "\nSM process linear probe, test accuracy [68% bootstrap interval]:\n" + table(
        ["features", "accuracy", "chance"], rows
    )


def _accuracy(entry: dict[str, Any]) -> str:
    low, high = entry["interval"]
    return f"{entry['accuracy']:.3f} [{low:.3f}, {high:.3f}]"


def _nplm_text(result: DemoResult) -> str:
    results = result.nplm.get("results") or {}
    if not results:
        return ""
    rows = []
    for feature_set, entry in results.items():
        for process, by_n in entry.get("signals", {}).items():
            for n, stats in by_n.items():
                power = stats["power"].get("3") or {}
                cell = (
                    f"{power['power']:.2f} [{power['low']:.2f}, {power['high']:.2f}]"
                    if power
                    else "-"
                )
                rows.append([feature_set, process, n, f"{stats['z_median']:.2f}", cell])
    return "\nNPLM (embedding vs the 57 raw inputs 'event'):\n" + table(
        ["features", "signal", "injected", "median Z", "P(Z > 3) [68% CL]"], rows
    )


def _cmd_demo(args: argparse.Namespace) -> int:
    from distributed_clr.demo import run_demo, run_object_demo

    if args.kind == "objects":
        if args.preset is None and not args.config:
            args.preset = "demo_objects"
        result = run_object_demo(config_from(args), args.out, scale=args.scale)
    else:
        result = run_demo(config_from(args), args.out, scale=args.scale)
    sys.stdout.write(f"\ndemo finished; everything is under {result.directory}/\n\n")
    sys.stdout.write(summary_text(result))
    if result.mlflow_run_id and result.tracking_uri:
        from distributed_clr.tracking import RunHandle

        url = RunHandle(result.tracking_uri, result.mlflow_run_id, "").ui_url()
        sys.stdout.write(f"\nMLflow run {result.mlflow_run_id} (and its evaluation child runs); ")
        if url:
            sys.stdout.write(f"open\n  MLflow run: {url}\n")
        else:
            browse = f"mlflow ui --backend-store-uri {result.tracking_uri}"
            sys.stdout.write(f"browse with\n  {browse}\n")
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
    demo.add_argument(
        "--kind", choices=["dijet", "objects"], default="dijet",
        help="dijets (QCD and W', the 2023 paper's path) or object-level events (the SM "
        "cocktail and two signals, SupCon and NPLM: the 2025 paper's path; default preset "
        "demo_objects)",
    )  # fmt: skip
    add_scaling_flags(demo, "train on GPUs")
    add_config_options(demo)
    demo.set_defaults(handler=_cmd_demo)
