"""Named points where a test can make a whole job die at once, as if the machine lost power.

The kill tests of the data stages start a command in a session of its own with
``DCLR_CRASH_AT`` set, and rerun it afterwards: the rerun must finish with exactly the bytes of a
run that was never interrupted. ``DCLR_CRASH_AT`` holds ``NAME``, ``NAME@TEXT`` (only where the
point's detail, e.g. the file being written, contains TEXT) or either followed by ``#N`` (the
N-th time this process reaches the point). Reaching it sends SIGKILL to the session's process
group (the driver, Ray's GCS and raylet) and then to this process's own group (a Ray worker),
so nothing gets to clean up. Unset, a crash point costs one dictionary lookup.

The points: ``mid-write`` (an atomic write has half its bytes on disk, ``storage.files``),
``publish`` (a shard is in place but not yet in the manifest, ``storage.manifest``), and
``stage-started`` (a stage has written its first manifest and not yet any shard).
"""

from __future__ import annotations

import os
import signal
from collections import Counter

__all__ = ["ENV", "crash_point"]

ENV = "DCLR_CRASH_AT"

_seen: Counter[str] = Counter()


def crash_point(name: str, detail: str = "") -> None:
    """Die here if ``DCLR_CRASH_AT`` names this point (see the module docstring)."""
    spec = os.environ.get(ENV)
    if not spec:
        return
    target, _, nth = spec.partition("#")
    point, _, text = target.partition("@")
    if point != name or (text and text not in detail):
        return
    _seen[target] += 1
    if _seen[target] != int(nth or 1):
        return
    for group in (os.getsid(0), os.getpgrp()):
        try:
            os.killpg(group, signal.SIGKILL)
        except (PermissionError, ProcessLookupError):
            continue
    os._exit(137)  # not reached unless the process survived its own group's SIGKILL
