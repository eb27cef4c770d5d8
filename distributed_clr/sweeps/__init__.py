"""Hyper-parameter sweeps of contrastive pretraining: a Ray Tune ``Tuner`` around ``pretrain``.

Modules, one concern each:

* ``space``: search spaces (``tune_spaces/*.yaml``), parsed and checked against the config
  schema.
* ``resources``: what one trial holds, and how many run at once (``runtime.units_that_fit``).
* ``tuner``: names, the trial function, ASHA, the search algorithm, the ``Tuner``.
* ``records``: the sweep's MLflow parent run and its trial children (``tracking.RunHandle``).
* ``summary``: trial records, the summary table and plots, ``SweepResult``.
* ``janitor``: releases the placement groups of stopped trials while a sweep runs.
* ``sweep``: ``sweep()``, the orchestration.

The command line (``dclr tune``: arguments, the result table, exit status) is the CLI's.
"""

from distributed_clr.runtime import ResourceError
from distributed_clr.sweeps.errors import EXIT_INTERRUPTED, SweepError
from distributed_clr.sweeps.janitor import release_orphaned_placement_groups
from distributed_clr.sweeps.resources import max_concurrent_trials, trial_footprint
from distributed_clr.sweeps.space import (
    REPORTED_METRICS,
    Param,
    SearchSpace,
    check_search,
    load_space,
    space_from_dict,
)
from distributed_clr.sweeps.summary import (
    SweepResult,
    TrialRecord,
    metric_vs_param_figure,
    summarize,
)
from distributed_clr.sweeps.sweep import sweep

__all__ = [
    "EXIT_INTERRUPTED",
    "REPORTED_METRICS",
    "Param",
    "ResourceError",
    "SearchSpace",
    "SweepError",
    "SweepResult",
    "TrialRecord",
    "check_search",
    "load_space",
    "max_concurrent_trials",
    "metric_vs_param_figure",
    "release_orphaned_placement_groups",
    "space_from_dict",
    "summarize",
    "sweep",
    "trial_footprint",
]
