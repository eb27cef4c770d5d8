"""Is ``PhaseSpace:pTHatMin`` low enough for the LHC Olympics trigger to be efficient?

QCD dijets are generated with ``PhaseSpace:pTHatMin = 1000 GeV`` (``generate.pthat_min``) and
then triggered on the leading detector-level anti-kT jet (R = 1.0, pT > 1200 GeV). Events with a
hard-process pT (pTHat) below the generator cut that would have passed the trigger are silently
lost, biasing the background sample. This script measures that loss.

It generates QCD dijets with a *lower* cut (``--pthat-min``, 700 GeV by default), with the
detector on, and records per event pTHat = sqrt(pT2Hat) and whether it passes the trigger. For
unweighted generation the events with pTHat >= c are distributed exactly as a sample generated
with ``pTHatMin = c``, so for each candidate cut c it prints:

* ``lost``: the fraction of triggered events with pTHat < c, i.e. the trigger inefficiency a
  generator cut at c would cause (with a binomial standard error; 0 events gives a 95% CL upper
  limit 3/n). It is measured relative to the events with pTHat >= ``--pthat-min``, so it is only
  meaningful if the first row (c just above ``--pthat-min``) shows no loss.
* ``pass rate``: the trigger pass rate among generated events with pTHat >= c, i.e. the fraction
  of CPU time spent on events that are kept when generating with that cut (the cost is 1/rate
  generated events per kept event).

Run (about 3 minutes on 2 cores for the defaults)::

    .venv/bin/python benchmarks/pthat_trigger_study.py
    .venv/bin/python benchmarks/pthat_trigger_study.py --pthat-min 700 --events 20000 --seed 1
"""

from __future__ import annotations

import argparse
import math
import time
from typing import Any

import awkward as ak
import numpy as np
import numpy.typing as npt

from distributed_clr.config import GenerateConfig
from distributed_clr.physics.clustering import leading_jet_pt
from distributed_clr.physics.detector import apply_detector
from distributed_clr.physics.pythia import _final_state, make_pythia, pythia_settings

CUTS = (800.0, 900.0, 1000.0, 1100.0, 1200.0)
CHUNK = 500


def generate(
    config: GenerateConfig, n_events: int, seed: int
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_]]:
    """pTHat [GeV] and trigger decision of ``n_events`` generated events (nextBatch chunks)."""
    pythia: Any = make_pythia(pythia_settings(config, seed))
    rng = np.random.default_rng(seed)
    pthat: list[npt.NDArray[np.float64]] = []
    passed: list[npt.NDArray[np.bool_]] = []
    done = 0
    start = time.perf_counter()
    while done < n_events:
        batch = pythia.nextBatch(min(CHUNK, n_events - done), "skip")
        if len(batch) == 0:
            raise RuntimeError("Pythia produced no events in a whole batch")
        pthat.append(np.sqrt(ak.to_numpy(batch.info.pT2Hat).astype(np.float64)))
        events = apply_detector(_final_state(batch), config.detector, rng)
        passed.append(leading_jet_pt(events, config.trigger_radius) > config.trigger_pt)
        done += len(batch)
        print(
            f"  {done:>7d} events, {int(sum(p.sum() for p in passed)):>5d} triggered, "
            f"{time.perf_counter() - start:6.1f} s",
            flush=True,
        )
    return np.concatenate(pthat), np.concatenate(passed)


def fraction(k: int, n: int) -> str:
    """k/n with its binomial standard error (a 95% CL upper limit when k = 0)."""
    if n == 0:
        return "n/a"
    if k == 0:
        return f"< {3.0 / n:.4f} (95% CL)"
    p = k / n
    return f"{p:.4f} +- {math.sqrt(p * (1.0 - p) / n):.4f}"


def report(
    pthat: npt.NDArray[np.float64], passed: npt.NDArray[np.bool_], config: GenerateConfig
) -> None:
    n_trig = int(passed.sum())
    print(
        f"\n{len(pthat)} events generated with pTHatMin = {config.pthat_min:g} GeV, "
        f"{n_trig} pass the trigger (leading R={config.trigger_radius:g} jet "
        f"pT > {config.trigger_pt:g} GeV); "
        f"lowest triggered pTHat = {pthat[passed].min() if n_trig else float('nan'):.0f} GeV\n"
    )
    print(
        f"{'cut c [GeV]':>11} | {'lost: triggered with pTHat < c':>32} | "
        f"{'pass rate of pTHat >= c':>24} | {'gen/kept':>8}"
    )
    print("-" * 86)
    for cut in CUTS:
        lost = int((passed & (pthat < cut)).sum())
        above = pthat >= cut
        kept = int((passed & above).sum())
        n_above = int(above.sum())
        cost = f"{n_above / kept:8.1f}" if kept else f"{'inf':>8}"
        print(
            f"{cut:>11.0f} | {lost:>5d}/{n_trig:<5d} {fraction(lost, n_trig):>20} | "
            f"{fraction(kept, n_above):>24} | {cost}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pthat-min", type=float, default=700.0, help="generator cut [GeV]")
    parser.add_argument("--events", type=int, default=20_000, help="events to generate")
    parser.add_argument("--seed", type=int, default=1, help="Pythia and detector seed")
    args = parser.parse_args()

    config = GenerateConfig(pthat_min=args.pthat_min)
    print(
        f"QCD dijets, pTHatMin = {config.pthat_min:g} GeV, detector "
        f"{'on' if config.detector.enabled else 'off'}, {args.events} events, seed {args.seed}"
    )
    pthat, passed = generate(config, args.events, args.seed)
    report(pthat, passed, config)


if __name__ == "__main__":
    main()
