"""The placement groups of stopped trials are released while a sweep runs."""

from __future__ import annotations

import time

import pytest

from distributed_clr.sweeps import release_orphaned_placement_groups


@pytest.mark.ray
def test_placement_groups_of_dead_actors_are_released(ray_session: None) -> None:
    """A trial stopped by ASHA takes its Ray Train controller down with it; the controller's
    worker placement group would keep its CPUs until the job ends."""
    import ray
    from ray.util.placement_group import placement_group, placement_group_table

    @ray.remote(num_cpus=0)
    class Controller:
        def reserve(self) -> str:
            group = placement_group([{"CPU": 1}])
            ray.get(group.ready())
            return str(group.id.hex())

    kept = placement_group([{"CPU": 1}])  # made by the driver, like Tune's trial groups
    ray.get(kept.ready())
    controller = Controller.remote()
    orphan = ray.get(controller.reserve.remote())
    ray.kill(controller)
    for _ in range(50):  # the GCS marks the creator dead shortly after
        if release_orphaned_placement_groups():
            break
        time.sleep(0.1)
    assert placement_group_table()[orphan]["state"] == "REMOVED"
    assert placement_group_table()[kept.id.hex()]["state"] == "CREATED"
    ray.util.remove_placement_group(kept)
