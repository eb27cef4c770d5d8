"""The training loop without Ray: checkpoints round-trip exactly, and data parallelism changes
nothing: one process with batch 2B takes the same first step as two gloo processes with B."""

from __future__ import annotations

import math
import random
from pathlib import Path

import pytest
import torch
from torch import nn

from distributed_clr.checkpoint import (
    TrainState,
    capture_rng,
    load_checkpoint,
    load_model,
    restore_rng,
    save_checkpoint,
)
from distributed_clr.config import get_preset
from distributed_clr.config.schema import RunConfig
from distributed_clr.distributed import DDP_OPTIONS
from distributed_clr.models import build_model
from distributed_clr.train.trainer import Trainer, contrastive_loss
from distributed_clr.train.validation import validate
from tests.multiproc import run_on_ranks

EVENTS, CONSTITUENTS = 16, 8


def _config(lr: float | None = None, **train: object) -> RunConfig:
    config = get_preset("debug")
    if lr is not None:
        train["optimizer"] = config.train.optimizer.model_copy(update={"lr": lr})
    return config.model_copy(
        update={
            "prepare": config.prepare.model_copy(update={"num_constituents": CONSTITUENTS}),
            "augment": config.augment.model_copy(update={"pipeline": []}),
            "train": config.train.model_copy(update=train),
        }
    )


def _model(config: RunConfig) -> nn.Module:
    return build_model(config.model, config.prepare.num_constituents)


def _trainer(model: nn.Module, config: RunConfig, steps_per_epoch: int, world: int = 1) -> Trainer:
    return Trainer(
        model,
        train=config.train,
        loss=config.loss,
        augment=config.augment,
        device=torch.device("cpu"),
        steps_per_epoch=steps_per_epoch,
        world_size=world,
    )


def _events(seed: int, events: int = EVENTS) -> dict[str, torch.Tensor]:
    """Dijet-like events: falling pT spectra, constituents around two jet axes, some padding."""
    g = torch.Generator().manual_seed(seed)
    pt = 1000.0 * torch.rand(events, 2, CONSTITUENTS, generator=g).pow(4)
    pt = pt.sort(dim=-1, descending=True).values
    pt[:, :, -2:] *= (torch.rand(events, 2, 1, generator=g) > 0.5).float()  # padding
    axis_eta = torch.randn(events, 2, 1, generator=g)
    axis_phi = torch.rand(events, 2, 1, generator=g) * 6 - 3
    eta = axis_eta + 0.3 * torch.randn(events, 2, CONSTITUENTS, generator=g)
    phi = axis_phi + 0.3 * torch.randn(events, 2, CONSTITUENTS, generator=g)
    mask = pt > 0
    x = torch.stack([pt, eta * mask, phi * mask], dim=-1)
    label = (torch.arange(events) % 2).to(torch.int8)
    return {"x": x, "mask": mask, "label": label}


def _first_step(rank: int, world: int, config: RunConfig) -> dict[str, torch.Tensor]:
    """Gradients and updated weights after one step on this rank's share of the batch."""
    torch.manual_seed(config.train.seed)
    model: nn.Module = _model(config)
    if world > 1:
        model = nn.parallel.DistributedDataParallel(model, **DDP_OPTIONS)
    trainer = _trainer(model, config, steps_per_epoch=1, world=world)
    batch = _events(seed=3, events=EVENTS)
    share = EVENTS // world
    local = {k: v[rank * share : (rank + 1) * share] for k, v in batch.items()}
    generator = torch.Generator().manual_seed(0)
    loss, _, _ = contrastive_loss(
        trainer.model, trainer.loss_fn, local, trainer.augmenter, generator
    )
    loss.backward()
    plain = model.module if world > 1 else model
    grads = {f"grad.{n}": p.grad.detach().clone() for n, p in plain.named_parameters()}
    trainer.optimizer.step()
    weights = {f"weight.{n}": p.detach().clone() for n, p in plain.named_parameters()}
    return {**grads, **weights, "loss": loss.detach()}


