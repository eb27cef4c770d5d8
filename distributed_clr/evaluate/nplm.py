"""``evaluate nplm``: the NPLM goodness-of-fit test of a representation, with toys on Ray.

For each feature set of ``config.feature_sets`` (the latent space, the prepared high-level
features, ...), a fixed reference sample of background events is compared with toy data sets
(``NPLMConfig`` describes how the pools are drawn): ``toys`` null toys (background only)
calibrate the statistic (``stats.calibration.chi2_calibration``: degrees of freedom, KS
p-value), and ``toys`` toys per signal process and injected amount measure the discovery power
P(Z > Z_alpha) with Clopper-Pearson intervals, Z from the asymptotic chi2(dof) p-value (and,
capped by the number of null toys, the empirical one). The statistic is ``stats.nplm``'s
kernel or network fit; features are standardised with the reference's mean and standard
deviation.

Every feature set uses the same toys (the same events, drawn by the toy's seed), so the
representations are compared on identical data. Toys run as Ray tasks of ``toys_per_task``
toys (one CPU each, or a fraction of a GPU); each finished task's toys are written to
``partial-<digest>/`` at once, so a rerun of an interrupted evaluation with the same settings
only runs the missing toys (the digest leaves out ``RUN_ONLY`` settings such as the task size
or the device, which do not change a toy; partial results of other settings are removed).

Outputs: ``toys.parquet`` (one row per toy: feature_set, toy, kind null/signal, process,
n_signal (expected), n_signal_drawn, n_background, t, seed, seconds, the fit's steps and
conjugate-gradient iterations, and rank: the Nystrom directions kept, or the network's
parameters),
``summary.json``, ``plots/nplm_t0_<set>.png`` (null t with the fitted chi2),
``plots/nplm_t_<set>.png`` (t of every injection), ``plots/nplm_power.png`` (power against
the injected amount), and an MLflow child run of the encoder's run with metrics
``nplm/<quantity>/<feature set>[/<process>/n_<n>]``.
"""

from __future__ import annotations

import itertools
import logging
import math
import os
import shutil
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.parquet as pq

from distributed_clr.config.schema import NPLMConfig, RayConfig, TrackingConfig
from distributed_clr.evaluate.errors import EvaluationError
from distributed_clr.evaluate.inputs import EvaluationInputs, load_inputs
from distributed_clr.evaluate.plots import plot_nplm_null, plot_nplm_power, plot_nplm_statistics
from distributed_clr.evaluate.provenance import encoder_run, encoder_source, open_evaluation_run
from distributed_clr.evaluate.report import (
    PLOTS,
    check_inputs,
    evaluation_identity,
    finish,
    recorded,
    source_summary,
)
from distributed_clr.progress import progress
from distributed_clr.sampling import draw_order
from distributed_clr.seeds import derive_seed
from distributed_clr.stats.calibration import (
    chi2_calibration,
    gaussian_tail,
    p_values,
    power,
    significance,
)
from distributed_clr.stats.nplm import (
    NPLMInputError,
    default_sigma,
    kernel_statistic,
    nn_statistic,
    standardise,
)
from distributed_clr.storage.files import json_digest, write_parquet_atomic
from distributed_clr.storage.location import StoragePath, as_storage_path
from distributed_clr.storage.verify import VerifyLevel

log = logging.getLogger(__name__)

__all__ = ["TOYS", "Pools", "ToySpec", "build_pools", "nplm", "run_toys", "toy_specs"]

TOYS = "toys.parquet"
NULL, SIGNAL = "null", "signal"
NPLM_STREAM = 0x4E504C4D
"""Seed stream of the toys (``seeds.derive_seed``)."""
POOL_MARGIN = 5.0
"""A pool must hold the expected toy size plus this many Poisson standard deviations."""
POOL_FRACTION = 0.1
"""Above this fraction of the data pool per toy, a warning: toys fluctuate less than data."""
NULL_Z = (1.0, 2.0, 3.0)
"""Thresholds at which the null toys' fraction above is compared with the Gaussian tail."""
TOY_SCHEMA = pa.schema(
    [
        ("feature_set", pa.string()),
        ("toy", pa.int64()),
        ("kind", pa.string()),
        ("process", pa.string()),
        ("n_signal", pa.int64()),
        ("n_signal_drawn", pa.int64()),
        ("n_background", pa.int64()),
        ("t", pa.float64()),
        ("seed", pa.int64()),
        ("seconds", pa.float64()),
        ("steps", pa.int64()),
        ("cg_iterations", pa.int64()),
        ("rank", pa.int64()),
    ]
)


