"""The one text-table formatter of the CLI, and the number formats its cells use."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["mean_std", "measured", "number", "table"]


def number(value: Any, digits: int = 3, general: bool = False) -> str:
    """A float with ``digits`` decimals (or significant digits, ``general``); n/a for None,
    NaN and inf; integers and anything else as text."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    if isinstance(value, bool | int) or not isinstance(value, float):
        return str(value)
    return f"{value:.{digits}g}" if general else f"{value:.{digits}f}"


def mean_std(stats: Mapping[str, Any] | None, digits: int = 3, general: bool = False) -> str:
    """'mean +- std' of a ``{mean, std, n}`` mapping (the spread only when n > 1)."""
    if not stats or stats.get("mean") is None:
        return "n/a"
    text = number(stats["mean"], digits, general)
    if stats.get("n", 0) and stats["n"] > 1 and stats.get("std") is not None:
        text += f" +- {number(stats['std'], digits, general)}"
    return text


def measured(stats: Mapping[str, Any], name: str, digits: int = 3) -> str:
    """'mean +- spread [low, high]' of metric ``name`` of an aggregate: the spread over repeats
    and, where the aggregate has ``<name>_low`` and ``<name>_high``, the bootstrap interval."""
    text = mean_std(stats.get(name), digits)
    low, high = stats.get(f"{name}_low"), stats.get(f"{name}_high")
    if low and high and low.get("mean") is not None and high.get("mean") is not None:
        text += f" [{number(low['mean'], digits)}, {number(high['mean'], digits)}]"
    return text


def table(
    header: Sequence[str] | None, rows: Sequence[Sequence[Any]], right: Sequence[int] = ()
) -> str:
    """Columns padded to their widest cell, two spaces apart, indented by two, under an
    optional header line; the columns whose indices are in ``right`` are right-aligned."""
    cells = [[str(c) for c in row] for row in ([header] if header else []) + list(rows)]
    if not cells:
        return ""
    widths = [max(len(r[i]) for r in cells) for i in range(len(cells[0]))]
    lines = []
    for row in cells:
        padded = [
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append(("  " + "  ".join(padded)).rstrip())
    return "\n".join(lines) + "\n"


def run_lines(what: str, run_id: str, uri: str) -> str:
    """Where a command's MLflow run is: its id and store, then its page on a tracking server,
    or the ``mlflow ui`` command that shows a local store."""
    from distributed_clr.tracking import RunHandle

    url = RunHandle(uri, run_id, "").ui_url()
    browse = f"MLflow run: {url}" if url else f"browse: mlflow ui --backend-store-uri {uri}"
    return f"  {what} {run_id} at {uri}\n  {browse}\n"