@pytest.mark.parametrize("loss", ["ntxent", "supcon"])
def test_one_worker_batch_2b_equals_two_workers_batch_b(loss: str) -> None:
    base = _config(batch_size=EVENTS // 2, optimizer="adam", lr=1e-3)
    config = base.model_copy(update={"loss": base.loss.model_copy(update={"name": loss})})
    single = _first_step(0, 1, config)
    ranks = run_on_ranks(_first_step, 2, config)
    mean = (ranks[0]["loss"] + ranks[1]["loss"]) / 2
    torch.testing.assert_close(mean, single["loss"], rtol=1e-5, atol=1e-6)
    grads = [name for name in single if name.startswith("grad.")]
    for name in grads:
        for rank in ranks:  # DDP leaves the averaged gradient on every rank
            torch.testing.assert_close(rank[name], single[name], rtol=1e-4, atol=1e-6, msg=name)
    assert sum(float(single[name].abs().sum()) for name in grads) > 0
    # Adam's first step is +-lr wherever a gradient is non-zero, so it amplifies float noise in
    # gradients that vanish analytically (the key bias); compare the ranks with each other.
    for name in single:
        if name.startswith("weight."):
            torch.testing.assert_close(ranks[0][name], ranks[1][name], rtol=0, atol=0)


def test_trainer_loss_falls_and_short_data_is_an_error() -> None:
    config = _config(batch_size=EVENTS, lr=3e-3)
    config = config.model_copy(
        update={"augment": config.augment.model_copy(update={"pipeline": ["rotate", "distort"]})}
    )
    torch.manual_seed(0)
    trainer = _trainer(_model(config), config, steps_per_epoch=4)
    batches = [_events(seed=s) for s in range(4)]
    generator = torch.Generator().manual_seed(1)
    first = trainer.train_epoch(batches, generator)["train_loss"]
    for _ in range(10):
        last = trainer.train_epoch(batches, generator)
    assert last["train_loss"] < first - 0.1
    assert last["events_per_s"] > 0
    assert last["lr"] == pytest.approx(3e-3)
    with pytest.raises(RuntimeError, match="ran out of training batches after 2 of 4"):
        trainer.train_epoch(batches[:2], generator)


def test_validation_reports_losses_and_probe_events() -> None:
    config = _config(batch_size=8)
    trainer = _trainer(_model(config), config, steps_per_epoch=1)
    batches = []
    for s in range(3):
        batch = _events(seed=s, events=8)
        batch["key"] = torch.arange(8) + 8 * s
        batches.append(batch)
    generator = torch.Generator().manual_seed(0)
    probe_keys = torch.arange(20)
    metrics, probe = validate(trainer, batches, generator, probe_keys=probe_keys)
    assert set(metrics) == {
        "val_loss",
        "val_alignment",
        "val_uniformity",
        "val_view_retrieval",
        "val_align_uniform",
    }
    assert metrics["val_alignment"] == pytest.approx(0.0, abs=1e-9)  # no augmentation: same views
    assert metrics["val_uniformity"] < 0
    assert metrics["val_view_retrieval"] == pytest.approx(1.0)  # identical views find each other
    assert metrics["val_align_uniform"] < 0  # no misalignment, some spread
    assert probe["h"].shape == (20, config.model.latent_dim)
    assert probe["key"].tolist() == list(range(20))
    # The loss can be restricted to some events (a run's composition), the probe to others.
    restricted, probe = validate(
        trainer, batches, generator, loss_keys=torch.arange(8, 24), probe_keys=torch.arange(0)
    )
    assert restricted["val_loss"] != metrics["val_loss"]
    assert len(probe["h"]) == 0


def test_view_retrieval_counts_nearest_views_in_fixed_groups() -> None:
    from distributed_clr.train.validation import RETRIEVAL_GROUP, view_retrieval

    generator = torch.Generator().manual_seed(0)
    z1 = torch.randn(3 * RETRIEVAL_GROUP + 10, 16, generator=generator)
    correct, total = view_retrieval([(z1, z1 + 0.01 * torch.randn(z1.shape, generator=generator))])
    assert total == 3 * RETRIEVAL_GROUP  # the short remainder is left out
    assert correct == total
    correct, total = view_retrieval([(z1, torch.randn(z1.shape, generator=generator))])
    assert correct / total < 0.05  # unrelated views: chance is 1 / 256


def test_align_uniform_rewards_spread_and_aligned_views() -> None:
    """What retrieval misses: views that coincide but crowd every event into one corner score
    worse than spread-out events with slightly noisy views; unrelated views score worst of the
    spread ones. Values are per group of fixed size, whatever the batches."""
    from distributed_clr.train.validation import RETRIEVAL_GROUP, align_uniform, view_retrieval

    generator = torch.Generator().manual_seed(0)
    n = 2 * RETRIEVAL_GROUP

    def score(z1: torch.Tensor, z2: torch.Tensor) -> float:
        total, groups = align_uniform([(z1, z2)])
        assert groups == 2
        return total / groups

    spread = torch.randn(n, 16, generator=generator)
    noisy = spread + 0.1 * torch.randn(n, 16, generator=generator)
    crowded = torch.ones(n, 16) + 0.05 * torch.randn(n, 16, generator=generator)
    assert view_retrieval([(crowded, crowded)])[0] == n  # retrieval cannot tell them apart
    assert score(spread, noisy) < score(crowded, crowded) - 1.0
    assert score(spread, noisy) < score(spread, torch.randn(n, 16, generator=generator))
    halves = align_uniform([(spread[:100], noisy[:100]), (spread[100:], noisy[100:])])
    assert halves == pytest.approx(align_uniform([(spread, noisy)]))  # batches do not matter


def test_checkpoint_round_trip(tmp_path: Path) -> None:
    config = _config()
    torch.manual_seed(0)
    trainer = _trainer(_model(config), config, steps_per_epoch=2)
    generator = torch.Generator().manual_seed(5)
    trainer.train_epoch([_events(0), _events(1)], generator)
    state = TrainState(epoch=0, best_val_loss=1.5, best_epoch=0, mlflow_run_id="abc")
    state.history.append({"epoch": 0.0, "train_loss": 2.0, "val_loss": 1.5})
    rng = capture_rng(generator)
    expected_draws = (torch.rand(3), random.random(), torch.rand(2, generator=generator))
    save_checkpoint(
        tmp_path / "ckpt",
        model=trainer.model,
        optimizer=trainer.optimizer,
        scheduler=trainer.scheduler,
        state=state,
        config=config,
        rng=[rng],
    )
    payload = load_checkpoint(tmp_path / "ckpt")
    assert payload["train_state"] == state
    assert payload["config"] == config
    assert payload["scheduler"]["last_epoch"] == 2
    other = torch.Generator().manual_seed(99)
    restore_rng(payload["rng"][0], other)
    draws = (torch.rand(3), random.random(), torch.rand(2, generator=other))
    torch.testing.assert_close(draws[0], expected_draws[0])
    assert draws[1] == expected_draws[1]
    torch.testing.assert_close(draws[2], expected_draws[2])

    model, loaded_config = load_model(tmp_path / "ckpt")
    assert not model.training
    assert loaded_config == config
    batch = _events(7)
    trainer.model.eval()
    with torch.no_grad():
        torch.testing.assert_close(
            model.represent(batch["x"], batch["mask"]),
            trainer.model.represent(batch["x"], batch["mask"]),
        )


def test_not_a_checkpoint_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="not a checkpoint"):
        load_model(tmp_path)


