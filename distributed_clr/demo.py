"""``dclr demo``: the whole method end to end on generated data, on a laptop or a cluster.

Stages run in order and each writes a dataset with a manifest; a rerun reuses every stage whose
manifest says it is complete (with the same configuration) and redoes the rest. ``scale``
multiplies every stage's event count.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from distributed_clr.config import RunConfig, apply_overrides
from distributed_clr.data.generate import generate
from distributed_clr.data.prepare import prepare

log = logging.getLogger(__name__)

SIGNAL_SHARE = 0.25
"""Signal events generated per QCD event (the samples are mixed later at any fraction)."""


@dataclass
class DemoResult:
    """What the demo made and how long each stage took."""

    directory: Path
    timings: dict[str, float] = field(default_factory=dict)
    facts: dict[str, Any] = field(default_factory=dict)


def scaled(config: RunConfig, scale: float) -> RunConfig:
    """The config with every stage's size multiplied by ``scale``."""
    if scale <= 0:
        raise ValueError(f"scale must be positive, got {scale}")
    events = max(config.generate.shards, round(config.generate.events * scale))
    return apply_overrides(config, [("generate.events", events)])


def run_demo(config: RunConfig, out: Path, scale: float = 1.0) -> DemoResult:
    """Generate QCD and W' events, prepare dijets; later stages extend this chain."""
    config = scaled(config, scale)
    out = Path(out)
    result = DemoResult(out)
    raw_dirs = []
    for process, share in (("qcd_dijet", 1.0), ("wprime_xy", SIGNAL_SHARE)):
        events = max(config.generate.shards, round(config.generate.events * share))
        gen = apply_overrides(config, [("generate.process", process), ("generate.events", events)])
        start = time.perf_counter()
        manifest = generate(gen.generate, out / process, config.ray)
        result.timings[f"generate {process}"] = time.perf_counter() - start
        result.facts[f"{process} events"] = manifest.rows
        result.facts[f"{process} trigger efficiency"] = manifest.summary["trigger_efficiency"]
        raw_dirs.append(out / process)

    start = time.perf_counter()
    dijets = prepare(raw_dirs, out / "dijets", config.prepare, config.ray)
    result.timings["prepare"] = time.perf_counter() - start
    result.facts["dijet events"] = dijets.rows
    result.facts["splits"] = dijets.summary["splits"]
    return result
