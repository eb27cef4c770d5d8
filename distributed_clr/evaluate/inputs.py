"""The inputs of an evaluation: embeddings joined to the prepared dijets they were made from.

``load_inputs(embeddings, data, feature_sets, splits)`` reads the embedding shards with
``storage.reader.map_shards`` (only the columns needed, only the splits asked for, one shard
per thread and a thread per CPU) and, where a feature set needs the prepared events ('event',
'highlevel', or the raw 'constituents' of the Trans+BC baseline), the same splits of the
prepared dataset. Each shard becomes its feature matrices on the thread that read it, written
straight into arrays allocated once at their full size (the rows of each shard are counted
first), so no constituent column is held as Arrow beyond its shard and nothing is copied
twice. The two are joined on the event key (dataset, event_id) with sorting and
``searchsorted`` per dataset (no per-event Python loop), and the join is checked both ways:
every embedded event must be in the data and every event of those splits in the data must be
embedded, with equal ``label`` and ``mjj``; anything else means the embeddings were made from
other data, and is an error naming an example event.

``labelled(inputs, split, purpose)`` is the gate of supervised use (classifier tests, the
idealised CWoLa scan): events with label -1 (unknown, e.g. a black box) are left out with a
logged explanation, labels other than -1/0/1 are refused, and the split must keep both classes.

Feature sets (``features.FEATURE_COLUMNS``): 'latent' (B, D), 'event' (B, 6N), 'highlevel'
(B, 4), and 'constituents' (B, 2, N, 3) float32 (pT [GeV], eta, phi), the encoder's own input,
for Trans+BC.
"""

from __future__ import annotations

import logging
import threading
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from distributed_clr.config.schema import FeatureSet, RoleSample
from distributed_clr.evaluate.errors import EvaluationError
from distributed_clr.evaluate.features import FEATURE_COLUMNS, feature_matrix
from distributed_clr.sampling import Composition, choose, event_keys
from distributed_clr.storage.formats import (
    LABEL_BACKGROUND,
    LABEL_SIGNAL,
    LABEL_UNKNOWN,
    SPLITS,
)
from distributed_clr.storage.location import StoragePath, as_storage_path, parquet_file
from distributed_clr.storage.manifest import DatasetError, Manifest, require_complete
from distributed_clr.storage.parallel import thread_map, usable_cpus
from distributed_clr.storage.reader import (
    column_to_numpy,
    constituents,
    map_shards,
)
from distributed_clr.storage.verify import VerifyLevel

log = logging.getLogger(__name__)

CONSTITUENTS = "constituents"
"""The pseudo feature set of the raw constituents (B, 2, N, 3), the Trans+BC input."""
INPUT_SETS = ("latent", "event", "event_frame", "highlevel", CONSTITUENTS)
"""Every feature set ``load_inputs`` can return."""
KEY_COLUMNS = ("dataset", "event_id", "label", "process", "split", "fold")
"""Per-event columns read from the embeddings (the first two are the join key)."""
KEY_DTYPES: dict[str, Any] = {
    "event_id": np.int64,
    "label": np.int8,
    "process": object,
    "split": object,
    "fold": np.int8,
}
"""The arrays the key columns besides ``dataset`` become."""
KIND_DTYPES: dict[str, Any] = {"mjj": np.float64, "process_id": np.int16}
"""The arrays the column each kind of embedding adds (``KIND_COLUMNS``) becomes."""
KIND_COLUMNS = {"dijet": "mjj", "objects": "process_id"}
"""The per-event column each kind of embedding adds to ``KEY_COLUMNS`` (``mjj`` is NaN for
object-level events, ``process_id`` -1 for dijets)."""
DATA_KEYS = ("dataset", "event_id", "label")
"""Columns read from the event data besides the features (key, and values to compare)."""
OBJECT_SETS = ("latent", "event")
"""The feature sets of object-level events: 'event' is their 57 raw inputs."""
DATA_COLUMNS: dict[str, tuple[str, ...]] = {
    "event": FEATURE_COLUMNS["event"],
    "event_frame": FEATURE_COLUMNS["event_frame"],
    "highlevel": FEATURE_COLUMNS["highlevel"],
    CONSTITUENTS: ("pt", "eta", "phi"),
}
"""Columns of the prepared data each data-backed feature set reads."""

