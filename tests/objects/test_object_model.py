"""Object-level events in the model path: the fixed-constant features, the object
augmentations (each changes its input), the MLP and object transformer, SupCon's classes and
the checks that keep dijet-only settings away from object data."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
import torch

from distributed_clr.augment import (
    Augmenter,
    ObjectNormalizer,
    check_pipeline,
    effects,
    mask_inputs,
)
from distributed_clr.config import AugmentConfig, ConfigError, ModelConfig, get_preset
from distributed_clr.models import build_model
from distributed_clr.storage.formats import OBJECT_LAYOUT, object_schema
from distributed_clr.storage.manifest import Manifest
from distributed_clr.storage.reader import constituents
from distributed_clr.train.plan import config_for_data
from distributed_clr.train.trainer import supcon_classes
from tests.data.test_adc import adc_events


def _objects(n: int = 64, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(x (B, 1, 19, 3), mask) of valid ADC-layout events, through the reader."""
    values = adc_events(n, seed)
    columns = {name: values[:, :, index] for index, name in enumerate(("pt", "eta", "phi"))}
    return constituents(columns, groups=1)


def test_reader_gives_one_group_of_19_slots_with_pt_as_the_mask() -> None:
    values = adc_events(16, 3)
    slots = pa.list_(pa.float32(), 19)
    table = pa.table(
        {name: pa.array(values[:, :, i].tolist(), slots) for i, name in
         enumerate(("pt", "eta", "phi"))},
    )  # fmt: skip
    x, mask = constituents(table, groups=1)
    assert x.shape == (16, 1, 19, 3)
    torch.testing.assert_close(x[:, 0].numpy(), values[:, :, :3])
    np.testing.assert_array_equal(mask[:, 0].numpy(), values[:, :, 3] > 0)


def test_object_features_are_fixed_scalings_and_zero_at_empty_slots() -> None:
    x, mask = _objects()
    features = ObjectNormalizer()(x, mask)
    assert features.shape == (64, 1, 19, 3)
    assert torch.all(features[~mask] == 0)
    real = mask
    expected_pt = (torch.log(x[..., 0][real]) - 4.0) / 1.5
    torch.testing.assert_close(features[..., 0][real], expected_pt)
    torch.testing.assert_close(features[..., 1][real], x[..., 1][real] / 2.0)
    torch.testing.assert_close(features[..., 2][real], x[..., 2][real] / math.pi)
    # one event's features do not depend on the batch it is in
    torch.testing.assert_close(ObjectNormalizer()(x[:3], mask[:3]), features[:3])


def test_mask_inputs_masks_each_input_at_its_rate_and_empties_masked_pt() -> None:
    x, mask = _objects(2_000)
    generator = torch.Generator().manual_seed(0)
    out, out_mask = mask_inputs(x, mask, generator, probability=0.3)
    assert torch.all(out_mask <= mask)  # only empties slots
    emptied = mask & ~out_mask
    assert emptied.sum() / mask.sum() == pytest.approx(0.3, abs=0.02)
    assert torch.all(out[emptied] == 0)
    kept = out_mask & (x[..., 1] != 0)  # MET's eta is always 0: masking it changes nothing
    eta_zeroed = (out[..., 1] == 0) & kept
    assert eta_zeroed.sum() / kept.sum() == pytest.approx(0.3, abs=0.02)
    unchanged = out_mask & (out[..., 2] == x[..., 2]) & (out[..., 1] == x[..., 1])
    torch.testing.assert_close(out[unchanged], x[unchanged])
    same, _ = mask_inputs(x, mask, torch.Generator().manual_seed(0), probability=0.3)
    torch.testing.assert_close(same, out)  # seeded


def test_every_object_augmentation_changes_the_encoder_inputs() -> None:
    x, mask = _objects(512)
    pipeline = ["mask_inputs", "mask_objects", "phi_shift", "pt_smear"]
    augmenter = Augmenter(AugmentConfig(pipeline=pipeline))  # type: ignore[arg-type]
    measured = effects(augmenter, ObjectNormalizer(), x, mask, torch.Generator().manual_seed(1))
    for effect in measured:
        assert effect.features_changed > 0.5, effect.describe()
        assert not effect.invariant


