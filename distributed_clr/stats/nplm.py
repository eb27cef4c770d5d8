"""The NPLM test statistic: a likelihood ratio between a reference sample and data, learned
from the two samples themselves, with no signal model (D'Agnolo, Wulzer 2019; the kernel form
of Letizia, Losapio, Rando, Grosso, Wulzer, Pierini, Zanetti, Rosasco 2022).

A toy is a reference sample R (background, N_R events, each with weight w = N_expected / N_R)
and a data sample D. A model f(x) of the log density ratio log(n_D(x) / n_expected(x)) is
fitted by weighted logistic regression (data label 1 with weight 1, reference label 0 with
weight w), and the test statistic is the log likelihood ratio of the extended likelihoods,

    t = 2 [ sum_{x in D} f(x) - w sum_{x in R} (exp f(x) - 1) ],

which under the background-only hypothesis follows a chi2 distribution whose degrees of
freedom depend on the model's flexibility (calibrated with null toys, ``stats.power``).

Two models:

* **kernel** (``kernel_statistic``): f(x) = sum_j alpha_j k(x, c_j) with the Gaussian kernel
  k(x, c) = exp(-|x - c|^2 / (2 sigma^2)) over M Nystrom centres c_j drawn from the pooled
  sample. It minimises

      J(alpha) = (1/n) sum_i c_i l(y_i, f(x_i)) + lam alpha^T K_MM alpha,

  n = N_D + N_R, l the logistic loss, c_i the weights: the objective of a Nystrom kernel
  logistic regression in Falkon's normalisation. The solver reparametrises alpha = T beta with
  T = U_r Lambda_r^(-1/2) from the eigendecomposition K_MM = U Lambda U^T (directions whose
  eigenvalues are within the eigensolver's rounding error, ``EIGEN_FLOOR``, are dropped), so
  that the penalty is lam |beta|^2, and takes Newton steps, each solved by conjugate gradients
  preconditioned with the Nystrom approximation of the Hessian, K_nm^T S K_nm ~ (n s / M) K_MM^2,
  which is diagonal in beta: diag(s Lambda_r / M + 2 lam). Every product with K_nm is computed
  in row blocks (``KernelMatrix``), so memory is O(M x block + M^2), never O(N x M).
  ``newton_steps`` is a number of full Newton steps (the 2025 paper took one) or 'converge'
  (damped steps until the Newton decrement vanishes).
* **nn** (``nn_statistic``): the original NPLM: a small fully connected network (sigmoid
  hidden units, weights clipped to [-clip, clip]) trained full batch with Adam on the loss
  L = w sum_R (exp f - 1) - sum_D f, and t = -2 min L.

Everything is torch (float64 by default), on the CPU or a GPU; ``default_sigma`` gives the
kernel width the 2025 paper used (the 90th percentile of the pairwise distances of up to 2,000
reference events). Inputs are expected standardised with the reference's mean and standard
deviation (``standardise``).
"""

from __future__ import annotations

import itertools
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import numpy.typing as npt
import torch

log = logging.getLogger(__name__)

__all__ = [
    "EIGEN_FLOOR",
    "KernelMatrix",
    "KernelSolution",
    "NNSolution",
    "NPLMInputError",
    "default_sigma",
    "kernel_objective",
    "kernel_statistic",
    "nn_statistic",
    "standardise",
    "test_statistic",
]

EIGEN_FLOOR = 10.0
"""Eigenvalues of K_MM below EIGEN_FLOOR x M x the machine epsilon of the dtype, relative to
the largest, are below the eigensolver's rounding error and treated as zero (float64, M =
1,000: 2e-12)."""
SIGMA_EVENTS = 2_000
"""Reference events whose pairwise distances set the default kernel width."""
CONVERGE_MAX_STEPS = 50
"""The most Newton steps of ``newton_steps='converge'``."""
CONVERGE_CG_TOL = 1e-12
"""The tightest conjugate-gradient tolerance of ``newton_steps='converge'``."""

FloatArray = npt.NDArray[np.float64]
NewtonSteps = int | Literal["converge"]


class NPLMInputError(ValueError):
    """Samples the test cannot be run on (NaN, empty, mismatched dimensions, bad settings)."""


# ------------------------------------------------------------------------------------------------
# inputs


