"""``dclr tune``: a Ray Tune sweep over pretraining, and its summary table."""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any

from distributed_clr.cli.options import (
    add_config_options,
    add_scaling_flags,
    config_from,
    override_flag,
    storage_path,
)
from distributed_clr.cli.tables import run_lines, table
from distributed_clr.config import resolve_config

__all__ = ["add_parser"]


def _value(value: Any) -> str:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.4g}"
    return str(value)


def _cmd_tune(args: argparse.Namespace) -> int:
    from distributed_clr.sweeps import EXIT_INTERRUPTED, load_space, sweep

    # Precedence: preset -> --config files -> the space file's 'tune:' defaults -> --set -> flags.
    space = load_space(args.space, resolve_config(args.preset, args.config))
    result = sweep(config_from(args, before=space.settings), space, args.data, args.name)
    column = f"best_{result.metric}"
    shown = ["trial", *space.keys, column, "epochs", "status"]
    if "note" in result.summary:
        shown.append("note")
    frame = result.summary[shown]
    counts = ", ".join(f"{k} {v}" for k, v in frame["status"].value_counts().items())
    out = sys.stdout
    out.write(f"sweep {result.name}: {len(frame)} trials ({counts})\n\n")
    rows = [[_value(v) for v in row] for row in frame.itertuples(index=False)]
    out.write(table(shown, rows))
    best = result.best
    if best is not None:
        params = ", ".join(f"{k}={_value(best[k])}" for k in space.keys)
        out.write(
            f"\n  best: {best['trial']} ({result.metric} {_value(best[column])} at epoch "
            f"{_value(best['best_epoch'])}): {params}\n"
        )
        if best["mlflow_run_id"]:
            out.write(f"  best MLflow run: {best['mlflow_run_id']}\n")
    out.write(f"  Tune experiment: {result.experiment_path}\n  summary: {result.summary_csv}\n")
    for path in result.plots:
        out.write(f"  plot: {path}\n")
    if result.parent_run_id and result.tracking_uri:
        out.write(run_lines("MLflow parent run", result.parent_run_id, result.tracking_uri))
    resume = f"rerun with --name {result.name} (and the same options) to resume"
    if not result.complete:
        out.write(f"\n  the sweep was interrupted; {resume} it\n")
        return int(EXIT_INTERRUPTED)
    if result.failed:
        out.write(f"\n  {result.failed} trial(s) failed; {resume} them\n")
        return 1
    return 0


def add_parser(subparsers: Any) -> None:
    """Register ``dclr tune``."""
    parser = subparsers.add_parser(
        "tune",
        help="hyper-parameter sweep over pretraining (Ray Tune), tracked in MLflow",
        description="Sweep a search space (tune_spaces/*.yaml) over the pretraining config "
        "with Ray Tune: one Ray Train run per trial, ASHA on the selection metric "
        "(train.selection_metric), one MLflow parent run with a child per trial, and a summary "
        "table and plots at the end. Rerunning with the same --name resumes the sweep: "
        "finished trials are kept, interrupted and failed ones continue from their last "
        "checkpoint.",
    )
    parser.add_argument("--space", type=Path, required=True, help="search space YAML file")
    parser.add_argument(
        "--data",
        type=storage_path,
        required=True,
        help="event dataset: prepared dijets or object-level events",
    )
    parser.add_argument(
        "--name", help="sweep name (Tune experiment, MLflow parent run); a rerun resumes it"
    )
    override_flag(
        parser, "--samples", key="tune.num_samples", type=int,
        help="samples per grid point, or trials",
    )  # fmt: skip
    override_flag(
        parser, "--scheduler", key="tune.scheduler", choices=["asha", "none"],
        help="trial scheduler",
    )  # fmt: skip
    override_flag(
        parser, "--search", key="tune.search", choices=["grid", "random", "optuna"],
        help="search algorithm",
    )  # fmt: skip
    add_scaling_flags(parser, "one GPU per worker")
    add_config_options(parser)
    parser.set_defaults(handler=_cmd_tune)
