"""Figures are built as ``matplotlib.figure.Figure`` objects (no pyplot state, safe in threads
and Ray workers) and saved here, rendered to PNG in memory and written atomically."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from distributed_clr.storage.files import atomic_write_bytes

__all__ = ["save_figure"]


def save_figure(figure: Figure, path: str | Path, dpi: int = 120, **savefig: Any) -> Path:
    """Render ``figure`` as PNG in memory and write it to ``path`` atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi, **savefig)
    atomic_write_bytes(path, buffer.getvalue())
    return path
