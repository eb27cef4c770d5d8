"""Evaluation figures: rejection and SIC curves, the CWoLa scan, m_jj spectra, latent projections.

Figures are built as ``matplotlib.figure.Figure`` objects without pyplot (no global state, safe
in threads and in Ray workers), rendered to PNG in memory and written atomically (temporary
name in the same directory, then renamed). Every function returns the path it wrote.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from distributed_clr.evaluate.bumphunt import BumpHuntResult
from distributed_clr.evaluate.idealised import SCAN_METRICS
from distributed_clr.plotting import save_figure

log = logging.getLogger(__name__)

DPI = 120
LABEL_NAMES = {0: "background", 1: "signal", -1: "unknown"}
METRIC_TITLES = {
    "auc": "AUC",
    "max_sic": "max SIC",
    "fpr_at_tpr_0.5": r"FPR at TPR = 0.5",
}


def _save(figure: Figure, path: str | Path) -> Path:
    target = save_figure(figure, path, dpi=DPI)
    log.debug("wrote %s", target)
    return target


def _has_positive(values: Sequence[npt.ArrayLike]) -> bool:
    return any(np.any(np.isfinite(v) & (np.asarray(v) > 0)) for v in values)


def plot_rejection(
    curves: Mapping[str, tuple[npt.ArrayLike, npt.ArrayLike]], path: str | Path
) -> Path:
    """Background rejection 1 / FPR against signal efficiency TPR, log y.

    Args:
        curves: {label: (tpr, fpr)}; points with FPR = 0 (infinite rejection) are left out.
        path: the PNG to write.
    """
    figure = Figure(figsize=(5.5, 4.5), layout="constrained")
    ax = figure.add_subplot()
    for label, (tpr, fpr) in curves.items():
        t, f = np.asarray(tpr, dtype=np.float64), np.asarray(fpr, dtype=np.float64)
        ok = (f > 0) & np.isfinite(f) & np.isfinite(t)
        ax.plot(t[ok], 1.0 / f[ok], label=label)
    grid = np.linspace(1e-3, 1.0, 200)
    ax.plot(grid, 1.0 / grid, color="grey", linestyle=":", label="random")
    ax.set_yscale("log")
    ax.set_xlim(0.0, 1.0)
    ax.set_xlabel("signal efficiency (TPR)")
    ax.set_ylabel("background rejection 1 / FPR")
    ax.legend(frameon=False)
    return _save(figure, path)


def plot_sic(curves: Mapping[str, tuple[npt.ArrayLike, npt.ArrayLike]], path: str | Path) -> Path:
    """Significance improvement TPR / sqrt(FPR) against TPR.

    Args:
        curves: {label: (tpr, sic)}, e.g. from ``stats.sic_curve``.
        path: the PNG to write.
    """
    figure = Figure(figsize=(5.5, 4.5), layout="constrained")
    ax = figure.add_subplot()
    for label, (tpr, sic) in curves.items():
        ax.plot(np.asarray(tpr, dtype=np.float64), np.asarray(sic, dtype=np.float64), label=label)
    ax.axhline(1.0, color="grey", linestyle=":", label="random")
    ax.set_xlim(0.0, 1.0)
    ax.set_xlabel("signal efficiency (TPR)")
    ax.set_ylabel(r"SIC = TPR / $\sqrt{\mathrm{FPR}}$")
    ax.legend(frameon=False)
    return _save(figure, path)


def _fraction_axis(ax: Axes, fractions: Sequence[float]) -> None:
    positive = [f for f in fractions if f > 0]
    ax.set_xscale("symlog", linthresh=min(positive) if positive else 1e-4, linscale=0.5)
    ax.set_xlabel("signal fraction f")


def plot_cwola_scan(
    results: Mapping[str, Mapping[float, Mapping[str, tuple[float, float]]]],
    path: str | Path,
    metrics: Sequence[str] = SCAN_METRICS,
) -> Path:
    """The idealised CWoLa scan: one panel per metric (AUC, max SIC, FPR at TPR 0.5) against
    the signal fraction f (symmetric-log x axis, so f = 0 is shown), one line with a +-1 std
    band per feature set (cf. Fig. 9 of Dillon, Mastandrea, Nachman 2023).

    Args:
        results: {feature set label: {f: {metric: (mean, std)}}}, e.g. ``ScanResult.mean_std``.
        path: the PNG to write.
        metrics: the panels.
    """
    figure = Figure(figsize=(4.2 * len(metrics), 4.0), layout="constrained")
    axes = figure.subplots(1, len(metrics), squeeze=False)[0]
    all_fractions = sorted({f for scan in results.values() for f in scan})
    for ax, metric in zip(axes, metrics, strict=True):
        means_seen: list[npt.NDArray[np.float64]] = []
        for label, scan in results.items():
            fractions = np.array(sorted(scan), dtype=np.float64)
            stats = [scan[f].get(metric, (np.nan, np.nan)) for f in fractions]
            mean = np.array([s[0] for s in stats], dtype=np.float64)
            std = np.nan_to_num(np.array([s[1] for s in stats], dtype=np.float64))
            (line,) = ax.plot(fractions, mean, marker="o", markersize=3, label=label)
            ax.fill_between(fractions, mean - std, mean + std, color=line.get_color(), alpha=0.25)
            means_seen.append(mean)
        _fraction_axis(ax, all_fractions)
        if metric == "auc":
            ax.axhline(0.5, color="grey", linestyle=":")
        if metric.startswith("fpr") and _has_positive(means_seen):
            ax.set_yscale("log")
        ax.set_title(METRIC_TITLES.get(metric, metric))
    axes[0].legend(frameon=False)
    return _save(figure, path)


def plot_mjj_spectra(result: BumpHuntResult, path: str | Path) -> Path:
    """The m_jj spectrum after each classifier cut (log y), the sideband fit dashed over it
    (extrapolated into the shaded signal region), with N, B +- its fit uncertainty, and both
    significances in the legend."""
    figure = Figure(figsize=(6.5, 4.8), layout="constrained")
    ax = figure.add_subplot()
    low, high = result.signal_region
    ax.axvspan(low, high, color="gold", alpha=0.25, label="signal region")
    edges = result.bin_edges
    for cut in result.cuts:
        label = (
            f"eff {cut.efficiency:g}: N={cut.observed}, "
            f"B={cut.expected:.1f}$\\pm${cut.expected_uncertainty:.1f}, "
            f"Z={cut.significance:.1f} ({cut.significance_with_uncertainty:.1f})"
        )
        artist = ax.stairs(cut.counts, edges, label=label)
        if np.isfinite(cut.expected_counts).all():
            ax.stairs(cut.expected_counts, edges, color=artist.get_edgecolor(), linestyle="--")
    if _has_positive([cut.counts for cut in result.cuts]):
        ax.set_yscale("log")
        ax.set_ylim(bottom=0.5)  # counts: a fit far below one event does not set the axis
    ax.set_xlabel(r"$m_{jj}$ [GeV]")
    ax.set_ylabel(f"events / {np.diff(edges).max():.0f} GeV bin")
    ax.legend(frameon=False, fontsize="small", title="Z (Z with the fit uncertainty)")
    return _save(figure, path)


def plot_z_vs_injected(
    curves: Mapping[str, Mapping[str, Mapping[str, Mapping[str, Any]]]], path: str | Path
) -> Path:
    """The bump hunt's headline Z (fit uncertainty profiled) against the number of injected
    signal events: one panel per feature set, one line per cut, error bars the spread over
    seeds. ``curves``: {feature set: {'eff_<e>': {N: {metric: {mean, std, n}}}}}."""
    sets = list(curves)
    figure = Figure(figsize=(5.0 * max(1, len(sets)), 4.2), layout="constrained")
    axes = figure.subplots(1, max(1, len(sets)), squeeze=False)[0]
    for ax, feature_set in zip(axes, sets, strict=False):
        for cut, by_amount in curves[feature_set].items():
            amounts = [float(n) for n in by_amount]
            stats = [by_amount[n].get("significance_with_uncertainty", {}) for n in by_amount]
            mean = [s.get("mean", np.nan) for s in stats]
            std = [s.get("std", np.nan) for s in stats]
            ax.errorbar(amounts, mean, yerr=std, marker="o", capsize=3, label=cut.replace("_", " "))
        ax.axhline(0.0, color="grey", linestyle=":")
        for level in (2.0, -2.0):
            ax.axhline(level, color="grey", linestyle="--", linewidth=0.8)
        ax.set_xlabel("injected signal events")
        ax.set_ylabel("local Z (fit uncertainty profiled)")
        ax.set_title(feature_set)
        ax.legend(frameon=False, fontsize="small")
    return _save(figure, path)


def plot_latent_projection(
    embedding: npt.ArrayLike,
    labels: npt.ArrayLike,
    path: str | Path,
    seed: int,
    max_points: int = 5000,
) -> Path:
    """A 2-D PCA projection of embeddings, coloured by label.

    Args:
        embedding: (B, D) embeddings, D >= 2.
        labels: (B,) labels (0 background, 1 signal, -1 unknown, or any integers).
        path: the PNG to write.
        seed: seeds the subsample (at most ``max_points`` points, drawn without replacement).
    """
    from sklearn.decomposition import PCA

    z = np.asarray(embedding, dtype=np.float64)
    y = np.asarray(labels)
    if z.ndim != 2 or z.shape[1] < 2 or y.shape != (len(z),) or len(z) < 2:
        raise ValueError(
            f"embedding must be (B >= 2, D >= 2) with labels (B,), got {z.shape} and {y.shape}"
        )
    if not np.isfinite(z).all():
        raise ValueError("embedding contains NaN/inf values")
    rng = np.random.default_rng(seed)
    if len(z) > max_points:
        pick = np.sort(rng.choice(len(z), size=max_points, replace=False))
        z, y = z[pick], y[pick]
    projected = PCA(n_components=2, random_state=seed % 2**32).fit_transform(z)
    figure = Figure(figsize=(5.5, 5.0), layout="constrained")
    ax = figure.add_subplot()
    for value in np.unique(y).tolist():
        chosen = y == value
        name: Any = LABEL_NAMES.get(int(value), str(value))
        ax.scatter(projected[chosen, 0], projected[chosen, 1], s=3, alpha=0.5, label=name)
    ax.set_xlabel("PC 1")
    ax.set_ylabel("PC 2")
    ax.legend(frameon=False, markerscale=4)
    return _save(figure, path)


def plot_nplm_null(t0: npt.ArrayLike, dof: float, feature_set: str, path: str | Path) -> Path:
    """The null toys' NPLM statistic with the chi2(dof) density fitted to it."""
    from scipy import stats

    values = np.asarray(t0, dtype=np.float64)
    figure = Figure(figsize=(6.0, 4.2), layout="constrained")
    ax = figure.add_subplot()
    ax.hist(values, bins=max(10, min(50, len(values) // 5)), density=True, alpha=0.6,
            label=f"null toys ({len(values)})")  # fmt: skip
    if dof > 0:
        grid = np.linspace(0.0, max(values.max(), stats.chi2.ppf(0.999, dof)), 400)
        ax.plot(grid, stats.chi2.pdf(grid, dof), color="black", label=f"chi2, dof = {dof:.1f}")
    ax.set_xlabel("t")
    ax.set_ylabel("density")
    ax.set_title(f"NPLM null calibration: {feature_set}")
    ax.legend(frameon=False)
    return _save(figure, path)


def plot_nplm_statistics(
    t0: npt.ArrayLike,
    signals: Mapping[str, Mapping[int, npt.ArrayLike]],
    feature_set: str,
    path: str | Path,
) -> Path:
    """The NPLM statistic of the null toys and of each injection: one panel per process."""
    processes = list(signals)
    figure = Figure(figsize=(5.5 * max(1, len(processes)), 4.2), layout="constrained")
    axes = figure.subplots(1, max(1, len(processes)), squeeze=False)[0]
    null = np.asarray(t0, dtype=np.float64)
    for ax, process in zip(axes, processes, strict=False):
        everything = [null, *(np.asarray(v, dtype=np.float64) for v in signals[process].values())]
        finite = np.concatenate([v[np.isfinite(v)] for v in everything])
        bins = np.linspace(finite.min(), finite.max(), 40) if len(finite) else 10
        ax.hist(null, bins=bins, histtype="stepfilled", alpha=0.4, color="grey", label="null")
        for amount, values in signals[process].items():
            ax.hist(np.asarray(values, dtype=np.float64), bins=bins, histtype="step",
                    linewidth=1.5, label=f"{amount} signal")  # fmt: skip
        ax.set_xlabel("t")
        ax.set_ylabel("toys")
        ax.set_title(f"{feature_set}: {process}")
        ax.legend(frameon=False, fontsize="small")
    return _save(figure, path)


def plot_nplm_power(
    results: Mapping[str, Mapping[str, Mapping[str, Mapping[str, Any]]]],
    thresholds: Sequence[float],
    path: str | Path,
) -> Path:
    """Discovery power P(Z > Z_alpha) against the injected signal: one panel per threshold,
    one line per feature set and process, Clopper-Pearson error bars.
    ``results``: {feature set: {process: {"<n>": {"power": {"<Z_alpha>": {power, low, high}}}}}}."""
    figure = Figure(figsize=(4.8 * max(1, len(thresholds)), 4.2), layout="constrained")
    axes = figure.subplots(1, max(1, len(thresholds)), squeeze=False)[0]
    for ax, threshold in zip(axes, thresholds, strict=True):
        key = f"{threshold:g}"
        for feature_set, processes in results.items():
            for process, by_amount in processes.items():
                amounts = [int(n) for n in by_amount]
                cells = [by_amount[n]["power"][key] for n in by_amount]
                value = np.array([c["power"] for c in cells])
                low = value - np.array([c["low"] for c in cells])
                high = np.array([c["high"] for c in cells]) - value
                ax.errorbar(amounts, value, yerr=[low, high], marker="o", capsize=3,
                            label=f"{feature_set} / {process}")  # fmt: skip
        ax.set_xscale("log")
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel("injected signal events (expected)")
        ax.set_ylabel(f"P(Z > {key})")
        ax.grid(alpha=0.3)
        ax.legend(frameon=False, fontsize="small")
    return _save(figure, path)
