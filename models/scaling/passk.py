r"""pass@k: the unbiased estimator per problem, and its average over problems with an interval.

For a problem with :math:`n` samples of which :math:`c` are correct, the probability that a
uniformly random subset of :math:`k \le n` of the samples contains a correct one is
(Brown et al. 2024, "Large Language Monkeys", eq. 1; Chen et al. 2021)

.. math::

    \widehat{\text{pass@}k} = 1 - \frac{\binom{n-c}{k}}{\binom{n}{k}}
    = 1 - \prod_{i=n-c+1}^{n} \Bigl(1 - \frac{k}{i}\Bigr),

an unbiased estimator of :math:`1 - (1-p)^k` for the problem's success rate :math:`p`. The
product is summed in log space (``log1p``), so it neither overflows like the binomial
coefficients nor loses the small complement :math:`\binom{n-c}{k}/\binom{n}{k}` for large
:math:`n`. The benchmark's pass@k is the mean over problems; its interval describes the
uncertainty over problems (a Student-t interval on the mean, or a bootstrap over problems).
"""

from __future__ import annotations

from typing import NamedTuple, Optional, Sequence

import numpy as np
from scipy import stats

__all__ = ["pass_at_k", "log_fail_at_k", "PassAtK", "pass_at_k_curve", "default_k_grid"]


def _as_int_array(name, x):
    a = np.asarray(x)
    if a.dtype.kind == "b":
        a = a.astype(np.int64)
    if a.dtype.kind == "f":
        if not np.all(np.isfinite(a)) or not np.all(a == np.round(a)):
            raise ValueError(f"{name} must hold whole numbers, got {x!r}")
        a = a.astype(np.int64)
    if a.dtype.kind not in "iu":
        raise ValueError(f"{name} must be integers, got dtype {a.dtype}")
    return a.astype(np.int64)


def log_fail_at_k(n, c, k) -> np.ndarray:
    r""":math:`\log \binom{n-c}{k} / \binom{n}{k}` (``-inf`` when :math:`n - c < k`), broadcast.

    Computed in float64 as the shorter of :math:`\sum_{i=n-c+1}^{n} \log(1 - k/i)` and
    :math:`\sum_{j=0}^{k-1} \log(1 - c/(n-j))`, each term a ``log1p``.
    """
    n = _as_int_array("n", n)
    c = _as_int_array("c", c)
    k = _as_int_array("k", k)
    n, c, k = np.broadcast_arrays(n, c, k)
    if np.any(n < 1):
        raise ValueError("pass@k: every problem needs n >= 1 samples")
    if np.any((c < 0) | (c > n)):
        raise ValueError("pass@k: the number correct c must satisfy 0 <= c <= n")
    if np.any((k < 1) | (k > n)):
        raise ValueError(f"pass@k: k must satisfy 1 <= k <= n (got k in [{k.min()}, {k.max()}], "
                         f"n in [{n.min()}, {n.max()}]); use the Beta-Binomial coverage model "
                         "to extrapolate beyond n")
    out = np.full(n.shape, -np.inf)
    ok = n - c >= k
    nn, cc, kk = n[ok].astype(np.float64), c[ok], k[ok]
    # Sum the shorter of the two product forms, each term a log1p of a number in (-1, 0]:
    #   c <= k: sum_{j<c} log1p(-k / (n-c+1+j));   c > k: sum_{j<k} log1p(-c / (n-j)).
    m = np.minimum(cc, kk)
    vals = np.zeros(nn.shape)
    pos = m > 0
    if np.any(pos):
        mm = m[pos]
        starts = np.concatenate([[0], np.cumsum(mm)[:-1]])
        j = np.arange(mm.sum()) - np.repeat(starts, mm)
        nr, cr, kr = (np.repeat(a[pos], mm) for a in (nn, cc, kk))
        terms = np.where(
            cr <= kr, np.log1p(-kr / (nr - cr + 1 + j)), np.log1p(-cr / (nr - j))
        )
        vals[pos] = np.add.reduceat(terms, starts)
    out[ok] = vals
    return out