# ------------------------------------------------------------------------------------------------
# pools and toys


@dataclass
class Pools:
    """Row indices (into the loaded events) of the reference, the data pool and each signal
    process's pool."""

    reference: npt.NDArray[np.int64]
    data: npt.NDArray[np.int64]
    signal: dict[str, npt.NDArray[np.int64]]
    unlabelled: int
    """Events with label -1, left out of every pool."""

    def counts(self) -> dict[str, Any]:
        return {
            "reference": len(self.reference),
            "data_pool": len(self.data),
            "signal_pools": {k: len(v) for k, v in self.signal.items()},
            "unlabelled_excluded": self.unlabelled,
        }


def _needed(expected: float) -> int:
    return math.ceil(expected + POOL_MARGIN * math.sqrt(expected))


def build_pools(inputs: EvaluationInputs, config: NPLMConfig) -> Pools:
    """Split the events into the reference, the background data pool and the signal pools
    (``NPLMConfig``), checking that each is large enough for the toys asked for.

    Raises:
        EvaluationError: labels other than -1/0/1, no background, too few events for the
            sizes asked for (naming the counts), or unknown signal processes.
    """
    label = inputs.label
    bad = ~np.isin(label, (-1, 0, 1))
    if bad.any():
        raise EvaluationError(
            f"labels must be 0 (background), 1 (signal) or -1 (unknown), found "
            f"{np.unique(label[bad])[:5].tolist()}"
        )
    unlabelled = int((label == -1).sum())
    if unlabelled:
        log.warning(
            "%d events have label -1 (unknown) and are left out: NPLM's reference and null toys "
            "need known background",
            unlabelled,
        )
    order = draw_order(inputs.keys, derive_seed(config.seed, NPLM_STREAM, 1))
    background = np.flatnonzero(label == 0)
    background = background[np.argsort(order[background], kind="stable")]
    need_data = _needed(config.data_events)
    if len(background) < config.reference_events + need_data:
        raise EvaluationError(
            f"NPLM needs {config.reference_events} background events for the reference and at "
            f"least {need_data} for the toys' data pool (nplm.data_events = "
            f"{config.data_events} plus {POOL_MARGIN:g} standard deviations), "
            f"{config.reference_events + need_data} in all, but the embeddings hold "
            f"{len(background)} background events; lower nplm.reference_events or "
            "nplm.data_events, or embed more events"
        )
    reference = np.sort(background[: config.reference_events])
    data = np.sort(background[config.reference_events :])
    taken = config.data_events / len(data)
    if taken > POOL_FRACTION:
        log.warning(
            "each toy takes %.0f%% of the data pool (%d of %d events): toys drawn without "
            "replacement from a finite pool fluctuate less than independent data sets (variance "
            "about %.2f of theirs), so the null distribution is narrower than the true one and "
            "Z conservative; see the calibration's dispersion",
            100 * taken,
            config.data_events,
            len(data),
            1 - taken,
        )
    signal: dict[str, npt.NDArray[np.int64]] = {}
    if config.signal_events:
        is_signal = label == 1
        present = sorted({str(p) for p in inputs.process[is_signal]})
        wanted = present if config.signal_processes is None else list(config.signal_processes)
        if not present:
            raise EvaluationError(
                "nplm.signal_events asks for injected signal, but the embeddings hold no signal "
                "events (label 1): embed data with signal, or set nplm.signal_events=[] for the "
                "calibration alone"
            )
        missing = [p for p in wanted if p not in present]
        if missing:
            raise EvaluationError(
                f"signal process(es) {missing} are not among the signal events of the "
                f"embeddings ({present})"
            )
        need_signal = _needed(max(config.signal_events))
        for process in wanted:
            rows = np.flatnonzero(is_signal & (inputs.process == process))
            if len(rows) < need_signal:
                raise EvaluationError(
                    f"signal process '{process}' has {len(rows)} events, fewer than the "
                    f"{need_signal} an injection of {max(config.signal_events)} needs (plus "
                    f"{POOL_MARGIN:g} standard deviations); lower nplm.signal_events"
                )
            signal[process] = rows
    return Pools(reference, data, signal, unlabelled)


@dataclass(frozen=True)
class ToySpec:
    """One toy: its index, kind (null or signal), signal process and expected signal count,
    and its seed (the same toy has the same events for every feature set)."""

    toy: int
    kind: str
    process: str
    n_signal: int
    seed: int


