"""The evaluation stage: how good is a representation? Classifier tests, CWoLa, the bump hunt,
NPLM.

The drivers ``classify`` (``evaluate classify``) and ``cwola`` (``evaluate cwola``, the
idealised scan or the bump hunt) read an embedding dataset and the prepared dijets it was made
from, train the classifiers of ``distributed_clr.classifiers`` on each feature set, measure them
with ``distributed_clr.stats``, and leave ``summary.json``, ``scores.parquet``, plots and an
MLflow child run of the encoder's run. ``nplm`` (``evaluate nplm``, module ``nplm``) runs the
NPLM goodness-of-fit test (``stats.nplm``) with toys as Ray tasks and leaves ``toys.parquet``
in place of the scores. The modules, one concern each:

* ``inputs``: embeddings joined to the prepared data; ``features``: the feature matrices.
* ``provenance``: the encoder's checkpoint and MLflow run, the evaluation's run.
* ``idealised`` and ``bumphunt``: the two CWoLa measurements; ``classify`` and ``weak``: the
  drivers; ``report``: the files and the run's metrics; ``plots``: the figures.
"""

from __future__ import annotations

from distributed_clr.classifiers import TRANS_BC
from distributed_clr.evaluate.bumphunt import BumpHuntResult, CutResult
from distributed_clr.evaluate.classify import classify
from distributed_clr.evaluate.errors import EvaluationError
from distributed_clr.evaluate.idealised import ScanPoint, ScanResult
from distributed_clr.evaluate.inputs import EvaluationInputs
from distributed_clr.evaluate.nplm import nplm
from distributed_clr.evaluate.weak import CwolaMode, cwola

__all__ = [
    "TRANS_BC",
    "BumpHuntResult",
    "CutResult",
    "CwolaMode",
    "EvaluationError",
    "EvaluationInputs",
    "ScanPoint",
    "ScanResult",
    "classify",
    "cwola",
    "nplm",
]
