"""``dclr evaluate classify`` and ``dclr evaluate cwola``: argument parsing and the results table.

``add_parser(subparsers)`` registers the ``evaluate`` command on the ``dclr`` parser. Each
handler resolves the run config (preset, ``--config`` files, ``--set`` overrides, then the
dedicated flags), calls ``evaluate.run.classify`` or ``evaluate.run.cwola`` with the sections
they need, and prints a compact table of the results to stdout; logs go to stderr.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from distributed_clr.config.schema import CLASSIFIERS, FEATURE_SETS

__all__ = ["add_parser", "format_classify", "format_cwola"]


# ------------------------------------------------------------------------------------------------
# formatting


def _number(value: Any, digits: int = 3, general: bool = False) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return f"{value:.{digits}g}" if general else f"{value:.{digits}f}"


def _mean_std(stats: Mapping[str, Any] | None, digits: int = 3, general: bool = False) -> str:
    if not stats or stats.get("mean") is None:
        return "n/a"
    text = _number(stats["mean"], digits, general)
    if stats.get("n", 0) and stats["n"] > 1 and stats.get("std") is not None:
        text += f" +- {_number(stats['std'], digits, general)}"
    return text


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = [
        "  " + "  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True))
        for row in [header, *rows]
    ]
    return "\n".join(line.rstrip() for line in lines) + "\n"


def _footer(summary: Mapping[str, Any], out: Path) -> str:
    text = f"  files: {out / 'summary.json'}, {out / 'scores.parquet'}, {out / 'plots'}/\n"
    mlflow = summary.get("mlflow")
    if mlflow:
        text += f"  MLflow run {mlflow['run_name']} ({mlflow['run_id']}) at {mlflow['uri']}\n"
    return text


def _splits(summary: Mapping[str, Any]) -> str:
    return "; ".join(
        f"{name}: {c['events']} events ({c['signal']} signal, {c['background']} background"
        + (f", {c['unlabelled_excluded']} unlabelled left out" if c["unlabelled_excluded"] else "")
        + ")"
        for name, c in summary["splits"].items()
    )


def format_classify(summary: Mapping[str, Any], out: Path) -> str:
    """The classifier test results as a text table."""
    rows = []
    for result in summary["results"].values():
        stats = result["aggregate"]
        rows.append(
            [
                result["feature_set"],
                result["classifier"],
                _mean_std(stats.get("auc")),
                _mean_std(stats.get("max_sic"), 2),
                _mean_std(stats.get("fpr_at_tpr_0.5"), 3, general=True),
            ]
        )
    header = ["feature set", "classifier", "AUC", "max SIC", "FPR at TPR 0.5"]
    return (
        f"classify: {_splits(summary)}; {len(summary['seeds'])} seeds\n"
        + _table(header, rows)
        + _footer(summary, out)
    )


def format_cwola(summary: Mapping[str, Any], out: Path) -> str:
    """The CWoLa results (scan or bump hunt) as a text table."""
    rows = []
    if summary["mode"] == "idealised":
        for feature_set, result in summary["results"].items():
            for fraction, stats in result["aggregated"].items():
                rows.append(
                    [
                        feature_set,
                        fraction,
                        _mean_std(stats.get("auc")),
                        _mean_std(stats.get("max_sic"), 2),
                        _mean_std(stats.get("fpr_at_tpr_0.5"), 3, general=True),
                    ]
                )
        header = ["feature set", "f", "AUC", "max SIC", "FPR at TPR 0.5"]
        title = (
            f"idealised CWoLa ({summary['classifier']}): {_splits(summary)}; "
            f"{len(summary['seeds'])} seeds"
        )
    else:
        for feature_set, result in summary["results"].items():
            for cut in result["cuts"]:
                truth = cut["signal_region_truth"]
                rows.append(
                    [
                        feature_set,
                        f"{cut['efficiency']:g}",
                        str(cut["observed"]),
                        _number(cut["expected"], 1)
                        + " +- "
                        + _number(cut["expected_uncertainty"], 1),
                        _number(cut["significance"], 2),
                        _number(cut["significance_with_uncertainty"], 2),
                        f"{truth['signal']}/{truth['background']}",
                    ]
                )
        header = ["feature set", "eff", "N (SR)", "B (fit)", "Z", "Z (fit unc.)", "sig/bkg in SR"]
        low, high = summary["signal_region"]
        title = (
            f"CWoLa bump hunt ({summary['classifier']}) in [{low:g}, {high:g}) GeV, sidebands "
            f"{summary['sideband_width']:g} GeV; {_splits(summary)}"
        )
    return f"{title}\n" + _table(header, rows) + _footer(summary, out)


# ------------------------------------------------------------------------------------------------
# handlers


def _flags(args: argparse.Namespace) -> list[tuple[str, Any]]:
    extra: list[tuple[str, Any]] = []
    if args.feature_set:
        extra.append(("evaluate.feature_sets", list(dict.fromkeys(args.feature_set))))
    if getattr(args, "gpu", False):
        extra.append(("evaluate.trans_bc_device", "cuda"))
    return extra


def _cmd_classify(args: argparse.Namespace) -> int:
    from distributed_clr.cli import _config_from
    from distributed_clr.evaluate.run import classify

    config = _config_from(args, _flags(args))
    summary = classify(
        config.evaluate,
        args.embeddings,
        args.data,
        args.out,
        mlflow_run_id=args.run,
        tracking=config.tracking,
        train_split=config.data.train_split,
        test_split=config.data.test_split,
    )
    sys.stdout.write(format_classify(summary, args.out))
    return 0


def _cmd_cwola(args: argparse.Namespace) -> int:
    from distributed_clr.cli import _config_from
    from distributed_clr.evaluate.run import cwola

    config = _config_from(args, _flags(args))
    summary = cwola(
        config.evaluate,
        args.embeddings,
        args.data,
        args.out,
        mode=args.mode,
        classifier=args.classifier,
        mlflow_run_id=args.run,
        tracking=config.tracking,
        train_split=config.data.train_split,
        test_split=config.data.test_split,
    )
    sys.stdout.write(format_cwola(summary, args.out))
    return 0


# ------------------------------------------------------------------------------------------------
# the parser


def _common_options(parser: argparse.ArgumentParser) -> None:
    from distributed_clr.cli import _add_config_options

    parser.add_argument(
        "--embeddings", type=Path, required=True, help="embedding dataset (dclr embed)"
    )
    parser.add_argument(
        "--data",
        type=Path,
        help="the prepared dijet dataset the embeddings were made from (needed for the 'event' "
        "and 'highlevel' feature sets and Trans+BC)",
    )
    parser.add_argument("--out", type=Path, required=True, help="output directory")
    parser.add_argument(
        "--run",
        metavar="RUN_ID",
        help="MLflow run id of the encoder's pretraining run; the results go to a child run of "
        "it (default: the run named by the embeddings' checkpoint)",
    )
    parser.add_argument(
        "--feature-set",
        action="append",
        choices=FEATURE_SETS,
        help="evaluate only these feature sets (repeatable; default: evaluate.feature_sets)",
    )
    _add_config_options(parser)


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``evaluate`` (with ``classify`` and ``cwola``) on the ``dclr`` subcommands."""
    evaluate = subparsers.add_parser(
        "evaluate",
        help="judge a representation: classifier tests, CWoLa scans, the bump hunt",
        description="Evaluate embeddings (dclr embed) for anomaly detection. Results: "
        "summary.json, scores.parquet and plots/ under --out, and a child run of the encoder's "
        "MLflow run.",
    )
    actions = evaluate.add_subparsers(dest="evaluate_command", metavar="ACTION", required=True)

    classify = actions.add_parser(
        "classify",
        help="LCT and FCN on the latent, event and high-level features, plus Trans+BC",
        description="Train each classifier on each feature set on the labelled train split, "
        "over evaluate.repeats seeds, and measure it on the labelled test split: ROC, AUC, SIC, "
        "max SIC, FPR and rejection at fixed TPR. Trans+BC (the encoder architecture trained "
        "end to end with BCE) is the supervised reference (evaluate.trans_bc).",
    )
    _common_options(classify)
    classify.add_argument(
        "--gpu", action="store_true", help="train Trans+BC on a GPU (evaluate.trans_bc_device)"
    )
    classify.set_defaults(handler=_cmd_classify)

    cwola = actions.add_parser(
        "cwola",
        help="weak supervision: the idealised CWoLa scan, or the CWoLa bump hunt in m_jj",
        description="idealised: train on mixed samples at each signal fraction "
        "(evaluate.cwola_fractions) and measure on the labelled test split. bumphunt: signal "
        "region vs sidebands in m_jj (evaluate.signal_region, evaluate.sideband_width) with "
        "k-fold cross-training, cuts on the classifier output, the m_jj spectra after each cut "
        "and the local significance of the excess.",
    )
    _common_options(cwola)
    cwola.add_argument(
        "--mode", choices=["idealised", "bumphunt"], default="idealised", help="CWoLa mode"
    )
    cwola.add_argument(
        "--classifier", choices=CLASSIFIERS, default="fcn", help="classifier (default: fcn)"
    )
    cwola.set_defaults(handler=_cmd_cwola)
