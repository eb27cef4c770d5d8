"""How many trials run at once follows the cluster; a cluster too small for one trial is a
``runtime.ResourceError`` (the package's one resource check)."""

from __future__ import annotations

import pytest

from distributed_clr.config import get_preset
from distributed_clr.errors import UserError
from distributed_clr.runtime import ResourceError
from distributed_clr.sweeps import max_concurrent_trials, trial_footprint


def test_concurrency_follows_the_cluster() -> None:
    config = get_preset("debug").model_copy(deep=True)
    config.ray.num_workers = 1
    # A trial: 0.5 CPU for its driver + 1 worker; one CPU stays free for Ray Data.
    assert max_concurrent_trials(config, {"CPU": 4.0}) == 2
    assert max_concurrent_trials(config, {"CPU": 16.0}) == 10
    config.ray.num_workers = 2
    assert max_concurrent_trials(config, {"CPU": 4.0}) == 1
    with pytest.raises(ResourceError, match="the Ray cluster has 3"):
        max_concurrent_trials(config, {"CPU": 3.0})
    config.ray.use_gpu = True
    assert max_concurrent_trials(config, {"CPU": 64.0, "GPU": 8.0}) == 4
    with pytest.raises(ResourceError, match="GPUs"):
        max_concurrent_trials(config, {"CPU": 64.0, "GPU": 1.0})
    config.tune.max_concurrent_trials = 3
    assert max_concurrent_trials(config, {"CPU": 64.0, "GPU": 8.0}) == 3


def test_a_trial_too_big_for_the_cluster_says_what_it_holds() -> None:
    config = get_preset("debug").model_copy(deep=True)
    config.ray.num_workers, config.ray.cpus_per_worker = 2, 1.0
    assert trial_footprint(config) == (2.5, 0.0)
    with pytest.raises(ResourceError) as err:
        max_concurrent_trials(config, {"CPU": 3.0})
    assert isinstance(err.value, UserError)  # the CLI prints one line and exits 2
    assert "2 workers x 1 CPU + 0.5 CPU for the trial driver" in str(err.value)
    assert "needs 2.5 CPUs" in str(err.value)
