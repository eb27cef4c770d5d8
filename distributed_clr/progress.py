"""Progress bars for long work: shown on an interactive terminal, silent in logs and CI."""

from __future__ import annotations

import os
import sys
from typing import Any

from tqdm.auto import tqdm


def progress_enabled() -> bool:
    """Bars show on an interactive stderr; DCLR_PROGRESS=0 or 1 forces them off or on."""
    setting = os.environ.get("DCLR_PROGRESS", "auto")
    return setting == "1" or (setting == "auto" and sys.stderr.isatty())


def progress(**kwargs: Any) -> tqdm[Any]:
    """A tqdm bar on stderr (see ``progress_enabled``)."""
    kwargs.setdefault("dynamic_ncols", True)
    return tqdm(file=sys.stderr, disable=not progress_enabled(), **kwargs)
