"""Shared fixtures: one Ray session for the whole test run, small generated datasets."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from distributed_clr.config import RayConfig, TrackingConfig, get_preset
from tests.evaluate.helpers import PARENT_NAME, Encoder

os.environ.setdefault("DCLR_PROGRESS", "0")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


@pytest.fixture(scope="session")
def ray_session() -> Iterator[None]:
    """One local Ray session shared by every test that needs Ray: 4 logical CPUs on CI's 2
    cores, so that 2 training workers and Ray Data's readers fit at once."""
    import ray

    from distributed_clr.config import RayConfig
    from distributed_clr.runtime import init_ray

    init_ray(RayConfig(num_cpus=4))
    yield
    ray.shutdown()


@pytest.fixture(scope="session")
def generated(ray_session: None, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Small QCD and W' raw datasets, generated once per test session."""
    from distributed_clr.config import GenerateConfig, RayConfig
    from distributed_clr.data.generate import generate

    root = tmp_path_factory.mktemp("generated")
    paths = {}
    for process, events in (("qcd_dijet", 400), ("wprime_xy", 400)):
        config = GenerateConfig(process=process, events=events, shards=2, seed=11)
        generate(config, root / process, RayConfig(num_cpus=2))
        paths[process] = root / process
    return paths


@pytest.fixture(scope="session")
def prepared(generated: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The generated QCD and W' datasets, prepared into dijets (16 constituents per jet)."""
    from distributed_clr.config import PrepareConfig, RayConfig
    from distributed_clr.data.prepare import prepare

    out = tmp_path_factory.mktemp("prepared") / "dijets"
    config = PrepareConfig(num_constituents=16, batch_events=128)
    prepare([generated["qcd_dijet"], generated["wprime_xy"]], out, config, RayConfig(num_cpus=2))
    return out


@pytest.fixture(scope="session")
def encoder(prepared: Path, tmp_path_factory: pytest.TempPathFactory) -> Encoder:
    """A debug-preset model (untrained) saved as a checkpoint that names an MLflow pretraining
    run in a temporary SQLite store, and its embeddings of every split of ``prepared``."""
    from distributed_clr.checkpoint import TrainState, capture_rng, save_checkpoint
    from distributed_clr.config import to_flat_dict, to_yaml
    from distributed_clr.embed import embed
    from distributed_clr.models import build_model
    from distributed_clr.tracking import Kind, RunHandle

    root = tmp_path_factory.mktemp("encoder")
    tracking_config = TrackingConfig(uri=f"sqlite:///{root / 'mlflow.db'}", system_metrics=False)
    config = get_preset("debug").model_copy(update={"tracking": tracking_config})
    parent = RunHandle.open(
        tracking_config,
        PARENT_NAME,
        Kind.PRETRAIN,
        params=to_flat_dict(config),
        config_text=to_yaml(config),
    )
    parent_id = parent.run_id
    torch.manual_seed(0)
    model = build_model(config.model, config.prepare.num_constituents)
    # A plain optimiser and schedule: the checkpoint only has to carry their state.
    optimizer = torch.optim.Adam(model.parameters())
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    checkpoint = save_checkpoint(
        root / "checkpoint",
        model=model,
        optimizer=optimizer,
        scheduler=scheduler,
        state=TrainState(epoch=0, mlflow_run_id=parent_id),
        config=config,
        rng=[capture_rng(None)],
    )
    embeddings = root / "embeddings"
    embed(checkpoint, prepared, embeddings, RayConfig(num_cpus=4), actors=1)
    return Encoder(checkpoint, embeddings, prepared, tracking_config, parent_id)


@pytest.fixture(scope="session")
def unlabelled(generated: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A black box: the generated QCD and W' events mixed, written in the LHC Olympics layout
    without a label column (the 700 hardest particles of each event), imported (every label
    -1) and prepared like ``prepared``."""
    import warnings

    import numpy as np
    import pandas as pd

    from distributed_clr.config import PrepareConfig, RayConfig
    from distributed_clr.data.lhco import import_lhco
    from distributed_clr.data.prepare import prepare
    from tests.data.physics import read_raw

    root = tmp_path_factory.mktemp("black_box")
    rows = []
    for path in generated.values():
        table = read_raw(path)
        for pt, eta, phi in zip(
            *(table.column(c).to_pylist() for c in ("pt", "eta", "phi")), strict=True
        ):
            order = np.argsort(-np.asarray(pt))[:700]
            row = np.zeros(2100)
            triples = np.stack([np.asarray(v)[order] for v in (pt, eta, phi)], axis=1)
            row[: triples.size] = triples.ravel()
            rows.append(row)
    box = root / "events_black_box.h5"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PyTables' performance warnings about wide tables
        pd.DataFrame(np.asarray(rows)).to_hdf(box, key="df", mode="w", format="fixed")
    raw = root / "raw"
    import_lhco([box], raw, process="black_box", events_per_shard=400)
    out = root / "dijets"
    config = PrepareConfig(num_constituents=16, batch_events=128)
    prepare([raw], out, config, RayConfig(num_cpus=2))
    return out
