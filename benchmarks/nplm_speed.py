"""Seconds per NPLM toy: the project's kernel solver against scikit-learn on the same problem.

The problem (defaults: the issue's size): a reference of N_R = 200,000 and data of N_D =
20,000 events in D = 8 dimensions (standard Gaussians, 1% of the data shifted by one unit),
reference weight N_D / N_R, M = 2,000 Gaussian-kernel centres drawn from the pooled sample,
width the 90th percentile of pairwise reference distances, lam = 1e-6.

* **ours**: ``stats.nplm.kernel_statistic``, one Newton step (the 2025 paper's setting) and
  to convergence, float64, on one CPU thread (``--threads``) or a GPU (``--device cuda``).
* **scikit-learn**: ``Nystroem`` (the same centres, the same kernel) followed by
  ``LogisticRegression`` (lbfgs, L2, sample weights, no intercept) with C = 1 / (2 lam n):
  in Nystrom features Phi = K_nm K_MM^(-1/2) the penalty alpha^T K_MM alpha is |beta|^2, so
  both minimise the same objective. Limited to the same threads with threadpoolctl.

Printed: seconds per toy of each, the ratios, and t and the objective of each fit (the
converged fits should agree). ``--skip-sklearn`` leaves the reference out (it holds the
N x M feature matrix: 3.5 GB at the default size).

Run::

    .venv/bin/python benchmarks/nplm_speed.py
    .venv/bin/python benchmarks/nplm_speed.py --ref 50000 --data 5000 --centers 1000
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from distributed_clr.stats.nplm import default_sigma, kernel_statistic, standardise


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ref", type=int, default=200_000, help="reference events N_R")
    parser.add_argument("--data", type=int, default=20_000, help="data events N_D")
    parser.add_argument("--centers", type=int, default=2_000, help="kernel centres M")
    parser.add_argument("--dim", type=int, default=8, help="features D")
    parser.add_argument("--lam", type=float, default=1e-6, help="penalty")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads of both")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (ours only)")
    parser.add_argument("--cache-mb", type=int, default=1024, help="our kernel-block cache")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-sklearn", action="store_true", help="time ours alone")
    return parser.parse_args()


def _sklearn(
    points: np.ndarray, label: np.ndarray, weight: np.ndarray, centres: np.ndarray,
    sigma: float, lam: float, threads: int,
) -> tuple[float, np.ndarray, np.ndarray]:  # fmt: skip
    """Seconds, the decision function f and the coefficients beta of the Nystroem +
    LogisticRegression fit."""
    from sklearn.kernel_approximation import Nystroem
    from sklearn.linear_model import LogisticRegression
    from threadpoolctl import threadpool_limits

    with threadpool_limits(threads):
        start = time.perf_counter()
        # Nystroem draws its components from what it is fitted on: fit on the centres alone,
        # with as many components as centres, so it uses exactly those.
        features = Nystroem(
            kernel="rbf", gamma=1.0 / (2 * sigma**2), n_components=len(centres), random_state=0
        ).fit(centres)
        phi = features.transform(points)
        model = LogisticRegression(
            C=1.0 / (2.0 * lam * len(points)), fit_intercept=False, max_iter=10_000, tol=1e-8
        )
        model.fit(phi, label, sample_weight=weight)
        seconds = time.perf_counter() - start
        beta = model.coef_.ravel()
        return seconds, phi @ beta, beta


def main() -> int:
    args = _parse()
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(args.seed)
    reference = rng.normal(size=(args.ref, args.dim))
    data = rng.normal(size=(args.data, args.dim))
    data[: args.data // 100] += 1.0
    reference, (data,), _ = standardise(reference, data)
    sigma = default_sigma(reference, args.seed)
    weight = args.data / args.ref
    print(
        f"N_R {args.ref}, N_D {args.data}, M {args.centers}, D {args.dim}, lam {args.lam:g}, "
        f"sigma {sigma:.3f}, {args.threads} thread(s), device {args.device}"
    )
    settings = {
        "centres": args.centers, "sigma": sigma, "lam": args.lam, "seed": args.seed,
        "device": args.device, "cache_bytes": args.cache_mb * 2**20,
    }  # fmt: skip
    one = kernel_statistic(reference, data, weight, **settings)  # type: ignore[arg-type]
    print(
        f"ours, 1 Newton step: {one.seconds:.1f} s/toy ({one.cg_iterations} CG iterations, "
        f"{one.cached_fraction:.0%} of the kernel cached), t = {one.t:.4f}, J = {one.objective:.8g}"
    )
    full = kernel_statistic(reference, data, weight, newton_steps="converge", **settings)  # type: ignore[arg-type]
    print(
        f"ours, converged ({full.newton_steps} steps): {full.seconds:.1f} s/toy, "
        f"t = {full.t:.4f}, J = {full.objective:.8g}"
    )
    if args.skip_sklearn:
        return 0
    points = np.concatenate([data, reference])
    label = np.concatenate([np.ones(len(data)), np.zeros(len(reference))])
    point_weight = np.concatenate([np.ones(len(data)), np.full(len(reference), weight)])
    chosen = np.sort(
        np.random.default_rng(args.seed).choice(len(points), size=args.centers, replace=False)
    )
    centres = points[chosen]
    seconds, f, beta = _sklearn(points, label, point_weight, centres, sigma, args.lam, args.threads)
    t = 2.0 * (f[: len(data)].sum() - weight * np.expm1(f[len(data) :]).sum())
    # J of the sklearn fit: in Nystrom features the penalty alpha^T K_MM alpha is |beta|^2.
    loss = np.logaddexp(0.0, np.where(label > 0, -f, f))
    objective = float((point_weight * loss).sum() / len(points)) + args.lam * float(beta @ beta)
    print(
        f"scikit-learn Nystroem + LogisticRegression: {seconds:.1f} s/toy, t = {t:.4f}, "
        f"J = {objective:.8g}"
    )
    print(
        f"ratio (scikit-learn / ours): {seconds / one.seconds:.2f}x against one Newton step, "
        f"{seconds / full.seconds:.2f}x against the converged fit; converged t differ by "
        f"{abs(t - full.t) / max(1.0, abs(full.t)):.2e} relative"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