def _check_sample(x: npt.ArrayLike, what: str, dim: int | None = None) -> FloatArray:
    array = np.asarray(x)
    if array.ndim != 2:
        raise NPLMInputError(
            f"the {what} must be a 2-D array (events, features), got {array.shape}"
        )
    if not len(array):
        raise NPLMInputError(f"the {what} holds no events")
    if dim is not None and array.shape[1] != dim:
        raise NPLMInputError(
            f"the {what} has {array.shape[1]} features but the reference has {dim}: both "
            "samples must be described by the same features"
        )
    bad = ~np.isfinite(array)
    if bad.any():
        row, column = (int(i) for i in np.argwhere(bad)[0])
        raise NPLMInputError(
            f"the {what} holds {int(bad.sum())} non-finite values (NaN or inf), e.g. event "
            f"{row}, feature {column}"
        )
    return array


def standardise(
    reference: npt.ArrayLike, *others: npt.ArrayLike
) -> tuple[FloatArray, list[FloatArray], dict[str, list[float]]]:
    """Every sample standardised with the reference's mean and standard deviation.

    A feature constant over the reference is only centred (its scale is 1).

    Returns:
        (reference, [others...], {"mean": [...], "std": [...]}) in float64.

    Raises:
        NPLMInputError: NaN or inf, an empty sample, or another number of features.
    """
    ref = _check_sample(reference, "reference sample").astype(np.float64)
    rest = [
        _check_sample(x, f"sample {i + 1}", ref.shape[1]).astype(np.float64)
        for i, x in enumerate(others)
    ]
    mean = ref.mean(axis=0)
    std = ref.std(axis=0)
    scale = np.where(std > 0, std, 1.0)
    return (
        (ref - mean) / scale,
        [(x - mean) / scale for x in rest],
        {"mean": mean.tolist(), "std": std.tolist()},
    )


def default_sigma(
    reference: npt.ArrayLike, seed: int, quantile: float = 0.9, events: int = SIGMA_EVENTS
) -> float:
    """The ``quantile`` of the pairwise Euclidean distances of up to ``events`` reference events
    drawn with ``seed`` (the 2025 paper's kernel width: the 90th percentile)."""
    ref = _check_sample(reference, "reference sample")
    if not 0 < quantile < 1:
        raise NPLMInputError(f"the quantile must lie in (0, 1), got {quantile}")
    rng = np.random.default_rng(seed)
    rows = rng.choice(len(ref), size=min(events, len(ref)), replace=False)
    if len(rows) < 2:
        raise NPLMInputError("the kernel width needs at least two reference events")
    distances = torch.nn.functional.pdist(torch.as_tensor(ref[rows], dtype=torch.float64))
    sigma = float(torch.quantile(distances, quantile))
    if not sigma > 0:
        raise NPLMInputError(
            "the reference events are all identical: no kernel width can be derived"
        )
    return sigma


def test_statistic(f_data: torch.Tensor, f_reference: torch.Tensor, weight: float) -> float:
    """t = 2 [sum_D f - w sum_R (exp f - 1)]."""
    return float(2.0 * (f_data.sum() - weight * torch.expm1(f_reference).sum()))


# ------------------------------------------------------------------------------------------------
# kernel products


