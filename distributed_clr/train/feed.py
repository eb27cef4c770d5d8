"""The data a pretraining run reads: Ray Datasets of the train and val splits on the driver, and
each rank's batches from its shard of them."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import torch

from distributed_clr.config.schema import DataConfig, LossConfig
from distributed_clr.sampling import event_keys
from distributed_clr.storage.formats import event_layout
from distributed_clr.storage.location import StoragePath
from distributed_clr.storage.reader import column_to_numpy, constituents, ray_dataset
from distributed_clr.train.samples import KEY_COLUMN, SamplePlan
from distributed_clr.train.trainer import Batch

__all__ = ["EventCollate", "batches", "datasets", "label_columns"]

INPUT_COLUMNS = ("pt", "eta", "phi")
KEY_SOURCES = ("event_id", "dataset")


def label_columns(loss: LossConfig) -> tuple[str, ...]:
    """The per-event columns a batch carries besides the inputs: the signal label (the linear
    probe's), and the SM process id when SupCon is trained on it."""
    if loss.name == "supcon" and loss.supcon_label != "label":
        return ("label", loss.supcon_label)
    return ("label",)


def _collate_base() -> type:
    from ray.data.collate_fn import ArrowBatchCollateFn

    base: type = ArrowBatchCollateFn
    return base


class EventCollate(_collate_base()):  # type: ignore[misc]
    """``iter_torch_batches(collate_fn=EventCollate(...))``: Arrow batch -> dict of CPU tensors
    (``storage.reader.constituents`` plus the ``extra`` columns).

    Returns ``x`` (B, S, N, 3), ``mask`` (B, S, N) (S = ``groups``: 2 jets, or 1 group of
    object slots) and each of ``extra`` (e.g. label, process_id) as a tensor. The tensors stay
    in ordinary host memory: ``iter_torch_batches`` pins them and moves them to the device on
    its own background thread (``batches``).
    """

    def __init__(self, extra: Sequence[str] = ("label",), groups: int = 2) -> None:
        self.extra = tuple(extra)
        self.groups = groups

    def __call__(self, batch: pa.Table) -> dict[str, torch.Tensor]:
        x, mask = constituents(batch, None, self.groups)
        out = {"x": x, "mask": mask}
        for name in self.extra:
            # A copy: Arrow's buffers are read-only and torch wants writable memory.
            out[name] = torch.from_numpy(np.array(column_to_numpy(batch.column(name))))
        return out


def with_keys(table: pa.Table, keep: npt.NDArray[np.int64] | None = None) -> pa.Table:
    """``table`` with its ``key`` column (``sampling.event_keys`` as int64), and only the rows
    whose key is in ``keep`` (sorted) when given."""
    keys = event_keys(
        column_to_numpy(table.column("event_id")), column_to_numpy(table.column("dataset"))
    ).view(np.int64)
    table = table.append_column(KEY_COLUMN, pa.array(keys, pa.int64()))
    if keep is not None:
        at = np.searchsorted(keep, keys).clip(max=max(len(keep) - 1, 0))
        found = keep[at] == keys if len(keep) else np.zeros(len(keys), dtype=bool)
        table = table.filter(pa.array(found))
    return table


def datasets(
    config: DataConfig,
    data: StoragePath,
    seed: int,
    plan: SamplePlan,
    labels: Sequence[str] = ("label",),
) -> dict[str, Any]:
    """``{"train": ..., "val": ...}``: the splits ``config`` names (of a ``config.kind``
    dataset) with the inputs and the ``labels`` columns, the train split limited to the events
    of ``plan`` and to ``config.max_events``, both with their event keys; kept in the object
    store when ``config.cache`` (later epochs do not re-read Parquet), the train blocks in a
    seeded random order."""
    import ray.data

    from distributed_clr.progress import progress_enabled

    ray.data.DataContext.get_current().enable_progress_bars = progress_enabled()
    out = {}
    for name, split, columns, keep in (
        ("train", config.train_split, (*INPUT_COLUMNS, *labels), plan.train),
        ("val", config.val_split, (*INPUT_COLUMNS, *labels, KEY_COLUMN), None),
    ):
        read = [*(c for c in columns if c != KEY_COLUMN), *KEY_SOURCES]
        ds = ray_dataset(data, config.kind, splits=[split], columns=read, verify=config.verify)
        if keep is not None or KEY_COLUMN in columns:
            ds = ds.map_batches(with_keys, fn_kwargs={"keep": keep}, batch_format="pyarrow")
        ds = ds.select_columns(list(columns))
        if config.max_events is not None:
            ds = ds.limit(config.max_events)
        if config.cache:
            ds = ds.materialize()
        if name == "train":
            ds = ds.randomize_block_order(seed=seed)
        out[name] = ds
    return out


def batches(
    shard: Any,
    batch_size: int,
    device: torch.device,
    config: DataConfig,
    shuffle_seed: int | None,
    extra: tuple[str, ...],
) -> Iterator[Batch]:
    """Full batches of this rank's shard as tensors on ``device`` (``x``, ``mask`` and ``extra``
    columns), shuffled through a local buffer seeded ``shuffle_seed`` (None: in order).

    Ray Data collates each batch on a background thread, and for a CUDA device pins it and
    copies it to the device asynchronously, ``prefetch_batches`` ahead of the step: the
    training loop receives tensors already on its device and never waits on a host copy."""
    collate = EventCollate(extra=extra, groups=event_layout(config.kind, 1).groups)
    buffer = config.shuffle_buffer if shuffle_seed is not None else 0
    shuffled = buffer >= batch_size
    iterator: Iterator[Batch] = shard.iter_torch_batches(
        batch_size=batch_size,
        collate_fn=collate,
        device=device,
        pin_memory=device.type == "cuda",
        drop_last=True,
        prefetch_batches=config.prefetch_batches,
        local_shuffle_buffer_size=buffer if shuffled else None,
        local_shuffle_seed=shuffle_seed if shuffled else None,
    )
    return iterator
