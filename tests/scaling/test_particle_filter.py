"""Particle filtering (Puri et al. 2025) against exact answers.

The targets are enumerated on a TinyLM program (prompt of 2 tokens, buffer of 7, steps of at most
2 tokens ended by the delimiter 1 or EOS 0): with a synthetic prefix reward r, the "ratio"
weighting targets q(x) a_K(x) and the "softmax" weighting q(x) prod_{t=1}^T odds(a_min(t,K))^(1/tau),
also when every particle finishes before T (the idle steps' factors are applied in closed form).
An independent host-side particle filter, replaying the same sampled steps and resampling draws,
checks weights, scores, ancestors, log Z-hat and the compute counters exactly.
"""

from __future__ import annotations

import collections
import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import logsumexp

import ppl
import ppl.lm.potentials as P
from tests.lm.tiny import step_bounds
from ppl import scaling
from ppl.lm.sampling import sample_step
from ppl.smc import resampling as rs
from tests.lm.test_program_exact import DELIM, EOS, MAX_LEN, MAX_STEPS, PROMPT
from tests.lm.tiny import TinyLM

MAX_STEP_TOKENS = 2


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
        z = a * list(gen_prefix).count(2) - b * list(gen_prefix).count(3) + c
        return -np.logaddexp(0.0, -z)


REWARD = PrefixReward()
LM = TinyLM(seed=1)


def _program(max_steps=MAX_STEPS, **kw):
    return ppl.lm.LMProgram(LM, PROMPT, None, max_steps=max_steps, step_delimiter=DELIM,
                            max_step_tokens=MAX_STEP_TOKENS, max_length=MAX_LEN, **kw)


def segment(gen, max_steps=MAX_STEPS):
    """Step end offsets of a generation, or None if the sampler would not stop exactly at its end."""
    return step_bounds(gen, max_steps=max_steps, prompt_length=len(PROMPT),
                       max_length=MAX_LEN, max_step_tokens=MAX_STEP_TOKENS, delimiter=DELIM, eos=EOS)


@functools.lru_cache(maxsize=None)
def _log_q_table():
    """log q(gen | prompt) of every token sequence of 1..5 tokens: one jitted batched forward pass
    over the zero-padded sequences (the tiny LM is causal, so padding after a sequence is harmless)."""
    gens = [g for k in range(1, MAX_LEN - len(PROMPT) + 1) for g in itertools.product(range(LM.vocab_size), repeat=k)]
    width = MAX_LEN - len(PROMPT)
    padded = np.array([list(g) + [0] * (width - len(g)) for g in gens], np.int32)
    seqs = np.concatenate([np.broadcast_to(PROMPT, (len(gens), len(PROMPT))), padded], 1).astype(np.int32)

    @jax.jit
    def log_q(seqs):
        m, length = seqs.shape
        pos = jnp.broadcast_to(jnp.arange(length - 1, dtype=jnp.int32), (m, length - 1))
        logits, _ = LM.apply(LM.params, seqs[:, :-1], pos, LM.init_cache(m, length))
        lp = jax.nn.log_softmax(logits, -1)[:, len(PROMPT) - 1:]
        return jnp.take_along_axis(lp, seqs[:, len(PROMPT):, None], -1)[..., 0]

    lp = np.asarray(log_q(jnp.asarray(seqs)), np.float64)
    mask = np.arange(width)[None] < np.array([len(g) for g in gens])[:, None]
    return dict(zip(gens, np.where(mask, lp, 0.0).sum(1)))


def enumerate_sequences(max_steps):
    """Every generation with its log q and the log scores of its step prefixes."""
    out = [(gen, float(lq), [REWARD.host_log_score(gen[:b]) for b in segment(gen, max_steps)])
           for gen, lq in _log_q_table().items() if segment(gen, max_steps) is not None]
    assert abs(logsumexp([lq for _, lq, _ in out])) < 1e-4, "the generation process must be a distribution"
    return out


@pytest.fixture(scope="module")
def sequences():
    return enumerate_sequences(MAX_STEPS)


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
    """Every sequence of mass > 1% within 5 Monte Carlo standard errors, and three coarse
    marginals (first token, length, number of 2s) within 0.03 in total variation."""
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


def _n_eff(results):
    # Half the summed final ESS, for the correlation the genealogy adds.
    return 0.5 * sum(r.diagnostics["final_ess"] for r in results)


RUNS, N = 12, 256


