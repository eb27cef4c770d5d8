"""Figures shared by training and evaluation: built as ``matplotlib.figure.Figure`` objects
(no pyplot state, safe in threads and Ray workers) and saved atomically as PNG."""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from distributed_clr.storage.files import atomic_write_bytes

__all__ = ["loss_curve_figure", "save_figure"]


def save_figure(figure: Figure, path: str | Path, dpi: int = 120, **savefig: Any) -> Path:
    """Render ``figure`` as PNG in memory and write it to ``path`` atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi, **savefig)
    atomic_write_bytes(path, buffer.getvalue())
    return path


def loss_curve_figure(history: Sequence[Mapping[str, float]]) -> Figure:
    """Train and validation loss per epoch (left) and the validation linear-probe AUC (right)."""
    epochs = [int(h["epoch"]) for h in history]
    figure = Figure(figsize=(10, 4))
    loss_ax, probe_ax = figure.subplots(1, 2)
    for key, label in (("train_loss", "train"), ("val_loss", "validation")):
        values = [h.get(key, math.nan) for h in history]
        loss_ax.plot(epochs, values, marker="o", label=label)
    best = min(range(len(history)), key=lambda i: history[i].get("val_loss", math.inf))
    loss_ax.axvline(epochs[best], color="grey", linestyle=":", label=f"best (epoch {epochs[best]})")
    loss_ax.set_xlabel("epoch")
    loss_ax.set_ylabel("contrastive loss")
    loss_ax.legend()
    probe = [h.get("val_probe_auc", math.nan) for h in history]
    probe_ax.plot(epochs, probe, marker="o", color="tab:green")
    probe_ax.set_xlabel("epoch")
    probe_ax.set_ylabel("linear-probe ROC AUC (validation)")
    probe_ax.set_ylim(0.4, 1.0)
    probe_ax.axhline(0.5, color="grey", linestyle=":")
    figure.tight_layout()
    return figure
