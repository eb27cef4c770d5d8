"""``dclr evaluate classify``, ``cwola`` and ``nplm``, and their results tables."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from distributed_clr.cli.options import add_config_options, config_from, override_flag, storage_path
from distributed_clr.cli.tables import mean_std, measured, number, table
from distributed_clr.config.schema import ALL_FEATURE_SETS, CLASSIFIERS

__all__ = ["add_parser", "format_classify", "format_cwola", "format_nplm"]


INTERVALS = (
    "  (mean +- spread over seeds [68% bootstrap interval over the test events, mean over seeds])"
)


def _mlflow_lines(summary: Mapping[str, Any]) -> str:
    """The evaluation's MLflow run, and its page in the UI of a tracking server."""
    mlflow = summary.get("mlflow")
    if not mlflow:
        return ""
    from distributed_clr.tracking import RunHandle

    text = f"  MLflow run {mlflow['run_name']} ({mlflow['run_id']}) at {mlflow['uri']}\n"
    url = RunHandle(mlflow["uri"], mlflow["run_id"], mlflow["run_name"]).ui_url()
    return text + (f"  MLflow run: {url}\n" if url else "")


def _footer(summary: Mapping[str, Any], out: Path) -> str:
    text = f"  files: {out / 'summary.json'}, {out / 'scores.parquet'}, {out / 'plots'}/\n"
    return text + _mlflow_lines(summary)


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
                measured(stats, "auc"),
                measured(stats, "max_sic", 2),
                mean_std(stats.get("fpr_at_tpr_0.5"), 3, general=True),
            ]
        )
    header = ["feature set", "classifier", "AUC", "max SIC", "FPR at TPR 0.5"]
    text = f"classify: {_splits(summary)}"
    if rows:
        text += f"; {len(summary['seeds'])} seeds\n{INTERVALS}\n" + table(header, rows)
    probes = summary.get("process_probe") or {}
    if probes:
        probe_rows = [
            [
                feature_set,
                f"{r['accuracy']:.3f} [{r['interval'][0]:.3f}, {r['interval'][1]:.3f}]",
                f"{r['chance']:.3f}",
                str(len(r["processes"])),
            ]
            for feature_set, r in probes.items()
        ]
        text += "\nSM process linear probe (test accuracy [68% bootstrap interval]):\n" + table(
            ["feature set", "accuracy", "chance", "processes"], probe_rows
        )
    return text + _footer(summary, out)


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
                        measured(stats, "auc"),
                        measured(stats, "max_sic", 2),
                        mean_std(stats.get("fpr_at_tpr_0.5"), 3, general=True),
                    ]
                )
        header = ["feature set", "f", "AUC", "max SIC", "FPR at TPR 0.5"]
        title = (
            f"idealised CWoLa ({summary['classifier']}): {_splits(summary)}; "
            f"{len(summary['seeds'])} seeds\n{INTERVALS}"
        )
    else:
        notes = []
        for feature_set, result in summary["results"].items():
            check = result["leakage"]
            leak = (
                f"sideband AUC {number(check['sideband_auc'])}, m_jj R^2 {number(check['mjj_r2'])}"
            )
            if result["refused"]:
                notes.append(f"  {feature_set}: refused by the leakage check ({check['reason']})")
                continue
            if result.get("warning"):
                notes.append(f"  {feature_set}: WARNING {result['warning']}")
            notes.append(f"  {feature_set}: leakage check passed ({leak})")
            for cut, by_amount in result["z_vs_injected"].items():
                for amount, stats in by_amount.items():
                    rows.append(
                        [
                            feature_set,
                            amount,
                            cut.removeprefix("eff_"),
                            mean_std(stats.get("significance_with_uncertainty"), 2),
                            mean_std(stats.get("significance"), 2),
                            mean_std(stats.get("s_over_b"), 3, general=True),
                            mean_std(stats.get("s_over_sqrt_b"), 2),
                            mean_std(stats.get("fit_chi2_ndf"), 2),
                        ]
                    )
        header = [
            "feature set",
            "signal",
            "eff",
            "Z (fit unc.)",
            "Z",
            "S/B in SR",
            "S/sqrt(B)",
            "fit chi2/ndf",
        ]
        low, high = summary["signal_region"]
        title = (
            f"CWoLa bump hunt ({summary['classifier']}) in [{low:g}, {high:g}) GeV, sidebands "
            f"{summary['sideband_width']:g} GeV; {summary['repeats']} seed(s) per injected "
            f"signal; {_splits(summary)}\n" + "\n".join(notes)
        )
    return f"{title}\n" + table(header, rows) + _footer(summary, out)