IntArray = npt.NDArray[np.int64]


@dataclass
class EvaluationInputs:
    """One row per embedded event of the loaded splits, in embedding-shard order.

    The dataset name of each event is stored as a code into ``dataset_names``.
    """

    event_id: IntArray
    dataset_code: npt.NDArray[np.int32]
    dataset_names: list[str]
    label: npt.NDArray[np.int8]
    """0 background, 1 signal, -1 unknown."""
    process: npt.NDArray[np.object_]
    """The process that made each event (e.g. 'qcd_dijet', 'wprime_xy')."""
    split: npt.NDArray[np.str_]
    fold: npt.NDArray[np.int8]
    mjj: npt.NDArray[np.float64]
    """Dijet invariant mass [GeV]; NaN for object-level events."""
    process_id: npt.NDArray[np.int16] = field(default_factory=lambda: np.zeros(0, np.int16))
    """The SM process id of object-level events (-1 unknown, and for dijets)."""
    features: dict[str, npt.NDArray[np.float32]] = field(default_factory=dict)
    """Feature set name -> (B, ...) float32 matrix."""
    excluded_unlabelled: int = 0
    """Events with label -1 that ``labelled`` left out (0 elsewhere)."""

    def __post_init__(self) -> None:
        if len(self.process_id) != len(self.event_id):
            self.process_id = np.full(len(self.event_id), -1, np.int16)

    def __len__(self) -> int:
        return len(self.event_id)

    @property
    def dataset(self) -> npt.NDArray[np.object_]:
        """(B,) the dataset name of each event."""
        names = np.asarray(self.dataset_names, dtype=object)
        return names[self.dataset_code] if len(names) else np.zeros(0, dtype=object)

    def take(self, rows: npt.ArrayLike) -> EvaluationInputs:
        """The events at ``rows`` (a boolean mask or integer indices)."""
        index = np.asarray(rows)
        return replace(
            self,
            event_id=self.event_id[index],
            dataset_code=self.dataset_code[index],
            label=self.label[index],
            process=self.process[index],
            split=self.split[index],
            fold=self.fold[index],
            mjj=self.mjj[index],
            process_id=self.process_id[index],
            features={name: values[index] for name, values in self.features.items()},
        )

    @property
    def has_mjj(self) -> bool:
        """Whether these are dijets with an invariant mass (object-level events have none)."""
        return bool(len(self.mjj)) and bool(np.isfinite(self.mjj).any())

    def require_mjj(self, purpose: str) -> None:
        """EvaluationError unless the events have an m_jj (``purpose`` needs it)."""
        if not self.has_mjj:
            raise EvaluationError(
                f"{purpose} scans the dijet invariant mass; these events (object-level) have none"
            )

    @property
    def keys(self) -> npt.NDArray[np.uint64]:
        """(B,) the events' keys (``sampling.event_keys``): the order they are drawn in."""
        return event_keys(self.event_id, self.dataset)

    def compose(
        self, spec: RoleSample, seed: int, what: str
    ) -> tuple[EvaluationInputs, Composition]:
        """The events ``spec`` draws (``sampling.choose``), and their composition."""
        mask, drawn = choose(self.label, self.process, self.keys, spec, seed, what=what)
        return self.take(mask), drawn

    def in_split(self, split: str) -> EvaluationInputs:
        """The events of one split."""
        return self.take(self.split == split)

    def keys_table(self) -> pa.Table:
        """event_id, dataset, label, split, fold: the identifying columns of ``scores.parquet``."""
        return pa.table(
            {
                "event_id": pa.array(self.event_id, pa.int64()),
                "dataset": pa.array(self.dataset.astype(str), pa.string()),
                "label": pa.array(self.label, pa.int8()),
                "split": pa.array(self.split.astype(str), pa.string()),
                "fold": pa.array(self.fold, pa.int8()),
            }
        )


