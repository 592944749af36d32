"""Prior-sensitivity sweep of the judge-on-a-simplex ranking: the report's comparisons on
known rankings, and an end-to-end sweep (slow) where binary scores make the ranking stable
and three levels without gold labels raise the identifiability flag."""

import jax
import numpy as np
import pytest

from ppl_models.judges.dawid_skene import judgments_from_records, simulate_judgments
from ppl_models.judges.ranking import summarize
from ppl_models.judges.sensitivity import SensitivityReport, kendall_tau, prior_sensitivity


def test_kendall_tau():
    assert kendall_tau([1, 2, 3, 4], [10, 20, 30, 40]) == 1.0
    assert kendall_tau([1, 2, 3, 4], [4, 3, 2, 1]) == -1.0
    assert kendall_tau([1, 2, 3], [1, 3, 2]) == pytest.approx(1 / 3)


def _ranking(means, seed):
    rng = np.random.default_rng(seed)
    draws = np.asarray(means)[None, None] + 0.01 * rng.normal(size=(2, 50, len(means)))
    return summarize(draws, ["x", "y", "z"])


def test_report_detects_a_changed_order():
    same = SensitivityReport([(1, 1), (2, 1)], [_ranking([0.1, 0.5, 0.9], 0), _ranking([0.2, 0.6, 0.8], 1)])
    assert same.stable and np.allclose(same.tau, 1)
    assert same.orders == [["z", "y", "x"], ["z", "y", "x"]]
    moved = SensitivityReport(
        [(1, 1), (2, 1), (10, 1)],
        [_ranking([0.1, 0.5, 0.9], 0), _ranking([0.9, 0.5, 0.1], 1), _ranking([0.1, 0.9, 0.5], 2)],
        identifiability_warning=True,
    )
    assert not moved.stable
    np.testing.assert_allclose(moved.tau, [1, -1, 1 / 3])
    d = moved.to_dict()
    assert d["orders"][1] == ["x", "y", "z"] and d["stable"] is False
    np.testing.assert_allclose(d["max_mean_rank_shift"], [2, 1, 2], atol=1e-9)
    text = moved.table()
    assert "CHANGES" in text and "not identifiable" in text and "(10, 1)" in text


def test_bad_sweeps_are_rejected():
    data = judgments_from_records([0, 1], [0, 0], [1, 0], num_levels=2)
    with pytest.raises(ValueError, match="candidate per item"):
        prior_sensitivity(data)
    data = judgments_from_records([0, 1], [0, 0], [1, 0], num_levels=2, candidate=[0, 1])
    with pytest.raises(ValueError, match="at least two priors"):
        prior_sensitivity(data, priors=[(2, 1)])
    with pytest.raises(ValueError, match="positive"):
        prior_sensitivity(data, priors=[(2, 1), (0, 1)])


def _conf(m, diags):
    out = []
    for d in diags:
        c = np.full((m, m), (1 - d) / (m - 1))
        np.fill_diagonal(c, d)
        out.append(c)
    return np.array(out)


@pytest.mark.slow
def test_sweep_end_to_end():
    rng = np.random.default_rng(0)
    cand = np.repeat(np.arange(3), 60)
    prev = np.array([[0.15, 0.85], [0.5, 0.5], [0.85, 0.15]])  # expected scores 0.85, 0.5, 0.15
    _, it, jd, lb = simulate_judgments(rng, _conf(2, [0.9, 0.85, 0.8, 0.75]), len(cand), prevalence=prev, candidate=cand)
    data = judgments_from_records(it, jd, lb, num_levels=2, candidate=cand)
    opts = dict(key=jax.random.key(0), num_chains=2, num_warmup=200, num_samples=200)
    rep = prior_sensitivity(data, priors=[(1, 1), (2, 1), (10, 1)], **opts)
    assert rep.stable and np.allclose(rep.tau, 1) and not rep.identifiability_warning
    assert rep.orders[0] == ["candidate_0", "candidate_1", "candidate_2"]
    for r in rep.rankings:
        assert np.all((r.ci_low < [0.85, 0.5, 0.15]) & ([0.85, 0.5, 0.15] < r.ci_high)), (r.ci_low, r.ci_high)
    # three levels, no gold labels: the sweep runs and flags non-identifiability
    prev3 = np.array([[0.1, 0.3, 0.6], [0.3, 0.4, 0.3], [0.6, 0.3, 0.1]])
    _, it, jd, lb = simulate_judgments(rng, _conf(3, [0.8, 0.7]), len(cand), prevalence=prev3, candidate=cand)
    data3 = judgments_from_records(it, jd, lb, num_levels=3, candidate=cand)
    rep3 = prior_sensitivity(data3, priors=[(1, 1), (5, 1)], **opts)
    assert rep3.identifiability_warning and len(rep3.rankings) == 2
    assert rep3.to_dict()["priors"] == [[1.0, 1.0], [5.0, 1.0]]
