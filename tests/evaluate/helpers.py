"""Shared pieces of the end-to-end evaluation tests: the encoder fixture's record, a fast
configuration, a spy on every classifier fit, and readers of the outputs."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from sklearn.metrics import roc_auc_score

from distributed_clr import classifiers
from distributed_clr.config import EvaluateConfig, TrackingConfig, TransBCConfig, get_preset
from distributed_clr.storage.reader import column_to_numpy

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
PARENT_NAME = "enc-test"
NO_TRANS_BC = TransBCConfig(enabled=False)


@dataclass
class Encoder:
    checkpoint: Path
    embeddings: Path
    data: Path
    tracking: TrackingConfig
    parent_run_id: str


def fast_config(**update: Any) -> EvaluateConfig:
    """The debug preset's evaluation, with an FCN that trains long enough on ~340 events to
    learn the mass windows of the W' jets (a fraction of a second per fit)."""
    config = get_preset("debug").evaluate
    fcn = config.fcn.model_copy(update={"epochs": 50, "patience": 10, "lr": 3e-3})
    return config.model_copy(update={"fcn": fcn, **update})


class TrainingSpy:
    """Records the training and test features of every classifier fit."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: list[tuple[str, npt.NDArray[Any], npt.NDArray[Any]]] = []
        original = classifiers.fit_predict
        original_bc = classifiers.fit_predict_trans_bc

        def fit_predict(
            name: Any, x_train: Any, y_train: Any, x_test: Any, *a: Any, **k: Any
        ) -> Any:
            self.calls.append((str(name), np.asarray(x_train), np.asarray(x_test)))
            return original(name, x_train, y_train, x_test, *a, **k)

        def fit_predict_trans_bc(x_train: Any, y_train: Any, x_test: Any, *a: Any, **k: Any) -> Any:
            self.calls.append(("trans_bc", np.asarray(x_train), np.asarray(x_test)))
            return original_bc(x_train, y_train, x_test, *a, **k)

        monkeypatch.setattr(classifiers, "fit_predict", fit_predict)
        monkeypatch.setattr(classifiers, "fit_predict_trans_bc", fit_predict_trans_bc)


def shared_rows(a: npt.NDArray[Any], b: npt.NDArray[Any]) -> int:
    """How many rows of ``a`` also occur in ``b`` (exact bytes of each row)."""
    a2 = np.ascontiguousarray(a.reshape(len(a), -1))
    b2 = np.ascontiguousarray(b.reshape(len(b), -1))
    row = np.dtype((np.void, a2.dtype.itemsize * a2.shape[1]))
    return int(np.isin(a2.view(row).ravel(), b2.view(row).ravel()).sum())


def assert_png(path: Path) -> None:
    assert path.read_bytes().startswith(PNG_MAGIC), path


def read_outputs(out: Path) -> tuple[dict[str, Any], pa.Table]:
    summary = json.loads((out / "summary.json").read_text())
    return summary, pq.read_table(out / "scores.parquet")


def group_auc(scores: pa.Table, **where: Any) -> float:
    mask = None
    for column, value in where.items():
        condition = pc.equal(scores[column], value)
        mask = condition if mask is None else pc.and_(mask, condition)
    part = scores.filter(mask)
    assert part.num_rows > 0, where
    return float(roc_auc_score(column_to_numpy(part["label"]), column_to_numpy(part["score"])))
