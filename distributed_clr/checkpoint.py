"""Training checkpoints: everything needed to continue a run exactly, or to use its model.

A checkpoint is a directory:

* ``state.pt`` -- model weights (unwrapped from DDP and ``torch.compile``), optimiser and
  scheduler state, the last finished epoch, early-stopping bookkeeping, every rank's RNG states
  (torch, CUDA, Python, the augmentation generator; the package draws only from seeded
  generators, never numpy's global state), the MLflow run id, and the per-epoch metric history.
  Loaded with ``weights_only=True``: only tensors and plain containers inside.
* ``config.yaml`` -- the full run configuration, for people; ``config.json`` for machines.
* ``metrics.json`` -- the epoch's metrics.

``load_model(path)`` rebuilds the trained model from a checkpoint directory alone.
``save_initial(directory, config)`` writes the weights a run of ``config`` starts from (epoch -1,
no optimiser state): the untrained baseline every latent-space result is compared with.
"""

from __future__ import annotations

import io
import json
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from distributed_clr.config.load import to_yaml
from distributed_clr.config.schema import RunConfig
from distributed_clr.errors import UserError
from distributed_clr.models import ContrastiveModel, build_model
from distributed_clr.storage.files import atomic_write_bytes, atomic_write_text
from distributed_clr.storage.formats import event_layout

STATE_FILE = "state.pt"
CONFIG_FILE = "config.json"

__all__ = [
    "CheckpointError",
    "TrainState",
    "capture_rng",
    "checkpoint_files",
    "load_checkpoint",
    "load_model",
    "load_model_files",
    "restore_rng",
    "save_checkpoint",
    "save_initial",
    "unwrap",
]


class CheckpointError(UserError, FileNotFoundError):
    """A directory that is not a readable checkpoint."""


@dataclass
class TrainState:
    """Bookkeeping that travels with the weights."""

    epoch: int = -1
    """Last finished epoch (0-based); -1 before the first."""
    selection_metric: str = "val_loss"
    """The metric that picks the best epoch (``train.selection_metric``)."""
    best_value: float = float("inf")
    """The selection metric at the best epoch (inf before the first, for either direction)."""
    best_val_loss: float = float("inf")
    """The validation loss at the best epoch."""
    best_epoch: int = -1
    epochs_since_best: int = 0
    stopped_early: bool = False
    mlflow_run_id: str | None = None
    world_size: int = 1
    resumes: int = 0
    """How often this run continued from a checkpoint (restarts after failures, reruns)."""
    history: list[dict[str, float]] = field(default_factory=list)
    """One metrics dict per finished epoch (with its ``epoch``)."""


def unwrap(model: nn.Module) -> nn.Module:
    """The plain module inside DDP and ``torch.compile`` wrappers."""
    while True:
        if isinstance(model, nn.parallel.DistributedDataParallel):
            model = model.module
        elif hasattr(model, "_orig_mod"):
            inner = model._orig_mod
            assert isinstance(inner, nn.Module)
            model = inner
        else:
            return model


def capture_rng(generator: torch.Generator | None) -> dict[str, Any]:
    """This process's random states as tensors and plain containers."""
    py_version, py_state, py_gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "python": [py_version, list(py_state), py_gauss],
        "augment": None if generator is None else generator.get_state(),
    }


def restore_rng(state: dict[str, Any], generator: torch.Generator | None) -> None:
    """Undo ``capture_rng``: put every stream back where it was."""
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if generator is not None and state["augment"] is not None:
        generator.set_state(state["augment"])


def save_checkpoint(
    directory: Path,
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    state: TrainState,
    config: RunConfig,
    rng: list[dict[str, Any]],
) -> Path:
    """Write a checkpoint into ``directory`` (created); each file lands atomically."""
    payload = {
        "model": unwrap(model).state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "train_state": asdict(state),
        "rng": rng,
    }
    return _write(directory, payload, config, state.history[-1] if state.history else {})


