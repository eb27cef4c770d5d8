"""The local significance of a counting excess over an expected background."""

from __future__ import annotations

import math

__all__ = ["local_significance"]


def local_significance(observed: float, expected: float, uncertainty: float = 0.0) -> float:
    """Signed asymptotic significance of ``observed`` events N over ``expected`` B.

    With a known background (``uncertainty`` 0) the Poisson likelihood ratio gives

        Z = sign(N - B) sqrt(2 (N ln(N / B) - (N - B))),  -sqrt(2 B) for N = 0.

    With an uncertainty sigma on B (e.g. from the sideband fit), B is profiled as well
    (G. Cowan, "Discovery sensitivity for a counting experiment with background uncertainty"):

        Z^2 = 2 (N ln(N (B + s2) / (B^2 + N s2)) - (B^2 / s2) ln(1 + s2 (N - B) / (B (B + s2))))

    with s2 = sigma^2, which tends to the first form as sigma -> 0. NaN when B is not a positive
    finite number or sigma is negative or not finite.
    """
    n, b, sigma = float(observed), float(expected), float(uncertainty)
    if not (math.isfinite(b) and b > 0 and math.isfinite(n) and n >= 0):
        return math.nan
    if not (math.isfinite(sigma) and sigma >= 0):
        return math.nan
    s2 = sigma * sigma
    if s2 <= 1e-12 * b:
        q = 2.0 * ((n * math.log(n / b) if n > 0 else 0.0) - (n - b))
    else:
        first = n * math.log(n * (b + s2) / (b * b + n * s2)) if n > 0 else 0.0
        second = (b * b / s2) * math.log1p(s2 * (n - b) / (b * (b + s2)))
        q = 2.0 * (first - second)
    return math.copysign(math.sqrt(max(q, 0.0)), n - b)