def toy_specs(config: NPLMConfig, processes: Sequence[str]) -> list[ToySpec]:
    """The null toys, then ``toys`` per signal process and injected amount."""
    specs = [
        ToySpec(i, NULL, "", 0, derive_seed(config.seed, NPLM_STREAM, 2, i))
        for i in range(config.toys)
    ]
    for process in processes:
        code = zlib.crc32(process.encode())
        for amount in config.signal_events:
            for i in range(config.toys):
                specs.append(
                    ToySpec(
                        len(specs),
                        SIGNAL,
                        process,
                        amount,
                        derive_seed(config.seed, NPLM_STREAM, 3, code, amount, i),
                    )
                )
    return specs


def _draw(
    rng: np.random.Generator, pool: npt.NDArray[np.float64], expected: int, what: str
) -> npt.NDArray[np.float64]:
    count = int(rng.poisson(expected))
    if count > len(pool):
        raise EvaluationError(
            f"a toy drew Poisson({expected}) = {count} {what} events, more than the pool's "
            f"{len(pool)}"
        )
    return pool[rng.choice(len(pool), size=count, replace=False)]


AUTO_CACHE_CAP = 8 * 2**30
"""The largest kernel cache ``cache_bytes`` chooses by itself."""


def cache_bytes(config: NPLMConfig, device: str = "cpu") -> int:
    """The kernel cache of one toy: ``nplm.cache_mb``, or (None) on a GPU a quarter of the
    device's free memory times ``gpus_per_task`` (the toys sharing it), on a CPU half of this
    node's available memory divided by its cores (one toy in flight per core); at most
    ``AUTO_CACHE_CAP``."""
    if config.cache_mb is not None:
        return config.cache_mb * 2**20
    if device != "cpu":
        import torch

        free, _ = torch.cuda.mem_get_info()
        return int(min(AUTO_CACHE_CAP, free * config.gpus_per_task / 4))
    try:
        available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 2**30
    return int(min(AUTO_CACHE_CAP, available / 2 / max(1, os.cpu_count() or 1)))


def run_toys(
    specs: Sequence[ToySpec],
    feature_set: str,
    reference: npt.NDArray[np.float64],
    data_pool: npt.NDArray[np.float64],
    signal_pools: dict[str, npt.NDArray[np.float64]],
    config: NPLMConfig,
    sigma: float,
    device: str,
) -> list[dict[str, Any]]:
    """Run ``specs`` on standardised samples: one row of ``TOY_SCHEMA`` per toy. The body of
    a Ray task (and callable directly)."""
    import torch

    if device == "cpu":
        torch.set_num_threads(1)
    dtype = torch.float64 if config.dtype == "float64" else torch.float32
    weight = config.data_events / len(reference)
    rows = []
    for spec in specs:
        rng = np.random.default_rng(spec.seed)
        parts = [_draw(rng, data_pool, config.data_events, "background")]
        n_background = len(parts[0])
        if spec.kind == SIGNAL:
            parts.append(_draw(rng, signal_pools[spec.process], spec.n_signal, spec.process))
        data = np.concatenate(parts)
        fit_seed = int(rng.integers(2**31))
        try:
            if config.method == "kernel":
                kernel = kernel_statistic(
                    reference, data, weight,
                    centres=config.centers, sigma=sigma, lam=config.lam, seed=fit_seed,
                    newton_steps=config.newton_steps, cg_tol=config.cg_tol,
                    cg_max_iter=config.cg_max_iter, block=config.block,
                    cache_bytes=cache_bytes(config, device), dtype=dtype, device=device,
                )  # fmt: skip
                t, seconds, rank = kernel.t, kernel.seconds, kernel.rank
                steps, iterations = kernel.newton_steps, sum(kernel.cg_iterations)
            else:
                network = nn_statistic(
                    reference, data, weight,
                    hidden=config.nn_hidden, epochs=config.nn_epochs, lr=config.nn_lr,
                    clip=config.nn_clip, seed=fit_seed, dtype=dtype, device=device,
                )  # fmt: skip
                t, seconds, steps, iterations = network.t, network.seconds, network.epochs, 0
                rank = network.parameters
        except NPLMInputError as err:
            raise EvaluationError(f"NPLM toy {spec.toy} ({feature_set}): {err}") from err
        if not math.isfinite(t):
            raise EvaluationError(
                f"NPLM toy {spec.toy} ({feature_set}, {spec.kind} {spec.process}, seed "
                f"{spec.seed}) gave t = {t}: the fit diverged; try nplm.dtype=float64, a larger "
                "nplm.lam or nplm.sigma"
            )
        rows.append(
            {
                "feature_set": feature_set,
                "toy": spec.toy,
                "kind": spec.kind,
                "process": spec.process,
                "n_signal": spec.n_signal,
                "n_signal_drawn": len(data) - n_background,
                "n_background": n_background,
                "t": t,
                "seed": spec.seed,
                "seconds": seconds,
                "steps": steps,
                "cg_iterations": iterations,
                "rank": rank,
            }
        )
    return rows


