"""Perplexity consistency, the Weibull mixture and reasoning pruning (ppl.scaling.consistency)."""

import collections
import math

import jax
import numpy as np
import pytest

from ppl import scaling
from tests.scaling.test_sampling import NO, answer_fn, make_rollouts, program


def test_perplexity_consistency_against_a_hand_computation():
    # answer 1: one path drawn three times (counts once); answer 2: two distinct paths;
    # answer None: one path. Path probability = exp(log_p / num_tokens).
    gens = [[4, 1], [4, 1], [2], [3, 2], [4, 1], [5, NO]]
    log_p = [-2.0, -2.0, -0.9, -1.6, -2.0, -0.2]
    pool = make_rollouts(gens, log_p=log_p)
    pbar = {1: math.exp(-1.0), 2: math.exp(-0.9) + math.exp(-0.8), None: math.exp(-0.1)}
    total = sum(pbar.values())
    res = scaling.perplexity_consistency(pool, answer_fn=answer_fn)
    assert res.method == "perplexity_consistency"
    assert res.answer == 2 and res.selected in (2, 3)
    assert res.answer_posterior == pytest.approx({a: v / total for a, v in pbar.items()})
    np.testing.assert_array_equal(res.diagnostics["distinct"], [True, False, True, True, False, True])
    np.testing.assert_allclose(res.diagnostics["path_log_prob"], [-1.0, -1.0, -0.9, -0.8, -1.0, -0.1])
    # self-consistency counts the repeats and picks answer 1
    assert scaling.self_consistency_from(pool, answer_fn=answer_fn).answer == 1
    # on the first 2 rollouts only answer 1 exists
    res2 = scaling.perplexity_consistency(pool, 2, answer_fn=answer_fn)
    assert res2.answer == 1 and res2.answer_posterior == pytest.approx({1: 1.0})
    assert res2.compute == pool.compute(2) and res2.budget == 2


def weibull_sample(rng, n, k, lam):
    return lam * rng.weibull(k, size=n)


def test_weibull_mixture_recovers_known_parameters():
    rng = np.random.default_rng(0)
    n, w_low = 3000, 0.35
    z = rng.random(n) < w_low
    x = np.where(z, weibull_sample(rng, n, 2.0, 0.25), weibull_sample(rng, n, 6.0, 0.7))
    mix = scaling.fit_weibull_mixture(x)
    # (tolerances cover the spread of the MLE over simulated data sets of this size)
    np.testing.assert_allclose(mix.weights, [w_low, 1 - w_low], atol=0.07)
    np.testing.assert_allclose(mix.shapes, [2.0, 6.0], rtol=0.2)
    np.testing.assert_allclose(mix.scales, [0.25, 0.7], rtol=0.15)
    assert mix.means[0] < mix.means[1]
    # the fit is a maximum: at least as likely as the true parameters, and log_pdf sums to it
    true = scaling.WeibullMixture(np.array([w_low, 1 - w_low]), np.array([2.0, 6.0]), np.array([0.25, 0.7]), 0.0)
    assert mix.log_likelihood >= float(np.sum(true.log_pdf(x))) - 1e-6
    assert mix.log_likelihood == pytest.approx(float(np.sum(mix.log_pdf(x))), rel=1e-9)
    # a single Weibull component's log-density matches the closed form
    k, lam, xi = 2.0, 0.25, 0.3
    closed = math.log(k / lam) + (k - 1) * math.log(xi / lam) - (xi / lam) ** k
    one = scaling.WeibullMixture(np.array([0.5, 0.5]), np.array([k, k]), np.array([lam, lam]), 0.0)
    assert float(one.log_pdf(np.array([xi]))[0]) == pytest.approx(closed, rel=1e-12)
    np.testing.assert_allclose(mix.responsibilities(x).sum(1), 1.0)


def test_weibull_mixture_rejects_bad_data():
    for bad in ([0.5], [0.5, 0.5, 0.5], [0.2, -0.1, 0.4], [0.2, np.nan, 0.3]):
        with pytest.raises(ValueError, match="x"):
            scaling.fit_weibull_mixture(bad)
    with pytest.raises(ValueError, match="weight_bounds"):
        scaling.fit_weibull_mixture([0.1, 0.2, 0.3], weight_bounds=(0.9, 0.1))


