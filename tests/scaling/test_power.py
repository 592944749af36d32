"""Power sampling (ppl.scaling.power) against brute-force enumeration of p(x)^alpha on a TinyLM program.

Vocabulary of 5 (0 = EOS, 1 = step delimiter), prompt of 2 tokens, at most 5 generated tokens in
at most 3 steps of at most 2 tokens: 400-odd generations, enumerated exactly. The histogram of
the chains' final states must match p^alpha / Z and be far from what a wrong acceptance ratio
would target (alpha off by one; the log K - log K' term dropped, whose stationary law is
p^alpha K / Z'); compute accounting is checked against hand-counted tokens.
"""

import collections
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import logsumexp

import ppl
from ppl.scaling.power import power_sampling
from tests.lm.tiny import TinyLM, step_bounds

PROMPT = np.array([3, 4])
MAX_LEN, MAX_STEPS, MAX_STEP_TOKENS, DELIM, EOS = 7, 3, 2, 1, 0


def program(lm, temperature, **kw):
    opts = dict(max_steps=MAX_STEPS, step_delimiter=DELIM, max_step_tokens=MAX_STEP_TOKENS, max_length=MAX_LEN)
    opts.update(kw)
    return ppl.lm.LMProgram(lm, PROMPT, None, temperature=temperature, **opts)


def segment(gen, prompt_len=len(PROMPT)):
    """Step end offsets of a generation, or None if the sampler would not stop exactly at its end."""
    return step_bounds(gen, max_steps=MAX_STEPS, prompt_length=prompt_len,
                       max_length=MAX_LEN, max_step_tokens=MAX_STEP_TOKENS, delimiter=DELIM, eos=EOS)


def enumerate_generations(lm, temperature):
    """Every generation with its log p (the LM), log q (the sampler at ``temperature``) and K."""
    gens = [g for k in range(1, MAX_LEN - len(PROMPT) + 1)
            for g in itertools.product(range(lm.vocab_size), repeat=k) if segment(list(g)) is not None]
    width = MAX_LEN - len(PROMPT)
    g = np.zeros((len(gens), width), np.int32)  # padded; one batched forward pass (causal: padding is harmless)
    for i, x in enumerate(gens):
        g[i, :len(x)] = x
    valid = np.arange(width)[None] < np.array([len(x) for x in gens])[:, None]
    seqs = np.concatenate([np.broadcast_to(PROMPT, (len(g), len(PROMPT))), g], 1).astype(np.int32)
    m, length = seqs.shape
    logits, _ = lm.apply(lm.params, jnp.asarray(seqs[:, :-1]),
                         jnp.broadcast_to(jnp.arange(length - 1, dtype=jnp.int32), (m, length - 1)),
                         lm.init_cache(m, length))
    logits = np.asarray(logits, np.float64)[:, len(PROMPT) - 1:]
    lp = logits - logsumexp(logits, -1, keepdims=True)
    lq = logits / temperature - logsumexp(logits / temperature, -1, keepdims=True)
    take = lambda a: np.where(valid, np.take_along_axis(a, g[..., None], -1)[..., 0], 0.0).sum(1)  # noqa: E731
    log_p, log_q = take(lp), take(lq)
    assert abs(logsumexp(log_p)) < 1e-6 and abs(logsumexp(log_q)) < 1e-6
    return gens, log_p, log_q, [segment(list(x)) for x in gens]


def normalise(log_w):
    return np.exp(log_w - logsumexp(log_w))


def histogram(generations, keys):
    counts = collections.Counter(tuple(g) for g in generations)
    index = {k: i for i, k in enumerate(keys)}
    assert set(counts) <= set(index), "a chain produced a generation the sampler cannot produce"
    h = np.zeros(len(keys))
    for k, c in counts.items():
        h[index[k]] = c
    return h / h.sum()


LM = TinyLM(seed=5, scale=1.0)  # p^2 spreads over ~20 generations of 1, 2 and 3 steps


def lumped_tv(h, t, threshold=0.004):
    """Total variation over the generations of target mass > ``threshold``, the rest lumped into
    one category (hundreds of tiny categories would only add Monte Carlo noise)."""
    big = t > threshold
    return 0.5 * float(np.abs(h[big] - t[big]).sum() + abs(h[~big].sum() - t[~big].sum()))


@pytest.mark.parametrize("temperature,alpha,steps", [(1.0, 2.0, 40), (0.5, 2.0, 100), (1.0, 1.0, 20)])
def test_stationary_distribution_is_p_to_the_alpha(temperature, alpha, steps):
    gens, log_p, log_q, bounds = enumerate_generations(LM, temperature)
    K = np.array([len(b) for b in bounds])
    target = normalise(alpha * log_p)
    # What a wrong acceptance ratio would converge to: without log K - log K' the chain is
    # reversible w.r.t. p^alpha K; a wrong power targets p^(alpha + 1) or p^(alpha - 1/2).
    wrong = {"no log K": normalise(alpha * log_p + np.log(K)), "alpha + 1": normalise((alpha + 1) * log_p),
             "alpha - 1/2": normalise((alpha - 0.5) * log_p)}
    tol = 0.05
    for name, w in wrong.items():
        assert lumped_tv(w, target) > 1.5 * tol, name  # the test can tell them apart

    res = power_sampling(program(LM, temperature), 8000, steps, key=jax.random.key(0), alpha=alpha)
    hist = histogram(res.generations(), gens)
    # Monte Carlo error of 8000 chains: lumped TV ~ 0.02-0.025 at stationarity.
    assert lumped_tv(hist, target) < tol, lumped_tv(hist, target)
    for name, w in wrong.items():
        assert lumped_tv(hist, w) > tol, name
    # The number of steps, a marginal the log K term acts on directly.
    for k in (1, 2, 3):
        assert abs(hist[K == k].sum() - target[K == k].sum()) < 0.025, k
    rate = res.diagnostics["acceptance_rate"]
    assert 0.05 < rate < 0.999
    # The chains' log p(x) as reported matches the enumerated log p of their generations.
    lookup = dict(zip(map(tuple, gens), log_p))
    want = np.array([lookup[tuple(g)] for g in res.generations()])
    np.testing.assert_allclose(res.diagnostics["log_p"], want, atol=2e-4)
    np.testing.assert_array_equal(res.diagnostics["num_steps"],
                                  [len(segment(g)) for g in res.generations()])


