"""The feature sets the classifiers read, from Arrow tables or numpy mappings."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from distributed_clr.evaluate.features import (
    FEATURE_COLUMNS,
    event_space,
    feature_matrix,
    highlevel,
    latent,
)


def _dijet_table(rows: int = 3, n: int = 2) -> pa.Table:
    rng = np.random.default_rng(0)
    pair = pa.list_(pa.float32(), 2)
    constituents = pa.list_(pa.float32(), 2 * n)
    columns = {
        "jet_m": pa.array(rng.uniform(10, 500, (rows, 2)).astype(np.float32).tolist(), pair),
        "tau21": pa.array(rng.uniform(0, 1, (rows, 2)).astype(np.float32).tolist(), pair),
        **{
            name: pa.array(
                rng.uniform(0, 1000, (rows, 2 * n)).astype(np.float32).tolist(), constituents
            )
            for name in ("pt", "eta", "phi")
        },
        "embedding": pa.array(
            rng.normal(size=(rows, 5)).astype(np.float32).tolist(), pa.list_(pa.float32(), 5)
        ),
    }
    return pa.table(columns)


def test_feature_sets_from_arrow_and_from_numpy() -> None:
    table = _dijet_table()
    jet_m = np.array(table.column("jet_m").to_pylist())
    tau21 = np.array(table.column("tau21").to_pylist())
    high = highlevel(table)
    assert high.dtype == np.float32
    np.testing.assert_allclose(high, np.c_[jet_m[:, 0], jet_m[:, 1], tau21[:, 0], tau21[:, 1]])

    event = event_space(table)
    assert event.shape == (3, 2 * 2 * 3)
    pt, eta, phi = (np.array(table.column(c).to_pylist()) for c in ("pt", "eta", "phi"))
    # Constituent k of row 1: (pT [TeV], eta, phi) at columns 3k .. 3k + 2.
    np.testing.assert_allclose(event[1, 9:12], [pt[1, 3] / 1000, eta[1, 3], phi[1, 3]], rtol=1e-6)

    assert latent(table).shape == (3, 5)
    as_numpy = {name: np.array(table.column(name).to_pylist()) for name in table.column_names}
    for name in FEATURE_COLUMNS:
        np.testing.assert_array_equal(
            feature_matrix(as_numpy, name),  # type: ignore[arg-type]
            feature_matrix(table.select(list(FEATURE_COLUMNS[name])), name),  # type: ignore[arg-type]
        )


def test_feature_sets_name_what_is_wrong() -> None:
    table = _dijet_table()
    with pytest.raises(ValueError, match="missing column 'tau21'"):
        highlevel(table.drop_columns(["tau21"]))
    with pytest.raises(ValueError, match=r"column 'jet_m' must be \(rows, 2\)"):
        highlevel({"jet_m": np.zeros((3, 3)), "tau21": np.zeros((3, 2))})
    with pytest.raises(ValueError, match="unknown feature set"):
        feature_matrix(table, "jets")  # type: ignore[arg-type]
