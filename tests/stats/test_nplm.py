"""The NPLM statistic (``stats.nplm``): the kernel solver reaches the optimum a general-purpose
minimiser finds, blockwise products equal dense ones, the null statistic follows chi2 on
Gaussian toys, the statistic and the power rise with a planted signal, memory does not grow
with N x M, and bad input is refused."""

from __future__ import annotations

import math
import subprocess
import sys
import textwrap

import numpy as np
import numpy.typing as npt
import pytest
import torch
from scipy import optimize, stats

from distributed_clr.stats.calibration import chi2_calibration, p_values, power, significance
from distributed_clr.stats.nplm import (
    KernelMatrix,
    NPLMInputError,
    centre_kernel,
    default_sigma,
    kernel_objective,
    kernel_statistic,
    nn_statistic,
    standardise,
)

Array = npt.NDArray[np.float64]


def _gaussian_toy(
    rng: np.random.Generator, n_ref: int, n_data: int, signal: int = 0
) -> tuple[Array, Array]:
    reference = rng.normal(size=(n_ref, 2))
    data = rng.normal(size=(rng.poisson(n_data), 2))
    if signal:
        bump = rng.normal(loc=(1.5, 1.5), scale=0.3, size=(rng.poisson(signal), 2))
        data = np.concatenate([data, bump])
    return reference, data


def _dense_problem(
    reference: Array, data: Array, weight: float, centres: Array
) -> tuple[Array, Array, Array, Array]:
    points = np.concatenate([data, reference])
    label = np.concatenate([np.ones(len(data)), np.zeros(len(reference))])
    point_weight = np.concatenate([np.ones(len(data)), np.full(len(reference), weight)])
    return points, label, point_weight, centres


@pytest.mark.parametrize("lam", [1e-3, 1e-5])
def test_solver_optimum_equals_a_general_purpose_minimiser(lam: float) -> None:
    rng = np.random.default_rng(3)
    reference, data = _gaussian_toy(rng, 400, 150, signal=30)
    weight = 150 / 400
    sigma = 1.5
    # M equals the number of points: the kernel solver uses every point as a centre.
    solution = kernel_statistic(
        reference, data, weight, centres=40, sigma=sigma, lam=lam, seed=0,
        newton_steps="converge", cg_tol=1e-13, keep_f=True,
    )  # fmt: skip
    points = np.concatenate([data, reference])
    chosen = np.sort(np.random.default_rng(0).choice(len(points), size=40, replace=False))
    centres = points[chosen]
    problem = _dense_problem(reference, data, weight, centres)
    x, y, c, _ = problem
    kernel = np.exp(-((x[:, None, :] - centres[None]) ** 2).sum(-1) / (2 * sigma**2))
    k_mm = centre_kernel(torch.as_tensor(centres), sigma).numpy()
    n = len(x)

    def objective(alpha: Array) -> float:
        return kernel_objective(alpha, x, y, c, centres, sigma, lam)

    def gradient(alpha: Array) -> Array:
        p = 1.0 / (1.0 + np.exp(-(kernel @ alpha)))
        return np.asarray(kernel.T @ (c * (p - y)) / n + 2 * lam * k_mm @ alpha)

    def hessian(alpha: Array) -> Array:
        p = 1.0 / (1.0 + np.exp(-(kernel @ alpha)))
        return np.asarray(kernel.T @ (kernel * (c * p * (1 - p))[:, None]) / n + 2 * lam * k_mm)

    reference_fit = optimize.minimize(
        objective, np.zeros(40), jac=gradient, hess=hessian, method="trust-exact",
        options={"gtol": 1e-12},
    )  # fmt: skip
    # trust-exact may stop short of gtol = 1e-12 when its model can no longer predict an
    # improvement in float64 ("bad approximation", scipy 1.17): at a stationary point all the
    # same. Judge it by its gradient, not by its flag.
    assert reference_fit.success or np.linalg.norm(gradient(reference_fit.x)) < 1e-9, (
        reference_fit.message,
        np.linalg.norm(gradient(reference_fit.x)),
    )
    assert solution.objective == pytest.approx(reference_fit.fun, rel=1e-6)
    assert objective(solution.alpha) == pytest.approx(reference_fit.fun, rel=1e-6)
    f_scipy = kernel @ reference_fit.x
    assert solution.f_data is not None
    assert solution.f_reference is not None
    f_ours = np.concatenate([solution.f_data, solution.f_reference])
    assert np.max(np.abs(f_ours - f_scipy)) < 1e-5 * max(1.0, np.abs(f_scipy).max())
    t_scipy = 2 * (f_scipy[: len(data)].sum() - weight * np.expm1(f_scipy[len(data) :]).sum())
    assert solution.t == pytest.approx(t_scipy, rel=1e-6)
    # Converged further than one step, and one step is already a descent.
    one = kernel_statistic(reference, data, weight, centres=40, sigma=sigma, lam=lam, seed=0)
    assert one.newton_steps == 1 < solution.newton_steps
    assert solution.objective <= one.objective < objective(np.zeros(40))


