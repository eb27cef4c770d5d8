"""The error of an evaluation that cannot run as asked."""

from __future__ import annotations

from distributed_clr.errors import UserError

__all__ = ["EvaluationError"]


class EvaluationError(UserError, ValueError):
    """The evaluation's input or settings are wrong: an unknown mode, classifier, feature set or
    split, data missing for a feature set, too few events or folds, an encoder run that does
    not exist. Nothing was written."""