def _power_cell(cell: Mapping[str, Any]) -> str:
    return f"{number(cell['power'], 2)} [{number(cell['low'], 2)}, {number(cell['high'], 2)}]"


def format_nplm(summary: Mapping[str, Any], out: Path) -> str:
    """The NPLM calibration and power tables as text."""
    pools = summary["pools"]
    lines = [
        (
            f"NPLM ({summary['method']}): reference {pools['reference']} background events "
            f"(weight {number(summary['reference_weight'], 4, general=True)}), data pool "
            f"{pools['data_pool']}, toys of Poisson({summary['settings']['data_events']}) "
            f"background events; {summary['toys_per_kind']} toys per kind"
        )
    ]
    thresholds = [f"{z:g}" for z in summary["settings"]["z_alphas"]]
    rows = []
    for feature_set, result in summary["results"].items():
        calibration = result["calibration"]
        null = result["null_fraction_above"].get("2", {})
        lines.append(
            f"  {feature_set} ({result['dim']} features, sigma {number(result['sigma'], 3)}): "
            f"null t0 mean (dof) {number(calibration['dof'], 2)}, ML fit "
            f"{number(calibration['dof_fit'], 2)}, dispersion "
            f"{number(calibration.get('dispersion'), 2)}, "
            f"KS p {number(calibration['ks_pvalue'], 3)}; "
            f"null toys with Z > 2: {number(null.get('fraction'), 3)} (expected "
            f"{number(null.get('expected'), 3)} +- {number(null.get('binomial_error'), 3)}); "
            f"{number(result['seconds_per_toy'], 2)} s per toy"
        )
        for process, by_amount in result["signals"].items():
            for amount, entry in by_amount.items():
                rows.append(
                    [
                        feature_set,
                        process,
                        amount,
                        number(entry["n_signal_drawn_mean"], 1),
                        number(entry["z_median"], 2),
                        number(entry["z_median_empirical"], 2),
                        *(_power_cell(entry["power"][z]) for z in thresholds),
                    ]
                )
    header = [
        "feature set",
        "signal",
        "injected",
        "drawn",
        "median Z",
        "median Z (toys)",
        *(f"P(Z > {z}) [68% CL]" for z in thresholds),
    ]
    text = "\n".join(lines) + "\n"
    if rows:
        text += (
            "  (Z from chi2(dof); 'toys': the empirical p-value, capped by the null toys)\n"
            + table(header, rows)
        )
    text += f"  files: {out / 'summary.json'}, {out / 'toys.parquet'}, {out / 'plots'}/\n"
    return text + _mlflow_lines(summary)


def _cmd_nplm(args: argparse.Namespace) -> int:
    from distributed_clr.evaluate import nplm

    config = config_from(args)
    summary = nplm(
        config.nplm,
        args.embeddings,
        args.data,
        args.out,
        ray_config=config.ray,
        mlflow_run_id=args.run,
        tracking=config.tracking,
        verify=config.data.verify,
    )
    sys.stdout.write(format_nplm(summary, args.out))
    return 0


def _cmd_classify(args: argparse.Namespace) -> int:
    from distributed_clr.evaluate import classify

    config = config_from(args)
    summary = classify(
        config.evaluate,
        args.embeddings,
        args.data,
        args.out,
        mlflow_run_id=args.run,
        tracking=config.tracking,
        train_split=config.data.train_split,
        test_split=config.data.test_split,
        verify=config.data.verify,
        sample=config.sample,
    )
    sys.stdout.write(format_classify(summary, args.out))
    return 0