def test_blockwise_products_equal_dense_ones() -> None:
    rng = np.random.default_rng(4)
    points = torch.as_tensor(rng.normal(size=(103, 3)))
    centres = points[:17]
    v = torch.as_tensor(rng.normal(size=17))
    u = torch.as_tensor(rng.normal(size=103))
    s = torch.as_tensor(rng.uniform(size=103))
    whole = KernelMatrix(points, centres, 0.8, block=1000).dense()
    exact = torch.exp(-(torch.cdist(points, centres) ** 2) / (2 * 0.8**2))
    torch.testing.assert_close(whole, exact, rtol=1e-12, atol=1e-12)
    for block, cache in ((7, 0), (7, 10 * 17 * 8), (50, 10**9)):
        matrix = KernelMatrix(points, centres, 0.8, block=block, cache_bytes=cache)
        for _ in range(2):  # the second pass reads what the first one cached
            torch.testing.assert_close(matrix.matvec(v), exact @ v, rtol=1e-12, atol=1e-12)
            torch.testing.assert_close(matrix.rmatvec(u), exact.T @ u, rtol=1e-12, atol=1e-12)
            torch.testing.assert_close(
                matrix.gram(s, v), exact.T @ (s * (exact @ v)), rtol=1e-12, atol=1e-12
            )
        assert matrix.cached_fraction <= min(1.0, cache / (103 * 17 * 8)) + 1e-12
    reference, data = _gaussian_toy(rng, 500, 100, signal=20)
    settings = {"centres": 60, "sigma": 1.2, "lam": 1e-5, "seed": 1}
    unblocked = kernel_statistic(reference, data, 0.2, block=10_000, **settings)  # type: ignore[arg-type]
    blocked = kernel_statistic(reference, data, 0.2, block=13, **settings)  # type: ignore[arg-type]
    cached = kernel_statistic(reference, data, 0.2, block=13, cache_bytes=2**20, **settings)  # type: ignore[arg-type]
    assert cached.cached_fraction == 1.0
    # Summation order differs; the conjugate gradient (stopped at 1e-6) carries that rounding.
    assert blocked.t == pytest.approx(unblocked.t, rel=1e-8)
    assert cached.t == blocked.t


@pytest.fixture(scope="module")
def null_toys() -> Array:
    """200 background-only toys of 2-D Gaussians: N_R = 5,000, N_D ~ Poisson(1,000)."""
    rng = np.random.default_rng(2024)
    reference = rng.normal(size=(5000, 2))
    sigma = default_sigma(reference, 0)
    values = []
    for toy in range(200):
        data = rng.normal(size=(rng.poisson(1000), 2))
        values.append(
            kernel_statistic(reference, data, 0.2, centres=100, sigma=sigma, lam=1e-6, seed=toy).t
        )
    return np.asarray(values)


