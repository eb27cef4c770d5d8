"""Arrow schemas of the on-disk formats (docs/architecture.md, "File formats"), and their checks.

Raw events hold one row per collision event with the final-state particles as variable-length
lists; prepared dijets hold fixed-size constituent arrays; object-level events (manifest kind
``objects``) hold 19 physics-object slots; embeddings hold one vector per event.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pyarrow as pa

from distributed_clr.errors import UserError

SCHEMA_VERSION = 1

LABEL_BACKGROUND = 0
LABEL_SIGNAL = 1
LABEL_UNKNOWN = -1

RAW_SCHEMA = pa.schema(
    [
        pa.field("event_id", pa.int64(), nullable=False),
        pa.field("label", pa.int8(), nullable=False),
        pa.field("process", pa.string(), nullable=False),
        pa.field("pt", pa.list_(pa.float32()), nullable=False),
        pa.field("eta", pa.list_(pa.float32()), nullable=False),
        pa.field("phi", pa.list_(pa.float32()), nullable=False),
    ]
)
"""Raw events: final-state particles (massless) in GeV and radians, any number per event."""


class SchemaError(UserError, ValueError):
    """A file whose columns or types differ from the format it should have."""


def check_schema(actual: pa.Schema, expected: pa.Schema, source: str | Path) -> None:
    """Raise SchemaError naming ``source`` and every missing or mistyped column."""
    problems = []
    for field in expected:
        index = actual.get_field_index(field.name)
        if index < 0:
            problems.append(f"missing column '{field.name}' ({field.type})")
            continue
        got = actual.field(index).type
        if not got.equals(field.type):
            problems.append(f"column '{field.name}' has type {got}, expected {field.type}")
    if problems:
        raise SchemaError(f"{source}: " + "; ".join(problems))


SPLITS = ("train", "val", "test")

PER_JET = ("jet_pt", "jet_eta", "jet_phi", "jet_m", "tau1", "tau2", "tau3", "tau21", "tau32")
"""Per-jet observables, each stored as fixed_size_list<float32>[2] (jet 1, jet 2)."""


def dijet_schema(num_constituents: int) -> pa.Schema:
    """Prepared dijets: jet 1's N constituents then jet 2's (pT-ordered, zero-padded, absolute
    coordinates), the two jets' observables, m_jj, and the split assignment."""
    constituents = pa.list_(pa.float32(), 2 * num_constituents)
    pair = pa.list_(pa.float32(), 2)
    return pa.schema(
        [
            pa.field("event_id", pa.int64(), nullable=False),
            pa.field("label", pa.int8(), nullable=False),
            pa.field("process", pa.string(), nullable=False),
            pa.field("dataset", pa.string(), nullable=False),
            pa.field("split", pa.string(), nullable=False),
            pa.field("fold", pa.int8(), nullable=False),
            pa.field("pt", constituents, nullable=False),
            pa.field("eta", constituents, nullable=False),
            pa.field("phi", constituents, nullable=False),
            pa.field("jet_n", pa.list_(pa.int16(), 2), nullable=False),
            *(pa.field(name, pair, nullable=False) for name in PER_JET),
            pa.field("mjj", pa.float32(), nullable=False),
        ]
    )


EMBEDDING_KEYS = ("event_id", "label", "process", "dataset", "split", "fold", "mjj")
"""Columns an embedding shard carries over from the prepared dijets: (dataset, event_id) is the
key that joins it back to them."""


OBJECT_SLOTS = 19
"""Slots of an object-level event: MET, 4 electrons, 4 muons, 10 jets (the CMS ADC2021 layout)."""
OBJECT_BLOCKS = (("met", 0, 1, 1), ("electron", 1, 5, 2), ("muon", 5, 9, 3), ("jet", 9, 19, 4))
"""(name, first slot, end slot, class id) of each block; class 0 marks an empty slot."""
PROCESS_ID_UNKNOWN = -1
"""The process id of an event whose SM process is not known."""


