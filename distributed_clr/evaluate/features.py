"""The feature sets the classifiers are trained on, from prepared dijets or embedding shards.

* ``highlevel``: (B, 4) = [m_J1, m_J2, tau21_J1, tau21_J2] [GeV, GeV, 1, 1], the jets in the
  order they are stored (``prepare.select_by`` decides it). The LHC Olympics benchmark features.
* ``event``: the "event space" of the seed paper, the raw constituent array flattened: (B, 6N)
  with (pT, eta, phi) interleaved per constituent, jet 1's N constituents then jet 2's, in
  absolute coordinates and zero-padded as stored. pT is given in TeV (pT / 1000), a linear
  rescaling only: the classifiers standardise every feature anyway, so this keeps magnitudes
  near one without changing what the classifier can learn (no log, no jet-relative angles).
* ``event_frame``: the m_jj-blind event space: each constituent's features in its jet's frame
  (log pT fraction, d_eta, d_phi, and the jets' azimuthal gap; ``model.inputs='jet_frame'``,
  ``augment/normalize.py``), flattened: (B, 8N). For the bump hunt, where ``event`` (absolute
  pT and eta) would let the classifier rebuild m_jj.
* ``latent``: (B, D), the ``embedding`` column of embedding shards.

Every function accepts an Arrow table (or a mapping of column name -> numpy array) and returns
float32; ``FEATURE_COLUMNS`` says which columns each set reads, so callers can read no others.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeAlias

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from distributed_clr.config.schema import FeatureSet
from distributed_clr.storage.reader import column_to_numpy

TableLike: TypeAlias = pa.Table | Mapping[str, Any]
Float32Array = npt.NDArray[np.float32]

FEATURE_COLUMNS: dict[str, tuple[str, ...]] = {
    "highlevel": ("jet_m", "tau21"),
    "event": ("pt", "eta", "phi"),
    "event_frame": ("pt", "eta", "phi"),
    "latent": ("embedding",),
}
"""The columns each feature set reads."""

GEV_PER_TEV = 1000.0


def _column(table: TableLike, name: str) -> npt.NDArray[Any]:
    if isinstance(table, pa.Table):
        if name not in table.column_names:
            raise ValueError(f"missing column '{name}'; the table has {table.column_names}")
        return column_to_numpy(table.column(name))
    if name not in table:
        raise ValueError(f"missing column '{name}'; the table has {sorted(table)}")
    return np.asarray(table[name])


def _matrix(table: TableLike, name: str, width: int | None = None) -> npt.NDArray[Any]:
    values = _column(table, name)
    if values.ndim != 2 or (width is not None and values.shape[1] != width):
        expected = f"(rows, {width})" if width is not None else "(rows, width)"
        raise ValueError(f"column '{name}' must be {expected}, got shape {values.shape}")
    return values


def highlevel(table: TableLike) -> Float32Array:
    """(B, 4) float32: jet masses [GeV] then tau21 of jet 1 and jet 2."""
    jet_m = _matrix(table, "jet_m", 2)
    tau21 = _matrix(table, "tau21", 2)
    if len(jet_m) != len(tau21):
        raise ValueError(f"jet_m has {len(jet_m)} rows but tau21 has {len(tau21)}")
    return np.concatenate([jet_m, tau21], axis=1).astype(np.float32)


def event_space(table: TableLike) -> Float32Array:
    """(B, 6N) float32: per constituent (pT [TeV], eta, phi), jet 1's N then jet 2's."""
    pt, eta, phi = (_matrix(table, name) for name in FEATURE_COLUMNS["event"])
    if not pt.shape == eta.shape == phi.shape:
        raise ValueError(
            f"pt, eta, phi must have one shape, got {pt.shape}, {eta.shape}, {phi.shape}"
        )
    stacked = np.empty((*pt.shape, 3), np.float32)  # (B, 2N, 3), filled in place
    np.divide(pt, GEV_PER_TEV, out=stacked[..., 0])
    stacked[..., 1] = eta
    stacked[..., 2] = phi
    return stacked.reshape(len(pt), -1)


def event_frame(table: TableLike) -> Float32Array:
    """(B, 8N) float32: per constituent the jet-frame encoder features, jet 1's N then jet 2's
    (zero at padding)."""
    import torch

    from distributed_clr.augment.normalize import Normalizer
    from distributed_clr.storage.reader import constituents

    columns = {name: _matrix(table, name) for name in FEATURE_COLUMNS["event_frame"]}
    x, mask = constituents(columns)
    with torch.no_grad():
        features = Normalizer(frame="jet_frame")(x, mask)
    return features.reshape(len(x), -1).numpy().astype(np.float32)


def latent(table: TableLike) -> Float32Array:
    """(B, D) float32: the ``embedding`` column."""
    return _matrix(table, "embedding").astype(np.float32)


FEATURE_FUNCTIONS: dict[str, Callable[[TableLike], Float32Array]] = {
    "highlevel": highlevel,
    "event": event_space,
    "event_frame": event_frame,
    "latent": latent,
}


def feature_matrix(table: TableLike, feature_set: FeatureSet) -> Float32Array:
    """The (B, F) float32 features of ``feature_set`` ('latent', 'event' or 'highlevel')."""
    try:
        function = FEATURE_FUNCTIONS[feature_set]
    except KeyError:
        raise ValueError(
            f"unknown feature set {feature_set!r}; expected one of {sorted(FEATURE_FUNCTIONS)}"
        ) from None
    return function(table)
