"""Independent rollouts and the selection rules on them (ppl.scaling.sampling).

Selection rules are checked on hand-made particle sets against hand-computed answers; rollouts
on a TinyLM program against brute-force enumeration of the sampler q (temperature 0.7, top-3),
with a chi-square test that must also reject the LM's own distribution p; compute accounting
against tokens counted from the particles.
"""

import collections

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import ppl
from ppl import scaling
from ppl.lm import LMState
from ppl.lm.compute import flops_per_token
from tests.lm.tiny import TinyLM

# ------------------------------------------------------------------ hand-made particle sets
PROMPT_LEN = 2
NO = 9  # a generation ending in token 9 has no answer


def answer_fn(ids):
    """The last generated token is the answer (None for token 9 or an empty generation)."""
    return ids[-1] if ids and ids[-1] != NO else None


def make_state(gens, width=8):
    n = len(gens)
    tokens = np.zeros((n, width), np.int32)
    tokens[:, :PROMPT_LEN] = 7
    for i, g in enumerate(gens):
        tokens[i, PROMPT_LEN:PROMPT_LEN + len(g)] = g
    lens = np.array([PROMPT_LEN + len(g) for g in gens], np.int32)
    z = np.zeros(n, np.float32)
    return LMState(tokens=jnp.asarray(tokens), length=jnp.asarray(lens), cache=None,
                   num_steps=jnp.ones(n, jnp.int32), step_start=jnp.full(n, PROMPT_LEN, jnp.int32),
                   prompt_length=jnp.full(n, PROMPT_LEN, jnp.int32), done=jnp.ones(n, bool),
                   step_log_p=jnp.asarray(z), step_log_q=jnp.asarray(z))


def make_rollouts(gens, scores=None, log_p=None):
    n = len(gens)
    lens = np.array([len(g) for g in gens])
    sc = np.full(n, np.nan) if scores is None else np.asarray(scores, float)
    lp = -0.5 * lens if log_p is None else np.asarray(log_p, float)
    prm = np.zeros(n, int) if scores is None else PROMPT_LEN + lens
    return scaling.Rollouts(particles=make_state(gens), scores=sc, log_p=lp, log_q=lp, num_tokens=lens,
                            generated_tokens=lens, prm_forward_tokens=prm, prompt_length=PROMPT_LEN)


def test_self_consistency_votes_with_ties_and_missing_answers():
    # answers: 1, 2, 2, None, 1, None, None
    pool = make_rollouts([[4, 1], [2], [3, 2], [NO], [1], [5, NO], [NO]])
    res = scaling.self_consistency_from(pool, answer_fn=answer_fn)
    assert res.answers == [1, 2, 2, None, 1, None, None]
    assert res.answer == 1 and res.selected == 0  # tie 1 vs 2: the answer seen first; None never wins
    assert list(res.answer_posterior) == [None, 1, 2]
    np.testing.assert_allclose(list(res.answer_posterior.values()), [3 / 7, 2 / 7, 2 / 7])
    res3 = scaling.self_consistency_from(pool, 3, answer_fn=answer_fn)
    assert res3.answer == 2 and res3.selected == 1 and res3.num_particles == 3 and res3.budget == 3


def test_all_none_answers():
    pool = make_rollouts([[NO], [3, NO]], scores=[0.9, 0.2])
    for fn in (scaling.self_consistency_from, scaling.best_of_n_from, scaling.weighted_best_of_n_from,
               scaling.weighted_majority_from):
        res = fn(pool, answer_fn=answer_fn)
        assert res.answer is None and res.selected == -1
        assert res.answer_posterior == {None: pytest.approx(1.0)}


# answers 1, 2, 2, 3, 3, 3 with a None-answer particle holding the top score
GENS = [[1], [5, 2], [2], [3], [4, 3], [3], [NO]]
SCORES = [0.95, 0.5, 0.5, 0.3, 0.3, 0.3, 0.99]


def test_best_of_n_takes_the_highest_score_with_an_answer():
    res = scaling.best_of_n_from(make_rollouts(GENS, SCORES), answer_fn=answer_fn)
    assert res.answer == 1 and res.selected == 0 and res.method == "best_of_n"
    # ties in the top score go to the first particle
    res = scaling.best_of_n_from(make_rollouts([[1], [2], [2]], [0.4, 0.8, 0.8]), answer_fn=answer_fn)
    assert res.answer == 2 and res.selected == 1