# ------------------------------------------------------------------------------------------------
# reading


class _Filler:
    """Arrays of every shard's rows, each shard written at its own offset as soon as it is
    converted (on the reading thread): one allocation per array, no per-shard copies to join."""

    def __init__(self, what: StoragePath, rows: Sequence[int]) -> None:
        self.what = what
        self.offsets = np.concatenate([[0], np.cumsum(rows, dtype=np.int64)])
        self.arrays: dict[str, npt.NDArray[Any]] = {}
        self._lock = threading.Lock()

    def put(self, shard: int, name: str, values: npt.NDArray[Any], dtype: Any = None) -> None:
        """Write ``values`` (shard ``shard``'s rows of array ``name``) into place."""
        begin, end = int(self.offsets[shard]), int(self.offsets[shard + 1])
        if len(values) != end - begin:
            raise DatasetError(
                f"a shard of {self.what} gave {len(values)} rows, {end - begin} a moment "
                "before: the dataset is being changed while it is read"
            )
        target = self.arrays.get(name)
        if target is None:
            with self._lock:
                target = self.arrays.get(name)
                if target is None:
                    shape = (int(self.offsets[-1]), *values.shape[1:])
                    target = np.empty(shape, dtype if dtype is not None else values.dtype)
                    self.arrays[name] = target
        target[begin:end] = values

    def get(self, name: str, empty: npt.NDArray[Any]) -> npt.NDArray[Any]:
        """The filled array ``name`` (``empty`` where no shard had rows)."""
        return self.arrays.get(name, empty)


def _read_shards(
    directory: StoragePath,
    manifest: Manifest,
    kind: str,
    convert: typing.Callable[[pa.Table], dict[str, tuple[npt.NDArray[Any], Any]]],
    *,
    splits: Sequence[str] | None,
    columns: Sequence[str],
    verify: VerifyLevel,
) -> tuple[_Filler, pa.ChunkedArray]:
    """The arrays ``convert`` makes of each shard's rows of ``splits`` (name -> (values,
    dtype)), every shard's written into place on the thread that read it, and the events'
    dataset names (``manifest`` is the dataset's, read by the caller). The rows each shard
    holds in ``splits`` are counted first (from its split column), so that each array is
    allocated once, at its full size."""
    counts = map_shards(
        directory,
        kind,
        lambda index, table: (index, table.num_rows),
        splits=splits,
        columns=["split"],
        verify=verify,
    )
    rows = np.zeros(len(manifest.shards), np.int64)
    for index, count in counts:
        rows[index] = count
    filler = _Filler(directory, rows.tolist())

    def fill(index: int, table: pa.Table) -> pa.ChunkedArray:
        for name, (values, dtype) in convert(table).items():
            filler.put(index, name, values, dtype)
        return table.column("dataset")

    names = map_shards(
        directory, kind, fill, splits=splits, columns=["dataset", *columns], verify=verify
    )
    return filler, pa.chunked_array([c for column in names for c in column.chunks], pa.string())


def _take(matrix: npt.NDArray[Any], rows: IntArray) -> npt.NDArray[Any]:
    """``matrix[rows]``: ``matrix`` itself where ``rows`` is every row in order (embeddings
    keep the order of the data they were made from), else gathered in slices on threads."""
    if len(rows) == len(matrix) and bool(np.array_equal(rows, np.arange(len(rows)))):
        return matrix
    out = np.empty((len(rows), *matrix.shape[1:]), matrix.dtype)
    bounds = np.linspace(0, len(rows), usable_cpus() + 1).astype(np.int64)

    def gather(index: int) -> None:
        begin, end = bounds[index], bounds[index + 1]
        np.take(matrix, rows[begin:end], axis=0, out=out[begin:end])

    thread_map(gather, range(len(bounds) - 1))
    return out


