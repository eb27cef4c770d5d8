"""The two kinds of failure a user sees as one line instead of a traceback.

* ``UserError``: the input or the configuration is wrong (an unknown config key, a missing or
  corrupted dataset, too few events for a batch, a cluster too small for the job). Nothing was
  changed; the message says what to fix. The CLI prints it and exits 2.
* ``RunError``: a run that started correctly but could not finish (a training worker failed
  after its retries, Pythia refused to start). The CLI prints it and exits 1; the logs above it
  hold the details.

Anything else that escapes a command is a bug in this package, and the CLI lets Python show its
traceback. Each stage defines its own subclasses (``ConfigError``, ``DatasetError``, ...), so a
message always comes from the place that knows what went wrong.
"""

from __future__ import annotations

__all__ = ["RunError", "UserError"]


class UserError(Exception):
    """Bad input or configuration; nothing was changed (the CLI exits 2)."""


class RunError(Exception):
    """A run that could not finish (the CLI exits 1)."""
