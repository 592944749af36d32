"""Plackett–Luce: the padded, vectorised likelihood against brute-force enumeration of full
rankings (full, subset and top-k rows), validation, and recovery of known strengths."""

import itertools

import jax
import numpy as np
import pytest

from ppl_models.judges.data import BattleLogError
from ppl_models.judges.plackett_luce import (
    plackett_luce_log_prob, rank_plackett_luce, rankings_from_lists, read_rankings, simulate_rankings)

NAMES = ["a", "b", "c", "d"]


def _full_prob(w, perm):
    """Sequential-choice probability of one full ranking of all items (weights w = e^r)."""
    p, left = 1.0, list(perm)
    for o in perm:
        p *= w[o] / sum(w[j] for j in left)
        left.remove(o)
    return p


def _brute(w, ranked, present):
    """P(the induced order on ``present`` starts with ``ranked``), summing over all full
    rankings of every item: marginalises the unranked and the absent items by enumeration."""
    tot = 0.0
    for perm in itertools.permutations(range(len(w))):
        sub = [o for o in perm if o in present]
        if sub[: len(ranked)] == list(ranked):
            tot += _full_prob(w, perm)
    return tot


def test_log_prob_matches_brute_force_enumeration():
    r = np.array([0.9, -0.3, 0.4, -1.0])
    w = np.exp(r)
    cases = [  # (ranked, unranked)
        (["a", "b", "c", "d"], []),  # full
        (["d", "c", "b", "a"], []),
        (["c", "a", "d"], []),  # a subset of 3 of 4 models
        (["b", "d"], []),  # a pair: Bradley-Terry
        (["a"], ["b", "c", "d"]),  # top-1 of 4
        (["c", "b"], ["a", "d"]),  # top-2 of 4
        (["d"], ["a", "c"]),  # top-1 of a subset
        (["b", "a"], ["c"]),  # top-2 of 3: the last one is implied
    ]
    data = rankings_from_lists([c[0] for c in cases], unranked=[c[1] for c in cases], models=NAMES)
    assert data.order.shape == (len(cases), 4)  # padded to the widest row
    with jax.enable_x64(True):
        got = np.asarray(plackett_luce_log_prob(r, data))
    idx = {m: i for i, m in enumerate(NAMES)}
    assert data.num_rows == len(cases)  # distinct rows, kept in order of first appearance
    for row, (ranked, unranked) in enumerate(cases):
        want = _brute(w, [idx[m] for m in ranked], {idx[m] for m in ranked + unranked})
        assert got[row] == pytest.approx(np.log(want), rel=1e-10), (row, ranked, unranked)
    # full rankings of all 4 are a probability distribution
    perms = [list(p) for p in itertools.permutations(NAMES)]
    full = rankings_from_lists(perms, models=NAMES)
    with jax.enable_x64(True):
        assert np.exp(np.asarray(plackett_luce_log_prob(r, full))).sum() == pytest.approx(1.0, rel=1e-12)


def test_identical_rankings_merge_into_counts():
    data = rankings_from_lists([["a", "b"], ["a", "b"], ["b", "a", "c"], ["c"]], unranked=[None, None, [], ["a", "b"]],
                               counts=[1, 2, 0.5, 1])
    assert data.num_rows == 3
    np.testing.assert_allclose(sorted(data.counts), [0.5, 1, 3])
    np.testing.assert_allclose(data.appearances(), [4.5, 4.5, 1.5])


def test_bad_rankings_name_row_and_field(tmp_path):
    with pytest.raises(BattleLogError, match=r"row 2, field 'ranking\[2\]': model 'a' appears twice"):
        rankings_from_lists([["a", "b"], ["a", "b", "a"]])
    with pytest.raises(BattleLogError, match=r"row 1, field 'ranking': a ranking needs at least two"):
        rankings_from_lists([["a"]])
    with pytest.raises(BattleLogError, match=r"row 1, field 'unranked\[0\]': model 'a' appears twice"):
        rankings_from_lists([["a", "b"]], unranked=[["a"]])
    with pytest.raises(BattleLogError, match=r"row 1, field 'count': negative"):
        rankings_from_lists([["a", "b"]], counts=[-1])
    with pytest.raises(BattleLogError, match=r"row 1, field 'ranking\[1\]': model 'z' is not in the given"):
        rankings_from_lists([["a", "z"]], models=["a", "b"])
    p = tmp_path / "r.csv"
    p.write_text("ranking,count\na>b>c,2\nb>b,1\n")
    with pytest.raises(BattleLogError, match=r"r.csv: line 3, field 'ranking\[1\]'"):
        read_rankings(p)
    q = tmp_path / "r.jsonl"
    q.write_text('{"ranking": ["a", "b"], "unranked": ["c"], "count": 2}\n{"ranking": ["c", "a"]}\n')
    d = read_rankings(q)
    assert d.models == ("a", "b", "c") and d.num_rows == 2


@pytest.mark.slow  # NUTS compile dominates: ~10-20 s on 2 shared cores
def test_nuts_recovers_known_strengths():
    rng = np.random.default_rng(0)
    truth = np.array([1.2, 0.6, 0.0, -0.6, -1.2])
    rk, un = simulate_rankings(rng, truth, 150, size=4, names=list("abcde"))
    rk2, un2 = simulate_rankings(rng, truth, 150, size=5, top=2, names=list("abcde"))
    data = rankings_from_lists(rk + rk2, unranked=un + un2, models=list("abcde"))
    r = rank_plackett_luce(data, key=jax.random.key(0), display="latent", num_chains=2, num_warmup=150, num_samples=150)
    sd = r.draws.reshape(-1, 5).std(0)
    assert np.all(np.abs(r.mean - truth) < 4 * sd), (r.mean, truth, sd)
    assert list(r.order) == [0, 1, 2, 3, 4]
    assert r.p_win[0, 4] > 0.8 and np.allclose(r.p_win + r.p_win.T, 1, atol=1e-6)
    assert r.diagnostics["max_r_hat"] < 1.05
