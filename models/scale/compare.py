r"""Paired comparisons of scaling methods on the same problems.

Every method of a ``ppl scale`` run is scored on the same problems, so two methods are compared
*paired*: at a budget, problem :math:`i` is solved by both, by neither, by the first only
(:math:`n_{10}`) or by the second only (:math:`n_{01}`). The accuracy difference is
:math:`(n_{10} - n_{01}) / n`, and under the null of equal accuracy each discordant problem is
a fair coin, so the **exact McNemar test** gives the two-sided p-value of the binomial
:math:`n_{10} \sim \mathrm{Bin}(n_{10} + n_{01}, 1/2)` (:func:`mcnemar`).

The **budget ratio** says how much budget a method saves: with the reference method's accuracy
:math:`a^\star` at its largest budget :math:`B^\star`, the method's first budget :math:`b` with
accuracy :math:`\ge a^\star` gives the ratio :math:`B^\star / b` (0 when no measured budget
reaches it). :func:`budget_ratio_interval` resamples the problems with replacement (both
methods with the same draw: the pairing is kept) and reports the percentile interval of the
ratio and the probability that it is at least 1, 2 and 4.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

__all__ = ["mcnemar", "paired_tests", "budget_ratio", "budget_ratio_interval"]


def mcnemar(first, second) -> dict:
    """Exact McNemar test of two 0/1 outcome vectors on the same problems.

    Returns ``{"n", "difference", "first_only", "second_only", "p_value"}``: the difference of
    accuracies (first minus second) and the two-sided exact p-value (1 when no problem is
    discordant).
    """
    from scipy.stats import binomtest

    a, b = np.asarray(first, bool), np.asarray(second, bool)
    if a.shape != b.shape or a.ndim != 1 or a.size == 0:
        raise ValueError(f"mcnemar: expected two 0/1 vectors of one non-zero length, got shapes {a.shape}, {b.shape}")
    n10, n01 = int(np.sum(a & ~b)), int(np.sum(~a & b))
    p = 1.0 if n10 + n01 == 0 else float(binomtest(n10, n10 + n01, 0.5).pvalue)
    return {"n": int(a.size), "difference": (n10 - n01) / a.size, "first_only": n10, "second_only": n01,
            "p_value": p}


def paired_tests(solved: dict, reference: str) -> dict:
    """``{method: {budget: mcnemar(method, reference)}}`` at every budget both have, for every
    method but ``reference``; ``solved`` is ``{method: {budget: [0/1 per problem]}}``."""
    if reference not in solved:
        return {}
    out = {}
    for name, by_budget in solved.items():
        if name == reference:
            continue
        tests = {int(b): mcnemar(v, solved[reference][b]) for b, v in by_budget.items() if b in solved[reference]}
        if tests:
            out[name] = dict(sorted(tests.items()))
    return out


def _curves(solved: dict, name: str):
    budgets = sorted(int(b) for b in solved[name])
    return np.asarray(budgets), np.asarray([solved[name][b] for b in budgets], float)  # [G], [G, P]


def _ratio(acc_ref_max, acc, budgets, b_ref):
    """Budget ratios of accuracy curves ``acc [R, G]`` against targets ``acc_ref_max [R]``."""
    reached = acc >= acc_ref_max[:, None] - 1e-12
    first = np.argmax(reached, axis=1)
    return np.where(reached.any(axis=1), b_ref / budgets[first], 0.0)


def budget_ratio(solved: dict, reference: str = "best_of_n", method: str = "particle_filter") -> Optional[float]:
    """:math:`B^\\star / b` on the problems as measured (``None`` if a method is missing; 0 when
    ``method`` never reaches the reference's accuracy at its largest budget)."""
    if reference not in solved or method not in solved or not solved[reference] or not solved[method]:
        return None
    rb, ro = _curves(solved, reference)
    mb, mo = _curves(solved, method)
    return float(_ratio(ro[-1:].mean(1), mo.mean(1)[None], mb, rb[-1])[0])


def budget_ratio_interval(solved: dict, reference: str = "best_of_n", method: str = "particle_filter", *,
                          num_resamples: int = 2000, level: float = 0.95, seed: int = 0) -> Optional[dict]:
    """The budget ratio with a paired bootstrap over problems.

    Returns ``{"ratio", "ci_low", "ci_high", "level", "p_at_least": {"1": .., "2": .., "4": ..},
    "p_not_reached", "reference", "reference_budget", "method", "num_resamples"}`` or ``None``
    when a method is missing.
    """
    point = budget_ratio(solved, reference, method)
    if point is None:
        return None
    rb, ro = _curves(solved, reference)
    mb, mo = _curves(solved, method)
    if ro.shape[1] != mo.shape[1]:
        raise ValueError("budget_ratio_interval: both methods need the same problems")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, ro.shape[1], size=(int(num_resamples), ro.shape[1]))
    target = ro[-1][idx].mean(1)  # [R]
    acc = mo[:, idx].mean(2).T  # [R, G]
    ratios = _ratio(target, acc, mb, rb[-1])
    lo, hi = np.quantile(ratios, [(1 - level) / 2, (1 + level) / 2], method="inverted_cdf")
    return {"ratio": point, "ci_low": float(lo), "ci_high": float(hi), "level": level,
            "p_at_least": {str(r): float(np.mean(ratios >= r)) for r in (1, 2, 4)},
            "p_not_reached": float(np.mean(ratios == 0)), "reference": reference,
            "reference_budget": int(rb[-1]), "method": method, "num_resamples": int(num_resamples)}
