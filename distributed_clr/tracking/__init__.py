"""MLflow: the one run handle (open or reopen by name, child runs, batched metrics, artifacts,
finish with status), the tag constants, and rank 0's per-epoch logger."""

from distributed_clr.tracking.epochs import EpochLogger
from distributed_clr.tracking.run import (
    COMPLETE_TAG,
    KIND_TAG,
    PARENT_TAG,
    RUN_NAME_TAG,
    Kind,
    RunHandle,
    TrackingError,
    client,
    param_value,
    tracking_uri,
)

__all__ = [
    "COMPLETE_TAG",
    "KIND_TAG",
    "PARENT_TAG",
    "RUN_NAME_TAG",
    "EpochLogger",
    "Kind",
    "RunHandle",
    "TrackingError",
    "client",
    "param_value",
    "tracking_uri",
]