def _check_splits(
    available: dict[str, int], splits: Sequence[str] | None, directory: StoragePath, what: str
) -> None:
    """Every split asked for holds events in the dataset (its manifest's counts)."""
    if splits is None:
        return
    empty = [s for s in splits if not available.get(s, 0)]
    if empty:
        held = ", ".join(f"{k} {v}" for k, v in sorted(available.items())) or "none"
        raise DatasetError(
            f"{what} {directory} holds no events of split(s) {', '.join(empty)} (it holds: {held})"
        )


def _embedding_kind(paths: Sequence[StoragePath]) -> str:
    """'dijet' or 'objects': which kind of events an embedding dataset's shards hold."""
    names = parquet_file(paths[0]).schema_arrow.names if paths else []
    return "objects" if "process_id" in names and "mjj" not in names else "dijet"


def _read_embeddings(
    directory: StoragePath, splits: Sequence[str] | None, with_latent: bool, verify: VerifyLevel
) -> tuple[dict[str, npt.NDArray[Any]], pa.ChunkedArray, npt.NDArray[np.float32] | None, str]:
    """The key columns, dataset names and latent vectors of an embedding dataset, and the
    kind of events it was made from ('dijet' or 'objects')."""
    manifest = require_complete(directory, "embedding")
    _check_splits(manifest.summary.get("splits", {}), splits, directory, "the embedding dataset")
    kind = _embedding_kind([directory / s.file for s in manifest.shards])
    keys = {**KEY_DTYPES, KIND_COLUMNS[kind]: KIND_DTYPES[KIND_COLUMNS[kind]]}

    def convert(table: pa.Table) -> dict[str, tuple[npt.NDArray[Any], Any]]:
        arrays = {name: (column_to_numpy(table.column(name)), keys[name]) for name in keys}
        if with_latent:
            arrays["latent"] = (feature_matrix(table, "latent"), np.float32)
        return arrays

    columns = [*keys, *(["embedding"] if with_latent else [])]
    filled, dataset = _read_shards(
        directory, manifest, "embedding", convert, splits=splits, columns=columns, verify=verify
    )
    arrays = {name: filled.get(name, np.zeros(0, dtype)) for name, dtype in keys.items()}
    arrays["split"] = arrays["split"].astype(str)
    rows = len(arrays["event_id"])
    if kind == "dijet":
        arrays["process_id"] = np.full(rows, -1, np.int16)
    else:
        arrays["mjj"] = np.full(rows, np.nan)
    if not rows:
        raise DatasetError(f"the embedding dataset {directory} has no events to evaluate")
    latent = filled.get("latent", np.zeros((0, 1), np.float32)) if with_latent else None
    return arrays, dataset, latent, kind


def _read_data(
    directory: StoragePath,
    kind: str,
    splits: Sequence[str] | None,
    sets: Sequence[str],
    verify: VerifyLevel,
) -> tuple[dict[str, npt.NDArray[Any]], pa.ChunkedArray, dict[str, npt.NDArray[np.float32]]]:
    try:
        manifest = require_complete(directory, kind)
    except DatasetError as err:
        raise DatasetError(f"{err} (the embeddings were made from '{kind}' events)") from None
    _check_splits(manifest.summary.get("splits", {}), splits, directory, "the event dataset")
    groups = 2 if kind == "dijet" else 1
    keys = {
        "event_id": np.int64,
        "label": np.int8,
        **({"mjj": np.float64} if kind == "dijet" else {}),
    }
    columns = list(dict.fromkeys([*keys, *(c for s in sets for c in DATA_COLUMNS[s])]))

    def convert(table: pa.Table) -> dict[str, tuple[npt.NDArray[Any], Any]]:
        arrays = {name: (column_to_numpy(table.column(name)), keys[name]) for name in keys}
        for name in sets:
            if name == CONSTITUENTS:
                arrays[name] = (constituents(table, groups=groups)[0].numpy(), np.float32)
            else:
                matrix = feature_matrix(table, typing.cast("FeatureSet", name))
                arrays[name] = (matrix, np.float32)
        return arrays

    filled, dataset = _read_shards(
        directory, manifest, kind, convert, splits=splits, columns=columns, verify=verify
    )
    arrays = {name: filled.get(name, np.zeros(0, dtype)) for name, dtype in keys.items()}
    matrices = {name: filled.get(name, np.zeros((0, 1), np.float32)) for name in sets}
    return arrays, dataset, matrices