@pytest.mark.parametrize("aggregate, log_g", [
    ("last", lambda s: s[-1]),
    ("product", lambda s: sum(s)),  # ("min" differs only in the aggregate: see the host-filter test)
])
def test_ratio_weighting_targets_the_final_score(sequences, aggregate, log_g):
    log_z, target = _target(sequences, log_g)
    prog = _program()
    results = [scaling.particle_filter(prog, N, key=jax.random.key(i), reward=REWARD,
                                       potential=P.ratio(aggregate), ess_threshold=0.5, resampling="systematic")
               for i in range(RUNS)]
    _check(_pooled(results), target, _n_eff(results))
    # E[Z-hat] = Z: the log-evidence estimates average to log Z (their spread is small at N = 256).
    lz = np.array([r.diagnostics["log_evidence"] for r in results])
    assert abs(logsumexp(lz) - np.log(RUNS) - log_z) < max(4 * lz.std(ddof=1) / np.sqrt(RUNS), 0.01)



def test_annealed_resampling_keeps_the_particle_filter_target(sequences):
    """Resampling from flattened weights (entropic annealing, here at a constant T = 50) with the
    importance correction carried: the target of ratio weighting is unchanged, and the resampling
    did flatten (other ancestors)."""
    log_z, target = _target(sequences, lambda s: s[-1])
    prog = _program()
    ann = rs.annealed("systematic", 50.0)
    results = [scaling.particle_filter(prog, N, key=jax.random.key(i), reward=REWARD, potential=P.ratio(),
                                       ess_threshold=1.0, resampling=ann) for i in range(RUNS)]
    _check(_pooled(results), target, _n_eff(results))
    plain = scaling.particle_filter(prog, N, key=jax.random.key(0), reward=REWARD, potential=P.ratio(),
                                    ess_threshold=1.0, resampling="systematic")
    assert not np.array_equal(plain.diagnostics["ancestors"], results[0].diagnostics["ancestors"])
    lz = np.array([r.diagnostics["log_evidence"] for r in results])
    assert abs(logsumexp(lz) - np.log(RUNS) - log_z) < max(4 * lz.std(ddof=1) / np.sqrt(RUNS), 0.01)

def _softmax_log_g(tau, T, repeat=True):
    if repeat:  # a finished particle's final score counts once per remaining step (absorbing)
        return lambda s: sum(_odds(s[min(t, len(s)) - 1]) / tau for t in range(1, T + 1))
    return lambda s: sum(_odds(x) / tau for x in s)


SOFTMAX_T, TAU = 8, 6.0


@pytest.fixture(scope="module")
def softmax_runs():
    # max_steps = 8: every generation ends (EOS or full buffer) within 5 steps, so the filter stops
    # early and must apply the idle steps' factors G(a_K)^(T - S) itself. tau = 6 keeps the
    # per-step weights mild, so that the finite-N bias of the filter is small.
    prog = _program(max_steps=SOFTMAX_T)
    runs = [scaling.particle_filter(prog, N, key=jax.random.key(100 + i), reward=REWARD,
                                    potential=P.odds(TAU), resampling="systematic") for i in range(2 * RUNS)]
    return enumerate_sequences(SOFTMAX_T), runs


def test_softmax_weighting_targets_reweighted_absorbing_chains(softmax_runs):
    seqs, runs = softmax_runs
    for r in runs:
        assert r.diagnostics["num_steps"] < SOFTMAX_T
        assert r.diagnostics["resampled"][1:].all() and not r.diagnostics["resampled"][0]
    _check(_pooled(runs), _target(seqs, _softmax_log_g(TAU, SOFTMAX_T))[1], _n_eff(runs))


def test_wrong_softmax_targets_are_detected(softmax_runs):
    # Not the final score alone, not the product without the absorbing repeats, and not what
    # stopping without the closed-form factors of the idle steps would give (S = 5 here or less).
    seqs, runs = softmax_runs
    hist, n_eff = _pooled(runs), _n_eff(runs)
    for wrong in (lambda s: _odds(s[-1]) / TAU, _softmax_log_g(TAU, SOFTMAX_T, repeat=False),
                  _softmax_log_g(TAU, 5)):
        with pytest.raises(AssertionError):
            _check(hist, _target(seqs, wrong)[1], n_eff)


def _scheduled_log_g(taus, T):
    # Step t = 1..T weighs every particle, finished or not, at taus[min(t, len) - 1].
    tau = lambda t: taus[min(t, len(taus)) - 1]  # noqa: E731
    return lambda s: sum(_odds(s[min(t, len(s)) - 1]) / tau(t) for t in range(1, T + 1))


