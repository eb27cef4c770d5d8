"""Writing object-level events: one Arrow table of ``storage.formats.object_schema``, shared by
``dclr import-adc`` and ``dclr generate-objects``."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from distributed_clr.config.schema import PrepareConfig
from distributed_clr.data.splits import assign_splits
from distributed_clr.storage.formats import OBJECT_SLOTS, SPLITS, object_schema

__all__ = ["object_table"]


def object_table(
    values: npt.NDArray[Any],
    classes: npt.NDArray[np.int8],
    process_ids: npt.NDArray[np.int16],
    event_ids: npt.NDArray[np.int64],
    label: int,
    process: str,
    dataset: str,
    prepare: PrepareConfig,
) -> pa.Table:
    """The events ``values`` (B, 19, 3) = (pT, eta, phi) with their slot classes (B, 19), SM
    process ids and event ids, their split and fold assigned from (dataset, event_id) with the
    ``prepare`` section's fractions and salt."""
    n = len(values)
    split, fold = assign_splits(
        event_ids,
        dataset,
        train_fraction=prepare.train_fraction,
        val_fraction=prepare.val_fraction,
        num_folds=prepare.num_folds,
        salt=prepare.split_salt,
    )

    def slots(column: npt.NDArray[Any], dtype: Any, arrow: pa.DataType) -> pa.Array:
        flat = pa.array(np.ascontiguousarray(column, dtype=dtype).reshape(-1), arrow)
        return pa.FixedSizeListArray.from_arrays(flat, OBJECT_SLOTS)

    columns = {
        "event_id": pa.array(event_ids, pa.int64()),
        "label": pa.array(np.full(n, label, dtype=np.int8)),
        "process": pa.array([process] * n, pa.string()),
        "process_id": pa.array(process_ids, pa.int16()),
        "dataset": pa.array([dataset] * n, pa.string()),
        "split": pa.array(np.asarray(SPLITS, dtype=object)[split], pa.string()),
        "fold": pa.array(fold, pa.int8()),
        "pt": slots(values[:, :, 0], np.float32, pa.float32()),
        "eta": slots(values[:, :, 1], np.float32, pa.float32()),
        "phi": slots(values[:, :, 2], np.float32, pa.float32()),
        "object_class": slots(classes, np.int8, pa.int8()),
    }
    return pa.table(columns, schema=object_schema())