def test_a_non_finite_loss_is_raised_with_its_step_without_a_sync_per_step() -> None:
    config = _config(batch_size=EVENTS, lr=1e-3)
    trainer = _trainer(_model(config), config, steps_per_epoch=3)
    batches = [_events(seed=s) for s in range(3)]
    batches[1]["x"] = batches[1]["x"].clone()
    batches[1]["x"][0, 0, 0, 1] = math.nan  # one eta of one event of the second batch
    generator = torch.Generator().manual_seed(1)
    trainer.step(batches[0], generator)
    trainer.step(batches[1], generator)  # noted on the device, not raised yet
    with pytest.raises(FloatingPointError, match="not finite at step 1"):
        trainer.check_finite()
    fresh = _trainer(_model(config), config, steps_per_epoch=3)
    with pytest.raises(FloatingPointError, match="not finite at step 1"):
        fresh.train_epoch(batches, generator)


@pytest.mark.parametrize("loss", ["ntxent", "supcon"])
def test_bf16_autocast_on_cpu_matches_fp32_with_the_loss_in_fp32(loss: str) -> None:
    base = _config(batch_size=EVENTS)
    config = base.model_copy(update={"loss": base.loss.model_copy(update={"name": loss})})
    torch.manual_seed(0)
    model = _model(config)
    trainer = _trainer(model, config, steps_per_epoch=1)
    batch = _events(seed=5)
    results = {}
    for precision in ("fp32", "bf16"):
        model.zero_grad()
        loss_value, z1, _ = contrastive_loss(
            model,
            trainer.loss_fn,
            batch,
            trainer.augmenter,
            torch.Generator().manual_seed(0),
            precision,
        )
        loss_value.backward()
        grad = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
        results[precision] = (loss_value.detach(), z1.detach(), grad)
    (l32, z32, g32), (l16, z16, g16) = results["fp32"], results["bf16"]
    assert l16.dtype == torch.float32  # the loss in fp32
    assert z16.dtype == torch.float32
    assert not torch.equal(z16, z32)  # bf16 really ran: the projections differ a little
    torch.testing.assert_close(l16, l32, rtol=2e-2, atol=2e-2)
    torch.testing.assert_close(z16, z32, rtol=5e-2, atol=5e-2)
    cosine = torch.nn.functional.cosine_similarity(g16, g32, dim=0)
    assert cosine > 0.99, f"bf16 gradient direction differs from fp32 (cosine {cosine:.4f})"


def test_a_compiled_model_trains_like_the_eager_one_on_cpu() -> None:
    """``train.compile`` on CPU (inductor, through the machine's C compiler): the compiled
    model's loss and gradients equal the eager model's, and its checkpoint is the plain model."""
    from distributed_clr.checkpoint import unwrap

    config = _config(batch_size=EVENTS)
    torch.manual_seed(0)
    eager = _model(config)
    compiled_model = _model(config)
    compiled_model.load_state_dict(eager.state_dict())
    compiled = torch.compile(compiled_model)
    batch = _events(seed=7)
    results = []
    for model in (eager, compiled):
        trainer = _trainer(model, config, steps_per_epoch=1)
        loss, _, _ = contrastive_loss(
            model, trainer.loss_fn, batch, trainer.augmenter, torch.Generator().manual_seed(0)
        )
        loss.backward()
        grads = torch.cat([p.grad.flatten() for p in unwrap(model).parameters()])
        results.append((loss.detach(), grads))
    torch.testing.assert_close(results[1][0], results[0][0], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(results[1][1], results[0][1], rtol=1e-3, atol=1e-5)
    assert unwrap(compiled) is compiled_model
