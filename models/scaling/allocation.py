r"""Compute-optimal allocation of a sampling budget across difficulty bins (Snell et al. 2024,
"Scaling LLM Test-Time Compute Optimally can be More Effective than Scaling Model Parameters").

Problems are binned by difficulty; method :math:`m` at per-problem budget :math:`N` reaches
expected accuracy :math:`A_{m,b}(N)` in bin :math:`b` (with :math:`n_b` problems). The
compute-optimal strategy picks :math:`(m_b, N_b)` per bin to maximise
:math:`\sum_b n_b A_{m_b,b}(N_b)` subject to :math:`\sum_b n_b N_b \le P\,\bar N` (a total budget
of :math:`\bar N` samples per problem on average). :func:`allocate` solves this exactly as a
multiple-choice knapsack by dynamic programming over the integer total cost, and reports the
gain over the uniform baseline (one method, the same :math:`N` everywhere, the largest that
fits).

:func:`allocate_from_posterior` takes per-problem posteriors of difficulty from the
Beta–Binomial model: given :math:`(\alpha, \beta)`, problem :math:`i`'s rate is
:math:`p_i \mid c_i \sim \mathrm{Beta}(\alpha + c_i, \beta + n_i - c_i)`, so repeated sampling
with a perfect checker solves it within :math:`N` samples with probability
:math:`1 - B(\alpha+c_i, \beta+n_i-c_i+N)/B(\alpha+c_i, \beta+n_i-c_i)`. Bins are quantiles of
the posterior mean rate; the allocation maximises the posterior expected accuracy, and its gain
over uniform comes with a credible interval.
"""

from __future__ import annotations

from typing import NamedTuple, Optional, Sequence

import numpy as np

from models.scaling.coverage import BetaBinomialFit, beta_coverage

__all__ = ["Allocation", "allocate", "allocate_from_posterior", "difficulty_bins"]


class Allocation(NamedTuple):
    """Per bin: ``method [B]`` (index), ``budget [B]``; ``accuracy`` of the allocation,
    ``uniform_accuracy`` and ``uniform_budget`` of the baseline, ``gain`` (difference),
    ``spent`` (average per-problem budget used). Posterior versions add ``*_interval``."""

    method: np.ndarray
    budget: np.ndarray
    accuracy: float
    uniform_budget: float
    uniform_accuracy: float
    gain: float
    spent: float
    gain_interval: Optional[tuple] = None
    accuracy_interval: Optional[tuple] = None

    def to_dict(self, method_names: Optional[Sequence[str]] = None, bin_labels=None) -> dict:
        names = (list(method_names) if method_names is not None
                 else [str(int(m)) for m in self.method])
        d = {
            "bins": [
                {"bin": (bin_labels[b] if bin_labels is not None else b),
                 "method": names[int(m)] if method_names is not None else int(m),
                 "budget": float(n)}
                for b, (m, n) in enumerate(zip(self.method, self.budget))
            ],
            "accuracy": self.accuracy,
            "uniform_budget": self.uniform_budget,
            "uniform_accuracy": self.uniform_accuracy,
            "gain": self.gain,
            "spent_per_problem": self.spent,
        }
        if self.gain_interval is not None:
            d["gain_ci"] = list(self.gain_interval)
        if self.accuracy_interval is not None:
            d["accuracy_ci"] = list(self.accuracy_interval)
        return d


def allocate(acc, counts, budgets, total_budget: float, *, baseline_method: int = 0) -> Allocation:
    """Exact compute-optimal allocation (multiple-choice knapsack by dynamic programming).

    Args:
        acc: ``[M, B, G]`` expected accuracy of method m in bin b at budget ``budgets[g]``.
        counts: ``[B]`` problems per bin (integers >= 0).
        budgets: ``[G]`` integer per-problem budgets (samples; 0 allowed: skip the bin).
        total_budget: average budget per problem (the total is ``total_budget * sum(counts)``).
        baseline_method: method of the uniform baseline.

    Returns:
        :class:`Allocation`; accuracies are averages over problems.
    """
    acc = np.asarray(acc, np.float64)
    counts = np.asarray(counts, np.int64)
    budgets = np.asarray(budgets)
    if acc.ndim != 3 or acc.shape[1:] != (counts.size, budgets.size):
        raise ValueError(f"allocate: acc must be [methods, bins={counts.size}, "
                         f"budgets={budgets.size}], got {acc.shape}")
    if np.any(budgets != np.round(budgets)) or np.any(budgets < 0) or np.any(counts < 0):
        raise ValueError("allocate: budgets and counts must be integers >= 0")
    budgets = budgets.astype(np.int64)
    P = int(counts.sum())
    cap = int(np.floor(total_budget * P + 1e-9))
    if P == 0 or cap < counts @ np.full(counts.size, budgets.min()):
        raise ValueError(f"allocate: total_budget={total_budget} cannot give every bin the "
                         f"smallest budget {budgets.min()}")
    M, B, G = acc.shape
    dp = np.zeros(cap + 1)
    choices = np.zeros((B, cap + 1), np.int64)
    for b in range(B):
        new = np.full(cap + 1, -np.inf)
        arg = np.zeros(cap + 1, np.int64)
        for o in range(M * G):
            m, g = divmod(o, G)
            cost = int(counts[b] * budgets[g])
            if cost > cap:
                continue
            cand = np.full(cap + 1, -np.inf)
            cand[cost:] = dp[: cap + 1 - cost] + counts[b] * acc[m, b, g]
            better = cand > new + 1e-12
            new = np.where(better, cand, new)
            arg = np.where(better, o, arg)
        dp, choices[b] = new, arg
    c = int(np.argmax(dp))  # the smallest cost reaching the best value
    best = dp[c]
    meth = np.zeros(B, np.int64)
    bud = np.zeros(B, np.int64)
    for b in range(B - 1, -1, -1):
        m, g = divmod(int(choices[b, c]), G)
        meth[b], bud[b] = m, budgets[g]
        c -= int(counts[b] * budgets[g])
    fits = np.nonzero(budgets * P <= cap)[0]
    g0 = fits[np.argmax(budgets[fits])]
    uni = float(counts @ acc[baseline_method, :, g0]) / P
    return Allocation(meth, bud, float(best) / P, float(budgets[g0]), uni, float(best) / P - uni,
                      float(counts @ bud) / P)