def test_softmax_tau_schedule_targets_the_scheduled_product():
    # An annealed schedule (the last value repeats): a finished particle is weighted by its final
    # score at the current step's tau (ppl.smc.base.reweighed), so the filter runs all T steps.
    taus = [24.0, 12.0, 6.0]
    prog = _program(max_steps=SOFTMAX_T)
    runs = [scaling.particle_filter(prog, N, key=jax.random.key(300 + i), reward=REWARD,
                                    potential=P.odds(taus), resampling="systematic") for i in range(2 * RUNS)]
    assert all(r.diagnostics["num_steps"] == SOFTMAX_T for r in runs)
    seqs, hist, n_eff = enumerate_sequences(SOFTMAX_T), _pooled(runs), _n_eff(runs)
    _check(hist, _target(seqs, _scheduled_log_g(taus, SOFTMAX_T))[1], n_eff)
    # Not one constant tau, and not a finished particle kept at the tau of its last step (absorbing).
    tau_k = lambda k: taus[min(k, len(taus)) - 1]  # noqa: E731
    absorbed = lambda s: sum(_odds(s[min(t, len(s)) - 1]) / tau_k(min(t, len(s))) for t in range(1, SOFTMAX_T + 1))  # noqa: E731
    for wrong in (_softmax_log_g(taus[0], SOFTMAX_T), absorbed):
        with pytest.raises(AssertionError):
            _check(hist, _target(seqs, wrong)[1], n_eff)
    sched = ppl.lm.potentials.tau_schedule(24.0, 6.0, 3)
    np.testing.assert_allclose(np.asarray(sched), taus, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(ppl.lm.potentials.tau_schedule(2.0, 1.0, 3, "linear")), [2.0, 1.5, 1.0])
    with pytest.raises(ValueError, match="tau"):
        scaling.particle_filter(prog, 4, key=jax.random.key(0), reward=REWARD, potential=P.odds([1.0, -2.0]))


# ------------------------------------------------------------ an independent host-side filter
_sample = jax.jit(sample_step, static_argnums=(0, 4))
_AGG = {"last": lambda s: s[-1], "model": lambda s: s[-1], "min": min, "product": sum}


def host_particle_filter(prog, n, key, *, aggregate, weighting, tau, kappa, scheme):
    """Puri et al.'s filter in plain Python lists, drawing the same steps (sample_step with the
    same keys) and the same resampling uniforms; scores from the host-side reward."""
    T, agg, p = prog.num_steps, _AGG[aggregate], len(PROMPT)
    x = jax.tree_util.tree_map(lambda a: jnp.broadcast_to(a, (n,) + a.shape), prog.prompt_state(prog.data))
    hist = [[] for _ in range(n)]  # log scores of each particle's step prefixes
    log_w, log_z = np.full(n, -np.log(n)), 0.0
    gen = calls = read = t = 0
    ancestors = []
    while t < T and not np.asarray(x.done).all():
        key, k_res, k_move = jax.random.split(key, 3)
        anc = np.arange(n)
        if t > 0 and (kappa >= 1 or 1.0 / np.sum(np.exp(2 * log_w)) < kappa * n):
            # the engine puts the ancestors in stable order (survivors keep their slots)
            anc = np.asarray(rs.stable_order(scheme(k_res, jnp.asarray(log_w, jnp.float32), n)))
            x = rs.gather(x, jnp.asarray(anc))
            hist = [list(hist[a]) for a in anc]
            log_w = np.full(n, -np.log(n))
        ancestors.append(anc)
        live = ~np.asarray(x.done)
        new, _, _ = _sample(LM, prog.data["params"], k_move, x, prog.config)
        tokens, old_len, new_len = np.asarray(new.tokens), np.asarray(x.length), np.asarray(new.length)
        gen += int((new_len - old_len).sum())
        inc = np.zeros(n)
        for i in range(n):
            prev = agg(hist[i]) if hist[i] else 0.0
            if live[i]:
                hist[i].append(REWARD.host_log_score(tokens[i, p:new_len[i]].tolist()))
                calls, read = calls + 1, read + int(new_len[i])
            a = agg(hist[i])
            inc[i] = _odds(a) / tau if weighting == "softmax" else (a - prev if live[i] else 0.0)
        log_w = log_w + inc
        log_z += logsumexp(log_w)
        log_w = log_w - logsumexp(log_w)
        x, t = new, t + 1
    a = np.array([agg(h) for h in hist])
    if weighting == "softmax" and t < T:
        log_w = log_w + (T - t) * _odds(a) / tau
        log_z += logsumexp(log_w)
        log_w = log_w - logsumexp(log_w)
    gens = [row[p:length].tolist() for row, length in zip(np.asarray(x.tokens), np.asarray(x.length))]
    return dict(gens=gens, log_w=log_w, scores=np.exp(a), log_z=log_z, steps=t, ancestors=np.array(ancestors),
                gen=gen, calls=calls, read=read)


