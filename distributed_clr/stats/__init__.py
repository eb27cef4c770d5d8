"""Statistics of the evaluation, pure numpy and scipy: classification metrics (ROC, SIC,
rejection, their spread over repeats, bootstrap intervals over test events), the
dijet-function sideband fit, and the local significance of an excess.

Nothing here trains, reads or writes anything; it imports nothing of the package but
``errors``, so every stage may use it.
"""

from distributed_clr.stats.bootstrap import BOOTSTRAP_LEVEL, bootstrap_intervals, with_intervals
from distributed_clr.stats.dijet_fit import (
    FORMS,
    SidebandFit,
    dijet_expected_counts,
    fit_dijet_function,
)
from distributed_clr.stats.metrics import (
    DEFAULT_TPRS,
    aggregate,
    binary_metrics,
    check_binary,
    json_safe,
    roc_curve,
    sic_curve,
    working_points,
)
from distributed_clr.stats.significance import local_significance

__all__ = [
    "BOOTSTRAP_LEVEL",
    "DEFAULT_TPRS",
    "FORMS",
    "SidebandFit",
    "aggregate",
    "binary_metrics",
    "bootstrap_intervals",
    "check_binary",
    "dijet_expected_counts",
    "fit_dijet_function",
    "json_safe",
    "local_significance",
    "roc_curve",
    "sic_curve",
    "with_intervals",
    "working_points",
]