# ------------------------------------------------------------------------------------------------
# the driver


def _matrix(inputs: EvaluationInputs, feature_set: str) -> npt.NDArray[np.float64]:
    values = np.asarray(inputs.features[feature_set], dtype=np.float64)
    values = values.reshape(len(values), -1)
    bad = ~np.isfinite(values)
    if bad.any():
        row, column = (int(i) for i in np.argwhere(bad)[0])
        raise EvaluationError(
            f"feature set '{feature_set}' holds {int(bad.any(axis=1).sum())} events with NaN or "
            f"inf, e.g. event_id {int(inputs.event_id[row])} (feature {column}); NPLM needs "
            "finite inputs"
        )
    return values


def _use_gpu(config: NPLMConfig) -> bool:
    import ray

    gpus = float(ray.cluster_resources().get("GPU", 0.0))  # type: ignore[no-untyped-call]
    if config.device == "cuda" and gpus == 0:
        raise EvaluationError("nplm.device is 'cuda' but the Ray cluster has no GPU")
    return config.device == "cuda" or (config.device == "auto" and gpus > 0)


def _partial_rows(directory: Path) -> list[dict[str, Any]]:
    """The toys of every finished task (an unreadable part is ignored and redone)."""
    rows: list[dict[str, Any]] = []
    for path in sorted(directory.glob("part-*.parquet")):
        try:
            rows.extend(pq.read_table(path).to_pylist())
        except (OSError, pa.ArrowInvalid):
            log.warning("ignoring the unreadable partial result %s", path)
    return rows


RUN_ONLY = ("toys_per_task", "device", "gpus_per_task", "cache_mb", "z_alphas")
"""Settings that change how or where toys run, or only the summary, not any toy's t: left
out of the digest that names the partial results."""


def partial_digest(identity: Mapping[str, Any]) -> str:
    """The digest of what determines the toys: the evaluation's identity without
    ``RUN_ONLY`` settings."""
    settings = {k: v for k, v in identity["evaluate"].items() if k not in RUN_ONLY}
    return json_digest({**identity, "evaluate": settings})