def test_jet_augmentations_are_refused_for_objects() -> None:
    check_pipeline(("mask_inputs", "phi_shift"), "objects")
    check_pipeline(("rotate", "collinear_split"), "dijet")
    with pytest.raises(ConfigError, match=r"collinear_split.*object augmentations are"):
        check_pipeline(("phi_shift", "collinear_split"), "objects")


def _manifest(kind: str) -> Manifest:
    return Manifest(kind=kind, config={"prepare": get_preset("debug").prepare.model_dump()})


def test_the_run_config_follows_the_data_and_refuses_what_does_not_apply() -> None:
    config = get_preset("paper_adc")
    assert config_for_data(config, _manifest("objects")).data.kind == "objects"
    dijet = get_preset("debug")
    assert config_for_data(dijet, _manifest("dijet")).data.kind == "dijet"
    with pytest.raises(ConfigError, match="object augmentations"):
        config_for_data(dijet, _manifest("objects"))
    supcon = dijet.model_copy(update={"loss": config.loss})
    with pytest.raises(ConfigError, match="supcon_label=label"):
        config_for_data(supcon, _manifest("dijet"))
    two_cpu_workers = config.model_copy(
        update={
            "model": config.model.model_copy(update={"mlp_norm": "batch"}),
            "ray": config.ray.model_copy(update={"num_workers": 2}),
        }
    )
    with pytest.raises(ConfigError, match="SyncBatchNorm needs GPUs"):
        config_for_data(two_cpu_workers, _manifest("objects"))


@pytest.mark.parametrize("name", ["mlp", "transformer"])
def test_object_encoders_ignore_empty_slots_and_see_the_object_type(name: str) -> None:
    torch.manual_seed(0)
    settings: dict[str, Any] = {"name": name, "latent_dim": 8, "dropout": 0.0}
    if name == "transformer":
        settings.update(width=16, heads=4, depth=2, pooling="cls")
    model = build_model(ModelConfig(**settings), OBJECT_LAYOUT).eval()
    x, mask = _objects(32, 5)
    h = model.represent(x, mask)
    assert h.shape == (32, 8)
    # values left in an empty slot change nothing
    noisy = x.clone()
    noisy[~mask] = torch.randn(int((~mask).sum()), 3)
    torch.testing.assert_close(model.represent(noisy, mask), h)
    # the same object as a muon instead of an electron is another event
    moved, moved_mask = x.clone(), mask.clone()
    moved[:, 0, 5], moved_mask[:, 0, 5] = x[:, 0, 1], mask[:, 0, 1]
    moved[:, 0, 1], moved_mask[:, 0, 1] = 0, False
    has_electron = mask[:, 0, 1] & ~mask[:, 0, 5]
    assert has_electron.any()
    changed = (model.represent(moved, moved_mask) - h).abs().amax(dim=1)
    assert torch.all(changed[has_electron] > 1e-4)


def test_the_paper_adc_model_has_the_papers_sizes() -> None:
    config = get_preset("paper_adc")
    model = build_model(config.model, OBJECT_LAYOUT)
    linears = [m for m in model.encoder.modules() if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [
        (57, 96), (96, 64), (64, 48), (48, 4),
    ]  # fmt: skip
    x, mask = _objects(8)
    assert model(x, mask).shape == (8, 96)  # the expander's output feeds the loss
    assert model.represent(x, mask).shape == (8, 4)  # the embedding is taken before it
    assert object_schema().field("process_id").type == pa.int16()


def test_unknown_processes_become_classes_of_their_own() -> None:
    labels = torch.tensor([0, 2, -1, 2, -1, -1])
    classes = supcon_classes(labels)
    assert classes[:2].tolist() == [0, 2]
    assert classes[3] == 2
    unknown = classes[labels < 0]
    assert len(set(unknown.tolist())) == 3
    assert torch.all(unknown < 0)