# ------------------------------------------------------------------------------------------------
# the join


def _codes(dataset: pa.ChunkedArray, names: pa.Array) -> npt.NDArray[np.int32]:
    index = pc.index_in(dataset, value_set=names)
    return np.asarray(column_to_numpy(index.fill_null(-1)), dtype=np.int32)


def _names(dataset: pa.ChunkedArray) -> list[str]:
    """The distinct dataset names, sorted (a handful: one per input dataset)."""
    return sorted(str(name) for name in pc.unique(dataset).to_pylist())


def _sorted_keys(
    code: npt.NDArray[np.int32], event_id: IntArray, what: str, names: Sequence[str]
) -> IntArray:
    """Row order sorting by (dataset code, event_id); refuses duplicate keys."""
    order = np.lexsort((event_id, code)).astype(np.int64)
    same = (np.diff(code[order]) == 0) & (np.diff(event_id[order]) == 0)
    if same.any():
        row = order[int(np.flatnonzero(same)[0])]
        raise DatasetError(
            f"{what} holds {int(same.sum())} duplicate event keys, e.g. dataset "
            f"'{names[code[row]]}' event_id {event_id[row]}"
        )
    return order


def match_keys(
    left_code: npt.NDArray[np.int32],
    left_id: IntArray,
    right_code: npt.NDArray[np.int32],
    right_id: IntArray,
    right_order: IntArray,
) -> tuple[IntArray, npt.NDArray[np.bool_]]:
    """For each left key, the row of the equal right key: (rows, found).

    ``right_order`` sorts the right keys by (code, event_id). One ``searchsorted`` per dataset
    code; rows where ``found`` is False are meaningless.
    """
    sorted_code = right_code[right_order]
    sorted_id = right_id[right_order]
    rows = np.zeros(len(left_id), dtype=np.int64)
    found = np.zeros(len(left_id), dtype=bool)
    for code in np.unique(left_code).tolist():
        start, stop = np.searchsorted(sorted_code, [code, code + 1], side="left")
        if start == stop:
            continue
        members = np.flatnonzero(left_code == code)
        position = start + np.searchsorted(sorted_id[start:stop], left_id[members])
        inside = position < stop
        hit = np.zeros(len(members), dtype=bool)
        hit[inside] = sorted_id[position[inside]] == left_id[members][inside]
        rows[members[hit]] = right_order[position[hit]]
        found[members] = hit
    return rows, found


def _example(code: npt.NDArray[np.int32], ids: IntArray, names: Sequence[str], row: int) -> str:
    name = names[code[row]] if code[row] >= 0 else "?"
    return f"dataset '{name}' event_id {int(ids[row])}"