def test_weighted_best_of_n_sums_scores_per_answer():
    res = scaling.weighted_best_of_n_from(make_rollouts(GENS, SCORES), answer_fn=answer_fn)
    sums = {1: 0.95, 2: 1.0, 3: 0.9, None: 0.99}
    total = sum(sums.values())
    assert res.answer == 2 and res.selected in (1, 2)
    assert res.answer_posterior == pytest.approx({a: s / total for a, s in sums.items()})
    # best-of-N carries the same weights, only the selection differs
    bon = scaling.best_of_n_from(make_rollouts(GENS, SCORES), answer_fn=answer_fn)
    assert bon.answer_posterior == pytest.approx(res.answer_posterior)
    sc = scaling.self_consistency_from(make_rollouts(GENS, SCORES), answer_fn=answer_fn)
    assert sc.answer == 3


@pytest.mark.parametrize("tau,expected", [(1.0, 1), (10.0, 3)])
def test_weighted_majority_uses_odds_to_the_one_over_tau(tau, expected):
    res = scaling.weighted_majority_from(make_rollouts(GENS, SCORES), answer_fn=answer_fn, tau=tau)
    odds = (np.array(SCORES) / (1 - np.array(SCORES))) ** (1 / tau)
    by = collections.defaultdict(float)
    for a, w in zip(res.answers, odds):
        by[a] += w
    total = sum(by.values())
    assert res.answer == expected
    assert res.answer_posterior == pytest.approx({a: w / total for a, w in by.items()})
    np.testing.assert_allclose(np.exp(res.log_weights), odds / odds.sum())
    assert res.diagnostics["tau"] == tau


def test_weighted_majority_clips_scores_of_zero_and_one():
    res = scaling.weighted_majority_from(make_rollouts([[1], [2], [2]], [1.0, 0.0, 0.0]), answer_fn=answer_fn,
                                         eps=1e-3)
    assert np.all(np.isfinite(res.log_weights))
    odds = np.array([999.0, 1 / 999, 1 / 999])
    np.testing.assert_allclose(np.exp(res.log_weights), odds / odds.sum(), rtol=1e-6)
    assert res.answer == 1


def test_selection_validates_its_arguments():
    pool = make_rollouts(GENS, SCORES)
    for bad in (0, 8, True, 2.0):
        with pytest.raises(ValueError, match="k"):
            scaling.best_of_n_from(pool, bad, answer_fn=answer_fn)
    with pytest.raises(ValueError, match="tau"):
        scaling.weighted_majority_from(pool, tau=0.0)
    with pytest.raises(ValueError, match="select"):
        scaling.self_consistency_from(pool, select="mode")
    with pytest.raises(TypeError, match="answer_fn"):
        scaling.self_consistency_from(pool, answer_fn="last")
    with pytest.raises(TypeError, match="rollouts"):
        scaling.best_of_n_from([1, 2, 3])
    unscored = make_rollouts(GENS)
    for fn in (scaling.best_of_n_from, scaling.weighted_best_of_n_from, scaling.weighted_majority_from):
        with pytest.raises(ValueError, match="reward"):
            fn(unscored, answer_fn=answer_fn)
    assert scaling.self_consistency_from(unscored, answer_fn=answer_fn).answer == 3
    with pytest.raises(ValueError, match="log_p"):
        scaling.Rollouts(particles=make_state(GENS), scores=np.zeros(7), log_p=np.zeros(6), log_q=np.zeros(7),
                         num_tokens=np.ones(7), generated_tokens=np.ones(7), prm_forward_tokens=np.ones(7),
                         prompt_length=2)


# ------------------------------------------------------------------ TinyLM programs
PROMPT = np.array([2, 3])
EOS, DELIM, MAX_STEPS, MAX_STEP_TOKENS, MAX_LEN = 0, 1, 2, 2, 7
TEMPERATURE, TOP_K = 0.7, 3


class CountReward:
    """r = sigmoid(w * (number of token 2 generated) - 1)."""

    flops_per_token = 3.0

    def __init__(self, w=0.7):
        self.params = {"w": jnp.asarray(w, jnp.float32)}

    def static_key(self):
        return ("CountReward",)

    def log_score(self, params, state):
        idx = jnp.arange(state.tokens.shape[0])
        gen = (idx >= state.prompt_length) & (idx < state.length)
        return jax.nn.log_sigmoid(params["w"] * jnp.sum(gen & (state.tokens == 2)) - 1.0)


@pytest.fixture(scope="module")
def lm():
    return TinyLM(seed=1)


def program(lm, potential=None, **kw):
    opts = dict(max_steps=MAX_STEPS, step_delimiter=DELIM, max_step_tokens=MAX_STEP_TOKENS, max_length=MAX_LEN,
                temperature=TEMPERATURE, top_k=TOP_K)
    opts.update(kw)
    return ppl.lm.LMProgram(lm, PROMPT, potential, **opts)


