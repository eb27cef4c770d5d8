"""Physics checks of the object-level generator, as figures and numbers.

Generates each process in-process (no Ray) and draws: the dilepton mass of Z/gamma* -> l l,
the transverse mass of W -> l nu, the four-lepton mass of A -> 4l, and the object
multiplicities of every process, into ``--out`` (default ``docs/objects``). Prints the
numbers the README quotes (peak, median, edge, preselection efficiency, run time).

    .venv/bin/python benchmarks/object_physics.py --events 2000
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from distributed_clr.config.schema import SIGNAL_PROCESSES, SM_PROCESSES, ObjectGenerateConfig
from distributed_clr.physics.object_events import generate_object_events
from distributed_clr.physics.object_observables import (
    dilepton_mass,
    four_lepton_mass,
    transverse_mass,
)
from distributed_clr.plotting import save_figure

SLOW = {"qcd": 4, "h0_tautau": 4, "hplus_taunu": 10}
"""Processes with a low preselection efficiency get this many times fewer events."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=2_000, help="events per process")
    parser.add_argument("--out", type=Path, default=Path("docs/objects"))
    parser.add_argument("--processes", nargs="*", default=[*SM_PROCESSES, *SIGNAL_PROCESSES])
    args = parser.parse_args()
    config = ObjectGenerateConfig()
    values = {}
    for process in args.processes:
        n = max(args.events // SLOW.get(process, 1), 100)
        start = time.perf_counter()
        shard = generate_object_events(config, process, n, np.random.SeedSequence(2026))
        seconds = time.perf_counter() - start
        values[process] = shard.events.values
        counts = [(shard.events.values[:, a:b, 0] > 0).sum(axis=1).mean() for a, b in
                  ((1, 5), (5, 9), (9, 19))]  # fmt: skip
        met = shard.events.values[:, 0, 0].mean()
        print(
            f"{process}: {n} events, preselection efficiency {shard.passed / shard.generated:.3f}"
            f" ({shard.generated} generated), {seconds:.0f} s; mean e {counts[0]:.2f}, "
            f"mu {counts[1]:.2f}, jets {counts[2]:.2f}, MET {met:.1f} GeV"
        )

    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 4, figsize=(18, 4))
    checks = [
        ("z_ll", dilepton_mass, np.arange(40, 140, 2), "m(l l) [GeV]", 91.19, "m_Z"),
        ("w_lnu", transverse_mass, np.arange(0, 140, 4), "m_T(l, MET) [GeV]", 80.38, "m_W"),
        ("ato4l", four_lepton_mass, np.arange(0, 120, 2), "m(4 l) [GeV]", config.a_mass, "m_A"),
    ]
    for axis, (process, function, bins, label, line, name) in zip(axes, checks, strict=False):
        if process not in values:
            continue
        x = function(values[process])
        x = x[np.isfinite(x)]
        counts, edges = np.histogram(x, bins=bins)
        peak = edges[counts.argmax()] + 0.5 * (edges[1] - edges[0])
        print(f"{process} {label}: {len(x)} events, median {np.median(x):.1f}, mode {peak:.1f}")
        axis.hist(x, bins=bins, histtype="step", color="k")
        axis.axvline(line, color="r", linestyle="--", label=f"{name} = {line:g} GeV")
        axis.set_xlabel(label)
        axis.set_ylabel("events")
        axis.set_title(process)
        axis.legend()
    width = 0.8 / max(len(values), 1)
    for k, (process, v) in enumerate(values.items()):
        multiplicity = [(v[:, a:b, 0] > 0).sum(axis=1).mean() for a, b in ((1, 5), (5, 9), (9, 19))]
        axes[3].bar(np.arange(3) + k * width, multiplicity, width, label=process)
    axes[3].set_xticks(np.arange(3) + 0.4 - width / 2, ["electrons", "muons", "jets"])
    axes[3].set_ylabel("mean objects per event")
    axes[3].legend(fontsize=7)
    figure.tight_layout()
    path = save_figure(figure, args.out / "physics.png")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
