"""``evaluate cwola --mode bumphunt``: the CWoLa bump hunt as a sensitivity study.

For each feature set:

1. **Leakage check** (``bumphunt.leakage``), on the events of the first injection (with
   ``sample.bumphunt.signal`` starting at 0: background only), from m_jj and the features
   alone: can a classifier tell the lower from the upper sideband, can m_jj be predicted in
   the sidebands? Above ``evaluate.bumphunt.max_sideband_auc`` or ``max_mjj_r2`` the feature
   set is refused (its cuts would sculpt m_jj into a fake bump), unless
   ``evaluate.bumphunt.allow_leaky`` is set; the check and any override are kept in the
   summary.
2. **Injections**: for each amount N of ``sample.bumphunt.signal`` and each of the
   ``evaluate.repeats`` seeds, the background (``sample.bumphunt.background``) plus N signal
   events drawn in hash order (``sampling``; the rest of the signal is held out), and one bump
   hunt (``bumphunt.bump_hunt``) on them. Without a list, one hunt on every event.
3. **Report**: per cut and N, the profiled Z (the headline: it includes the fit's uncertainty
   on B) and the plain Z, their mean and spread over seeds; the true S and B in the signal
   region after the cut, S/B and S/sqrt(B); the sideband fit's chi2/ndf and p-value. Plots:
   Z against N per cut, and the m_jj spectra of the largest injection.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from distributed_clr.config.schema import (
    ClassifierName,
    EvaluateConfig,
    RoleSample,
    SampleConfig,
)
from distributed_clr.evaluate.bumphunt import BumpHuntResult, bump_hunt, leakage
from distributed_clr.evaluate.errors import EvaluationError
from distributed_clr.evaluate.inputs import EvaluationInputs
from distributed_clr.evaluate.plots import plot_mjj_spectra, plot_z_vs_injected
from distributed_clr.evaluate.report import PLOTS, latent_plot, scores_table, split_counts
from distributed_clr.seeds import derive_seed
from distributed_clr.stats import aggregate

log = logging.getLogger(__name__)

__all__ = ["hunt_study"]

Parts = tuple[dict[str, Any], list[pa.Table], list[Path], dict[str, float]]
HEADLINE = "significance_with_uncertainty"


def _injections(sample: SampleConfig, config: EvaluateConfig) -> list[tuple[int | None, int]]:
    """(signal events to inject or None for all, repeat index) of every hunt."""
    amounts = sample.bumphunt.signal
    if amounts is None:
        return [(None, 0)]
    return [(n, r) for n in amounts for r in range(config.repeats)]


def _truth(hunt: BumpHuntResult, labels: np.ndarray) -> list[dict[str, float]]:
    """Per cut: the true signal and background kept in the signal region, S/B, S/sqrt(B)."""
    low, high = hunt.signal_region
    in_sr = (hunt.mjj >= low) & (hunt.mjj < high)
    out = []
    for cut in hunt.cuts:
        kept = in_sr & (hunt.scores >= cut.threshold)
        s = int((labels[kept] == 1).sum())
        b = int((labels[kept] != 1).sum())  # background and unlabelled events
        out.append(
            {
                "signal": s,
                "background": int((labels[kept] == 0).sum()),
                "unknown": int((labels[kept] == -1).sum()),
                "s_over_b": s / b if b else math.nan,
                "s_over_sqrt_b": s / math.sqrt(b) if b else math.nan,
            }
        )
    return out


def hunt_study(
    config: EvaluateConfig,
    inputs: EvaluationInputs,
    sets: Sequence[str],
    classifier: ClassifierName,
    sample: SampleConfig,
    out: Path,
) -> Parts:
    """The bump-hunt study (module docstring) on ``inputs`` (every split)."""
    inputs.require_mjj("the bump hunt")
    settings = config.bumphunt
    plan = _injections(sample, config)
    spec = sample.bumphunt
    draws = {}
    for amount, repeat in plan:
        role = RoleSample(
            background=spec.background, signal=amount, signal_processes=spec.signal_processes
        )
        draws[(amount, repeat)] = inputs.compose(role, sample.seed + repeat, "sample.bumphunt")
    first_events = draws[plan[0]][0]
    checks = {}
    for fs in sets:
        features = first_events.features[fs]
        checks[fs] = leakage(
            first_events.mjj, features, first_events.fold, classifier, config, config.seed
        )
    refused = [fs for fs, check in checks.items() if check.refused]
    for fs in refused:
        action = "run anyway (allow_leaky)" if settings.allow_leaky else "refused"
        log.warning("bump hunt on '%s' %s: %s", fs, action, checks[fs].reason)
    hunted = list(sets) if settings.allow_leaky else [fs for fs in sets if fs not in refused]
    if not hunted:
        reasons = "; ".join(f"{fs}: {checks[fs].reason}" for fs in refused)
        raise EvaluationError(
            f"every feature set carries m_jj, so a bump hunt on it would sculpt a fake bump "
            f"({reasons}). Use m_jj-blind features (model.inputs=jet_frame, the event_frame "
            "set), or override with --set evaluate.bumphunt.allow_leaky=true"
        )

    results: dict[str, Any] = {}
    tables: list[pa.Table] = []
    plots: list[Path] = []
    metrics: dict[str, float] = {}
    largest = max(plan, key=lambda item: (-1 if item[0] is None else item[0], -item[1]))
    for fs in sets:
        entry: dict[str, Any] = {"leakage": checks[fs].to_dict(), "refused": fs not in hunted}
        if fs in refused and settings.allow_leaky:
            entry["warning"] = f"run although the leakage check refused it: {checks[fs].reason}"
        results[fs] = entry
        if fs not in hunted:
            continue
        hunts = []
        for (amount, repeat), (events, drawn) in draws.items():
            hunt = bump_hunt(
                events.mjj,
                events.features[fs],
                events.fold,
                settings.signal_region,
                settings.sideband_width,
                classifier,
                config,
                derive_seed(config.seed, repeat),
            )
            summary = hunt.to_dict()
            truths = _truth(hunt, events.label[hunt.event_index])
            for cut, truth in zip(summary["cuts"], truths, strict=True):
                cut["signal_region_truth"] = truth
            hunts.append(
                {
                    "signal_injected": drawn.signal if amount is None else amount,
                    "repeat": repeat,
                    "composition": drawn.to_dict(),
                    **summary,
                }
            )
            if repeat == 0:
                keys = events.keys_table().take(pa.array(hunt.event_index))
                table = scores_table(keys, hunt.scores, classifier, fs, repeat)
                in_sr = (hunt.mjj >= hunt.signal_region[0]) & (hunt.mjj < hunt.signal_region[1])
                table = table.append_column("mjj", pa.array(hunt.mjj))
                table = table.append_column("in_signal_region", pa.array(in_sr))
                n = np.full(table.num_rows, hunts[-1]["signal_injected"], dtype=np.int64)
                tables.append(table.append_column("signal_injected", pa.array(n)))
            if (amount, repeat) == largest:
                name = f"mjj_spectra_{fs}.png"
                plots.append(plot_mjj_spectra(hunt, out / PLOTS / name))
        entry["injections"] = hunts
        entry["z_vs_injected"] = _z_table(hunts, settings.efficiencies)
        metrics.update(_metrics(entry["z_vs_injected"], f"{fs}/{classifier}"))
    curves = {fs: results[fs]["z_vs_injected"] for fs in hunted}
    plots.append(plot_z_vs_injected(curves, out / PLOTS / "z_vs_injected.png"))
    if "latent" in inputs.features:
        plots.append(latent_plot(inputs, out / PLOTS / "latent_projection.png", config.seed))
    splits = {
        str(split): split_counts(inputs.in_split(str(split))) for split in np.unique(inputs.split)
    }
    summary = {
        "mode": "bumphunt",
        "classifier": classifier,
        "splits": splits,
        "events": "the events of every split that sample.bumphunt draws, labelled or not",
        "seed": config.seed,
        "signal_region": list(settings.signal_region),
        "sideband_width": settings.sideband_width,
        "efficiencies": list(settings.efficiencies),
        "signal_injected": [amount for amount, repeat in plan if repeat == 0],
        "repeats": len({repeat for _, repeat in plan}),
        "headline": f"{HEADLINE}: Z with the sideband fit's uncertainty on B profiled",
        "results": results,
    }
    return summary, tables, plots, metrics


def _z_table(hunts: list[dict[str, Any]], efficiencies: Sequence[float]) -> dict[str, Any]:
    """Per cut (``eff_<e>``) and injected amount: mean, spread and count over seeds."""
    table: dict[str, Any] = {}
    for index, efficiency in enumerate(efficiencies):
        by_amount: dict[str, Any] = {}
        for amount in dict.fromkeys(h["signal_injected"] for h in hunts):
            cuts = [h["cuts"][index] for h in hunts if h["signal_injected"] == amount]
            values = [
                {
                    HEADLINE: c[HEADLINE],
                    "significance": c["significance"],
                    "s_over_b": c["signal_region_truth"]["s_over_b"],
                    "s_over_sqrt_b": c["signal_region_truth"]["s_over_sqrt_b"],
                    "fit_chi2_ndf": c["fit_chi2_ndf"],
                }
                for c in cuts
            ]
            by_amount[str(amount)] = aggregate(
                {k: math.nan if v is None else float(v) for k, v in row.items()} for row in values
            )
        table[f"eff_{efficiency:g}"] = by_amount
    return table


def _metrics(z_table: dict[str, Any], suffix: str) -> dict[str, float]:
    metrics: dict[str, float] = {}
    for cut, by_amount in z_table.items():
        for amount, stats in by_amount.items():
            for name in (HEADLINE, "significance", "s_over_sqrt_b"):
                value = stats.get(name, {}).get("mean")
                if value is not None:
                    metrics[f"bumphunt/{name}/{suffix}/{cut}/n_{amount}"] = float(value)
    return metrics
