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

:func:`allocate_from_outcomes` takes measured per-problem outcomes instead (``ppl scale``: whether
method :math:`m` at budget :math:`N` solved problem :math:`i`) and a difficulty score per problem
(the fraction of its rollout pool that is right). :math:`A_{m,b}(N)` is the fraction of bin
:math:`b` solved; the gain over uniform comes with a bootstrap interval over problems (resampled
within bins, the allocation re-optimised each time), but choosing and scoring on the same
problems flatters it, so the headline is **cross-fitted**: the allocation chosen on one half of
each bin and scored on the other, with a bootstrap interval of that held-out gain.
"""

from __future__ import annotations

from typing import NamedTuple, Optional, Sequence

import numpy as np

from ppl_models.scaling.coverage import BetaBinomialFit, beta_coverage

__all__ = ["Allocation", "BinnedAccuracy", "allocate", "allocate_from_outcomes",
           "allocate_from_posterior", "difficulty_bins"]


class Allocation(NamedTuple):
    """Per bin: ``method [B]`` (index), ``budget [B]``; ``accuracy`` of the allocation,
    ``uniform_accuracy`` and ``uniform_budget`` of the baseline, ``gain`` (difference),
    ``spent`` (average per-problem budget used). Posterior and bootstrap versions add
    ``*_interval``; :func:`allocate_from_outcomes` adds the cross-fitted ``heldout_gain`` (the
    headline: chosen on half the problems, scored on the other half) and its interval."""

    method: np.ndarray
    budget: np.ndarray
    accuracy: float
    uniform_budget: float
    uniform_accuracy: float
    gain: float
    spent: float
    gain_interval: Optional[tuple] = None
    accuracy_interval: Optional[tuple] = None
    heldout_gain: Optional[float] = None
    heldout_gain_interval: Optional[tuple] = None

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
        if self.heldout_gain is not None:
            d["heldout_gain"] = self.heldout_gain
        if self.heldout_gain_interval is not None:
            d["heldout_gain_ci"] = list(self.heldout_gain_interval)
        return d


def allocate(acc, counts, budgets, total_budget: float, *, baseline_method: int = 0) -> Allocation:
    """Exact compute-optimal allocation (multiple-choice knapsack by dynamic programming).

    Args:
        acc: ``[M, B, G]`` expected accuracy of method m in bin b at budget ``budgets[g]``;
            NaN marks an option that was not measured (never chosen).
        counts: ``[B]`` problems per bin (integers >= 0).
        budgets: ``[G]`` integer per-problem budgets (samples; 0 allowed: skip the bin).
        total_budget: average budget per problem (the total is ``total_budget * sum(counts)``).
        baseline_method: method of the uniform baseline: the largest budget that fits and
            that this method was measured at in every (non-empty) bin.

    Returns:
        :class:`Allocation`; accuracies are averages over problems. Among allocations of equal
        accuracy the cheapest is returned.
    """
    acc = np.asarray(acc, np.float64)
    counts = np.asarray(counts, np.int64)
    budgets = np.asarray(budgets)
    if acc.ndim != 3 or acc.shape[1:] != (counts.size, budgets.size):
        raise ValueError(f"allocate: acc must be [methods, bins={counts.size}, "
                         f"budgets={budgets.size}], got {acc.shape}")
    if np.any(np.isinf(acc)):
        raise ValueError("allocate: acc must be finite (NaN marks an option not measured)")
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
            if cost > cap or np.isnan(acc[m, b, g]):
                continue
            cand = np.full(cap + 1, -np.inf)
            cand[cost:] = dp[: cap + 1 - cost] + counts[b] * acc[m, b, g]
            better = cand > new + 1e-12
            new = np.where(better, cand, new)
            arg = np.where(better, o, arg)
        dp, choices[b] = new, arg
    c = int(np.argmax(dp))  # the smallest cost reaching the best value
    best = dp[c]
    if not np.isfinite(best):
        raise ValueError(f"allocate: no measured option fits total_budget={total_budget} in "
                         "every bin")
    meth = np.zeros(B, np.int64)
    bud = np.zeros(B, np.int64)
    for b in range(B - 1, -1, -1):
        m, g = divmod(int(choices[b, c]), G)
        meth[b], bud[b] = m, budgets[g]
        c -= int(counts[b] * budgets[g])
    measured = ~np.any(np.isnan(acc[baseline_method][counts > 0]), axis=0)
    fits = np.nonzero((budgets * P <= cap) & measured)[0]
    if fits.size == 0:
        raise ValueError(f"allocate: the baseline method {baseline_method} was not measured at "
                         f"any budget that fits total_budget={total_budget}")
    g0 = fits[np.argmax(budgets[fits])]
    uni = float(counts @ np.nan_to_num(acc[baseline_method, :, g0])) / P
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


class BinnedAccuracy(NamedTuple):
    """Measured accuracy per difficulty bin: ``bins [P]`` (0 = hardest), ``counts [B]``,
    ``budgets [G]`` (0 first when skipping a bin is allowed), ``accuracy [M, B, G]`` (NaN: not
    measured), ``score_range [B, 2]`` (min and max difficulty score in each bin)."""

    bins: np.ndarray
    counts: np.ndarray
    budgets: np.ndarray
    accuracy: np.ndarray
    score_range: np.ndarray


def _bin_means(outcomes, bins, num_bins):
    """``[M, G, P]`` outcomes -> ``[M, B, G]`` means per bin (0 in empty bins)."""
    M, G, _ = outcomes.shape
    out = np.zeros((M, num_bins, G))
    for b in range(num_bins):
        sel = bins == b
        if sel.any():
            out[:, b] = outcomes[:, :, sel].mean(axis=-1)
    return out


def allocate_from_outcomes(outcomes, budgets, difficulty, total_budget: float, *,
                           num_bins: int = 5, baseline_method: int = 0, allow_skip: bool = True,
                           level: float = 0.9, num_bootstrap: int = 200, num_splits: int = 10,
                           seed: int = 0) -> tuple[Allocation, BinnedAccuracy]:
    r"""Compute-optimal allocation from measured per-problem outcomes (Snell et al. 2024).

    Args:
        outcomes: ``[M, G, P]`` 1 where method m at ``budgets[g]`` solved problem p, else 0;
            NaN where the method was not run at that budget.
        budgets: ``[G]`` positive integer budgets.
        difficulty: ``[P]`` a score, higher = easier (e.g. the pass@1 of the problem's pool);
            bins are its quantiles, bin 0 the hardest.
        total_budget: average budget per problem.
        baseline_method: the method of the uniform baseline (e.g. best-of-N).
        allow_skip: add budget 0 (accuracy 0) so a bin nothing solves gets no compute.
        level: probability of the bootstrap intervals.
        num_bootstrap: problem resamples (within bins) for ``gain_interval`` /
            ``accuracy_interval``, and cross-fitted replicates for ``heldout_gain_interval``
            (0: none).
        num_splits: random half splits of every bin for ``heldout_gain``, the mean gain of
            the allocation chosen on one half and scored on the other (each split used both
            ways round; 0: none).

    The in-sample ``gain`` chooses and scores on the same problems, and its bootstrap
    re-optimises on each resample, so both are optimistic. The headline is cross-fitted:
    ``heldout_gain`` averages ``num_splits`` half splits; ``heldout_gain_interval`` is the
    percentile interval of replicates that each draw a new split, resample each half with
    replacement within bins, choose on one and score on the other (both ways round), so the
    problems a choice is scored on are never those it was chosen on.
        seed: seed of the resampling.

    Returns:
        ``(allocation, table)``: the :class:`Allocation` on all problems and the
        :class:`BinnedAccuracy` it was computed from.
    """
    outcomes = np.asarray(outcomes, np.float64)
    budgets = np.asarray(budgets)
    difficulty = np.asarray(difficulty, np.float64)
    if outcomes.ndim != 3 or outcomes.shape[1:] != (budgets.size, difficulty.size):
        raise ValueError(f"allocate_from_outcomes: outcomes must be [methods, budgets="
                         f"{budgets.size}, problems={difficulty.size}], got {outcomes.shape}")
    ok = np.isnan(outcomes) | (outcomes == 0) | (outcomes == 1)
    if not ok.all():
        raise ValueError("allocate_from_outcomes: outcomes must be 0, 1 or NaN (not measured)")
    if np.any(budgets < 1) or np.any(budgets != np.round(budgets)):
        raise ValueError("allocate_from_outcomes: budgets must be positive integers")
    bins = difficulty_bins(difficulty, num_bins)
    counts = np.bincount(bins, minlength=num_bins)
    grid = (np.concatenate([[0], budgets]) if allow_skip else budgets).astype(np.int64)

    def table(outc, bn):
        acc = _bin_means(outc, bn, num_bins)
        if allow_skip:
            acc = np.concatenate([np.zeros(acc.shape[:2] + (1,)), acc], axis=-1)
        return acc

    acc = table(outcomes, bins)
    alloc = allocate(acc, counts, grid, total_budget, baseline_method=baseline_method)
    rng = np.random.default_rng(seed)
    members = [np.nonzero(bins == b)[0] for b in range(num_bins)]
    q = [0.5 - level / 2, 0.5 + level / 2]
    if num_bootstrap > 0:
        gains, accs = [], []
        for _ in range(num_bootstrap):
            idx = np.concatenate([rng.choice(m, m.size) for m in members if m.size])
            r = allocate(table(outcomes[:, :, idx], bins[idx]), counts, grid, total_budget,
                         baseline_method=baseline_method)
            gains.append(r.gain)
            accs.append(r.accuracy)
        alloc = alloc._replace(gain_interval=tuple(float(x) for x in np.quantile(gains, q)),
                               accuracy_interval=tuple(float(x) for x in np.quantile(accs, q)))
    def resample_within_bins(idx):
        return np.concatenate([rng.choice(i, i.size) for i in (idx[bins[idx] == b] for b in range(num_bins))
                               if i.size])

    def cross_fitted(resample: bool) -> float:
        """Split every bin in random halves (optionally bootstrap each half within bins);
        choose on one half and score on the other, both ways round: the mean held-out gain."""
        half = np.zeros(bins.size, bool)
        for m in members:
            half[rng.permutation(m)[: m.size // 2]] = True
        gains = []
        for train in (half, ~half):
            tr, te = np.nonzero(train)[0], np.nonzero(~train)[0]
            if resample:
                tr, te = resample_within_bins(tr), resample_within_bins(te)
            c_tr = np.bincount(bins[tr], minlength=num_bins)
            c_te = np.bincount(bins[te], minlength=num_bins)
            r = allocate(table(outcomes[:, :, tr], bins[tr]), c_tr, grid, total_budget,
                         baseline_method=baseline_method)
            a_te = table(outcomes[:, :, te], bins[te])
            g = np.searchsorted(grid, r.budget)
            g0 = int(np.searchsorted(grid, r.uniform_budget))
            chosen = a_te[r.method, np.arange(num_bins), g]
            gains.append(float(c_te @ (chosen - a_te[baseline_method, :, g0]) / c_te.sum()))
        return float(np.mean(gains))

    if num_splits > 0:
        alloc = alloc._replace(heldout_gain=float(np.mean([cross_fitted(False) for _ in range(num_splits)])))
        if num_bootstrap > 0:
            held = [cross_fitted(True) for _ in range(num_bootstrap)]
            alloc = alloc._replace(heldout_gain_interval=tuple(float(x) for x in np.quantile(held, q)))
    rng_score = np.array([[difficulty[m].min(), difficulty[m].max()] if m.size else [np.nan] * 2
                          for m in members])
    return alloc, BinnedAccuracy(bins, counts, grid, acc, rng_score)