def test_null_statistic_follows_chi2(null_toys: Array) -> None:
    calibration = chi2_calibration(null_toys)
    assert calibration["ks_pvalue"] > 0.01, calibration
    assert calibration["dof_fit"] == pytest.approx(calibration["dof"], rel=0.2)
    z = significance(p_values(null_toys, null_toys, calibration["dof"])[0])
    tail = stats.norm.sf(2.0)
    error = math.sqrt(tail * (1 - tail) / len(z))
    assert abs((z > 2).mean() - tail) <= error, (z > 2).mean()


def test_statistic_and_power_rise_with_the_planted_signal(null_toys: Array) -> None:
    dof = chi2_calibration(null_toys)["dof"]
    rng = np.random.default_rng(7)
    reference = rng.normal(size=(5000, 2))
    sigma = default_sigma(reference, 0)
    medians, powers = [], []
    for amount in (10, 40, 120):
        t = []
        for toy in range(30):
            _, data = _gaussian_toy(rng, 0, 1000, signal=amount)
            t.append(
                kernel_statistic(
                    reference, data, 0.2, centres=100, sigma=sigma, lam=1e-6, seed=toy
                ).t
            )
        z = significance(p_values(np.asarray(t), null_toys, dof)[0])
        medians.append(float(np.median(z)))
        powers.append(power(z, [2.0])["2"]["power"])
    assert medians[0] < medians[1] < medians[2], medians
    assert powers[0] <= powers[1] <= powers[2], powers
    assert powers[2] > 0.9, powers
    assert medians[2] > 3


def test_network_statistic_rises_with_the_planted_signal() -> None:
    rng = np.random.default_rng(8)
    reference = rng.normal(size=(2000, 2))
    settings = {"hidden": [4], "epochs": 300, "lr": 0.05, "clip": 9.0}
    null, signal = [], []
    for toy in range(4):
        _, background = _gaussian_toy(rng, 0, 400)
        _, injected = _gaussian_toy(rng, 0, 400, signal=120)
        null.append(nn_statistic(reference, background, 0.2, seed=toy, **settings).t)  # type: ignore[arg-type]
        fit = nn_statistic(reference, injected, 0.2, seed=toy, **settings)  # type: ignore[arg-type]
        signal.append(fit.t)
    assert fit.parameters == 2 * 4 + 4 + 4 + 1
    assert np.median(signal) > np.median(null) + 20, (null, signal)


def test_float32_keeps_the_basis_and_the_statistic() -> None:
    rng = np.random.default_rng(12)
    reference = rng.normal(size=(3000, 8))
    data = np.concatenate([rng.normal(size=(600, 8)), rng.normal(1.0, 0.3, size=(60, 8))])
    ref, (dat,), _ = standardise(reference, data)
    sigma = default_sigma(ref, 0)
    settings = {"centres": 300, "sigma": sigma, "lam": 1e-6, "seed": 0}
    double = kernel_statistic(ref, dat, 0.2, **settings)  # type: ignore[arg-type]
    single = kernel_statistic(ref, dat, 0.2, dtype=torch.float32, **settings)  # type: ignore[arg-type]
    assert single.rank == double.rank == 300
    assert single.t == pytest.approx(double.t, rel=0.05)


def test_default_sigma_is_the_quantile_of_pairwise_distances() -> None:
    rng = np.random.default_rng(9)
    x = rng.normal(size=(300, 3))
    distances = np.sqrt(((x[:, None] - x[None]) ** 2).sum(-1))[np.triu_indices(300, 1)]
    assert default_sigma(x, 0, 0.9) == pytest.approx(np.quantile(distances, 0.9), rel=1e-9)
    # Up to 2,000 events: a subsample, seeded.
    big = rng.normal(size=(5000, 3))
    assert default_sigma(big, 1) == default_sigma(big, 1) != default_sigma(big, 2)


