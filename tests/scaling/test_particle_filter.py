"""Particle filtering (Puri et al. 2025) and beam search / DVTS against exact answers.

The PF targets are enumerated on the tiny LM program of tests/lm/test_program_exact.py (at most 3
steps of at most 2 tokens): with a synthetic prefix reward r, the "ratio" weighting targets
q(x) a_K(x) and the "softmax" weighting q(x) prod_{t=1}^T odds(a_min(t,K))^(1/tau).
"""

from __future__ import annotations

import collections
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import logsumexp

import ppl
from ppl import scaling
from ppl.scaling.search import select_top
from tests.lm.test_program_exact import DELIM, MAX_LEN, MAX_STEPS, PROMPT, log_prob_sequences, segment
from tests.lm.tiny import TinyLM


class PrefixReward:
    """r(prefix) = sigmoid(a * #2 - b * #3 + c) over the generated tokens (a traced parameter set)."""

    def __init__(self, a=0.9, b=0.7, c=-0.3):
        self.params = {"a": jnp.float32(a), "b": jnp.float32(b), "c": jnp.float32(c)}
        self.host = (a, b, c)

    def log_score(self, params, state):
        idx = jnp.arange(state.tokens.shape[0])
        gen = (idx >= state.prompt_length) & (idx < state.length)
        z = params["a"] * jnp.sum(gen & (state.tokens == 2)) - params["b"] * jnp.sum(gen & (state.tokens == 3)) \
            + params["c"]
        return jax.nn.log_sigmoid(z)

    def host_log_score(self, gen_prefix):
        a, b, c = self.host
        z = a * gen_prefix.count(2) - b * gen_prefix.count(3) + c
        return -np.logaddexp(0.0, -z)


REWARD = PrefixReward()
LM = TinyLM(seed=1)


def _program(**kw):
    return ppl.lm.LMProgram(LM, PROMPT, None, max_steps=MAX_STEPS, step_delimiter=DELIM, max_step_tokens=2, max_length=MAX_LEN, **kw)


@pytest.fixture(scope="module")
def sequences():
    """Every generation with its log q and the log scores of its step prefixes."""
    out = []
    for k in range(1, MAX_LEN - len(PROMPT) + 1):
        gens = [g for g in itertools.product(range(LM.vocab_size), repeat=k) if segment(list(g)) is not None]
        for gen, lq in zip(gens, log_prob_sequences(LM, PROMPT, gens)):
            bounds = segment(list(gen))
            scores = [REWARD.host_log_score(list(gen[:b])) for b in bounds]
            out.append((gen, float(lq), scores))
    assert abs(logsumexp([lq for _, lq, _ in out])) < 1e-4
    return out


def _target(sequences, log_g):
    log_terms = np.array([lq + log_g(s) for _, lq, s in sequences])
    log_z = logsumexp(log_terms)
    return log_z, {g: float(np.exp(t - log_z)) for (g, _, _), t in zip(sequences, log_terms)}


def _odds(log_r):
    r = np.clip(np.exp(log_r), 1e-6, 1 - 1e-6)
    return np.log(r) - np.log1p(-r)


def _pooled(results):
    hist = collections.defaultdict(float)
    for res in results:
        w = np.exp(res.log_weights) / len(results)
        for g, wi in zip(res.generations(), w):
            hist[tuple(g)] += wi
    return hist


def _check(hist, target, n_eff):
    for k, p in target.items():
        if p > 0.01:
            assert abs(hist.get(k, 0.0) - p) < 5 * np.sqrt(p * (1 - p) / n_eff), (k, hist.get(k, 0.0), p)
    for feature in (lambda k: k[0], len, lambda k: k.count(2)):
        h, t = collections.defaultdict(float), collections.defaultdict(float)
        for k, v in hist.items():
            h[feature(k)] += v
        for k, v in target.items():
            t[feature(k)] += v
        assert 0.5 * sum(abs(h[f] - t[f]) for f in set(h) | set(t)) < 0.03


RUNS, N = 16, 256