def _no_eos_lm():
    lm = TinyLM(seed=5, scale=1.0)
    lm.params = dict(lm.params, emb=lm.params["emb"].at[:, EOS].set(-60.0))  # EOS never sampled
    return lm


class CountingReward:
    """A reward that scores the number of 2s (for the compute count and argmax selection)."""

    params = {"w": jnp.asarray(1.0)}
    flops_per_token = 10.0

    def static_key(self):
        return ("CountingReward",)

    def log_score(self, params, state):
        idx = jnp.arange(state.tokens.shape[0])
        gen = (idx >= state.prompt_length) & (idx < state.length)
        return jax.nn.log_sigmoid(params["w"] * jnp.sum(gen & (state.tokens == 2)) - 2.0)


def test_compute_is_counted_exactly():
    lm = _no_eos_lm()
    # One step of 3 tokens: every MH move regenerates the whole generation (j = 0).
    prog = program(lm, 1.0, max_steps=1, max_step_tokens=3, step_delimiter=())
    C, S, P = 5, 4, len(PROMPT)
    res = power_sampling(prog, C, S, key=jax.random.key(1), alpha=3.0, reward=CountingReward())
    assert res.compute.generated_tokens == C * 3 * (S + 1)
    assert res.compute.lm_forward_tokens == P + C * 3 * (S + 1)
    assert res.compute.prm_calls == C
    assert res.compute.prm_forward_tokens == C * (P + 3)
    assert res.compute.flops == pytest.approx(ppl.scaling.flops_per_token(lm) * res.compute.lm_forward_tokens
                                              + 10.0 * C * (P + 3))
    # With a reward the answer is the highest-scored chain's (select=None -> "argmax").
    n_two = [g.count(2) for g in res.generations()]
    assert res.selected == int(np.argmax(n_two)) and res.scores.shape == (C,)
    # Two steps of 2 tokens: a move from step j regenerates 2 (2 - j) tokens.
    prog = program(lm, 1.0, max_steps=2, max_step_tokens=2, step_delimiter=())
    res = power_sampling(prog, C, S, key=jax.random.key(2), alpha=3.0)
    g = res.compute.generated_tokens
    assert C * 4 + C * S * 2 <= g <= C * 4 + C * S * 4 and g % 2 == 0
    assert res.compute.prm_calls == 0 and res.selected >= 0
    assert all(len(x) == 4 for x in res.generations())


def test_same_key_same_result_and_no_recompile_for_new_alpha_or_prompt():
    prog = program(LM, 1.0)  # the sizes of a test above: compiled once
    a = power_sampling(prog, 8000, 40, key=jax.random.key(3), alpha=2.0)
    b = power_sampling(prog, 8000, 40, key=jax.random.key(3), alpha=2.0)
    assert a.generations() == b.generations()
    before = list(ppl.core.cache.JIT_CACHE)
    power_sampling(prog.with_prompt(np.array([4, 2])), 8000, 40, key=jax.random.key(3), alpha=5.0)
    assert list(ppl.core.cache.JIT_CACHE) == before
    zero = power_sampling(prog, 16, 0, key=jax.random.key(3))
    assert zero.compute.generated_tokens == sum(len(g) for g in zero.generations())
    assert np.isnan(zero.diagnostics["acceptance_rate"])


def test_errors_name_the_argument():
    prog = program(LM, 0.5)
    key = jax.random.key(0)
    with_potential = ppl.lm.LMProgram(LM, PROMPT, ppl.lm.on_prefix(lambda s: 0.0), max_steps=2,
                                      max_step_tokens=2, max_length=MAX_LEN)
    with pytest.raises(ValueError, match="program"):
        power_sampling(with_potential, 4, 2, key=key)
    with pytest.raises(TypeError, match="program"):
        power_sampling("not a program", 4, 2, key=key)
    with pytest.raises(ValueError, match="num_chains"):
        power_sampling(prog, 0, 2, key=key)
    with pytest.raises(ValueError, match="num_mh_steps"):
        power_sampling(prog, 4, -1, key=key)
    with pytest.raises(ValueError, match="alpha"):
        power_sampling(prog, 4, 2, key=key, alpha=0.0)
    with pytest.raises(ValueError, match="key"):
        power_sampling(prog, 4, 2, key=jax.random.split(key, 2))
    with pytest.raises(ValueError, match="select"):
        power_sampling(prog, 4, 2, key=key, select="best")
    with pytest.raises(TypeError, match="reward"):
        power_sampling(prog, 4, 2, key=key, reward=object())
