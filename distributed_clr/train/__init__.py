"""The pretraining stage: the Ray Train driver, the per-worker loop and its pieces, optimisers.

``pretrain`` (``driver.py``) is the entry point; ``worker.py`` is what each rank runs,
``loop.py`` the epoch loop itself, ``trainer.py`` one rank's optimisation, ``validation.py``
the validation pass and linear probe, ``feed.py`` the data, ``checkpointing.py`` and
``faults.py`` the end-of-epoch report and the test crash, ``results.py`` what a finished run
leaves, ``plan.py`` names, errors and epoch sizes, ``optim.py`` the optimisers and schedules.
"""

from distributed_clr.train.driver import pretrain, untrained
from distributed_clr.train.plan import (
    PlanError,
    PretrainError,
    check_run_name,
    plan_epoch,
)
from distributed_clr.train.results import PretrainResult

__all__ = [
    "PlanError",
    "PretrainError",
    "PretrainResult",
    "check_run_name",
    "plan_epoch",
    "pretrain",
    "untrained",
]