@pytest.mark.parametrize("aggregate, log_g", [
    ("last", lambda s: s[-1]),
    ("min", lambda s: min(s)),
    ("product", lambda s: sum(s)),
])
def test_ratio_weighting_targets_the_final_score(sequences, aggregate, log_g):
    log_z, target = _target(sequences, log_g)
    prog = _program()
    results = [scaling.particle_filter(prog, N, key=jax.random.key(i), reward=REWARD, aggregate=aggregate,
                                       weighting="ratio", ess_threshold=0.5, resampling="systematic")
               for i in range(RUNS)]
    _check(_pooled(results), target, 0.5 * RUNS * N)
    # E[Z-hat] = Z: the log-evidence estimates average to log Z (their spread is small at N = 256).
    lz = np.array([r.diagnostics["log_evidence"] for r in results])
    assert abs(logsumexp(lz) - np.log(RUNS) - log_z) < max(4 * lz.std(ddof=1) / np.sqrt(RUNS), 0.01)


def _softmax_target(sequences, tau, repeat=True):
    T = MAX_STEPS
    if repeat:  # a finished particle's final score counts once per remaining step (absorbing)
        log_g = lambda s: sum(_odds(s[min(t, len(s)) - 1]) / tau for t in range(1, T + 1))  # noqa: E731
    else:
        log_g = lambda s: sum(_odds(x) / tau for x in s)  # noqa: E731
    return _target(sequences, log_g)[1]


@pytest.fixture(scope="module")
def softmax_runs():
    # tau = 3 keeps the per-step weights mild, so that the finite-N bias of the filter is small.
    prog = _program()
    return [scaling.particle_filter(prog, N, key=jax.random.key(100 + i), reward=REWARD, tau=3.0,
                                    resampling="systematic") for i in range(2 * RUNS)]


def test_softmax_weighting_targets_reweighted_absorbing_chains(sequences, softmax_runs):
    assert all(r.diagnostics["num_steps"] == MAX_STEPS and r.diagnostics["resampled"][1:].all()
               for r in softmax_runs)
    n_eff = 0.5 * sum(float(r.diagnostics["ess"][-1]) for r in softmax_runs)
    _check(_pooled(softmax_runs), _softmax_target(sequences, 3.0), n_eff)


def test_wrong_softmax_targets_are_detected(sequences, softmax_runs):
    # Neither the final score alone nor the product without the absorbing repeats is the target.
    n_eff = 0.5 * sum(float(r.diagnostics["ess"][-1]) for r in softmax_runs)
    hist = _pooled(softmax_runs)
    with pytest.raises(AssertionError):
        _check(hist, _target(sequences, lambda s: _odds(s[-1]) / 3.0)[1], n_eff)
    with pytest.raises(AssertionError):
        _check(hist, _softmax_target(sequences, 3.0, repeat=False), n_eff)


def _boundary_lengths(gen):
    return [len(PROMPT) + b for b in segment(list(gen))]


def test_compute_is_counted_exactly_for_one_particle():
    prog = _program()
    for i in range(5):
        res = scaling.particle_filter(prog, 1, key=jax.random.key(i), reward=REWARD, weighting="ratio")
        gen = res.generations()[0]
        lens = _boundary_lengths(gen)
        c = res.compute
        assert c.generated_tokens == len(gen)
        assert c.lm_forward_tokens == len(PROMPT) + len(gen)
        assert c.prm_calls == len(lens) and c.prm_forward_tokens == sum(lens)
        lm_size = sum(np.size(v) for v in jax.tree_util.tree_leaves(LM.params))
        assert c.flops == pytest.approx(2 * lm_size * c.lm_forward_tokens + 2 * 3 * c.prm_forward_tokens)


def test_particle_filter_selects_and_validates():
    prog = _program()
    res = scaling.particle_filter(prog, 32, key=jax.random.key(0), reward=REWARD, answer_fn=lambda g: len(g))
    best = int(np.nanargmax(np.where([a is not None for a in res.answers], res.scores, -np.inf)))
    assert res.answer == res.answers[best] and res.selected == best
    vote = scaling.particle_filter(prog, 32, key=jax.random.key(0), reward=REWARD, answer_fn=lambda g: len(g),
                                   select="vote")
    assert vote.answer == next(iter(vote.answer_posterior))
    again = scaling.particle_filter(prog, 32, key=jax.random.key(0), reward=REWARD, answer_fn=lambda g: len(g))
    assert again.answers == res.answers
    for kw, match in [(dict(aggregate="mean"), "aggregate"), (dict(weighting="exp"), "weighting"),
                      (dict(tau=0.0), "tau"), (dict(ess_threshold=2.0), "ess_threshold"),
                      (dict(select="majority"), "select")]:
        with pytest.raises(ValueError, match=match):
            scaling.particle_filter(prog, 4, key=jax.random.key(0), reward=REWARD, **kw)
    with pytest.raises(ValueError, match="program"):
        scaling.particle_filter(ppl.lm.LMProgram(LM, PROMPT, lambda p, s: 0.0, max_steps=2), 4,
                                key=jax.random.key(0), reward=REWARD)
    with pytest.raises(TypeError, match="reward"):
        scaling.particle_filter(prog, 4, key=jax.random.key(0), reward=object())