def test_reasoning_pruning_drops_the_low_component_below_the_mean():
    rng = np.random.default_rng(1)
    low = weibull_sample(rng, 30, 3.0, 0.2)
    high = weibull_sample(rng, 70, 12.0, 0.75)
    p = np.clip(np.concatenate([low, high]), 1e-3, 1.0)
    keep, mix = scaling.reasoning_pruning(p)
    resp = mix.responsibilities(p)
    np.testing.assert_array_equal(keep, ~((resp[:, 0] > resp[:, 1]) & (p < p.mean())))
    assert keep[30:].all()  # no high-component path is pruned
    assert (~keep[:30]).sum() >= 25  # nearly all low ones are
    assert keep[np.argmax(p)]
    # too few paths, or all equal: nothing pruned, no mixture
    keep, mix = scaling.reasoning_pruning(p[:3])
    assert keep.shape == (3,) and keep.all() and mix is None
    keep, mix = scaling.reasoning_pruning(np.full(6, 0.3))
    assert keep.all() and mix is None
    with pytest.raises(ValueError, match="path_probs"):
        scaling.reasoning_pruning([0.3, 0.0, 0.2])
    with pytest.raises(ValueError, match="min_paths"):
        scaling.reasoning_pruning(p, min_paths=1)


def test_rpc_prunes_a_low_probability_majority():
    # answer 1: eight distinct improbable paths (sum 1.2); answer 2: two probable ones (sum ~1.1).
    low = [0.12, 0.13, 0.14, 0.15, 0.15, 0.16, 0.17, 0.18]
    high = [0.53, 0.57]
    gens = [[3 + i % 5, i // 5 + 3, 1] for i in range(8)] + [[5, 2], [6, 2]]
    num_tokens = np.array([len(g) for g in gens])
    log_p = np.log(low + high) * num_tokens
    pool = make_rollouts(gens, log_p=log_p)
    pc = scaling.perplexity_consistency(pool, answer_fn=answer_fn)
    assert pc.answer == 1
    assert pc.answer_posterior[1] == pytest.approx(sum(low) / (sum(low) + sum(high)))
    res = scaling.rpc(pool, answer_fn=answer_fn)
    assert res.method == "rpc" and res.answer == 2
    assert not res.diagnostics["kept"][:8].any() and res.diagnostics["kept"][8:].all()
    assert res.answer_posterior == pytest.approx({2: 1.0, 1: 0.0})
    assert set(res.diagnostics) >= {"weibull_weights", "weibull_shapes", "weibull_scales", "path_log_prob"}
    assert res.compute == pool.compute()
    with pytest.raises(ValueError, match="min_paths"):
        scaling.rpc(pool, min_paths=0)
    with pytest.raises(ValueError, match="k"):
        scaling.rpc(pool, 11)
    with pytest.raises(TypeError, match="rollouts"):
        scaling.perplexity_consistency(object())


def test_rpc_on_tinylm_rollouts_matches_a_hand_computation():
    from tests.lm.tiny import TinyLM

    pool = scaling.rollouts(program(TinyLM(seed=1)), 6, key=jax.random.key(3))
    gens = [tuple(g) for g in scaling.generations(pool.particles)]
    assert len(set(gens)) < len(gens)  # repeated paths occur and must count once
    for k in (1, 3, 6):
        pbar = collections.defaultdict(float)
        for g in set(gens[:k]):
            i = gens.index(g)
            pbar[g] += math.exp(pool.log_p[i] / pool.num_tokens[i])
        total = sum(pbar.values())
        res = scaling.perplexity_consistency(pool, k)  # answer = the whole generation
        assert res.answer_posterior == pytest.approx({g: v / total for g, v in pbar.items()})
        assert res.answer == max(pbar, key=pbar.get)
        # fewer paths than min_paths: rpc is perplexity consistency
        if k < 4:
            assert scaling.rpc(pool, k).answer_posterior == pytest.approx(res.answer_posterior)
