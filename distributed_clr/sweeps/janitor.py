"""Placement groups of stopped trials: released while a sweep runs.

When ASHA stops a trial, the placement group of its training workers outlives it (see
``release_orphaned_placement_groups``); ``PlacementGroupJanitor`` releases such groups every few
seconds while ``Tuner.fit`` runs, and once more at the end.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

log = logging.getLogger(__name__)

__all__ = ["PlacementGroupJanitor", "release_orphaned_placement_groups"]


def release_orphaned_placement_groups() -> int:
    """Remove this job's placement groups whose creating actor is dead; returns how many.

    When ASHA stops a trial, Tune ends the trial's actor, and with it the ``TorchTrainer``
    controller that actor owns. The controller's worker placement group is not removed: Ray
    keeps a placement group made by an actor until the job ends, and Ray Train's detached
    cleaner finds dead controllers through the State API, which a session without the
    dashboard (``runtime.init_ray``) does not have. Each stopped trial would keep its workers'
    CPUs/GPUs, and after a few the sweep waits forever. A placement group made by an actor that
    is dead can hold nothing alive (the actor's own actors died with it), so removing it is
    safe. Placement groups made by the driver (Tune's trial groups) and detached ones are never
    touched. Reads the GCS placement-group table through Ray's private state accessor.
    """
    import ray
    from ray._private.state import state
    from ray.core.generated import gcs_pb2
    from ray.util.placement_group import PlacementGroup, remove_placement_group

    table_data: Any = gcs_pb2.PlacementGroupTableData  # type: ignore[attr-defined]
    job = ray.get_runtime_context().get_job_id()
    removed = 0
    for raw in state._connect_and_get_accessor().get_placement_group_table():
        info = table_data.FromString(raw)
        made_by_actor = info.creator_actor_id != b"\xff" * len(info.creator_actor_id)
        if (
            info.is_detached
            or not made_by_actor
            or not info.creator_actor_dead
            or info.state == table_data.REMOVED
            or info.creator_job_id.hex() != job
        ):
            continue
        group = PlacementGroup(ray.PlacementGroupID(info.placement_group_id))
        remove_placement_group(group)
        log.info("released placement group %s of a stopped trial", group.id.hex())
        removed += 1
    return removed


class PlacementGroupJanitor:
    """Calls ``release_orphaned_placement_groups`` every ``interval_s`` while a sweep runs."""

    def __init__(self, interval_s: float = 5.0) -> None:
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="dclr-pg-janitor", daemon=True)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            if not self.release():
                return

    @staticmethod
    def release() -> bool:
        try:
            release_orphaned_placement_groups()
        except Exception:  # never fail a sweep over housekeeping
            log.warning("cannot release placement groups of stopped trials", exc_info=True)
            return False
        return True

    def __enter__(self) -> PlacementGroupJanitor:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.release()  # trials stopped in the last interval
