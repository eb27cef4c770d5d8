"""Which events a pretraining run uses (``sample.pretrain``), decided once on the driver.

* **train**: the events ``sample.pretrain`` draws from the train split (all by default; a
  background-only encoder for a search is ``sample.pretrain.signal=0``).
* **val**: the events of the validation loss and of the selection metric, drawn from the val
  split with the same composition (``sampling.scaled_like``): a background-only run is also
  validated on background only.
* **probe**: the linear probe's fixed subset of the val split, balanced between background
  and signal where possible (it is a diagnostic and does not follow the composition); empty,
  with a warning, when the split lacks one class (e.g. unlabelled data).

Each set is a sorted array of event keys (``sampling.event_keys``, stored as int64) that the
Ray Datasets filter on (train) or that the validation pass masks with (val, probe). The
compositions are logged, recorded as MLflow params and returned with the run.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from distributed_clr.config.schema import RoleSample, RunConfig
from distributed_clr.sampling import Composition, choose, event_keys, scaled_like
from distributed_clr.storage.location import StoragePath
from distributed_clr.storage.reader import column_to_numpy, iter_tables

log = logging.getLogger(__name__)

__all__ = ["KEY_COLUMN", "SamplePlan", "plan_samples"]

KEY_COLUMN = "key"
"""The column of event keys the training datasets carry (int64)."""
COLUMNS = ("event_id", "dataset", "label", "process", "split")

Keys = npt.NDArray[np.int64]


@dataclass
class SamplePlan:
    """The events of a run, as sorted int64 keys; None means every event of the split."""

    train: Keys | None
    val: Keys | None
    probe: Keys
    compositions: dict[str, Composition] = field(default_factory=dict)

    def params(self) -> dict[str, Any]:
        """Realised counts as MLflow params: ``composition.pretrain.<set>.<count>``."""
        out: dict[str, Any] = {}
        for name, composition in self.compositions.items():
            for key in ("events", "background", "unlabelled", "signal"):
                out[f"composition.pretrain.{name}.{key}"] = composition.to_dict()[key]
        return out


def _read(data: StoragePath, kind: str, splits: list[str]) -> dict[str, npt.NDArray[Any]]:
    parts: dict[str, list[npt.NDArray[Any]]] = {c: [] for c in COLUMNS}
    for table in iter_tables(data, kind, splits=splits, columns=COLUMNS, verify="rows"):
        for name in COLUMNS:
            parts[name].append(column_to_numpy(table.column(name)))
    return {
        name: np.concatenate(chunks) if chunks else np.zeros(0) for name, chunks in parts.items()
    }


def _sorted(keys: npt.NDArray[np.uint64]) -> Keys:
    return np.sort(keys.view(np.int64))


def plan_samples(data: StoragePath, config: RunConfig) -> SamplePlan:
    """The train, val and probe events of a run on the prepared dataset ``data``."""
    spec, seed = config.sample.pretrain, config.sample.seed
    train_split, val_split = config.data.train_split, config.data.val_split
    events = _read(data, config.data.kind, [train_split, val_split])
    keys = event_keys(events["event_id"], events["dataset"])
    label, process = events["label"].astype(np.int8), events["process"]
    in_train, in_val = events["split"] == train_split, events["split"] == val_split

    train_mask, train_drawn = choose(
        label[in_train], process[in_train], keys[in_train], spec, seed,
        what=f"sample.pretrain ({train_split} split)",
    )  # fmt: skip
    val_label, val_process, val_keys = label[in_val], process[in_val], keys[in_val]
    val_signal = val_label == 1
    val_spec = scaled_like(spec, train_drawn, int((~val_signal).sum()), int(val_signal.sum()))
    val_mask, val_drawn = choose(
        val_label, val_process, val_keys, val_spec, seed,
        what=f"the validation events ({val_split} split) of sample.pretrain",
    )  # fmt: skip
    probe_mask, probe_drawn = _probe(val_label, val_process, val_keys, config)
    plan = SamplePlan(
        train=None if spec.everything else _sorted(keys[in_train][train_mask]),
        val=None if spec.everything else _sorted(val_keys[val_mask]),
        probe=_sorted(val_keys[probe_mask]),
        compositions={"train": train_drawn, "val": val_drawn, "probe": probe_drawn},
    )
    for name, composition in plan.compositions.items():
        log.info("pretraining %s events: %s", name, composition.describe())
    return plan


def _probe(
    label: npt.NDArray[np.int8], process: npt.NDArray[Any], keys: npt.NDArray[np.uint64],
    config: RunConfig,
) -> tuple[npt.NDArray[np.bool_], Composition]:  # fmt: skip
    """Up to ``train.probe_events`` validation events, half signal where there is enough."""
    wanted = config.train.probe_events
    have_signal = int((label == 1).sum())
    have_background = int((label == 0).sum())
    n_signal = min(wanted // 2, have_signal)
    n_background = min(wanted - n_signal, have_background)
    if wanted and (n_signal == 0 or n_background == 0):
        log.warning(
            "the linear probe is skipped: the val split has %d labelled background and %d "
            "signal events, and the probe needs both",
            have_background,
            have_signal,
        )
        n_signal = n_background = 0
    spec = RoleSample(background=n_background, signal=n_signal)
    known = np.flatnonzero(label >= 0)  # unlabelled events never enter the probe
    chosen, drawn = choose(
        label[known], process[known], keys[known], spec, config.sample.seed, what="the probe"
    )
    mask = np.zeros(len(label), dtype=bool)
    mask[known[chosen]] = True
    return mask, drawn
