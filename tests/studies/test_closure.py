"""The bump hunt's closure and injection study, run as a user runs it (README, "The bump hunt").

Closure: QCD only (24,000 generated events before cuts), an encoder pretrained with
``model.inputs=jet_frame`` on it, embeddings, and the bump hunt with the ``search`` preset's
settings and no signal injected: no cut may report |Z| >= 2 (the mean over the repeats'
classifier seeds, as the summary reports it) for the latent and high-level sets.
An encoder with ``absolute`` inputs must have its latent set refused by the leakage check, or,
if the check lets it through, close as well. Injection: W' events drawn into the same hunt at
increasing N give a rising Z.

Slow (about an hour on two cores): ``make test-slow``.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.slow

DCLR = str(Path(sys.executable).parent / "dclr")
HEADLINE = "significance_with_uncertainty"
CLOSURE_SETS = ("latent", "highlevel")
PRETRAIN = "pretrain --preset search --data dijets_qcd"
EMBED = "embed --preset search"
HUNT = "evaluate cwola --mode bumphunt --preset search"
NO_SIGNAL = "--set sample.bumphunt.signal=[0]"


def _runner(workdir: Path) -> Callable[..., str]:
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{workdir / 'mlflow.db'}"}

    def dclr(command: str) -> str:
        args = shlex.split(command)
        result = subprocess.run(
            [DCLR, *args], cwd=workdir, env=env, capture_output=True, text=True, check=False
        )
        assert result.returncode == 0, f"dclr {' '.join(args)}\n{result.stderr[-4000:]}"
        return result.stdout

    return dclr


def _best_checkpoint(output: str) -> str:
    for line in output.splitlines():
        if "best checkpoint" in line:
            return line.split(": ", 1)[1].strip()
    raise AssertionError(f"no best checkpoint in the pretrain output:\n{output}")


def _summary(workdir: Path, out: str) -> dict[str, Any]:
    summary: dict[str, Any] = json.loads((workdir / out / "summary.json").read_text())
    return summary


def _z_values(summary: dict[str, Any], feature_set: str, amount: int) -> list[float]:
    """Every hunt's headline Z at every cut, for one injected amount."""
    values = []
    for hunt in summary["results"][feature_set]["injections"]:
        if hunt["signal_injected"] == amount:
            values.extend(cut[HEADLINE] for cut in hunt["cuts"])
    return values


def _mean_z(summary: dict[str, Any], feature_set: str, cut: str) -> Sequence[float]:
    table = summary["results"][feature_set]["z_vs_injected"][cut]
    return [table[amount][HEADLINE]["mean"] for amount in sorted(table, key=int)]


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Callable[..., str]]:
    workdir = tmp_path_factory.mktemp("closure")
    dclr = _runner(workdir)
    dclr("generate --preset search --process qcd_dijet --events 24000 --seed 21 --out qcd")
    dclr(
        "generate --preset search --process wprime_xy --events 6000 --shards 4 --seed 22 "
        "--out wprime"
    )
    dclr("prepare --preset search --out dijets_qcd qcd")
    dclr("prepare --preset search --out dijets_all qcd wprime")
    return workdir, dclr


def test_closure_and_injection_with_jet_frame_inputs(
    study: tuple[Path, Callable[..., str]],
) -> None:
    workdir, dclr = study
    checkpoint = _best_checkpoint(dclr(f"{PRETRAIN} --run-name cl_jf"))
    dclr(f"{EMBED} --checkpoint {checkpoint} --data dijets_qcd --out emb_qcd")
    dclr(f"{HUNT} --embeddings emb_qcd --data dijets_qcd --out closure {NO_SIGNAL}")
    closure = _summary(workdir, "closure")
    for feature_set in CLOSURE_SETS:
        entry = closure["results"][feature_set]
        assert not entry["refused"], entry["leakage"]
        # the reported Z at each cut (the mean over the repeats' classifier seeds) closes;
        # no single repeat strays beyond 3 sigma either
        for cut in entry["z_vs_injected"].values():
            assert abs(cut["0"][HEADLINE]["mean"]) < 2, (feature_set, cut)
        values = _z_values(closure, feature_set, 0)
        assert len(values) == closure["repeats"] * len(closure["efficiencies"])
        assert all(abs(z) < 3 for z in values), (feature_set, values)

    dclr(f"{EMBED} --checkpoint {checkpoint} --data dijets_all --out emb_all")
    dclr(f"{HUNT} --embeddings emb_all --data dijets_all --out inject")
    inject = _summary(workdir, "inject")
    assert inject["signal_injected"] == [0, 300, 1000, 3000]
    # Z rises with N at a tight cut on the high-level set, and the largest injection is seen in
    # the latent space too; truth S/sqrt(B) in the signal region grows with N at every cut.
    rising = _mean_z(inject, "highlevel", "eff_0.1")
    assert rising == sorted(rising), rising
    assert rising[-1] > 3, rising
    latent = _mean_z(inject, "latent", "eff_0.1")
    assert latent[-1] > latent[0] + 2, latent
    for feature_set in CLOSURE_SETS:
        for cut in inject["results"][feature_set]["z_vs_injected"].values():
            truth = [cut[n]["s_over_sqrt_b"]["mean"] for n in sorted(cut, key=int)]
            assert truth == sorted(truth), truth


def test_absolute_inputs_are_refused_or_close(study: tuple[Path, Callable[..., str]]) -> None:
    workdir, dclr = study
    checkpoint = _best_checkpoint(dclr(f"{PRETRAIN} --run-name cl_abs --set model.inputs=absolute"))
    dclr(f"{EMBED} --checkpoint {checkpoint} --data dijets_qcd --out emb_abs")
    dclr(
        f"{HUNT} --embeddings emb_abs --data dijets_qcd --out closure_abs --feature-set latent "
        f"--feature-set highlevel {NO_SIGNAL}"
    )
    summary = _summary(workdir, "closure_abs")
    latent = summary["results"]["latent"]
    if latent["refused"]:
        assert latent["leakage"]["reason"]
        assert "injections" not in latent
    else:
        for cut in latent["z_vs_injected"].values():
            assert abs(cut["0"][HEADLINE]["mean"]) < 2, cut
