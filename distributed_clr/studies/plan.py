"""What a study is made of: encoders to pretrain, evaluations to run, the scale, the report.

A study (``catalog.py``) turns its context (the resolved config, the data, the scale) into a
``StudyPlan``: a grid of pretraining variants (``Encoder``, each a point of a Ray Tune grid
over config keys, run through ``sweeps.sweep``), whether the untrained encoder of every
architecture is a baseline, and a list of ``Evaluation`` pieces, each one stage
(``classify``, ``cwola``, ``bumphunt`` or ``nplm``) on one encoder's embeddings with its own
config overrides. The runner (``runner.py``) executes the plan; the study's ``tables`` and
``plots`` read the pieces' summaries back (``StudyResults``) for the report (``report.py``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from distributed_clr.config import RunConfig
from distributed_clr.config.schema import ClassifierName

__all__ = [
    "RAW",
    "UNTRAINED",
    "Cell",
    "Encoder",
    "Evaluation",
    "ReportTable",
    "Stage",
    "StudyContext",
    "StudyDef",
    "StudyPlan",
    "StudyResults",
    "untrained_label",
]

Stage = Literal["classify", "cwola", "bumphunt", "nplm"]
Overrides = tuple[tuple[str, Any], ...]

UNTRAINED = "untrained"
"""Prefix of an untrained encoder's label: ``untrained/<trained label>``."""
RAW = "raw inputs"
"""Row label of evaluations on the event space (the encoder's inputs, not its output)."""


def untrained_label(label: str) -> str:
    """The label of the untrained encoder with the architecture of encoder ``label``."""
    return f"{UNTRAINED}/{label}"


@dataclass(frozen=True)
class Encoder:
    """One pretraining variant: a point of the study's grid."""

    label: str
    """Row label in the report, e.g. 'latent 128' or 'without rotate'."""
    values: Mapping[str, Any]
    """{grid key: value} of this point."""

    def key(self) -> str:
        """The point's identity, comparable with a trial's decoded params."""
        return json.dumps({k: self.values[k] for k in sorted(self.values)}, sort_keys=True)


@dataclass(frozen=True)
class Evaluation:
    """One evaluation piece: a stage on one encoder's embeddings."""

    name: str
    """Unique within the study; names the output directory."""
    stage: Stage
    encoder: str
    """A trained encoder's label, or ``untrained_label(label)``."""
    overrides: Overrides = ()
    """Config overrides of this evaluation (its ``evaluate``/``nplm``/``sample`` keys)."""
    classifier: ClassifierName = "fcn"
    """The CWoLa classifier (``cwola`` and ``bumphunt`` stages)."""


@dataclass
class StudyPlan:
    """Everything a study runs."""

    grid: dict[str, list[Any]]
    """The pretraining grid (dotted key -> values); every combination is one encoder."""
    encoders: list[Encoder]
    """The grid's points with their labels (every combination, in report order)."""
    evaluations: list[Evaluation]
    fixed: Overrides = ()
    """Overrides of every encoder and evaluation (applied before the grid)."""
    untrained: bool = True
    """Embed and evaluate the untrained encoder of every architecture (the baseline)."""


@dataclass
class StudyContext:
    """What a study's plan may depend on."""

    config: RunConfig
    """The resolved config: preset, files, scale, --set."""
    kind: str
    """The data's kind: 'dijet' or 'objects'."""
    data: Path
    scale: str
    counts: Mapping[str, Mapping[str, int]]
    """Events per split and class ('background', 'signal') of the data."""
    processes: Sequence[str] = ()
    """The signal processes present (label 1)."""


@dataclass
class Cell:
    """One reported number: value with a 68% interval (NaN where none)."""

    value: float
    low: float = math.nan
    high: float = math.nan
    note: str = ""
    """Why a cell has no number ('n/a'), or what qualifies it."""
    std: float = math.nan
    """Spread over repeats (seeds), where there are several."""

    def filled(self) -> bool:
        return math.isfinite(self.value) or bool(self.note)


@dataclass
class ReportTable:
    """One table of the report; ``rows`` map a row label to {column: Cell or text}."""

    key: str
    """Stable name (CSV, published numbers)."""
    title: str
    columns: list[str]
    rows: dict[str, dict[str, Cell | str]] = field(default_factory=dict)
    caption: str = ""
    published: str | None = None
    """The ``published.yaml`` entry compared with this table (None: no published numbers)."""


@dataclass
class StudyResults:
    """A finished study's pieces, read back for the report."""

    plan: StudyPlan
    context: StudyContext
    encoders: dict[str, dict[str, Any]]
    """Trained encoder label -> its pretraining facts (run name, best epoch, MLflow run)."""
    evaluations: dict[str, dict[str, Any]]
    """Evaluation name -> the stage's summary (``summary.json``)."""

    def summary(self, name: str) -> dict[str, Any]:
        return self.evaluations[name]


@dataclass(frozen=True)
class StudyDef:
    """A study of the catalogue."""

    name: str
    title: str
    paper: str
    """Key of the paper in ``published.yaml``."""
    reproduces: str
    """The paper's tables and figures it follows."""
    kinds: tuple[str, ...]
    """Data kinds it runs on."""
    build: Callable[[StudyContext], StudyPlan]
    tables: Callable[[StudyResults], list[ReportTable]]
    plots: Callable[[StudyResults, Path], list[Path]]
    description: str = ""
