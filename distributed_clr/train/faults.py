"""Fault injection: crash one rank once, to test that a run survives a dead worker.

``train.faults.fail_rank`` / ``fail_epoch`` name the rank and epoch. The crash comes after that
epoch's training pass, before its validation and checkpoint, and happens once per run: a marker
file in the run's storage, written first, stops it from repeating after the restart.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from distributed_clr import distributed
from distributed_clr.config.schema import FaultConfig

log = logging.getLogger(__name__)

__all__ = ["FaultInjector", "marker_path"]


def marker_path(storage: str, run_name: str, config: FaultConfig) -> str | None:
    """Where the run records that its fault was injected; None without fault injection."""
    if config.fail_rank is None:
        return None
    name = f"fault_injected_rank{config.fail_rank}_epoch{config.fail_epoch}"
    return "/".join([storage.rstrip("/"), run_name, name])


def _exists(path: str) -> bool:
    import pyarrow.fs

    if "://" not in path:
        return Path(path).exists()
    fs, inner = pyarrow.fs.FileSystem.from_uri(path)
    return bool(fs.get_file_info(inner).type != pyarrow.fs.FileType.NotFound)


def _write(path: str) -> None:
    import pyarrow.fs

    if "://" in path:
        fs, inner = pyarrow.fs.FileSystem.from_uri(path)
        with fs.open_output_stream(inner) as stream:
            stream.write(b"injected\n")
        return
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text("injected\n")


class FaultInjector:
    """Crashes this process once if the config names this rank and an epoch."""

    def __init__(self, config: FaultConfig, marker: str | None) -> None:
        self.config = config
        self.marker = marker

    def maybe_crash(self, epoch: int) -> None:
        config = self.config
        if config.fail_rank is None or self.marker is None:
            return
        if distributed.rank() != config.fail_rank or epoch != config.fail_epoch:
            return
        if _exists(self.marker):
            return
        _write(self.marker)
        # Let Ray finish registering the reports already made, so the restart deterministically
        # continues from the previous epoch's checkpoint (a fast epoch can otherwise beat it).
        import ray.train

        ray.train.get_all_reported_checkpoints(timeout_s=60)
        log.error("fault injection: rank %d exits in epoch %d", config.fail_rank, epoch)
        logging.shutdown()
        os._exit(3)