def test_standardise_uses_the_reference_alone() -> None:
    reference = np.array([[1.0, 5.0], [3.0, 5.0]])
    data = np.array([[2.0, 6.0]])
    ref, (out,), scaling = standardise(reference, data)
    assert scaling == {"mean": [2.0, 5.0], "std": [1.0, 0.0]}
    np.testing.assert_allclose(ref, [[-1.0, 0.0], [1.0, 0.0]])
    np.testing.assert_allclose(out, [[0.0, 1.0]])  # a constant feature is only centred


@pytest.mark.parametrize(
    ("reference", "data", "message"),
    [
        (np.zeros((10, 2)), np.zeros((5, 3)), "3 features but the reference has 2"),
        (np.full((10, 2), np.nan), np.zeros((5, 2)), "non-finite"),
        (np.zeros((10, 2)), np.zeros((0, 2)), "holds no events"),
        (np.zeros(10), np.zeros((5, 2)), "2-D array"),
    ],
)
def test_bad_samples_are_refused(reference: Array, data: Array, message: str) -> None:
    with pytest.raises(NPLMInputError, match=message):
        kernel_statistic(reference, data, 0.5, centres=5, sigma=1.0, lam=1e-6, seed=0)
    with pytest.raises(NPLMInputError, match=message):
        nn_statistic(reference, data, 0.5, hidden=[2], epochs=1, lr=0.1, clip=1.0, seed=0)


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ({"sigma": 0.0}, "kernel width"),
        ({"lam": -1.0}, "penalty"),
        ({"newton_steps": 0}, "newton_steps"),
        ({"centres": 0}, "centre"),
    ],
)
def test_bad_settings_are_refused(setting: dict[str, float], message: str) -> None:
    settings = {"centres": 5, "sigma": 1.0, "lam": 1e-6, "seed": 0, **setting}
    rng = np.random.default_rng(0)
    with pytest.raises(NPLMInputError, match=message):
        kernel_statistic(rng.normal(size=(20, 2)), rng.normal(size=(5, 2)), 0.5, **settings)  # type: ignore[arg-type]


def test_memory_does_not_grow_with_n_times_m() -> None:
    """N = 100,000 points and M = 400 centres: the whole kernel would take 320 MB; the solver
    holds one block of 2,048 rows (6.6 MB) at a time."""
    script = textwrap.dedent(
        """
        import resource, numpy as np, torch
        from distributed_clr.stats.nplm import kernel_statistic
        torch.set_num_threads(1)
        rng = np.random.default_rng(0)
        reference, data = rng.normal(size=(90_000, 8)), rng.normal(size=(10_000, 8))
        kernel_statistic(reference[:500], data[:100], 0.1, centres=400, sigma=4.0, lam=1e-6,
                         seed=0, block=2048)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        kernel_statistic(reference, data, 0.1, centres=400, sigma=4.0, lam=1e-6, seed=0,
                         block=2048, cg_max_iter=5)
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print((after - before) * 1024)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=300
    )
    grown = int(result.stdout.split()[-1])
    assert grown < 100 * 2**20, f"peak memory grew by {grown / 2**20:.0f} MiB"


@pytest.mark.gpu
def test_gpu_and_cpu_give_the_same_statistic() -> None:
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    rng = np.random.default_rng(5)
    reference, data = _gaussian_toy(rng, 20_000, 2000, signal=100)
    settings = {"centres": 500, "sigma": 1.5, "lam": 1e-6, "seed": 3}
    cpu = kernel_statistic(reference, data, 0.1, device="cpu", **settings)  # type: ignore[arg-type]
    gpu = kernel_statistic(reference, data, 0.1, device="cuda", **settings)  # type: ignore[arg-type]
    assert gpu.t == pytest.approx(cpu.t, rel=1e-6)
