"""Progress bars for long work: shown on an interactive terminal, silent in logs and CI."""

from __future__ import annotations

import os
import sys
from typing import Any

from tqdm.auto import tqdm


def progress(**kwargs: Any) -> tqdm[Any]:
    """A tqdm bar on stderr; disabled when stderr is not a terminal or DCLR_PROGRESS=0."""
    setting = os.environ.get("DCLR_PROGRESS", "auto")
    disable = setting == "0" or (setting == "auto" and not sys.stderr.isatty())
    kwargs.setdefault("dynamic_ncols", True)
    return tqdm(file=sys.stderr, disable=disable, **kwargs)
