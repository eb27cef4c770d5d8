"""Numbers read back from the stages' summaries (``summary.json``) as report cells, and the
small plotting helpers the studies share."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from distributed_clr.studies.plan import Cell

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "NOT_APPLICABLE",
    "classify_cell",
    "cwola_matrix",
    "hunt_cell",
    "new_figure",
    "nplm_cell",
    "slug",
]

NOT_APPLICABLE = Cell(math.nan, note="n/a")
TRANS_BC_KEY = "constituents/trans_bc"


def slug(text: str) -> str:
    """A file-name-safe form of a label: 'latent 128' -> 'latent-128'."""
    return re.sub(r"[^A-Za-z0-9_.]+", "-", text).strip("-").lower() or "x"


def _float(value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return math.nan
    return number


def _mean(aggregate: Mapping[str, Any], key: str) -> float:
    entry = aggregate.get(key)
    return _float(entry.get("mean")) if isinstance(entry, Mapping) else math.nan


def classify_cell(
    summary: Mapping[str, Any], feature_set: str, classifier: str, metric: str = "auc"
) -> Cell:
    """The mean of ``metric`` over the repeats with its 68% bootstrap interval (the repeats'
    mean bounds) and the spread over repeats; Trans+BC is ``feature_set='constituents',
    classifier='trans_bc'``."""
    result = summary.get("results", {}).get(f"{feature_set}/{classifier}")
    if result is None:
        return Cell(math.nan, note="missing")
    aggregate = result["aggregate"]
    spread = aggregate.get(metric, {}).get("std", math.nan)
    return Cell(
        _mean(aggregate, metric),
        _mean(aggregate, f"{metric}_low"),
        _mean(aggregate, f"{metric}_high"),
        std=_float(spread),
    )


def cwola_matrix(
    summary: Mapping[str, Any], feature_set: str, metric: str
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """(fractions (F,), values (F, seeds)) of an idealised CWoLa scan."""
    points = summary["results"][feature_set]["points"]
    fractions = sorted({float(p["fraction"]) for p in points})
    seeds = sorted({int(p["seed"]) for p in points})
    values = np.full((len(fractions), len(seeds)), np.nan)
    for point in points:
        i = fractions.index(float(point["fraction"]))
        j = seeds.index(int(point["seed"]))
        values[i, j] = _float(point["metrics"].get(metric))
    return np.asarray(fractions), values


def nplm_cell(
    summary: Mapping[str, Any], feature_set: str, process: str, injected: int, z: str = "3"
) -> Cell:
    """P(Z > z) with its Clopper-Pearson interval for one signal and injection."""
    signals = summary["results"][feature_set]["signals"]
    entry = signals.get(process, {}).get(str(injected))
    if entry is None:
        return Cell(math.nan, note="missing")
    power = entry["power"][z]
    return Cell(_float(power["power"]), _float(power["low"]), _float(power["high"]))


def nplm_median_z(
    summary: Mapping[str, Any], feature_set: str, process: str, injected: int
) -> Cell:
    """The median Z of the toys of one signal and injection."""
    entry = summary["results"][feature_set]["signals"].get(process, {}).get(str(injected))
    if entry is None:
        return Cell(math.nan, note="missing")
    return Cell(_float(entry["z_median"]))


def hunt_cell(
    summary: Mapping[str, Any], feature_set: str, efficiency: float, injected: int, key: str
) -> Cell:
    """The mean over seeds of a bump-hunt quantity (``significance_with_uncertainty``,
    ``s_over_sqrt_b``) at one cut and injection, with mean +- spread as its band."""
    result = summary["results"].get(feature_set, {})
    if result.get("refused"):
        return Cell(math.nan, note="refused: leaks m_jj")
    table = result.get("z_vs_injected", {}).get(f"eff_{efficiency:g}", {})
    entry = table.get(str(injected))
    if entry is None:
        return Cell(math.nan, note="missing")
    mean, std = _mean(entry, key), _float(entry.get(key, {}).get("std"))
    if not math.isfinite(mean):
        # evaluate.bumphunt.min_sideband_events: a cut that leaves too few events is not fit.
        return Cell(math.nan, note="no fit: too few events after the cut")
    return Cell(mean, mean - std, mean + std, std=std)


def new_figure(columns: int = 1, width: float = 6.0) -> tuple[Figure, list[Axes]]:
    """A constrained-layout figure with ``columns`` panels side by side."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width * columns, 4.5), layout="constrained")
    axes = figure.subplots(1, columns, squeeze=False)[0]
    return figure, list(axes)


def errorbar(ax: Axes, x: Sequence[float], cells: Sequence[Cell], **kwargs: Any) -> None:
    """Cells as points with their intervals (where they have one)."""
    values = np.array([c.value for c in cells], dtype=np.float64)
    low = np.array([c.low for c in cells], dtype=np.float64)
    high = np.array([c.high for c in cells], dtype=np.float64)
    yerr = np.vstack([np.nan_to_num(values - low), np.nan_to_num(high - values)])
    ax.errorbar(np.asarray(x, dtype=np.float64), values, yerr=np.clip(yerr, 0, None), **kwargs)


def save(figure: Figure, path: Path) -> Path:
    from distributed_clr.plotting import save_figure

    return save_figure(figure, path)
