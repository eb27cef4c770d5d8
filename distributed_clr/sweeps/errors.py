"""The error of a sweep that cannot start or resume as asked, and the exit status of one that
was interrupted."""

from __future__ import annotations

from distributed_clr.errors import UserError

__all__ = ["EXIT_INTERRUPTED", "SweepError"]

EXIT_INTERRUPTED = 130
"""Exit status of ``dclr tune`` when the sweep was interrupted (rerun it to resume)."""


class SweepError(UserError, ValueError):
    """A sweep that cannot start (storage, name) or cannot be resumed as asked (another search
    space or configuration under its name). Too few resources raise ``runtime.ResourceError``."""
