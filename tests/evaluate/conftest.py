"""The encoder the end-to-end evaluation tests share: a tiny untrained model's checkpoint,
naming an MLflow pretraining run, and its embeddings of the prepared W' + QCD events."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from distributed_clr.config import RayConfig, TrackingConfig, get_preset
from tests.evaluate.helpers import PARENT_NAME, Encoder


@pytest.fixture(scope="package")
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