def complete_generations(vocab):
    """Every generation the sampler can end with: EOS ends it, a delimiter or the step-token
    limit ends a step, ``MAX_STEPS`` steps end it (the buffer never fills here)."""
    out = []

    def rec(gen, steps, in_step):
        for tok in range(vocab):
            g, n = gen + [tok], in_step + 1
            if tok == EOS:
                out.append(tuple(g))
            elif tok == DELIM or n >= MAX_STEP_TOKENS:
                if steps + 1 == MAX_STEPS:
                    out.append(tuple(g))
                else:
                    rec(g, steps + 1, 0)
            else:
                rec(g, steps, n)

    rec([], 0, 0)
    assert max(len(g) for g in out) + len(PROMPT) < MAX_LEN
    return out


def full_logits(lm, gens):
    """Logits ``[M, L, V]`` predicting each generated token, from one batched full forward pass
    (no cache) over the zero-padded sequences (causal: padding after a token does not affect it)."""
    width = len(PROMPT) + max(len(g) for g in gens)
    seqs = np.zeros((len(gens), width), np.int32)
    for i, g in enumerate(gens):
        seqs[i, :len(PROMPT) + len(g)] = list(PROMPT) + list(g)
    m = len(gens)
    logits, _ = lm.apply(lm.params, jnp.asarray(seqs[:, :-1]),
                         jnp.broadcast_to(jnp.arange(width - 1, dtype=jnp.int32), (m, width - 1)),
                         lm.init_cache(m, width))
    return np.asarray(logits, np.float64)[:, len(PROMPT) - 1:]


def enumerate_sampler(logits, gens, temperature, top_k):
    """{generation: probability} under temperature + top-k sampling (numpy, float64)."""
    lg = logits / temperature
    kth = np.sort(lg, axis=-1)[..., -top_k][..., None]
    lg = np.where(lg < kth, -np.inf, lg)
    mx = lg.max(-1, keepdims=True)
    lq = lg - mx - np.log(np.sum(np.exp(lg - mx), -1, keepdims=True))
    probs = {}
    for i, g in enumerate(gens):
        probs[g] = float(np.exp(sum(lq[i, j, t] for j, t in enumerate(g))))
    total = sum(probs.values())
    assert abs(total - 1.0) < 1e-6, total
    return probs


def chi_square_pvalue(counts, probs, n):
    """Pearson chi-square goodness of fit; cells with expected count < 5 are pooled."""
    assert set(counts) <= {g for g, p in probs.items() if p > 0}, "a generation the sampler cannot produce"
    obs, exp, rest_o, rest_e = [], [], 0.0, 0.0
    for g, p in probs.items():
        if n * p >= 5:
            obs.append(counts.get(g, 0))
            exp.append(n * p)
        else:
            rest_o += counts.get(g, 0)
            rest_e += n * p
    if rest_e > 0:
        obs.append(rest_o)
        exp.append(rest_e)
    obs, exp = np.array(obs), np.array(exp)
    stat = float(np.sum((obs - exp) ** 2 / exp))
    return float(stats.chi2.sf(stat, len(obs) - 1))


def test_rollouts_sample_the_programs_sampler(lm):
    n = 3000
    pool = scaling.rollouts(program(lm), n, key=jax.random.key(0))
    gens = [tuple(g) for g in scaling.generations(pool.particles)]
    counts = collections.Counter(gens)
    support = complete_generations(lm.vocab_size)
    logits = full_logits(lm, support)
    q = enumerate_sampler(logits, support, TEMPERATURE, TOP_K)
    assert chi_square_pvalue(counts, q, n) > 1e-3
    # The same test rejects the LM's own distribution (temperature 1, no truncation) and samplers
    # with only the temperature or only the truncation right.
    p = enumerate_sampler(logits, support, 1.0, lm.vocab_size)
    for wrong in (p, enumerate_sampler(logits, support, 1.0, TOP_K),
                  enumerate_sampler(logits, support, TEMPERATURE, lm.vocab_size)):
        assert chi_square_pvalue(counts, wrong, n) < 1e-6
    # log_p is the LM's log-probability of the generation, log_q the sampler's; num_tokens its length.
    np.testing.assert_array_equal(pool.num_tokens, [len(g) for g in gens])
    np.testing.assert_allclose(pool.log_p, [np.log(p[g]) for g in gens], atol=1e-4)
    np.testing.assert_allclose(pool.log_q, [np.log(q[g]) for g in gens], atol=1e-4)
    np.testing.assert_allclose(pool.mean_token_log_p, pool.log_p / pool.num_tokens)
    assert np.all(np.isnan(pool.scores)) and not pool.has_reward
    assert pool.compute().prm_calls == 0 and pool.compute().prm_forward_tokens == 0