def difficulty_bins(score, num_bins: int = 5) -> np.ndarray:
    """Bin index ``[P]`` by quantiles of ``score`` (0 = lowest score = hardest when the score is
    a success rate)."""
    score = np.asarray(score, np.float64)
    if num_bins < 1:
        raise ValueError("difficulty_bins: num_bins must be >= 1")
    order = np.argsort(score, kind="stable")
    bins = np.empty(score.size, np.int64)
    bins[order] = np.arange(score.size) * num_bins // max(score.size, 1)
    return bins


def allocate_from_posterior(fit: BetaBinomialFit, budgets, total_budget: float, *,
                            num_bins: int = 5, level: float = 0.9,
                            max_draws: int = 400) -> tuple[Allocation, np.ndarray]:
    """Allocate repeated-sampling budget across difficulty quintiles of a Beta–Binomial fit.

    The accuracy of a problem at budget ``N`` is its posterior coverage after ``N`` further
    samples (a perfect checker, e.g. unit tests); the allocation maximises the posterior
    expectation, and ``gain_interval`` / ``accuracy_interval`` evaluate it per draw.

    Returns:
        ``(allocation, bins)`` with ``bins [P]`` the bin of each problem (0 = hardest).
    """
    budgets = np.asarray(budgets, np.int64)
    n, c = fit.n.astype(np.float64), fit.correct.astype(np.float64)
    S = fit.alpha.size
    sel = np.linspace(0, S - 1, min(S, max_draws)).astype(np.int64)
    a, b = fit.alpha[sel][:, None], fit.beta[sel][:, None]
    ap, bp = a + c, b + (n - c)  # [S, P]
    p_mean = np.mean(ap / (ap + bp), axis=0)
    bins = difficulty_bins(p_mean, num_bins)
    counts = np.bincount(bins, minlength=num_bins)
    # acc_draw[s, b, g]: mean coverage in bin b after budgets[g] samples, per draw.
    cov = np.stack([beta_coverage(N, ap, bp) for N in budgets], axis=-1)  # [S, P, G]
    if fit.zero_inflated:
        pi0 = fit.unsolvable[sel][:, None]
        from scipy.special import betaln

        bb0 = np.exp(betaln(a, b + n) - betaln(a, b))
        solv = np.where(c > 0, 1.0, (1 - pi0) * bb0 / (pi0 + (1 - pi0) * bb0))
        cov = cov * solv[..., None]
    acc_draw = np.stack([cov[:, bins == k].mean(axis=1) if counts[k] else
                         np.zeros((cov.shape[0], budgets.size)) for k in range(num_bins)], axis=1)
    alloc = allocate(acc_draw.mean(axis=0)[None], counts, budgets, total_budget)
    g_of = {int(v): i for i, v in enumerate(budgets)}
    gi = np.array([g_of[int(v)] for v in alloc.budget])
    P = counts.sum()
    acc_s = (acc_draw[:, np.arange(num_bins), gi] * counts).sum(axis=1) / P
    g0 = g_of[int(alloc.uniform_budget)]
    uni_s = (acc_draw[:, :, g0] * counts).sum(axis=1) / P
    q = [0.5 - level / 2, 0.5 + level / 2]
    alloc = alloc._replace(
        gain_interval=tuple(float(x) for x in np.quantile(acc_s - uni_s, q)),
        accuracy_interval=tuple(float(x) for x in np.quantile(acc_s, q)))
    return alloc, bins
