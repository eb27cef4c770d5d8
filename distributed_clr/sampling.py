"""Sample composition: which events a stage draws, by a hash of each event's identity.

Every stage that uses events (pretraining, the classifier tests, CWoLa, the bump hunt) draws
them here, from the ``sample`` config section (``config/sample.py``). An event's *key* is its
event_id mixed with its dataset's name (``event_keys``); its *draw order* is a hash of the key
and ``sample.seed`` (``draw_order``). A role takes the first N background events and the first
M signal events in that order, so:

* the same settings draw the same events on any machine, from any file layout;
* a smaller draw is a subset of a larger one (a scan over N adds events, never swaps them);
* no label is looked at beyond telling signal (label 1, optionally of chosen processes) from
  background (every other event, unlabelled -1 included).

Asking for more events than a split holds is a ``SampleError`` naming the role, the counts
asked for and those available. ``Composition`` records what was drawn, for manifests, MLflow
params and printed summaries.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from distributed_clr.config.schema import RoleSample
from distributed_clr.errors import UserError
from distributed_clr.seeds import name_key, splitmix64, unit_interval

__all__ = [
    "Composition",
    "SampleError",
    "choose",
    "draw_order",
    "event_keys",
    "scaled_like",
]

Mask = npt.NDArray[np.bool_]
U64 = npt.NDArray[np.uint64]
KEY_SALT = "dclr-event"


class SampleError(UserError, ValueError):
    """A composition that the data cannot satisfy."""


@dataclass(frozen=True)
class Composition:
    """What a role drew: counts per class, signal per process, and what was available."""

    background: int
    """Label-0 events drawn."""
    unlabelled: int
    """Label -1 events drawn (they count as background)."""
    signal: int
    """Signal events drawn."""
    available_background: int
    available_signal: int
    signal_by_process: dict[str, int] = field(default_factory=dict)

    @property
    def events(self) -> int:
        return self.background + self.unlabelled + self.signal

    def to_dict(self) -> dict[str, Any]:
        return {"events": self.events, **asdict(self)}

    def describe(self) -> str:
        """'4000 events: 3000 background, 1000 signal' (and unlabelled where there are any)."""
        parts = [f"{self.background} background"]
        if self.unlabelled:
            parts.append(f"{self.unlabelled} unlabelled")
        parts.append(f"{self.signal} signal")
        return f"{self.events} events: {', '.join(parts)}"


def event_keys(event_id: npt.ArrayLike, dataset: Sequence[str] | npt.ArrayLike) -> U64:
    """(N,) uint64 keys of events: event_id mixed with the key of its dataset's name (event
    ids are unique only within a dataset)."""
    ids = np.asarray(event_id, dtype=np.int64).view(np.uint64)
    names = np.asarray(dataset, dtype=object)
    keys = np.empty(len(ids), dtype=np.uint64)
    for name in np.unique(names):
        rows = names == name
        keys[rows] = splitmix64(ids[rows] ^ name_key(str(name), KEY_SALT))
    return keys


def draw_order(keys: U64, seed: int) -> npt.NDArray[np.float64]:
    """(N,) values in [0, 1): events are drawn in increasing order of these."""
    return unit_interval(splitmix64(keys ^ name_key(f"sample-{seed}", KEY_SALT)))


def _first(pool: Mask, order: npt.NDArray[np.float64], n: int) -> Mask:
    rows = np.flatnonzero(pool)
    chosen = rows[np.argsort(order[rows], kind="stable")[:n]]
    out = np.zeros(len(pool), dtype=bool)
    out[chosen] = True
    return out


def choose(
    label: npt.ArrayLike,
    process: npt.ArrayLike,
    keys: U64,
    spec: RoleSample,
    seed: int,
    *,
    what: str,
) -> tuple[Mask, Composition]:
    """The events ``spec`` draws, and their composition.

    Args:
        label: (N,) 0 background, 1 signal, -1 unlabelled.
        process: (N,) process names (for ``spec.signal_processes``).
        keys: (N,) ``event_keys``.
        spec: the role's ``RoleSample``.
        seed: ``sample.seed``.
        what: the role and split for messages, e.g. "sample.pretrain (train split)".
    """
    labels = np.asarray(label)
    processes = np.asarray(process, dtype=object)
    is_signal = labels == 1
    eligible = is_signal
    if spec.signal_processes is not None:
        eligible = is_signal & np.isin(processes, spec.signal_processes)
    background_pool = ~is_signal
    order = draw_order(keys, seed)
    have_b, have_s = int(background_pool.sum()), int(eligible.sum())
    n_b = have_b if spec.background is None else spec.background
    ratio = spec.signal_to_background
    if spec.background is None and ratio:  # as much background as the signal allows
        n_b = min(have_b, math.floor((have_s + 0.5) / ratio))
    if n_b > have_b:
        raise SampleError(
            f"{what} asks for {n_b} background events; there are {have_b} "
            f"({have_s} signal). Lower the count or prepare more events"
        )
    if spec.signal is not None:
        n_s = spec.signal
    elif spec.signal_to_background is not None:
        n_s = round(spec.signal_to_background * n_b)
    else:
        n_s = have_s
    if n_s > have_s:
        kinds = "" if spec.signal_processes is None else f" of {spec.signal_processes}"
        raise SampleError(
            f"{what} asks for {n_s} signal events{kinds}; there are {have_s} "
            f"(with {n_b} background). Lower signal or signal_to_background"
        )
    mask = _first(background_pool, order, n_b) | _first(eligible, order, n_s)
    return mask, _composition(labels, processes, mask, have_b, have_s)


def _composition(
    labels: npt.NDArray[Any], processes: npt.NDArray[Any], mask: Mask, have_b: int, have_s: int
) -> Composition:
    signal = mask & (labels == 1)
    names, counts = np.unique(processes[signal].astype(str), return_counts=True)
    return Composition(
        background=int((mask & (labels == 0)).sum()),
        unlabelled=int((mask & (labels == -1)).sum()),
        signal=int(signal.sum()),
        available_background=have_b,
        available_signal=have_s,
        signal_by_process={str(n): int(c) for n, c in zip(names, counts, strict=True)},
    )


def scaled_like(
    spec: RoleSample, drawn: Composition, available_background: int, available_signal: int
) -> RoleSample:
    """The spec that draws from another split (e.g. val, holding the given numbers of
    background and signal events) what ``spec`` drew from its own (``drawn``): the same
    fraction of the background and the same signal per background event."""
    if spec.everything:
        return spec
    share = (drawn.background + drawn.unlabelled) / max(drawn.available_background, 1)
    background = min(round(share * available_background), available_background)
    ratio = drawn.signal / max(drawn.background + drawn.unlabelled, 1)
    signal = min(round(ratio * background), available_signal)
    return RoleSample(background=background, signal=signal, signal_processes=spec.signal_processes)
