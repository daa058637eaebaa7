"""The statistics behind drift verdicts, in numpy and the standard library only (the serving image has no scipy).

Every test here compares a live sample of `n` rows with the training reference of `m` rows, over the bins the reference
profile fixed at training, and the same formulas run in Prometheus over the fleet's counters (drift.rules.yml), so a
replica's verdict and the fleet's are the same test on different samples.

- Ordered continuous values: Kolmogorov-Smirnov, the largest gap between the live and reference CDFs at the profile's
  quantile edges. Evaluated at a subset of points it can only be smaller than the exact statistic, so the p-value is
  conservative. p from the Kolmogorov distribution with Stephens' finite-sample correction
  (lambda = D * (sqrt(ne) + 0.12 + 0.11 / sqrt(ne))), with ne = n*m/(n+m) so the reference's own sampling counts.
- Discrete values (counts, categories): Pearson's chi-square homogeneity test of the 2 x k table (reference counts,
  live counts) over exact-value bins; valid once every bin expects `MIN_EXPECTED` live rows.
- The approval rate: a two-proportion z test against the training predictions' rate.
- Estimated accuracy (CBPE): the mean confidence max(p, 1 - p) of calibrated scores; one-sided z test for a fall.

Critical values are computed once per (alpha, degrees of freedom); a verdict is statistic >= critical value.
"""

import math
from collections.abc import Callable
from functools import cache

import numpy as np
from numpy.typing import NDArray

# A chi-square bin must expect this many live rows before the test's tail is trusted at the small alphas a
# Bonferroni split of a 90-day budget gives (about 1e-5): the classic 5 holds at alpha 0.05 only.
MIN_EXPECTED = 20
# The approval-rate and estimated-accuracy z tests need this many expected rows of the rarer class.
MIN_EXPECTED_CLASS = 20


def kolmogorov_sf(lam: float) -> float:
    """P(K > lam) for the Kolmogorov distribution: 2 * sum_k (-1)^(k-1) exp(-2 k^2 lam^2)."""
    if lam <= 0.2:
        return 1.0
    total = 0.0
    for k in range(1, 101):
        term = math.exp(-2.0 * k * k * lam * lam)
        total += term if k % 2 else -term
        if term < 1e-16:
            break
    return min(1.0, max(0.0, 2.0 * total))


def effective_rows(n: float, m: float) -> float:
    return n * m / (n + m) if n > 0 and m > 0 else 0.0


def ks_lambda(d: float, n: float, m: float) -> float:
    """Stephens' scaled statistic; compare with `ks_critical(alpha)`."""
    ne = effective_rows(n, m)
    if ne <= 0:
        return 0.0
    root = math.sqrt(ne)
    return d * (root + 0.12 + 0.11 / root)


@cache
def ks_critical(alpha: float) -> float:
    """The lambda whose Kolmogorov tail is `alpha`."""
    return _invert(kolmogorov_sf, alpha, 0.2, 10.0)


def _regularized_gamma_q(a: float, x: float) -> float:
    """Q(a, x) = Gamma(a, x) / Gamma(a): series below a + 1, continued fraction above (Numerical Recipes 6.2)."""
    if x <= 0:
        return 1.0
    log_prefix = -x + a * math.log(x) - math.lgamma(a)
    if x < a + 1:
        term = total = 1.0 / a
        denominator = a
        for _ in range(10_000):
            denominator += 1
            term *= x / denominator
            total += term
            if abs(term) < abs(total) * 1e-15:
                break
        return max(0.0, 1.0 - total * math.exp(log_prefix))
    tiny = 1e-300
    b = x + 1 - a
    c = 1 / tiny
    d = 1 / b
    h = d
    for i in range(1, 10_000):
        an = -i * (i - a)
        b += 2
        d = an * d + b
        d = tiny if abs(d) < tiny else d
        c = b + an / c
        c = tiny if abs(c) < tiny else c
        d = 1 / d
        delta = d * c
        h *= delta
        if abs(delta - 1) < 1e-15:
            break
    return min(1.0, math.exp(log_prefix) * h)


def chi2_sf(statistic: float, df: int) -> float:
    return _regularized_gamma_q(df / 2.0, statistic / 2.0)


@cache
def chi2_critical(alpha: float, df: int) -> float:
    return _invert(lambda x: chi2_sf(x, df), alpha, 0.0, 1_000.0 + 100.0 * df)


def normal_sf(z: float) -> float:
    return 0.5 * math.erfc(z / math.sqrt(2.0))


@cache
def normal_critical(alpha: float) -> float:
    """The z whose upper tail is `alpha` (one-sided)."""
    return _invert(normal_sf, alpha, 0.0, 40.0)


def _invert(tail: Callable[[float], float], alpha: float, low: float, high: float) -> float:
    """The x where the decreasing `tail(x)` equals alpha, by bisection (to 1e-10)."""
    for _ in range(200):
        middle = (low + high) / 2
        if tail(middle) > alpha:
            low = middle
        else:
            high = middle
        if high - low < 1e-10:
            break
    return (low + high) / 2


def bin_counts(values: NDArray[np.float64], edges: NDArray[np.float64]) -> NDArray[np.int64]:
    """Rows per bin, bins closed on the right: (-inf, e0], (e0, e1], ..., (e_last, +inf) — Prometheus's `le`.

    The reference proportions were counted with this same function at training, so a value on an edge lands in the
    same bin on both sides (the old KS counted the reference's edge values below and the live ones above).
    """
    return np.bincount(np.searchsorted(edges, values, side="left"), minlength=len(edges) + 1).astype(np.int64)


def ks_distance(counts: NDArray[np.int64], reference_cdf: NDArray[np.float64]) -> float:
    """max |F_live - F_ref| at the edges (reference_cdf: F_ref at each edge, len(counts) - 1 of them)."""
    n = counts.sum()
    if n == 0:
        return 0.0
    live_cdf = np.cumsum(counts[:-1]) / n
    return float(np.max(np.abs(live_cdf - reference_cdf))) if len(reference_cdf) else 0.0


def chi2_homogeneity(counts: NDArray[np.int64], reference_shares: NDArray[np.float64], m: float) -> float:
    """Pearson's statistic for the 2 x k table (live counts, reference counts m * shares):
    sum m (O - n p)^2 / (n (O + m p)); bins empty on both sides add nothing."""
    n = float(counts.sum())
    if n == 0:
        return 0.0
    observed = counts.astype(np.float64)
    pooled = observed + m * reference_shares
    used = pooled > 0
    gaps = observed[used] - n * reference_shares[used]
    return float(np.sum(m * gaps * gaps / (n * pooled[used])))


def psi(expected: NDArray[np.float64], counts: NDArray[np.int64]) -> float:
    """Population stability index, an effect size, with each share smoothed by half a row (Laplace-style) rather
    than clipped to 1e-4: one empty live bin of a 10% reference bin then adds about 0.1 * ln(0.1 * 2n) instead of
    0.1 * ln(1000) = 0.7 whatever the sample size."""
    n = float(counts.sum())
    if n == 0:
        return 0.0
    k = len(counts)
    actual = (counts + 0.5) / (n + 0.5 * k)
    reference = np.clip(expected, 1e-6, None)
    reference = reference / reference.sum()
    return float(np.sum((actual - reference) * np.log(actual / reference)))
