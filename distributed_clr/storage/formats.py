"""Arrow schemas of the on-disk formats (docs/architecture.md, "File formats"), and their checks.

Raw events hold one row per collision event with the final-state particles as variable-length
lists; prepared dijets hold fixed-size constituent arrays; object-level events (manifest kind
``objects``) hold 19 physics-object slots; embeddings hold one vector per event.
"""

from __future__ import annotations

from pathlib import Path

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


def embedding_schema(dim: int) -> pa.Schema:
    """Embeddings: the event's keys, its label and m_jj, and ``embedding`` [D] float32."""
    base = dijet_schema(1)
    return pa.schema(
        [
            *(base.field(name) for name in EMBEDDING_KEYS),
            pa.field("embedding", pa.list_(pa.float32(), dim), nullable=False),
        ]
    )


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