def _run_all(
    config: NPLMConfig,
    matrices: Mapping[str, npt.NDArray[np.float64]],
    pools: Pools,
    specs: Sequence[ToySpec],
    partial: Path,
    ray_config: RayConfig,
) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
    """Run every toy of every feature set as Ray tasks, keeping finished tasks in ``partial``.

    Returns:
        (toy rows, {feature set: {"dim", "sigma", "standardisation"}}).
    """
    import ray

    from distributed_clr.runtime import as_completed, init_ray

    for stale in partial.parent.glob("partial-*"):
        if stale != partial and stale.is_dir():
            log.info("removing %s, the partial toys of other settings", stale)
            shutil.rmtree(stale, ignore_errors=True)
    partial.mkdir(parents=True, exist_ok=True)
    rows = _partial_rows(partial)
    done = {(row["feature_set"], row["toy"]) for row in rows}
    if rows:
        log.info("resuming: %d toys already finished in %s", len(rows), partial)
    init_ray(ray_config)
    gpu = _use_gpu(config)
    options: dict[str, Any] = (
        {"num_gpus": config.gpus_per_task, "num_cpus": 1} if gpu else {"num_cpus": 1}
    )
    task = ray.remote(max_retries=1, **options)(run_toys)
    device = "cuda" if gpu else "cpu"
    settings: dict[str, dict[str, Any]] = {}
    pending: dict[Any, str] = {}
    total = len(specs) * len(matrices)
    for feature_set, values in matrices.items():
        reference, (data_pool, *signals), scaling = standardise(
            values[pools.reference],
            values[pools.data],
            *(values[rows] for rows in pools.signal.values()),
        )
        sigma = config.sigma or default_sigma(
            reference, derive_seed(config.seed, NPLM_STREAM, 4), config.sigma_quantile
        )
        settings[feature_set] = {
            "dim": int(values.shape[1]),
            "sigma": sigma,
            "standardisation": scaling,
        }
        if config.method == "nn":
            # The network's trainable parameters: the asymptotic dof of the original NPLM.
            sizes = [int(values.shape[1]), *config.nn_hidden, 1]
            settings[feature_set]["nominal_dof"] = sum(
                (a + 1) * b for a, b in itertools.pairwise(sizes)
            )
        log.info(
            "NPLM on '%s' (%d features): kernel width %.4g, %d toys on %s",
            feature_set,
            values.shape[1],
            sigma,
            len(specs),
            device,
        )
        reference_ref, pool_ref = ray.put(reference), ray.put(data_pool)
        signal_ref = ray.put(dict(zip(pools.signal, signals, strict=True)))
        todo = [spec for spec in specs if (feature_set, spec.toy) not in done]
        for start in range(0, len(todo), config.toys_per_task):
            chunk = todo[start : start + config.toys_per_task]
            name = f"part-{feature_set}-{chunk[0].toy:06d}-{chunk[-1].toy:06d}"
            ref = task.remote(
                chunk, feature_set, reference_ref, pool_ref, signal_ref, config, sigma, device
            )
            pending[ref] = name

    def failed(name: str, err: BaseException) -> Exception:
        # The finished toys stay in ``partial`` for a rerun.
        return EvaluationError(f"NPLM toys {name} failed: {err}")

    with progress(total=total, initial=len(rows), desc="NPLM toys", unit="toy") as bar:
        for name, finished in as_completed(pending, failed):
            write_parquet_atomic(
                pa.Table.from_pylist(finished, schema=TOY_SCHEMA), partial / f"{name}.parquet"
            )
            rows.extend(finished)
            bar.update(len(finished))
            # Without a terminal the bar is silent: log every tenth of the way.
            if (len(rows) - len(finished)) * 10 // total < len(rows) * 10 // total:
                log.info("NPLM toys: %d of %d done", len(rows), total)
    return rows, settings


def _summarise(
    rows: list[dict[str, Any]], config: NPLMConfig, feature_set: str
) -> tuple[dict[str, Any], dict[str, float], dict[str, Any]]:
    """The calibration and power tables of one feature set, its MLflow metrics, and what its
    plots need."""
    mine = [r for r in rows if r["feature_set"] == feature_set]
    t0 = np.array([r["t"] for r in mine if r["kind"] == NULL], dtype=np.float64)
    calibration = chi2_calibration(t0)
    dof = calibration["dof"]
    p0, _ = p_values(t0, t0, dof)
    z0 = significance(p0)
    null = {}
    for z in NULL_Z:
        tail = gaussian_tail(z)
        null[f"{z:g}"] = {
            "fraction": float((z0 > z).mean()),
            "expected": tail,
            "binomial_error": math.sqrt(tail * (1.0 - tail) / len(z0)),
        }
    metrics = {
        f"nplm/dof/{feature_set}": dof,
        f"nplm/ks_pvalue/{feature_set}": calibration["ks_pvalue"],
    }
    signals: dict[str, dict[str, Any]] = {}
    curves: dict[str, dict[int, npt.NDArray[np.float64]]] = {}
    for process in sorted({r["process"] for r in mine if r["kind"] == SIGNAL}):
        signals[process] = {}
        curves[process] = {}
        for amount in config.signal_events:
            toys = [
                r for r in mine
                if r["kind"] == SIGNAL and r["process"] == process and r["n_signal"] == amount
            ]  # fmt: skip
            t1 = np.array([r["t"] for r in toys], dtype=np.float64)
            curves[process][amount] = t1
            asymptotic, empirical = p_values(t1, t0, dof)
            z_asym, z_emp = significance(asymptotic), significance(empirical)
            entry: dict[str, Any] = {
                "toys": len(t1),
                "n_signal_drawn_mean": float(np.mean([r["n_signal_drawn"] for r in toys])),
                "t_median": float(np.median(t1)),
                "z_median": float(np.median(z_asym)),
                "z_median_empirical": float(np.median(z_emp)),
                "power": power(z_asym, config.z_alphas),
                "power_empirical": power(z_emp, config.z_alphas),
            }
            signals[process][str(amount)] = entry
            suffix = f"{feature_set}/{process}/n_{amount}"
            metrics[f"nplm/z_median/{suffix}"] = entry["z_median"]
            for threshold, value in entry["power"].items():
                metrics[f"nplm/power_z{threshold}/{suffix}"] = value["power"]
    seconds = np.array([r["seconds"] for r in mine], dtype=np.float64)
    summary = {
        "calibration": calibration,
        "null_fraction_above": null,
        "seconds_per_toy": float(seconds.mean()) if len(seconds) else math.nan,
        "signals": signals,
    }
    return summary, metrics, {"t0": t0, "dof": dof, "signals": curves}