class KernelMatrix:
    """K(x, c) = exp(-|x - c|^2 / (2 sigma^2)) between N points and M centres, never held whole:
    products are computed over row blocks of at most ``block`` points. Blocks are kept for
    reuse while they fit in ``cache_bytes`` (the first ones computed), so memory stays below
    ``cache_bytes`` plus one block whatever N is; every pass over the other blocks recomputes
    them."""

    def __init__(
        self,
        points: torch.Tensor,
        centres: torch.Tensor,
        sigma: float,
        block: int,
        cache_bytes: int = 0,
    ) -> None:
        if block < 1:
            raise NPLMInputError(f"the block size must be positive, got {block}")
        self.points, self.centres = points, centres
        self.gamma = 1.0 / (2.0 * sigma * sigma)
        self.block = block
        self._cache: dict[int, torch.Tensor] = {}
        row_bytes = max(1, len(centres)) * points.element_size()
        self._cache_rows = max(0, cache_bytes) // row_bytes
        self._cached_rows = 0
        self._centre_norms = (centres * centres).sum(dim=1)
        self._point_norms = (points * points).sum(dim=1)

    @property
    def shape(self) -> tuple[int, int]:
        return (len(self.points), len(self.centres))

    def rows(self, start: int, stop: int) -> torch.Tensor:
        """The (stop - start, M) block of K (read only: it may be the cached one)."""
        cached = self._cache.get(start)
        if cached is not None and len(cached) == stop - start:
            return cached
        block = self._compute(start, stop)
        if self._cached_rows + (stop - start) <= self._cache_rows:
            self._cache[start] = block
            self._cached_rows += stop - start
        return block

    @property
    def cached_fraction(self) -> float:
        """The fraction of the rows held in the cache."""
        return self._cached_rows / max(1, len(self.points))

    def _compute(self, start: int, stop: int) -> torch.Tensor:
        squared = torch.addmm(
            self._centre_norms.unsqueeze(0), self.points[start:stop], self.centres.T, alpha=-2.0
        )
        squared.add_(self._point_norms[start:stop].unsqueeze(1)).clamp_(min=0.0)
        return squared.mul_(-self.gamma).exp_()

    def blocks(self) -> range:
        return range(0, len(self.points), self.block)

    def matvec(self, v: torch.Tensor) -> torch.Tensor:
        """K v, shape (N,)."""
        out = torch.empty(len(self.points), dtype=v.dtype, device=v.device)
        for start in self.blocks():
            stop = min(start + self.block, len(self.points))
            out[start:stop] = self.rows(start, stop) @ v
        return out

    def rmatvec(self, u: torch.Tensor) -> torch.Tensor:
        """K^T u, shape (M,)."""
        out = torch.zeros(len(self.centres), dtype=u.dtype, device=u.device)
        for start in self.blocks():
            stop = min(start + self.block, len(self.points))
            out += self.rows(start, stop).T @ u[start:stop]
        return out

    def gram(self, s: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """K^T diag(s) K v, shape (M,), with one kernel evaluation per block."""
        out = torch.zeros(len(self.centres), dtype=v.dtype, device=v.device)
        for start in self.blocks():
            stop = min(start + self.block, len(self.points))
            rows = self.rows(start, stop)
            out += rows.T @ (s[start:stop] * (rows @ v))
        return out

    def dense(self) -> torch.Tensor:
        """The whole (N, M) matrix (small problems and tests only)."""
        return torch.cat(
            [self.rows(s, min(s + self.block, len(self.points))) for s in self.blocks()]
        )


def centre_kernel(centres: torch.Tensor, sigma: float) -> torch.Tensor:
    """K_MM, the kernel between the centres."""
    return KernelMatrix(centres, centres, sigma, max(1, len(centres))).rows(0, len(centres))


def _logistic_terms(
    f: torch.Tensor, label: torch.Tensor, weight: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Weighted logistic loss per point, its first and second derivative in f."""
    # l(1, f) = softplus(-f), l(0, f) = softplus(f)
    loss = torch.nn.functional.softplus(torch.where(label > 0, -f, f))
    p = torch.sigmoid(f)
    return weight * loss, weight * (p - label), weight * p * (1.0 - p)


def kernel_objective(
    alpha: npt.ArrayLike,
    points: npt.ArrayLike,
    label: npt.ArrayLike,
    weight: npt.ArrayLike,
    centres: npt.ArrayLike,
    sigma: float,
    lam: float,
) -> float:
    """J(alpha) (module docstring), evaluated densely in float64: the reference for tests and
    general-purpose minimisers."""
    x = torch.as_tensor(np.asarray(points), dtype=torch.float64)
    c = torch.as_tensor(np.asarray(centres), dtype=torch.float64)
    a = torch.as_tensor(np.asarray(alpha), dtype=torch.float64)
    y = torch.as_tensor(np.asarray(label), dtype=torch.float64)
    w = torch.as_tensor(np.asarray(weight), dtype=torch.float64)
    f = KernelMatrix(x, c, sigma, max(1, len(x))).dense() @ a
    loss, _, _ = _logistic_terms(f, y, w)
    return float(loss.sum() / len(x) + lam * a @ centre_kernel(c, sigma) @ a)


# ------------------------------------------------------------------------------------------------
# the kernel solver


@dataclass
class KernelSolution:
    """One kernel fit: the statistic and how it was reached."""

    t: float
    alpha: npt.NDArray[np.float64]
    """(M,) coefficients of the centres."""
    objective: float
    """J(alpha) at the solution."""
    newton_steps: int
    cg_iterations: list[int] = field(default_factory=list)
    """Conjugate-gradient iterations of each Newton step."""
    rank: int = 0
    """Directions of K_MM kept (of M)."""
    cached_fraction: float = 0.0
    """The fraction of the kernel rows that were cached between passes."""
    seconds: float = 0.0
    f_data: npt.NDArray[np.float64] | None = None
    f_reference: npt.NDArray[np.float64] | None = None


def _conjugate_gradient(
    apply: Callable[[torch.Tensor], torch.Tensor],
    rhs: torch.Tensor,
    precondition: torch.Tensor,
    tol: float,
    max_iter: int,
) -> tuple[torch.Tensor, int]:
    """Solve A x = rhs for a symmetric positive definite A (``apply``) with the diagonal
    preconditioner ``precondition`` (multiplied in), to a relative residual ``tol``."""
    x = torch.zeros_like(rhs)
    r = rhs.clone()
    z = precondition * r
    p = z.clone()
    rz = r @ z
    target = tol * float(torch.linalg.vector_norm(rhs))
    iterations = 0
    while iterations < max_iter and float(torch.linalg.vector_norm(r)) > target:
        ap = apply(p)
        step = rz / (p @ ap)
        x += step * p
        r -= step * ap
        z = precondition * r
        rz_next = r @ z
        p = z + (rz_next / rz) * p
        rz = rz_next
        iterations += 1
    return x, iterations


def kernel_statistic(
    reference: npt.ArrayLike,
    data: npt.ArrayLike,
    weight: float,
    *,
    centres: int,
    sigma: float,
    lam: float,
    seed: int,
    newton_steps: NewtonSteps = 1,
    cg_tol: float = 1e-8,
    cg_max_iter: int = 500,
    block: int = 8192,
    cache_bytes: int = 0,
    dtype: torch.dtype = torch.float64,
    device: str | torch.device = "cpu",
    keep_f: bool = False,
) -> KernelSolution:
    """The kernel NPLM statistic of one toy (module docstring).

    Args:
        reference: (N_R, D) reference events, standardised.
        data: (N_D, D) data events, standardised the same way.
        weight: w, the weight of a reference event (N_expected / N_R).
        centres: M, Nystrom centres drawn without replacement (``seed``) from the pooled
            reference and data (all of them when there are fewer points).
        sigma: the Gaussian kernel width.
        lam: the penalty lam alpha^T K_MM alpha.
        newton_steps: full Newton steps from alpha = 0, or 'converge'.
        cg_tol, cg_max_iter: the conjugate-gradient stopping rule of each Newton step.
        block: points per kernel block (memory ~ block x M numbers).
        cache_bytes: kernel blocks kept for reuse up to this many bytes (``KernelMatrix``);
            0 recomputes every block on every pass.
        keep_f: also return f on the data and the reference.

    Raises:
        NPLMInputError: bad samples or settings.
    """
    start = time.perf_counter()
    ref_np = _check_sample(reference, "reference sample")
    dat_np = _check_sample(data, "data sample", ref_np.shape[1])
    _check_settings(weight, centres, sigma, lam, newton_steps, cg_tol, cg_max_iter)
    ref = torch.tensor(ref_np, dtype=dtype, device=device)
    dat = torch.tensor(dat_np, dtype=dtype, device=device)
    n_data, n_ref = len(dat), len(ref)
    points = torch.cat([dat, ref])
    n = len(points)
    label = torch.cat(
        [
            torch.ones(n_data, dtype=dtype, device=device),
            torch.zeros(n_ref, dtype=dtype, device=device),
        ]
    )
    point_weight = torch.cat(
        [
            torch.ones(n_data, dtype=dtype, device=device),
            torch.full((n_ref,), weight, dtype=dtype, device=device),
        ]
    )
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(n, size=min(centres, n), replace=False))
    centre_points = points[torch.as_tensor(chosen, device=device)]
    kernel = KernelMatrix(points, centre_points, sigma, block, cache_bytes)

    # alpha = T beta with T = U_r Lambda_r^(-1/2): the penalty becomes lam |beta|^2. The
    # eigendecomposition is always float64 (in float32 its rounding would drop most of the
    # basis), then cast to the working precision.
    centres64 = centre_points.to(torch.float64)
    eigenvalues, vectors = torch.linalg.eigh(centre_kernel(centres64, sigma))
    floor = EIGEN_FLOOR * len(eigenvalues) * torch.finfo(torch.float64).eps
    keep = eigenvalues > floor * float(eigenvalues[-1])
    eigenvalues, vectors = eigenvalues[keep], vectors[:, keep]
    transform = (vectors / torch.sqrt(eigenvalues)).to(dtype)
    eigenvalues = eigenvalues.to(dtype)
    m = len(centre_points)

    beta = torch.zeros(len(eigenvalues), dtype=dtype, device=device)
    f = torch.zeros(n, dtype=dtype, device=device)
    loss, grad_f, curvature = _logistic_terms(f, label, point_weight)
    objective = float(loss.sum()) / n
    max_steps = CONVERGE_MAX_STEPS if newton_steps == "converge" else int(newton_steps)
    iterations: list[int] = []
    for newton in range(max_steps):
        gradient = transform.T @ kernel.rmatvec(grad_f) / n + 2.0 * lam * beta
        mean_curvature = float(curvature.mean())
        precondition = 1.0 / (mean_curvature * eigenvalues / m + 2.0 * lam)

        def hessian(v: torch.Tensor, s: torch.Tensor = curvature) -> torch.Tensor:
            product: torch.Tensor = transform.T @ kernel.gram(s, transform @ v)
            return product / n + 2.0 * lam * v

        # 'converge' solves each later step 100 times more precisely (inexact Newton with a
        # shrinking forcing term), down to CONVERGE_CG_TOL.
        tol = cg_tol if newton_steps != "converge" else max(CONVERGE_CG_TOL, cg_tol * 0.01**newton)
        step, its = _conjugate_gradient(hessian, -gradient, precondition, tol, cg_max_iter)
        iterations.append(its)
        decrement = float(-(gradient @ step))
        direction = kernel.matvec(transform @ step)
        if its >= cg_max_iter:
            log.warning(
                "NPLM: the conjugate gradient of Newton step %d stopped at cg_max_iter = %d "
                "before reaching cg_tol = %g",
                newton + 1,
                cg_max_iter,
                tol,
            )
        scale = 1.0
        descended = True
        while True:
            trial_beta = beta + scale * step
            trial_f = f + scale * direction
            loss, grad_trial, curvature_trial = _logistic_terms(trial_f, label, point_weight)
            trial = float(loss.sum()) / n + lam * float(trial_beta @ trial_beta)
            # The paper's single step is taken in full; 'converge' halves a step that does not
            # descend, at most 30 times, and stops where no descent is left.
            if newton_steps != "converge" or trial <= objective:
                break
            if scale < 1e-9:
                descended = False
                break
            scale *= 0.5
        if not descended:
            break
        beta, f, objective = trial_beta, trial_f, trial
        grad_f, curvature = grad_trial, curvature_trial
        if newton_steps == "converge" and decrement * scale < 1e-13 * max(1.0, abs(objective)):
            break
    else:
        if newton_steps == "converge":
            log.warning("NPLM: 'converge' stopped at %d Newton steps", CONVERGE_MAX_STEPS)
    alpha = (transform @ beta).cpu().numpy()
    f_data, f_ref = f[:n_data], f[n_data:]
    return KernelSolution(
        t=test_statistic(f_data, f_ref, weight),
        alpha=alpha,
        objective=objective,
        newton_steps=len(iterations),
        cg_iterations=iterations,
        rank=int(keep.sum()),
        cached_fraction=kernel.cached_fraction,
        seconds=time.perf_counter() - start,
        f_data=f_data.cpu().numpy() if keep_f else None,
        f_reference=f_ref.cpu().numpy() if keep_f else None,
    )


def _check_settings(
    weight: float,
    centres: int,
    sigma: float,
    lam: float,
    newton_steps: NewtonSteps,
    cg_tol: float,
    cg_max_iter: int,
) -> None:
    if not (math.isfinite(weight) and weight > 0):
        raise NPLMInputError(f"the reference weight must be a positive number, got {weight}")
    if centres < 1:
        raise NPLMInputError(f"at least one kernel centre is needed, got {centres}")
    if not (math.isfinite(sigma) and sigma > 0):
        raise NPLMInputError(f"the kernel width must be a positive number, got {sigma}")
    if not (math.isfinite(lam) and lam > 0):
        raise NPLMInputError(f"the penalty lam must be a positive number, got {lam}")
    if newton_steps != "converge" and not (isinstance(newton_steps, int) and newton_steps >= 1):
        raise NPLMInputError(
            f"newton_steps must be a positive integer or 'converge', got {newton_steps!r}"
        )
    if not (0 < cg_tol < 1) or cg_max_iter < 1:
        raise NPLMInputError(
            f"the conjugate gradient needs 0 < cg_tol < 1 and cg_max_iter >= 1, got {cg_tol}, "
            f"{cg_max_iter}"
        )


# ------------------------------------------------------------------------------------------------
# the neural-network solver


@dataclass
class NNSolution:
    """One neural-network fit."""

    t: float
    loss: float
    """The minimum of L reached."""
    parameters: int
    """Trainable parameters (the nominal degrees of freedom)."""
    epochs: int
    seconds: float = 0.0


def nn_statistic(
    reference: npt.ArrayLike,
    data: npt.ArrayLike,
    weight: float,
    *,
    hidden: tuple[int, ...] | list[int],
    epochs: int,
    lr: float,
    clip: float,
    seed: int,
    dtype: torch.dtype = torch.float64,
    device: str | torch.device = "cpu",
) -> NNSolution:
    """The original NPLM statistic of one toy: t = -2 min_f L(f) over a small network
    (module docstring), trained full batch for ``epochs`` Adam steps at ``lr`` with every
    weight clipped to [-clip, clip] after each step."""
    start = time.perf_counter()
    ref_np = _check_sample(reference, "reference sample")
    dat_np = _check_sample(data, "data sample", ref_np.shape[1])
    if not (math.isfinite(weight) and weight > 0):
        raise NPLMInputError(f"the reference weight must be a positive number, got {weight}")
    if epochs < 1 or not lr > 0 or not clip > 0 or any(h < 1 for h in hidden):
        raise NPLMInputError(
            f"the network needs epochs >= 1, lr > 0, clip > 0 and positive layer sizes, got "
            f"{epochs}, {lr}, {clip}, {list(hidden)}"
        )
    generator = torch.Generator().manual_seed(seed)
    sizes = [ref_np.shape[1], *hidden, 1]
    layers: list[torch.nn.Module] = []
    for i, (fan_in, fan_out) in enumerate(itertools.pairwise(sizes)):
        linear = torch.nn.Linear(fan_in, fan_out, dtype=dtype)
        bound = 1.0 / math.sqrt(fan_in)
        with torch.no_grad():
            linear.weight.uniform_(-bound, bound, generator=generator)
            linear.bias.uniform_(-bound, bound, generator=generator)
        layers.append(linear)
        if i < len(sizes) - 2:
            layers.append(torch.nn.Sigmoid())
    network = torch.nn.Sequential(*layers).to(device)
    ref = torch.tensor(ref_np, dtype=dtype, device=device)
    dat = torch.tensor(dat_np, dtype=dtype, device=device)
    optimiser = torch.optim.Adam(network.parameters(), lr=lr)
    # The smallest loss seen, kept on the device (no synchronisation per epoch).
    lowest = torch.tensor(math.inf, dtype=dtype, device=device)
    for _ in range(epochs):
        optimiser.zero_grad(set_to_none=True)
        loss = weight * torch.expm1(network(ref)).sum() - network(dat).sum()
        loss.backward()
        lowest = torch.minimum(lowest, loss.detach())
        optimiser.step()
        with torch.no_grad():
            for parameter in network.parameters():
                parameter.clamp_(-clip, clip)
    with torch.no_grad():
        final = weight * torch.expm1(network(ref)).sum() - network(dat).sum()
    best = float(torch.minimum(lowest, final))
    parameters = sum(p.numel() for p in network.parameters())
    return NNSolution(
        t=-2.0 * best,
        loss=best,
        parameters=parameters,
        epochs=epochs,
        seconds=time.perf_counter() - start,
    )