def object_schema() -> pa.Schema:
    """Object-level events: 19 slots of (pT [GeV], eta, phi [rad], class), each block
    pT-ordered and zero-padded (``OBJECT_BLOCKS``), with the event's label, process name, SM
    process id (the positives of supervised contrastive learning; -1 unknown), dataset name,
    split and fold."""
    slots = pa.list_(pa.float32(), OBJECT_SLOTS)
    return pa.schema(
        [
            pa.field("event_id", pa.int64(), nullable=False),
            pa.field("label", pa.int8(), nullable=False),
            pa.field("process", pa.string(), nullable=False),
            pa.field("process_id", pa.int16(), nullable=False),
            pa.field("dataset", pa.string(), nullable=False),
            pa.field("split", pa.string(), nullable=False),
            pa.field("fold", pa.int8(), nullable=False),
            pa.field("pt", slots, nullable=False),
            pa.field("eta", slots, nullable=False),
            pa.field("phi", slots, nullable=False),
            pa.field("object_class", pa.list_(pa.int8(), OBJECT_SLOTS), nullable=False),
        ]
    )


OBJECT_KEYS = ("event_id", "label", "process", "process_id", "dataset", "split", "fold")
"""Columns an embedding shard carries over from object-level events."""


@dataclass(frozen=True)
class EventLayout:
    """How a kind of event becomes tensors: x (B, groups, slots, 3) = (pT, eta, phi) and a
    (B, groups, slots) mask of real entries (pT > 0).

    Dijets are two groups (the jets) of N constituent slots; object-level events are one group
    of 19 slots whose position fixes the object type. ``token_types`` gives each of the
    ``groups * slots`` flattened slots a type id in ``range(num_types)``: the jet of a
    constituent, or the class of an object slot minus one (MET, electron, muon, jet).
    """

    kind: Literal["dijet", "objects"]
    groups: int
    slots: int
    token_types: tuple[int, ...]
    keys: tuple[str, ...]
    """The columns an embedding shard carries over from this kind of event."""

    @property
    def num_types(self) -> int:
        return max(self.token_types) + 1

    @property
    def inputs(self) -> int:
        """Entries of the flattened (pT, eta, phi) event: 57 for objects."""
        return 3 * self.groups * self.slots


def dijet_layout(num_constituents: int) -> EventLayout:
    """Two jets of ``num_constituents`` slots each."""
    types = (0,) * num_constituents + (1,) * num_constituents
    return EventLayout("dijet", 2, num_constituents, types, EMBEDDING_KEYS)


OBJECT_LAYOUT = EventLayout(
    "objects",
    1,
    OBJECT_SLOTS,
    tuple(cls - 1 for _, first, end, cls in OBJECT_BLOCKS for _ in range(first, end)),
    OBJECT_KEYS,
)
"""One group of the 19 ADC2021 slots; types 0 MET, 1 electron, 2 muon, 3 jet."""

EVENT_KINDS = ("dijet", "objects")
"""Manifest kinds of event datasets that pretraining and embedding read."""


def event_layout(kind: str, num_constituents: int) -> EventLayout:
    """The layout of ``kind`` events (``num_constituents`` per jet for dijets)."""
    if kind == "dijet":
        return dijet_layout(num_constituents)
    if kind == "objects":
        return OBJECT_LAYOUT
    raise ValueError(f"unknown event kind '{kind}'; expected one of {', '.join(EVENT_KINDS)}")


def embedding_schema(dim: int, kind: str = "dijet") -> pa.Schema:
    """Embeddings of ``kind`` events: their key columns (``EMBEDDING_KEYS`` for dijets, with
    m_jj; ``OBJECT_KEYS`` for objects, with the SM process id) and ``embedding`` [D] float32."""
    layout = event_layout(kind, 1)
    source = dijet_schema(1) if layout.kind == "dijet" else object_schema()
    return pa.schema(
        [
            *(source.field(name) for name in layout.keys),
            pa.field("embedding", pa.list_(pa.float32(), dim), nullable=False),
        ]
    )
