"""Reading prepared dijets for training and evaluation.

Two ways in, one conversion:

* ``read_split`` gives a Ray Dataset of one split (training shards it across workers with
  ``get_dataset_shard``); ``DijetCollate`` turns its Arrow batches into tensors inside
  ``iter_torch_batches``.
* ``iter_split`` streams one split as Arrow tables without Ray (evaluation, small tools).

``constituents(batch)`` is the conversion both use: the flat (B, 2N) pt/eta/phi columns become
a (B, 2, N, 3) float32 tensor in (pT [GeV], eta, phi) order plus a (B, 2, N) boolean mask of
real (non-padding) constituents. Fixed-size lists are reshaped without copying; Ray's numpy
batch format would turn them into slow object arrays, so batches stay in Arrow until here.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.dataset as pads
import torch

from distributed_clr.data.schema import SPLITS
from distributed_clr.data.storage import shard_paths

CONSTITUENT_COLUMNS = ("pt", "eta", "phi")
FEATURES = 3


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"unknown split '{split}'; splits are {', '.join(SPLITS)}")


def read_split(directory: str | Path, split: str, columns: Sequence[str] | None = None) -> Any:
    """A Ray Dataset of one split of a prepared-dijet dataset, with only ``columns``."""
    import ray.data
    from ray.data.expressions import col

    _check_split(split)
    paths = [str(p.resolve()) for p in shard_paths(Path(directory), "dijet")]
    ds = ray.data.read_parquet(paths).filter(expr=col("split") == split)
    if columns is not None:
        ds = ds.select_columns(list(columns))
    return ds


def iter_split(
    directory: str | Path,
    split: str,
    columns: Sequence[str] | None = None,
    batch_size: int = 65_536,
) -> Iterator[pa.Table]:
    """Stream one split as Arrow tables of at most ``batch_size`` rows (bounded memory)."""
    _check_split(split)
    paths = [str(p) for p in shard_paths(Path(directory), "dijet")]
    dataset = pads.dataset(paths, format="parquet")
    scanner = dataset.scanner(
        columns=None if columns is None else list(columns),
        filter=pads.field("split") == split,
        batch_size=batch_size,
    )
    for batch in scanner.to_batches():
        if batch.num_rows:
            yield pa.Table.from_batches([batch])


def column_to_numpy(column: pa.ChunkedArray | pa.Array) -> npt.NDArray[Any]:
    """A column as numpy; fixed-size lists become 2-D arrays (rows, width) without copying."""
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if pa.types.is_fixed_size_list(array.type):
        width = array.type.list_size
        values: npt.NDArray[Any] = array.flatten().to_numpy(zero_copy_only=False)
        return values.reshape(len(array), width)
    return np.asarray(array.to_numpy(zero_copy_only=False))


def constituents(
    batch: Mapping[str, npt.NDArray[Any]] | pa.Table, device: torch.device | str | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(x, mask): x (B, 2, N, 3) float32 as (pT, eta, phi); mask (B, 2, N), True for particles."""
    if isinstance(batch, pa.Table):
        arrays = {name: column_to_numpy(batch.column(name)) for name in CONSTITUENT_COLUMNS}
    else:
        arrays = {name: np.asarray(batch[name]) for name in CONSTITUENT_COLUMNS}
    pt = arrays["pt"]
    if pt.ndim != 2 or pt.shape[1] % 2:
        raise ValueError(f"constituent columns must be (B, 2N), got shape {pt.shape}")
    b, width = pt.shape
    stacked = np.stack([arrays[name] for name in CONSTITUENT_COLUMNS], axis=-1)
    x = torch.as_tensor(stacked.astype(np.float32, copy=False)).view(b, 2, width // 2, FEATURES)
    mask = x[..., 0] > 0
    if device is not None:
        x, mask = x.to(device, non_blocking=True), mask.to(device, non_blocking=True)
    return x, mask


def _collate_base() -> type:
    from ray.data.collate_fn import ArrowBatchCollateFn

    base: type = ArrowBatchCollateFn
    return base


class DijetCollate(_collate_base()):  # type: ignore[misc]
    """``iter_torch_batches(collate_fn=DijetCollate(...))``: Arrow batch -> dict of tensors.

    Returns ``x`` (B, 2, N, 3), ``mask`` (B, 2, N) and each of ``extra`` (e.g. label, mjj) as a
    tensor, all on ``device``.
    """

    def __init__(self, extra: Sequence[str] = ("label",), device: str | None = None) -> None:
        self.extra = tuple(extra)
        self.device = device

    def __call__(self, batch: pa.Table) -> dict[str, torch.Tensor]:
        x, mask = constituents(batch, self.device)
        out = {"x": x, "mask": mask}
        for name in self.extra:
            # A copy: Arrow's buffers are read-only and torch wants writable memory.
            tensor = torch.from_numpy(np.array(column_to_numpy(batch.column(name))))
            out[name] = tensor.to(self.device) if self.device is not None else tensor
        return out
