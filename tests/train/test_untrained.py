"""The untrained baseline: the weights a run starts from, saved as a checkpoint."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from distributed_clr.checkpoint import load_checkpoint, load_model, save_initial
from distributed_clr.cli import main
from distributed_clr.config import apply_overrides, get_preset
from distributed_clr.models import build_model


def test_initial_checkpoint_holds_the_runs_starting_weights(tmp_path: Path) -> None:
    config = apply_overrides(get_preset("debug"), [("train.seed", 7)])
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    save_initial(tmp_path / "a", config)
    assert torch.equal(torch.random.get_rng_state(), before), "the global RNG was disturbed"

    torch.manual_seed(7)  # what every rank of a run does before building the model
    reference = build_model(config.model, config.prepare.num_constituents).state_dict()
    model, stored = load_model(tmp_path / "a")
    assert stored == config
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, reference[name]), name
    assert load_checkpoint(tmp_path / "a")["train_state"].epoch == -1

    save_initial(tmp_path / "b", apply_overrides(config, [("train.seed", 8)]))
    other, _ = load_model(tmp_path / "b")
    weights = "encoder.embed.0.weight"
    assert not torch.equal(other.state_dict()[weights], model.state_dict()[weights])


def test_cli_writes_an_untrained_encoder_sized_from_the_data(
    prepared: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "untrained"
    args = ["pretrain", "--data", str(prepared), "--untrained", str(out), "--preset", "debug"]
    # The prepared fixture has 16 constituents per jet: the model follows the data.
    assert main([*args, "--set", "prepare.num_constituents=40"]) == 0
    assert str(out) in capsys.readouterr().out
    model, config = load_model(out)
    assert config.prepare.num_constituents == 16
    x = torch.zeros(3, 2, 16, 3)
    x[..., 0] = torch.rand(3, 2, 16) * 100 + 1
    assert model.represent(x, torch.ones(3, 2, 16, dtype=torch.bool)).shape[0] == 3
    assert not (out.parent / "ray_results").exists(), "nothing was to be trained"


def test_cli_untrained_needs_a_prepared_dataset(tmp_path: Path) -> None:
    args = ["pretrain", "--data", str(tmp_path / "absent"), "--untrained", str(tmp_path / "u")]
    assert main(args) == 2
    assert not (tmp_path / "u").exists()


def test_embed_chooses_the_representation_and_records_it(prepared: Path, tmp_path: Path) -> None:
    """``dclr embed --representation`` picks the layer; it is part of the output's identity."""
    import json

    import numpy as np

    from distributed_clr.evaluate.inputs import load_inputs

    checkpoint = tmp_path / "untrained"
    base = ["--preset", "debug", "--set", "model.head_dim=12"]
    assert main(["pretrain", "--data", str(prepared), "--untrained", str(checkpoint), *base]) == 0
    outputs = {}
    for layer in ("encoder", "head1"):
        out = tmp_path / layer
        args = ["embed", "--checkpoint", str(checkpoint), "--data", str(prepared)]
        assert main([*args, "--out", str(out), "--split", "test", "--representation", layer]) == 0
        manifest = json.loads((out / "manifest.json").read_text())
        assert manifest["config"]["representation"] == layer
        outputs[layer] = load_inputs(out, None, ["latent"], ["test"]).features["latent"]
    assert outputs["encoder"].shape[1] == 8  # latent_dim of the debug preset
    assert outputs["head1"].shape[1] == 12
    assert np.isfinite(outputs["head1"]).all()
    # The same output directory with another layer is refused, and what is there is kept.
    args = ["embed", "--checkpoint", str(checkpoint), "--data", str(prepared), "--split", "test"]
    assert main([*args, "--out", str(tmp_path / "encoder"), "--representation", "head"]) == 2
    assert json.loads((tmp_path / "encoder" / "manifest.json").read_text())["complete"]