def pass_at_k(n, c, k) -> np.ndarray:
    r"""The unbiased pass@k estimator :math:`1 - \binom{n-c}{k}/\binom{n}{k}` (broadcast).

    Args:
        n: samples per problem (>= 1).
        c: correct samples per problem (0 <= c <= n).
        k: subset size, 1 <= k <= n.

    Returns:
        float64 array of the broadcast shape; exactly 1 when :math:`n - c < k`.
    """
    return 0.0 - np.expm1(log_fail_at_k(n, c, k))


def default_k_grid(n_min: int, num: int = 24) -> np.ndarray:
    """All k up to 16, then about ``num`` log-spaced integers up to ``n_min`` (sorted, unique)."""
    if n_min < 1:
        raise ValueError("default_k_grid: n_min must be >= 1")
    small = np.arange(1, min(n_min, 16) + 1)
    big = np.unique(np.round(np.geomspace(1, n_min, num)).astype(np.int64))
    return np.unique(np.concatenate([small, big, [n_min]]))


class PassAtK(NamedTuple):
    """pass@k averaged over problems.

    Attributes:
        k: the subset sizes ``[K]``.
        estimate: mean over problems of the unbiased estimator ``[K]``.
        ci_low, ci_high: the interval over problems ``[K]`` (clipped to [0, 1]).
        per_problem: ``[P, K]`` per-problem estimates.
        level: the interval's probability.
        method: ``"t"`` or ``"bootstrap"``.
    """

    k: np.ndarray
    estimate: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    per_problem: np.ndarray
    level: float
    method: str

    def to_dict(self) -> dict:
        return {
            "k": self.k.tolist(),
            "estimate": self.estimate.tolist(),
            "ci_low": self.ci_low.tolist(),
            "ci_high": self.ci_high.tolist(),
            "level": self.level,
            "interval": self.method,
        }


def pass_at_k_curve(
    n,
    c,
    k: Optional[Sequence[int]] = None,
    *,
    level: float = 0.95,
    interval: str = "t",
    num_bootstrap: int = 2000,
    seed: int = 0,
) -> PassAtK:
    r"""pass@k averaged over problems, with an interval over problems.

    Args:
        n, c: ``[P]`` samples and correct samples per problem.
        k: subset sizes (default :func:`default_k_grid` up to ``min(n)``); each ``<= min(n)``.
        level: probability of the interval.
        interval: ``"t"``: mean :math:`\pm t_{P-1}\,\mathrm{sd}/\sqrt{P}` over problems (for
            problems drawn from a population); ``"bootstrap"``: percentile bootstrap over
            problems (``num_bootstrap`` resamples, ``seed``).

    Returns:
        :class:`PassAtK`.
    """
    n = _as_int_array("n", n).ravel()
    c = _as_int_array("c", c).ravel()
    if n.shape != c.shape or n.size == 0:
        raise ValueError("pass_at_k_curve: n and c must be non-empty and of equal length")
    if not 0 < level < 1:
        raise ValueError(f"pass_at_k_curve: level must be in (0, 1), got {level}")
    if interval not in ("t", "bootstrap"):
        raise ValueError(f"pass_at_k_curve: interval must be 't' or 'bootstrap', got {interval!r}")
    k = default_k_grid(int(n.min())) if k is None else _as_int_array("k", k).ravel()
    per = pass_at_k(n[:, None], c[:, None], k[None, :])
    P = n.size
    est = per.mean(axis=0)
    if interval == "t":
        if P > 1:
            se = per.std(axis=0, ddof=1) / np.sqrt(P)
            half = stats.t.ppf(0.5 + level / 2, P - 1) * se
        else:
            half = np.full_like(est, np.inf)
        lo, hi = est - half, est + half
    else:
        rng = np.random.default_rng(seed)
        idx = rng.integers(0, P, size=(num_bootstrap, P))
        boot = per[idx].mean(axis=1)
        lo, hi = np.quantile(boot, [0.5 - level / 2, 0.5 + level / 2], axis=0)
    return PassAtK(k, est, np.clip(lo, 0.0, 1.0), np.clip(hi, 0.0, 1.0), per, level, interval)
