"""The Ray Tune side of a sweep, without a Ray session: domains and decoding of params, the
search algorithms' suggestions, and ASHA's rungs."""

from __future__ import annotations

import pytest

from distributed_clr.config import apply_overrides, get_preset, resolve_config
from distributed_clr.config.schema import JET_AUGMENTATIONS
from distributed_clr.sweeps import load_space, space_from_dict
from distributed_clr.sweeps.tuner import asha_scheduler, search_algorithm
from tests.sweeps.spaces import SPACES


def test_tune_domains_and_decoding() -> None:
    from ray.tune.search.sample import Categorical, Float, Integer

    base = get_preset("debug")
    ablation = load_space(SPACES / "augmentation_ablation.yaml", base)
    grid = ablation.param_space("grid")["augment.pipeline"]
    assert set(grid) == {"grid_search"}
    assert len(grid["grid_search"]) == 6
    # Lists travel as JSON text (Tune would search inside lists) and come back as lists.
    assert ablation.decode({"augment.pipeline": grid["grid_search"][1]}) == {
        "augment.pipeline": list(JET_AUGMENTATIONS[1:])
    }
    assert isinstance(ablation.param_space("optuna")["augment.pipeline"], Categorical)

    space = load_space(SPACES / "optimizer.yaml", base)
    domains = space.param_space("random")
    assert isinstance(domains["train.optimizer.lr"], Float)
    assert domains["train.optimizer.lr"].lower == 1e-4
    counts = space_from_dict(
        {"params": {"train.batch_size": {"randint": [16, 64]}}}, base, name="n"
    ).param_space("random")["train.batch_size"]
    assert isinstance(counts, Integer)
    assert (counts.lower, counts.upper) == (16, 65)


@pytest.mark.parametrize("name", ["temperature_latent", "augmentation_ablation", "optimizer"])
def test_optuna_suggests_valid_configs(name: str) -> None:
    base = get_preset("debug")
    space = load_space(SPACES / f"{name}.yaml", base)
    config = resolve_config("debug", overrides=[*space.settings, ("tune.search", "optuna")])
    search = search_algorithm(config, concurrency=3)
    assert search.set_search_properties("val_probe_auc", "max", space.param_space("optuna"))
    for trial in ("t0", "t1", "t2"):
        suggested = search.suggest(trial)
        assert set(suggested) == set(space.keys)
        apply_overrides(base, space.overrides(suggested))  # a valid config


def test_asha_never_stops_a_trial_at_its_last_epoch() -> None:
    config = get_preset("debug").model_copy(deep=True)
    config.train.epochs, config.tune.grace_period, config.tune.reduction_factor = 6, 2, 3.0
    scheduler = asha_scheduler(config)
    scheduler.set_search_properties("val_probe_auc", "max")
    rungs = [milestone for milestone, _ in scheduler._brackets[0]._rungs]
    assert rungs
    assert max(rungs) < config.train.epochs
    config.train.epochs = 2  # no epoch after the grace period: no scheduler
    assert asha_scheduler(config) is None
