"""Statistics of the evaluation: classification metrics (ROC, SIC, rejection, their spread
over repeats, bootstrap intervals over test events), the dijet-function sideband fit, the
local significance of an excess, the calibration of a test statistic with toys and the
discovery power (``calibration``), all numpy and scipy; and the NPLM statistic (``nplm``, in
torch: import ``distributed_clr.stats.nplm`` itself, it is not re-exported here so that the
rest stays light).

Nothing here reads or writes anything; it imports nothing of the package, so every stage
may use it.
"""

from distributed_clr.stats.bootstrap import BOOTSTRAP_LEVEL, bootstrap_intervals, with_intervals
from distributed_clr.stats.calibration import (
    chi2_calibration,
    clopper_pearson,
    gaussian_tail,
    p_values,
    power,
    significance,
)
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
    "chi2_calibration",
    "clopper_pearson",
    "dijet_expected_counts",
    "fit_dijet_function",
    "gaussian_tail",
    "json_safe",
    "local_significance",
    "p_values",
    "power",
    "roc_curve",
    "sic_curve",
    "significance",
    "with_intervals",
    "working_points",
]