def test_rollouts_compute_and_scores_are_counted_exactly(lm):
    reward = CountReward()
    n = 6
    pool = scaling.rollouts(program(lm), n, key=jax.random.key(3), reward=reward)
    gens = scaling.generations(pool.particles)
    lens = np.array([len(g) for g in gens])
    # scores: the reward of each finished generation, computed here from the tokens
    twos = np.array([g.count(2) for g in gens])
    np.testing.assert_allclose(pool.scores, 1 / (1 + np.exp(-(0.7 * twos - 1.0))), rtol=1e-5)
    for k in (1, 4, n):
        comp = pool.compute(k)
        gen = int(lens[:k].sum())
        lm_fwd = len(PROMPT) + gen  # one prefill of the prompt, then one forward per generated token
        prm_fwd = int((len(PROMPT) + lens[:k]).sum())  # each rollout's final prefix, read once
        assert comp == scaling.Compute(gen, lm_fwd, k, prm_fwd, flops_per_token(lm) * lm_fwd + 3.0 * prm_fwd)
        sub = pool.take(k)
        assert sub.compute() == comp and sub.n == k
        assert scaling.generations(sub.particles) == gens[:k]
        np.testing.assert_array_equal(sub.scores, pool.scores[:k])
        # selecting on the first k of the pool is selecting on take(k), compute included
        a = scaling.weighted_best_of_n_from(pool, k, answer_fn=scaling.whole_generation)
        b = scaling.weighted_best_of_n_from(sub, answer_fn=scaling.whole_generation)
        assert (a.answer, a.selected, a.compute, a.budget) == (b.answer, b.selected, b.compute, k)
    assert pool.compute() == pool.compute(n)


def test_program_entry_points_equal_selection_on_a_pool(lm):
    prog, reward, key = program(lm), CountReward(), jax.random.key(5)
    pool = scaling.rollouts(prog, 6, key=key, reward=reward)
    pairs = [(scaling.best_of_n, scaling.best_of_n_from, {}),
             (scaling.weighted_best_of_n, scaling.weighted_best_of_n_from, {}),
             (scaling.self_consistency, scaling.self_consistency_from, {}),
             (scaling.weighted_majority, scaling.weighted_majority_from, {"tau": 0.5})]
    for direct, from_pool, kw in pairs:
        a = direct(prog, 6, key=key, reward=reward, **kw)
        b = from_pool(pool, **kw)
        assert a.method == b.method
        assert (a.answer, a.selected, a.compute) == (b.answer, b.selected, b.compute)
        np.testing.assert_allclose(a.log_weights, b.log_weights)
    # a new prompt of the same padded width reuses the compiled sampler
    other = prog.with_prompt(np.array([3, 4, 2]))
    res = scaling.self_consistency(other, 6, key=key)
    assert res.compute.lm_forward_tokens == 3 + res.compute.generated_tokens


def test_rollouts_validate_before_compute(lm):
    reward = CountReward()
    with pytest.raises(ValueError, match="program"):
        scaling.rollouts(program(lm, ppl.lm.on_prefix(lambda s: 0.0)), 4, key=jax.random.key(0))
    with pytest.raises(TypeError, match="program"):
        scaling.rollouts("not a program", 4, key=jax.random.key(0))
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="n"):
            scaling.rollouts(program(lm), bad, key=jax.random.key(0))
    for fn in (scaling.best_of_n, scaling.weighted_best_of_n, scaling.weighted_majority):
        with pytest.raises(ValueError, match="reward"):
            fn(program(lm), 4, key=jax.random.key(0), reward=None)
    with pytest.raises(ValueError, match="tau"):
        scaling.weighted_majority(program(lm), 4, key=jax.random.key(0), reward=reward, tau=-1.0)
    with pytest.raises(TypeError, match="reward"):
        scaling.rollouts(program(lm), 4, key=jax.random.key(0), reward=object())


def test_a_nan_reward_is_reported(lm):
    class NaNReward(CountReward):
        def static_key(self):
            return ("NaNReward",)

        def log_score(self, params, state):
            return jnp.where(state.length > 3, jnp.nan, 0.0)

    with pytest.raises(FloatingPointError, match="reward"):
        scaling.rollouts(program(lm), 6, key=jax.random.key(3), reward=NaNReward())