def nplm(
    config: NPLMConfig,
    embeddings: str | StoragePath,
    data: str | StoragePath | None,
    out: str | Path,
    *,
    ray_config: RayConfig | None = None,
    mlflow_run_id: str | None = None,
    tracking: TrackingConfig | None = None,
    verify: VerifyLevel = "sha256",
) -> dict[str, Any]:
    """The NPLM test on each feature set of ``config.feature_sets`` (module docstring).

    Args:
        config: the ``nplm`` section.
        embeddings: an embedding dataset (``dclr embed``; every split the pools use).
        data: the prepared dataset the embeddings were made from (for feature sets other than
            'latent').
        out: the output directory; a rerun with the same inputs and settings returns the
            recorded summary, an interrupted one resumes its toys.
        ray_config: where the toys run (a local Ray by default).
        mlflow_run_id: the encoder's run (default: the checkpoint's).

    Returns:
        The summary (as written to ``summary.json``).

    Raises:
        EvaluationError: bad inputs (NaN features, no background or signal, too few events).
    """
    embeddings, out = as_storage_path(embeddings), Path(out)
    data = None if data is None else as_storage_path(data)
    check_inputs(out, embeddings, data, verify)
    source = encoder_source(embeddings)
    parent = encoder_run(tracking, mlflow_run_id, source)
    label = f"nplm-{config.method}"
    splits = list(config.splits) if config.splits is not None else ["all"]
    identity = evaluation_identity(label, config, source, data, splits, parent)
    digest = partial_digest(identity)

    def compute() -> dict[str, Any]:
        inputs = load_inputs(
            embeddings, data, list(config.feature_sets), config.splits, verify=verify
        )
        pools = build_pools(inputs, config)
        matrices: dict[str, npt.NDArray[np.float64]] = {
            name: _matrix(inputs, name) for name in config.feature_sets
        }
        specs = toy_specs(config, list(pools.signal))
        partial = out / f"partial-{digest}"
        rows, settings = _run_all(
            config, matrices, pools, specs, partial, ray_config or RayConfig()
        )
        rows.sort(key=lambda r: (r["feature_set"], r["toy"]))
        results: dict[str, Any] = {}
        metrics: dict[str, float] = {}
        plots: list[Path] = []
        power_curves: dict[str, dict[str, Any]] = {}
        for feature_set in config.feature_sets:
            summary, set_metrics, curves = _summarise(rows, config, feature_set)
            results[feature_set] = {**settings[feature_set], **summary}
            metrics.update(set_metrics)
            power_curves[feature_set] = summary["signals"]
            plots.append(
                plot_nplm_null(
                    curves["t0"],
                    curves["dof"],
                    feature_set,
                    out / PLOTS / f"nplm_t0_{feature_set}.png",
                )
            )
            if curves["signals"]:
                plots.append(
                    plot_nplm_statistics(
                        curves["t0"],
                        curves["signals"],
                        feature_set,
                        out / PLOTS / f"nplm_t_{feature_set}.png",
                    )
                )
        if config.signal_events and pools.signal:
            plots.append(
                plot_nplm_power(power_curves, config.z_alphas, out / PLOTS / "nplm_power.png")
            )
        summary = {
            **source_summary(label, source, data, parent),
            "method": config.method,
            "settings": config.model_dump(mode="json"),
            "pools": pools.counts(),
            "reference_weight": config.data_events / len(pools.reference),
            "toys_per_kind": config.toys,
            "results": results,
        }
        run = None
        if parent is not None and tracking is not None:
            run_identity = {"embeddings": source.manifest.config, "splits": splits}
            run = open_evaluation_run(parent, source, config, tracking, label, run_identity)
        table = pa.Table.from_pylist(rows, schema=TOY_SCHEMA)
        written = finish(out, summary, [table], plots, metrics, run, table_file=TOYS)
        shutil.rmtree(partial, ignore_errors=True)
        return written

    return recorded(out, identity, compute, table_file=TOYS)
