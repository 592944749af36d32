"""Paired comparisons of scaling methods (``ppl_models.scale.compare``): the exact McNemar test
and the budget ratio with its paired bootstrap, against closed forms and a plain loop."""

import numpy as np
import pytest

from ppl_models.scale.compare import budget_ratio, budget_ratio_interval, mcnemar, paired_tests


def test_mcnemar_exact_binomial():
    # 8 problems only the first solves, 2 only the second, 10 both, 5 neither.
    first = [1] * 8 + [0] * 2 + [1] * 10 + [0] * 5
    second = [0] * 8 + [1] * 2 + [1] * 10 + [0] * 5
    t = mcnemar(first, second)
    assert (t["n"], t["first_only"], t["second_only"]) == (25, 8, 2)
    assert t["difference"] == pytest.approx(6 / 25)
    # two-sided: 2 P(X <= 2), X ~ Bin(10, 1/2) = 2 (1 + 10 + 45) / 1024
    assert t["p_value"] == pytest.approx(112 / 1024)
    assert mcnemar(second, first)["p_value"] == pytest.approx(112 / 1024)
    assert mcnemar(second, first)["difference"] == pytest.approx(-6 / 25)
    assert mcnemar([1, 0, 1], [1, 0, 1])["p_value"] == 1.0  # nothing discordant
    with pytest.raises(ValueError, match="mcnemar"):
        mcnemar([1, 0], [1, 0, 1])


def test_paired_tests_at_common_budgets_only():
    solved = {"particle_filter": {1: [1, 0, 0], 4: [1, 1, 0]},
              "best_of_n": {1: [0, 0, 0], 4: [1, 1, 1], 16: [1, 1, 1]},
              "beam_search": {2: [1, 1, 1]}}
    out = paired_tests(solved, "particle_filter")
    assert set(out) == {"best_of_n"}  # beam search shares no budget; the reference is not tested
    assert list(out["best_of_n"]) == [1, 4]
    assert out["best_of_n"][4]["first_only"] == 1 and out["best_of_n"][4]["difference"] == pytest.approx(1 / 3)
    assert paired_tests(solved, "dvts") == {}


def _solved(ref_curve, m_curve, budgets, P):
    """Nested 0/1 outcomes: at budget g the first ``curve[g]`` problems are solved."""
    mk = lambda curve: {b: [int(i < c) for i in range(P)] for b, c in zip(budgets, curve)}  # noqa: E731
    return {"best_of_n": mk(ref_curve), "particle_filter": mk(m_curve)}


def test_budget_ratio_known_answer():
    budgets = [1, 2, 4, 8, 16]
    solved = _solved([2, 4, 6, 7, 8], [3, 6, 8, 9, 10], budgets, 20)
    # best-of-N@16 solves 8; the filter first reaches 8 at budget 4: ratio 16/4
    assert budget_ratio(solved) == 4.0
    solved = _solved([2, 4, 6, 7, 8], [1, 2, 3, 4, 5], budgets, 20)
    assert budget_ratio(solved) == 0.0  # never reached
    assert budget_ratio({"best_of_n": {1: [1]}}) is None


def test_budget_ratio_interval_is_the_paired_bootstrap():
    rng = np.random.default_rng(3)
    budgets, P = [1, 2, 4, 8], 30
    solved = {name: {b: (rng.random(P) < p).astype(int).tolist() for b, p in zip(budgets, ps)}
              for name, ps in (("best_of_n", [0.3, 0.4, 0.5, 0.55]), ("particle_filter", [0.4, 0.55, 0.6, 0.65]))}
    got = budget_ratio_interval(solved, num_resamples=300, seed=7)
    # the same resamples by a plain loop over budget_ratio on resampled problems
    idx = np.random.default_rng(7).integers(0, P, size=(300, P))
    loop = np.array([budget_ratio({n: {b: np.asarray(v)[i].tolist() for b, v in d.items()} for n, d in solved.items()})
                     for i in idx])
    lo, hi = np.quantile(loop, [0.025, 0.975], method="inverted_cdf")
    assert got["ratio"] == budget_ratio(solved)
    assert (got["ci_low"], got["ci_high"]) == (lo, hi)
    assert got["p_at_least"]["2"] == pytest.approx(np.mean(loop >= 2))
    assert got["p_not_reached"] == pytest.approx(np.mean(loop == 0))
    assert got["reference_budget"] == 8 and got["ci_low"] <= got["ratio"] <= got["ci_high"]
    with pytest.raises(ValueError, match="same problems"):
        budget_ratio_interval({"best_of_n": {1: [1, 0]}, "particle_filter": {1: [1, 0, 1]}})