@pytest.mark.parametrize("n, max_steps, options", [
    (8, MAX_STEPS, dict(aggregate="min", weighting="softmax", tau=0.7, ess_threshold=1.0, resampling="multinomial")),
    (8, MAX_STEPS, dict(aggregate="product", weighting="ratio", tau=1.0, ess_threshold=0.5, resampling="systematic")),
    (6, 8, dict(aggregate="model", weighting="softmax", tau=2.0, ess_threshold=0.7, resampling="residual")),
])
def test_particle_filter_equals_a_host_side_filter_on_the_same_draws(n, max_steps, options):
    prog = _program(max_steps=max_steps)
    scheme = rs.get_scheme(options["resampling"])
    for seed in range(3):
        key = jax.random.key(seed)
        pot = (P.odds(options["tau"], options["aggregate"]) if options["weighting"] == "softmax"
               else P.ratio(options["aggregate"]))
        res = scaling.particle_filter(prog, n, key=key, reward=REWARD, potential=pot,
                                      ess_threshold=options["ess_threshold"], resampling=options["resampling"])
        want = host_particle_filter(prog, n, key, aggregate=options["aggregate"], weighting=options["weighting"],
                                    tau=options["tau"], kappa=options["ess_threshold"], scheme=scheme)
        d = res.diagnostics
        assert res.generations() == want["gens"]
        assert d["num_steps"] == want["steps"]
        np.testing.assert_array_equal(d["ancestors"], want["ancestors"])
        np.testing.assert_allclose(res.log_weights, want["log_w"], atol=2e-4)
        np.testing.assert_allclose(res.scores, want["scores"], rtol=1e-5)
        assert d["log_evidence"] == pytest.approx(want["log_z"], abs=2e-4)
        c = res.compute
        assert (c.generated_tokens, c.prm_calls, c.prm_forward_tokens) == (want["gen"], want["calls"], want["read"])
        assert c.lm_forward_tokens == len(PROMPT) + want["gen"]
        lm_size = sum(np.size(v) for v in jax.tree_util.tree_leaves(LM.params))
        assert c.flops == pytest.approx(2 * lm_size * c.lm_forward_tokens + 2 * 3 * c.prm_forward_tokens)


def test_particle_filter_selects_and_validates():
    prog = _program()
    opts = dict(reward=REWARD, answer_fn=lambda g: len(g), potential=P.odds(0.7, "min"))  # compiled by the host-filter test
    res = scaling.particle_filter(prog, 8, key=jax.random.key(0), **opts)
    best = int(np.nanargmax(np.where([a is not None for a in res.answers], res.scores, -np.inf)))
    assert res.answer == res.answers[best] and res.selected == best
    vote = scaling.particle_filter(prog, 8, key=jax.random.key(0), select="vote", **opts)
    assert vote.answer == next(iter(vote.answer_posterior)) and vote.answers == res.answers
    post = collections.defaultdict(float)
    for a, lw in zip(res.answers, res.log_weights):
        post[a] += np.exp(lw)
    assert vote.answer == max(post, key=post.get)
    for kw, match in [(lambda: dict(potential=P.odds(aggregate="mean")), "aggregate"),
                      (lambda: dict(potential=P.RewardPotential("exp")), "weighting"),
                      (lambda: dict(potential=P.odds(0.0)), "tau"), (lambda: dict(ess_threshold=2.0), "ess_threshold"),
                      (lambda: dict(select="majority"), "select"), (lambda: dict(resampling="bogus"), "resampling")]:
        with pytest.raises(ValueError, match=match):
            scaling.particle_filter(prog, 4, key=jax.random.key(0), reward=REWARD, **kw())
    with pytest.raises(TypeError, match="potential"):
        scaling.particle_filter(prog, 4, key=jax.random.key(0), reward=REWARD, potential="softmax")
    with pytest.raises(ValueError, match="num_particles"):
        scaling.particle_filter(prog, 0, key=jax.random.key(0), reward=REWARD)
    with pytest.raises(ValueError, match="program"):
        scaling.particle_filter(ppl.lm.LMProgram(LM, PROMPT, lambda p, s: 0.0, max_steps=2), 4,
                                key=jax.random.key(0), reward=REWARD)
    with pytest.raises(TypeError, match="reward"):
        scaling.particle_filter(prog, 4, key=jax.random.key(0), reward=object())


def test_ratio_weighting_reports_all_zero_scores():
    class Zero(PrefixReward):
        def log_score(self, params, state):
            return jnp.float32(-jnp.inf)

    with pytest.raises(ppl.SMCError, match="particle_filter"):
        scaling.particle_filter(_program(), 4, key=jax.random.key(0), reward=Zero(), potential=P.ratio())