def _join(
    embeddings: StoragePath,
    data: StoragePath,
    emb: dict[str, npt.NDArray[Any]],
    emb_dataset: pa.ChunkedArray,
    dat: dict[str, npt.NDArray[Any]],
    dat_dataset: pa.ChunkedArray,
) -> tuple[IntArray, npt.NDArray[np.int32], list[str]]:
    """Rows of the data matching each embedded event, the embeddings' dataset codes and names."""
    names = _names(pa.chunked_array([*emb_dataset.chunks, *dat_dataset.chunks], pa.string()))
    names_pa = pa.array(names, pa.string())
    emb_code = _codes(emb_dataset, names_pa)
    dat_code = _codes(dat_dataset, names_pa)
    _sorted_keys(emb_code, emb["event_id"], f"the embedding dataset {embeddings}", names)
    order = _sorted_keys(dat_code, dat["event_id"], f"the prepared dataset {data}", names)
    rows, found = match_keys(emb_code, emb["event_id"], dat_code, dat["event_id"], order)
    other = "; the embeddings were made from other data (or another version of it)"
    if not found.all():
        first = int(np.flatnonzero(~found)[0])
        raise DatasetError(
            f"{int((~found).sum())} of {len(found)} embedded events are not in {data}, e.g. "
            f"{_example(emb_code, emb['event_id'], names, first)}{other}"
        )
    if len(rows) != len(dat["event_id"]):
        unmatched = np.ones(len(dat["event_id"]), dtype=bool)
        unmatched[rows] = False
        first = int(np.flatnonzero(unmatched)[0])
        raise DatasetError(
            f"{int(unmatched.sum())} events of {data} in the evaluated splits have no "
            f"embedding in {embeddings}, e.g. {_example(dat_code, dat['event_id'], names, first)}"
            f"{other}"
        )
    for name in ("label", "mjj"):
        if name not in dat:
            continue
        differ = emb[name] != dat[name][rows]
        if differ.any():
            first = int(np.flatnonzero(differ)[0])
            raise DatasetError(
                f"'{name}' differs between {embeddings} and {data} for {int(differ.sum())} "
                f"events, e.g. {_example(emb_code, emb['event_id'], names, first)} "
                f"({emb[name][first]} vs {dat[name][rows[first]]}){other}"
            )
    return rows, emb_code, names


# ------------------------------------------------------------------------------------------------
# the entry points


def needs_data(feature_sets: Sequence[str]) -> bool:
    """Whether any of ``feature_sets`` reads the prepared data (all but 'latent')."""
    return any(name in DATA_COLUMNS for name in feature_sets)


def load_inputs(
    embeddings: str | StoragePath,
    data: str | StoragePath | None,
    feature_sets: Sequence[str],
    splits: Sequence[str] | None = None,
    *,
    verify: VerifyLevel = "sha256",
) -> EvaluationInputs:
    """The events of ``splits`` (default all) with the features of ``feature_sets``.

    Args:
        embeddings: an ``embedding`` dataset directory (``dclr embed``).
        data: the prepared dijet dataset the embeddings were made from; needed for any feature
            set other than 'latent'.
        feature_sets: among ``INPUT_SETS``.
        splits: the splits to load; each must hold events in the embeddings (and the data).
            None loads every split the embeddings hold.
        verify: how both datasets' shards are checked against their manifests first.

    Raises:
        EvaluationError: an unknown feature set or split, or data-backed sets without ``data``.
        DatasetError: a missing or incomplete dataset, an empty split, duplicate event keys,
            or embeddings that do not match the data (missing keys, other label or m_jj).
    """
    sets = list(dict.fromkeys(feature_sets))
    unknown = [s for s in sets if s not in INPUT_SETS]
    if unknown:
        raise EvaluationError(
            f"unknown feature set(s) {unknown}; expected among {list(INPUT_SETS)}"
        )
    if splits is not None:
        bad = sorted(set(splits) - set(SPLITS))
        if bad:
            raise EvaluationError(f"unknown split(s) {bad}; splits are {', '.join(SPLITS)}")
    embeddings = as_storage_path(embeddings)
    emb, emb_dataset, latent, kind = _read_embeddings(embeddings, splits, "latent" in sets, verify)
    if kind == "objects":
        wrong = [s for s in sets if s not in OBJECT_SETS]
        if wrong:
            raise EvaluationError(
                f"feature set(s) {wrong} are dijet features; object-level events have "
                f"{', '.join(OBJECT_SETS)} ('event': the 57 raw inputs)"
            )
    data_sets = [s for s in sets if s in DATA_COLUMNS]
    if not data_sets:
        names = _names(emb_dataset)
        code = _codes(emb_dataset, pa.array(names, pa.string()))
        features: dict[str, npt.NDArray[np.float32]] = {}
    else:
        if data is None:
            raise EvaluationError(
                f"feature set(s) {data_sets} are read from the event data: pass the dataset "
                "the embeddings were made from (--data)"
            )
        data = as_storage_path(data)
        # Without a choice of splits, those the embeddings hold (``dclr embed --split``).
        present = splits if splits is not None else sorted(np.unique(emb["split"]).tolist())
        dat, dat_dataset, matrices = _read_data(data, kind, present, data_sets, verify)
        rows, code, names = _join(embeddings, data, emb, emb_dataset, dat, dat_dataset)
        features = {name: _take(matrix, rows) for name, matrix in matrices.items()}
    if latent is not None:
        features["latent"] = latent
    inputs = EvaluationInputs(
        event_id=emb["event_id"],
        dataset_code=code,
        dataset_names=names,
        label=emb["label"],
        process=emb["process"],
        split=emb["split"],
        fold=emb["fold"],
        mjj=emb["mjj"],
        process_id=emb["process_id"],
        features={name: features[name] for name in sets},
    )
    log.info(
        "loaded %d events (%s) with feature set(s) %s",
        len(inputs),
        ", ".join(f"{s} {int((inputs.split == s).sum())}" for s in np.unique(inputs.split)),
        ", ".join(f"{k} {v.shape[1:]}" for k, v in inputs.features.items()),
    )
    return inputs