# ------------------------------------------------------------------------- beam search, DVTS
def test_select_top_matches_numpy():
    rng = np.random.default_rng(0)
    for groups, keep, n in [(1, 2, 8), (4, 1, 8), (2, 2, 8), (1, 1, 4)]:
        s = rng.normal(size=n).astype(np.float32)
        anc = np.asarray(select_top(jnp.asarray(s), groups, keep))
        size, per = n // groups, n // groups // keep
        want = []
        for g in range(groups):
            best = np.argsort(-s[g * size:(g + 1) * size], kind="stable")[:keep] + g * size
            want += [int(b) for b in best for _ in range(per)]
        assert anc.tolist() == want


def _first_steps(res):
    return [tuple(g[:b]) for g in res.generations() for b in [segment(list(g))[0]]]


def test_beam_search_keeps_only_the_best_prefixes():
    # With width M = N, beam search keeps the single best first step: every final beam extends it,
    # and it is the best-scored of the N first steps drawn with the same key (the loop's first
    # sample uses the first split of the key, like a fresh 1-step search).
    prog = ppl.lm.LMProgram(LM, PROMPT, None, max_steps=MAX_STEPS, step_delimiter=DELIM, max_step_tokens=2, max_length=MAX_LEN)
    one = ppl.lm.LMProgram(LM, PROMPT, None, max_steps=1, step_delimiter=DELIM, max_step_tokens=2, max_length=MAX_LEN)
    for i in range(4):
        res = scaling.beam_search(prog, 8, beam_width=8, key=jax.random.key(i), reward=REWARD)
        first = scaling.beam_search(one, 8, beam_width=8, key=jax.random.key(i), reward=REWARD)
        gens1 = first.generations()
        best = max(range(8), key=lambda j: (REWARD.host_log_score(gens1[j]), -j))
        live = [g for g, r in zip(res.generations(), res.diagnostics["retired"]) if not r]
        assert all(tuple(g[:len(gens1[best])]) == tuple(gens1[best]) for g in live)
    again = scaling.beam_search(prog, 8, beam_width=4, key=jax.random.key(0), reward=REWARD)
    assert again.answers == scaling.beam_search(prog, 8, beam_width=4, key=jax.random.key(0), reward=REWARD).answers


def test_dvts_subtrees_are_independent():
    # Each subtree of M slots only ever holds descendants of its own first-step candidates.
    prog = ppl.lm.LMProgram(LM, PROMPT, None, max_steps=MAX_STEPS, step_delimiter=DELIM, max_step_tokens=2, max_length=MAX_LEN)
    one = ppl.lm.LMProgram(LM, PROMPT, None, max_steps=1, step_delimiter=DELIM, max_step_tokens=2, max_length=MAX_LEN)
    for i in range(4):
        res = scaling.dvts(prog, 8, beam_width=2, key=jax.random.key(i), reward=REWARD)
        first = scaling.dvts(one, 8, beam_width=2, key=jax.random.key(i), reward=REWARD).generations()
        for j, g in enumerate(res.generations()):
            group = first[(j // 2) * 2:(j // 2) * 2 + 2]
            assert any(tuple(g[:len(f)]) == tuple(f) for f in group)


def test_search_compute_and_finished_beams():
    prog = _program()
    res = scaling.beam_search(prog, 4, beam_width=2, key=jax.random.key(3), reward=REWARD)
    # Every live final beam is finished or has used every step; retired slots never score.
    assert res.compute.prm_calls <= 4 * MAX_STEPS and res.compute.generated_tokens >= sum(
        len(g) for g, r in zip(res.generations(), res.diagnostics["retired"]) if not r) // 2
    one = scaling.beam_search(prog, 1, beam_width=1, key=jax.random.key(3), reward=REWARD)
    gen = one.generations()[0]
    lens = _boundary_lengths(gen)
    assert one.compute.generated_tokens == len(gen) and one.compute.prm_calls == len(lens)
    assert one.compute.prm_forward_tokens == sum(lens)
    with pytest.raises(ValueError, match="beam_width"):
        scaling.beam_search(prog, 6, beam_width=4, key=jax.random.key(0), reward=REWARD)
