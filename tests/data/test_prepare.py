"""Dijet preparation: exact agreement with per-event FastJet, cut flow, splits, resumption."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from distributed_clr.config import PrepareConfig, RayConfig
from distributed_clr.data.dijets import BadEventsError, select_dijets
from distributed_clr.data.prepare import prepare
from distributed_clr.physics.particles import Particles, from_arrow, to_arrow
from distributed_clr.physics.reference import reference_dijets
from distributed_clr.storage.formats import SchemaError, dijet_schema
from distributed_clr.storage.manifest import DatasetError, Manifest, require_complete
from distributed_clr.storage.reader import constituents, iter_tables, ray_dataset, shard_paths
from distributed_clr.train.feed import EventCollate
from tests.data.physics import read_raw


def _read(directory: Path) -> pa.Table:
    return pa.concat_tables([pq.read_table(p) for p in shard_paths(directory, "dijet")])


def _fixed(table: pa.Table, name: str) -> np.ndarray:
    column = table.column(name).combine_chunks()
    return column.flatten().to_numpy().reshape(len(column), -1)


@pytest.mark.ray
@pytest.mark.parametrize("select_by", ["mass", "pt"])
def test_agrees_exactly_with_per_event_fastjet(generated: dict[str, Path], select_by: str) -> None:
    config = PrepareConfig(num_constituents=20, select_by=select_by)
    for process in ("qcd_dijet", "wprime_xy"):
        raw = read_raw(generated[process]).slice(0, 60)
        table, flow = select_dijets(raw, config, process)
        reference = reference_dijets(from_arrow(raw), config)

        assert flow.events_out == len(reference) == table.num_rows
        ids = raw.column("event_id").to_numpy()
        assert table.column("event_id").to_numpy().tolist() == [ids[r.row] for r in reference]
        pt, eta, phi = (_fixed(table, c).reshape(-1, 2, 20) for c in ("pt", "eta", "phi"))
        jet_pt = _fixed(table, "jet_pt")
        for i, ref in enumerate(reference):
            assert np.array_equal(
                jet_pt[i], np.hypot(ref.jets[:, 0], ref.jets[:, 1]).astype(np.float32)
            )
            for j in range(2):
                n = min(20, len(ref.constituents[j]))
                expected = ref.constituents[j][:n].astype(np.float32)
                assert np.array_equal(pt[i, j, :n], expected[:, 0])
                assert np.array_equal(eta[i, j, :n], expected[:, 1])
                assert np.array_equal(phi[i, j, :n], expected[:, 2])
                assert not pt[i, j, n:].any()  # zero padding
            np.testing.assert_allclose(
                _fixed(table, "tau1")[i], ref.taus[:, 0].astype(np.float32), rtol=1e-6
            )
            np.testing.assert_allclose(
                _fixed(table, "tau2")[i], ref.taus[:, 1].astype(np.float32), rtol=1e-6
            )
        np.testing.assert_allclose(
            table.column("mjj").to_numpy(), [r.mjj for r in reference], rtol=1e-6
        )


def _pencil_event(jets: list[tuple[float, float, float]]) -> tuple[list, list, list]:
    """Particles of pencil-thin jets: each (pt, eta, phi) split over 3 collinear particles."""
    pt, eta, phi = [], [], []
    for p, e, f in jets:
        for share, offset in ((0.5, 0.0), (0.3, 0.01), (0.2, -0.01)):
            pt.append(p * share)
            eta.append(e + offset)
            phi.append(f - offset)
    return pt, eta, phi


def _raw_table(events: list[tuple[list, list, list]], labels: list[int] | None = None) -> pa.Table:
    counts = np.array([len(e[0]) for e in events], dtype=np.int64)
    flat = [np.concatenate([np.asarray(e[k], float) for e in events]) for k in range(3)]
    table = to_arrow(Particles(*flat, counts), np.arange(len(events), dtype=np.int64), 0, "toy")
    if labels is not None:
        table = table.set_column(1, "label", pa.array(labels, pa.int8()))
    return table


def test_cut_flow_counts_every_reason_and_adds_up() -> None:
    events = [
        _pencil_event([(1000, 0.5, 0.0), (900, -0.5, 3.0)]),  # passes
        _pencil_event([(1500, 0.0, 0.0)]),  # one jet
        _pencil_event([(1000, 0.0, 0.0), (500, 0.0, 3.0)]),  # second jet too soft
        _pencil_event([(3500, 0.0, 0.0), (1000, 0.0, 3.0)]),  # first jet too hard
        _pencil_event([(1000, 3.2, 0.0), (1000, 0.0, 3.0)]),  # too forward
        _pencil_event([(1200, 1.0, 1.0), (1100, -1.0, -2.0), (300, 0.0, 2.0)]),  # passes
        ([], [], []),  # empty event
    ]
    config = PrepareConfig(num_constituents=4, select_by="pt")
    table, flow = select_dijets(_raw_table(events), config, "toy")
    assert flow.events_in == 7
    assert flow.removed == {"fewer_than_two_jets": 2, "jet_pt": 2, "jet_eta": 1}
    assert flow.events_out == 2 == table.num_rows
    assert flow.events_in == flow.events_out + sum(flow.removed.values())
    assert table.column("event_id").to_pylist() == [0, 5]
    # m_jj of the first event: two massless pencils, 1000 and 900 GeV at dEta = 1, dPhi = 3.
    expected = np.sqrt(2 * 1000 * 900 * (np.cosh(1.0) - np.cos(3.0)))
    assert table.column("mjj")[0].as_py() == pytest.approx(expected, rel=1e-3)
    assert table.schema.equals(dijet_schema(4))


def test_mass_selection_picks_the_two_heaviest_jets() -> None:
    rng = np.random.default_rng(0)

    def fat_jet(pt: float, eta: float, phi: float, width: float) -> tuple:
        n = 20
        return (np.full(n, pt / n), rng.normal(eta, width, n), rng.normal(phi, width, n))

    parts = [fat_jet(1500, 0, 0, 0.01), fat_jet(1000, 0.5, 3, 0.2), fat_jet(850, -1, 1.5, 0.25)]
    event = tuple(np.concatenate(x) for x in zip(*parts, strict=True))
    raw = _raw_table([event])
    by_mass, _ = select_dijets(raw, PrepareConfig(select_by="mass"), "toy")
    by_pt, _ = select_dijets(raw, PrepareConfig(select_by="pt"), "toy")
    m = _fixed(by_mass, "jet_m")[0]
    assert m[0] >= m[1] > 50  # the two wide (heavy) jets, heavier first ...
    assert _fixed(by_mass, "jet_pt")[0].max() < 1200  # ... not the light 1.5 TeV pencil
    pt = _fixed(by_pt, "jet_pt")[0]
    assert pt[0] == pytest.approx(1500, rel=1e-3)
    assert 900 < pt[1] <= 1000


def test_non_finite_input_names_the_event() -> None:
    table = _raw_table([_pencil_event([(1000, 0.0, 0.0)]), _pencil_event([(1000, 0.0, 0.0)])])
    eta = table.column("eta").combine_chunks()
    values = eta.flatten().to_numpy().copy()
    values[4] = np.nan
    table = table.set_column(4, "eta", pa.ListArray.from_arrays(eta.offsets, pa.array(values)))
    message = r"file\.parquet: event_id 1 has a non-finite eta \(NaN or infinite\): nan"
    with pytest.raises(BadEventsError, match=message):
        select_dijets(table, PrepareConfig(), "toy", source="file.parquet")


# ------------------------------------------------------------------------------------------------
# the prepared dataset


@pytest.mark.ray
def test_prepared_dataset_manifest_and_cut_flow(prepared: Path, generated: dict[str, Path]) -> None:
    manifest = require_complete(prepared, "dijet")
    table = _read(prepared)
    assert table.schema.equals(dijet_schema(16))
    assert manifest.rows == table.num_rows > 0
    flows = manifest.summary["cut_flow"]
    assert set(flows) == {require_complete(d, "raw").summary["dataset"] for d in generated.values()}
    for name, flow in flows.items():
        assert flow["events_in"] == 400
        assert flow["events_in"] == flow["events_out"] + sum(flow["removed"].values())
        assert (table.column("dataset").to_numpy(zero_copy_only=False) == name).sum() == flow[
            "events_out"
        ]
    assert sum(manifest.summary["splits"].values()) == manifest.rows
    assert set(table.column("label").to_pylist()) == {0, 1}
    # The physics survives: signal jets are heavier and more two-pronged than QCD jets.
    label = table.column("label").to_numpy()
    heavy = _fixed(table, "jet_m")[:, 0]
    assert np.median(heavy[label == 1]) > 2 * np.median(heavy[label == 0])


@pytest.mark.ray
def test_splits_are_disjoint_and_stable_under_reordering(
    prepared: Path, generated: dict[str, Path], tmp_path: Path
) -> None:
    reordered = tmp_path / "reordered"
    prepare(
        [generated["wprime_xy"], generated["qcd_dijet"]],
        reordered,
        PrepareConfig(num_constituents=16, batch_events=50),
        RayConfig(),
    )

    def assignment(directory: Path) -> dict[tuple[str, int], tuple[str, int]]:
        t = _read(directory)
        return {
            (d, e): (s, f)
            for d, e, s, f in zip(
                t.column("dataset").to_pylist(),
                t.column("event_id").to_pylist(),
                t.column("split").to_pylist(),
                t.column("fold").to_pylist(),
                strict=True,
            )
        }

    first, second = assignment(prepared), assignment(reordered)
    assert first == second
    by_split: dict[str, set[tuple[str, int]]] = {}
    for key, (split, _) in first.items():
        by_split.setdefault(split, set()).add(key)
    assert set(by_split) == {"train", "val", "test"}
    assert not by_split["train"] & by_split["val"]
    assert not by_split["train"] & by_split["test"]
    assert not by_split["val"] & by_split["test"]


@pytest.mark.ray
def test_loading_a_split(prepared: Path) -> None:
    manifest = require_complete(prepared, "dijet")
    ds = ray_dataset(
        prepared, "dijet", splits=["train"], columns=["pt", "eta", "phi", "label", "mjj"]
    )
    assert ds.count() == manifest.summary["splits"]["train"]
    batch = next(
        iter(ds.iter_torch_batches(batch_size=32, collate_fn=EventCollate(("label", "mjj"))))
    )
    assert batch["x"].shape == (32, 2, 16, 3)
    assert batch["x"].dtype == torch.float32
    assert batch["mask"].shape == (32, 2, 16)
    assert torch.equal(batch["mask"], batch["x"][..., 0] > 0)
    assert (batch["x"][..., 0][~batch["mask"]] == 0).all()
    # Masks are prefixes: constituents are hardest first, padding at the end.
    assert (batch["mask"].int().diff(dim=-1) <= 0).all()

    val = iter_tables(prepared, "dijet", splits=["val"], columns=["pt"], batch_rows=50)
    streamed = sum(t.num_rows for t in val)
    assert streamed == manifest.summary["splits"]["val"]
    with pytest.raises(ValueError, match="unknown split 'training'"):
        ray_dataset(prepared, "dijet", splits=["training"])
    with pytest.raises(DatasetError, match="lacks column"):
        next(iter_tables(prepared, "dijet", columns=["no_such_column"]))


@pytest.mark.ray
def test_ray_data_announces_executions_only_with_debug_logging(
    prepared: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import logging

    import ray.data

    context = ray.data.DataContext.get_current()
    monkeypatch.setattr(context, "print_on_execution_start", True)
    package = logging.getLogger("distributed_clr")
    level = package.level
    try:
        package.setLevel(logging.INFO)
        ray_dataset(prepared, "dijet", columns=["pt"])
        assert context.print_on_execution_start is False
        package.setLevel(logging.DEBUG)
        ray_dataset(prepared, "dijet", columns=["pt"])
        assert context.print_on_execution_start is True
    finally:
        package.setLevel(level)


def test_constituents_from_numpy() -> None:
    pt = np.array([[3.0, 2.0, 0.0, 5.0, 0.0, 0.0]], dtype=np.float32)
    x, mask = constituents({"pt": pt, "eta": pt * 0.1, "phi": -pt})
    assert x.shape == (1, 2, 3, 3)
    assert mask.tolist() == [[[True, True, False], [True, False, False]]]
    assert x[0, 1, 0].tolist() == pytest.approx([5.0, 0.5, -5.0])
    with pytest.raises(ValueError, match=r"\(B, 2N\)"):
        constituents({"pt": pt[:, :5], "eta": pt[:, :5], "phi": pt[:, :5]})


# ------------------------------------------------------------------------------------------------
# bad input and resumption


def _raw_dataset(directory: Path, table: pa.Table, dataset: str) -> None:
    directory.mkdir(parents=True)
    pq.write_table(table, directory / "shard-00000.parquet")
    from distributed_clr.storage.files import sha256_file
    from distributed_clr.storage.manifest import ShardRecord

    manifest = Manifest(
        kind="raw",
        config={"toy": dataset},
        shards=[
            ShardRecord(
                "shard-00000.parquet",
                table.num_rows,
                sha256_file(directory / "shard-00000.parquet"),
            )
        ],
        summary={"dataset": dataset},
        complete=True,
    )
    manifest.write(directory)


@pytest.mark.ray
def test_bad_inputs_are_named(ray_session: None, tmp_path: Path) -> None:
    good = _raw_table([_pencil_event([(1000, 0.5, 0.0), (900, -0.5, 3.0)])])
    wrong = good.drop_columns(["phi"])
    _raw_dataset(tmp_path / "wrong", wrong, "wrong")
    with pytest.raises(SchemaError, match=r"wrong/shard-00000\.parquet: missing column 'phi'"):
        prepare([tmp_path / "wrong"], tmp_path / "out1", PrepareConfig(), RayConfig())

    _raw_dataset(tmp_path / "empty", good.slice(0, 0), "empty")
    with pytest.raises(DatasetError, match="holds no events"):
        prepare([tmp_path / "empty"], tmp_path / "out2", PrepareConfig(), RayConfig())

    with pytest.raises(DatasetError, match="does not exist"):
        prepare([tmp_path / "absent"], tmp_path / "out3", PrepareConfig(), RayConfig())

    eta = good.column("eta").combine_chunks()
    values = eta.flatten().to_numpy().copy()
    values[2] = np.inf
    bad = good.set_column(4, "eta", pa.ListArray.from_arrays(eta.offsets, pa.array(values)))
    _raw_dataset(tmp_path / "nan", bad, "nan")
    with pytest.raises(
        DatasetError, match=r"nan/shard-00000\.parquet: event_id 0 has a non-finite"
    ):
        prepare([tmp_path / "nan"], tmp_path / "out4", PrepareConfig(), RayConfig())
    with pytest.raises(DatasetError, match=r"incomplete|no manifest"):
        require_complete(tmp_path / "out4", "dijet")


@pytest.mark.ray
def test_rerun_redoes_only_what_is_missing(generated: dict[str, Path], tmp_path: Path) -> None:
    config = PrepareConfig(num_constituents=8, batch_events=100)
    out = tmp_path / "dijets"
    first = prepare([generated["qcd_dijet"]], out, config, RayConfig())
    digests = {s.file: s.sha256 for s in first.shards}
    flow = first.summary["cut_flow"]
    assert len(digests) >= 2

    victim = sorted(digests)[0]
    (out / victim).unlink()
    untouched = sorted(digests)[-1]
    stamp = (out / untouched).stat().st_mtime_ns
    second = prepare([generated["qcd_dijet"]], out, config, RayConfig())
    assert {s.file: s.sha256 for s in second.shards} == digests
    assert second.summary["cut_flow"] == flow  # the redone shard is not counted twice
    assert (out / untouched).stat().st_mtime_ns == stamp