def _cmd_cwola(args: argparse.Namespace) -> int:
    from distributed_clr.evaluate import cwola

    config = config_from(args)
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
        verify=config.data.verify,
        sample=config.sample,
    )
    sys.stdout.write(format_cwola(summary, args.out))
    return 0


def _common_options(
    parser: argparse.ArgumentParser, feature_key: str = "evaluate.feature_sets"
) -> None:
    parser.add_argument(
        "--embeddings", type=storage_path, required=True, help="embedding dataset (dclr embed)"
    )
    parser.add_argument(
        "--data",
        type=storage_path,
        help="the event dataset the embeddings were made from (needed for the 'event' "
        "and 'highlevel' feature sets and Trans+BC)",
    )
    parser.add_argument("--out", type=Path, required=True, help="output directory")
    parser.add_argument(
        "--run",
        metavar="RUN_ID",
        help="MLflow run id of the encoder's pretraining run; the results go to a child run of "
        "it (default: the run named by the embeddings' checkpoint)",
    )
    override_flag(
        parser,
        "--feature-set",
        key=feature_key,
        append=True,
        transform=lambda sets: list(dict.fromkeys(sets)),
        choices=ALL_FEATURE_SETS,
        help="evaluate only these feature sets (repeatable)",
    )
    add_config_options(parser)


def add_parser(subparsers: Any) -> None:
    """Register ``evaluate`` (with ``classify``, ``cwola`` and ``nplm``) on the ``dclr``
    subcommands."""
    evaluate = subparsers.add_parser(
        "evaluate",
        help="judge a representation: classifier tests, CWoLa scans, the bump hunt, NPLM",
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
    override_flag(
        classify,
        "--gpu",
        key="evaluate.trans_bc.device",
        switch="cuda",
        help="train Trans+BC on a GPU",
    )
    classify.set_defaults(handler=_cmd_classify)

    cwola = actions.add_parser(
        "cwola",
        help="weak supervision: the idealised CWoLa scan, or the CWoLa bump hunt in m_jj",
        description="idealised: train on mixed samples at each signal fraction "
        "(evaluate.cwola.fractions) and measure on the labelled test split. bumphunt: first a "
        "leakage check per feature set (can the sidebands be told apart, can m_jj be predicted; "
        "a leaky set is refused unless evaluate.bumphunt.allow_leaky), then for each injected "
        "signal amount (sample.bumphunt.signal) and seed: signal region vs sidebands in m_jj "
        "(evaluate.bumphunt) with k-fold cross-training, cuts on the classifier output, the "
        "sideband fit and the local significance Z of the excess, reported with the true "
        "S/B and S/sqrt(B).",
    )
    _common_options(cwola)
    cwola.add_argument(
        "--mode", choices=["idealised", "bumphunt"], default="idealised", help="CWoLa mode"
    )
    cwola.add_argument(
        "--classifier", choices=CLASSIFIERS, default="fcn", help="classifier (default: fcn)"
    )
    cwola.set_defaults(handler=_cmd_cwola)

    nplm = actions.add_parser(
        "nplm",
        help="the NPLM goodness-of-fit test: discovery power without a signal model",
        description="Compare a reference sample of background events with toy data sets "
        "(nplm section): null toys calibrate the learned likelihood-ratio statistic (chi2 "
        "degrees of freedom, KS p-value), toys with injected signal (nplm.signal_events, per "
        "signal process) give the median Z and the power P(Z > Z_alpha) with Clopper-Pearson "
        "intervals. nplm.method: 'kernel' (Nystrom kernel logistic regression, Newton steps "
        "with preconditioned conjugate gradients) or 'nn' (the original network). Toys run as "
        "Ray tasks; an interrupted run resumes its toys.",
    )
    _common_options(nplm, feature_key="nplm.feature_sets")
    override_flag(
        nplm, "--method", key="nplm.method", choices=["kernel", "nn"], help="the NPLM model"
    )
    override_flag(nplm, "--toys", key="nplm.toys", type=int, help="toys per kind")
    nplm.set_defaults(handler=_cmd_nplm)