def run_model(config: RunConfig) -> ContrastiveModel:
    """The untrained model of a run: ``models.build_model`` for the run's kind of events
    (``data.kind``; for dijets, ``prepare.num_constituents`` per jet)."""
    layout = event_layout(config.data.kind, config.prepare.num_constituents)
    return build_model(config.model, layout)


def save_initial(directory: Path, config: RunConfig) -> Path:
    """Write the untrained model of ``config`` as a checkpoint in ``directory``.

    The weights are exactly those a pretraining run of ``config`` starts from (every rank seeds
    torch with ``train.seed`` before building the model), so the trained and the untrained
    encoder of one config differ only by training. The global RNG is left as it was.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.train.seed)
        model = run_model(config)
    payload = {
        "model": model.state_dict(),
        "optimizer": {},
        "scheduler": {},
        "train_state": asdict(TrainState(selection_metric=config.train.selection_metric)),
        "rng": [],
    }
    return _write(directory, payload, config, {"epoch": -1})


def _write(
    directory: Path, payload: dict[str, Any], config: RunConfig, metrics: dict[str, Any]
) -> Path:
    """The checkpoint files in ``directory`` (created), each landing atomically."""
    directory.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    atomic_write_bytes(directory / STATE_FILE, buffer.getvalue())
    atomic_write_text(directory / CONFIG_FILE, json.dumps(config.model_dump(mode="json"), indent=1))
    atomic_write_text(directory / "config.yaml", to_yaml(config))
    atomic_write_text(directory / "metrics.json", json.dumps(metrics, indent=1))
    return directory


def read_config(directory: str | Path) -> RunConfig:
    """The run configuration stored in a checkpoint directory."""
    path = Path(directory) / CONFIG_FILE
    if not path.is_file():
        raise CheckpointError(f"{directory} is not a checkpoint: {CONFIG_FILE} is missing")
    try:
        return RunConfig.model_validate(json.loads(path.read_text(encoding="utf-8")))
    except (ValueError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{path} is not a readable checkpoint config: {err}") from None


def load_checkpoint(directory: str | Path) -> dict[str, Any]:
    """The raw payload of ``state.pt`` plus ``config`` (a RunConfig) and ``train_state``."""
    directory = Path(directory)
    path = directory / STATE_FILE
    if not path.is_file():
        raise CheckpointError(f"{directory} is not a checkpoint: {STATE_FILE} is missing")
    try:
        payload: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=True)
        payload["train_state"] = TrainState(**payload["train_state"])
        payload["model"], payload["rng"]
    except Exception as err:  # torch raises several unrelated types for a damaged file
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"{path} is not a readable checkpoint ({first})") from None
    payload["config"] = read_config(directory)
    return payload


def load_model(
    directory: str | Path, device: torch.device | str = "cpu"
) -> tuple[nn.Module, RunConfig]:
    """The trained model of a checkpoint, in eval mode on ``device``, and its configuration."""
    payload = load_checkpoint(directory)
    config: RunConfig = payload["config"]
    model = run_model(config)
    try:
        model.load_state_dict(payload["model"])
    except RuntimeError as err:
        raise CheckpointError(
            f"{directory}: the weights do not fit the model its config describes ({err})"
        ) from None
    return model.to(device).eval(), config


def checkpoint_files(directory: str | Path) -> dict[str, bytes]:
    """The files ``load_model`` reads from a checkpoint, as bytes: how a checkpoint on the
    driver's disk reaches processes on other machines (``load_model_files``)."""
    directory = Path(directory)
    load_checkpoint(directory)  # a clear error here rather than in a remote process
    return {name: (directory / name).read_bytes() for name in (STATE_FILE, CONFIG_FILE)}


def load_model_files(
    files: dict[str, bytes], device: torch.device | str = "cpu"
) -> tuple[nn.Module, RunConfig]:
    """``load_model`` of a checkpoint given as its files (``checkpoint_files``)."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="dclr-checkpoint-") as tmp:
        for name, data in files.items():
            (Path(tmp) / name).write_bytes(data)
        return load_model(tmp, device)
