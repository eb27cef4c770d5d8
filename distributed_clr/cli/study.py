"""``dclr study``: one of the papers' studies in one command, and its tables on stdout."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import Any

from distributed_clr.cli.options import add_config_options, flag_overrides
from distributed_clr.cli.tables import run_lines, table

__all__ = ["add_parser"]


def _cmd_study(args: argparse.Namespace) -> int:
    from distributed_clr.config.load import parse_override
    from distributed_clr.studies import STUDIES, parse_scale, run_study
    from distributed_clr.studies.report import layout

    if args.list:
        rows = [[s.name, s.reproduces, ", ".join(s.kinds), s.description] for s in STUDIES.values()]
        sys.stdout.write(table(["study", "reproduces", "data", "what"], rows))
        return 0
    if args.study is None or not args.data:
        from distributed_clr.errors import UserError

        raise UserError("give a study and --data (dclr study --list shows the studies)")
    overrides = [*(parse_override(text) for text in args.overrides), *flag_overrides(args)]
    outcome = run_study(
        args.study,
        args.data,
        scale=parse_scale(args.scale),
        name=args.name,
        out=args.out,
        preset=args.preset,
        config_files=args.config,
        overrides=overrides,
        command=shlex.join(["dclr", *sys.argv[1:]]) if sys.argv[0].endswith("dclr") else "",
    )
    out = sys.stdout
    out.write(
        f"study {outcome.name}: {outcome.pieces} pieces ({outcome.reused} reused), "
        f"{outcome.seconds:.0f} s\n"
    )
    for report_table in outcome.tables:
        header, rows, notes = layout(report_table)
        out.write(f"\n{report_table.title}\n")
        out.write(table(header, rows))
        for note in notes:
            out.write(f"  {note}\n")
    out.write(f"\n  report: {outcome.report}\n  html:   {outcome.html}\n  csv:    {outcome.csv}\n")
    for plot in outcome.plots:
        out.write(f"  plot:   {plot}\n")
    if outcome.parent_run_id and outcome.tracking_uri:
        out.write(run_lines("MLflow study run", outcome.parent_run_id, outcome.tracking_uri))
    return 0


def add_parser(subparsers: Any) -> None:
    """Register ``dclr study``."""
    from distributed_clr.studies import NAMED_SCALES, STUDIES

    parser = subparsers.add_parser(
        "study",
        help="run one of the papers' studies end to end and write its report",
        description="Pretrain the study's grid of encoders (Ray Tune), embed with each and with "
        "the untrained encoder of each architecture, run its evaluations and write report.md, "
        "report.html and results.csv with the published numbers next to ours. Everything is "
        "logged under one MLflow parent run. Rerunning the same command resumes the study "
        "and skips every finished piece.",
    )
    parser.add_argument("study", nargs="?", choices=list(STUDIES), help="the study")
    parser.add_argument(
        "--data",
        type=Path,
        nargs="+",
        help="prepared dijets or object-level events; several directories of one kind are "
        "combined (a background and its signals)",
    )
    parser.add_argument(
        "--scale",
        default="ci",
        help=f"{', '.join(NAMED_SCALES)} or a factor of the paper's sample sizes (default: ci)",
    )
    parser.add_argument(
        "--name", help="study name (default: <study>-<scale>-<config digest>); a rerun resumes it"
    )
    parser.add_argument("--out", type=Path, help="study directory (default: studies/<name>)")
    parser.add_argument("--list", action="store_true", help="list the studies and exit")
    add_config_options(parser)
    parser.set_defaults(handler=_cmd_study)