def labelled(inputs: EvaluationInputs, split: str, purpose: str) -> EvaluationInputs:
    """The events of ``split`` with a true label (0 or 1), for supervised use.

    Label -1 (unknown) events are left out, with a logged warning naming ``purpose``; the
    result's ``excluded_unlabelled`` counts them.

    Raises:
        EvaluationError: labels other than -1/0/1, or no events of one class left in the split.
    """
    part = inputs.in_split(split)
    allowed = (LABEL_UNKNOWN, LABEL_BACKGROUND, LABEL_SIGNAL)
    bad = ~np.isin(part.label, allowed)
    if bad.any():
        raise EvaluationError(
            f"split '{split}' has labels {np.unique(part.label[bad])[:5].tolist()}; labels "
            "must be 0 (background), 1 (signal) or -1 (unknown)"
        )
    unknown = part.label == LABEL_UNKNOWN
    if unknown.any():
        log.warning(
            "%d of %d events of split '%s' have label -1 (unknown) and are left out of %s, "
            "which needs true labels to train and to measure",
            int(unknown.sum()),
            len(part),
            split,
            purpose,
        )
        part = part.take(~unknown)
    counts = np.bincount(part.label.astype(np.int64), minlength=2)
    if counts.min() == 0:
        raise EvaluationError(
            f"{purpose} needs labelled background (0) and signal (1) events in split '{split}'; "
            f"it has {counts[0]} background and {counts[1]} signal events"
            + (f" ({int(unknown.sum())} unlabelled left out)" if unknown.any() else "")
        )
    part.excluded_unlabelled = int(unknown.sum())
    return part


def draw(
    inputs: EvaluationInputs, spec: RoleSample, seed: int, role: str, split: str, purpose: str
) -> tuple[EvaluationInputs, Composition]:
    """The events of ``split`` that ``sample.<role>`` draws for a supervised use; both classes
    must remain."""
    part, drawn = inputs.compose(spec, seed, f"sample.{role} ({split} split)")
    if drawn.signal == 0 or drawn.background == 0:
        raise EvaluationError(
            f"{purpose} needs background and signal events, but sample.{role} draws "
            f"{drawn.describe()} from split '{split}'"
        )
    part.excluded_unlabelled = inputs.excluded_unlabelled
    return part, drawn
