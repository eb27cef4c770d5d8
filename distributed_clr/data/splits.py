"""Train / val / test and k-fold assignment from a hash of (dataset, event_id).

An event's split depends only on the salt, its dataset's name and its event_id: never on file
order, batch boundaries, the machine or how many times the data were processed. The dataset's
name is hashed once (BLAKE2b) into a 64-bit key; each event then gets

    h = splitmix64(event_id XOR key),   u = top 53 bits of h / 2^53  in [0, 1),

and falls in train if u < f_train, in val if u < f_train + f_val, else in test. The fold is
splitmix64(h) mod K, a second, independent draw. splitmix64 (``seeds.splitmix64``) is a
bijective 64-bit mixer with full avalanche, so u is uniform for any pattern of event ids,
sequential ones included.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from distributed_clr.seeds import name_key, splitmix64, unit_interval


def dataset_key(dataset: str, salt: str) -> np.uint64:
    """The 64-bit key of a dataset's name under the split salt."""
    return name_key(dataset, salt)


def assign_splits(
    event_ids: npt.NDArray[np.int64],
    dataset: str,
    *,
    train_fraction: float,
    val_fraction: float,
    num_folds: int,
    salt: str,
) -> tuple[npt.NDArray[np.int8], npt.NDArray[np.int8]]:
    """(split index into SPLITS, fold) for each event."""
    h = splitmix64(event_ids.astype(np.int64).view(np.uint64) ^ dataset_key(dataset, salt))
    u = unit_interval(h)
    split = np.where(u < train_fraction, 0, np.where(u < train_fraction + val_fraction, 1, 2))
    fold = (splitmix64(h) % np.uint64(num_folds)).astype(np.int8)
    return split.astype(np.int8), fold
