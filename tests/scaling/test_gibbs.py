"""Particle Gibbs and parallel tempering (ppl.scaling.gibbs) against brute-force enumeration.

The TinyLM program of tests/scaling/test_power.py (1201 generations of at most 3 steps) with the
sampler at temperature 0.8 as base distribution q and a reward whose log-odds is a sum of token
scores, s(x_{1:t}) = sum_i w[x_i] + b. The target is enumerated exactly,

    pi(x) ∝ q(x) prod_{t <= K(x)} exp(s(x_{1:t}) / tau)          (potential=odds(tau), finished=factor_one)
    pi(x) ∝ q(x) prod_{t <= T} exp(s(x_{1:min(t,K)}) / tau)      (potential=odds(tau), finished=absorbing)
    pi(x) ∝ q(x) exp(s(x) / tau)                                  (potential=odds_ratio(tau)),

and the chains' answer posteriors are compared with it on two marginals (the number of 2s and
of 4s in a generation: few categories, so little Monte Carlo noise) that a wrong target would
move by 0.06-0.3 in total variation (the LM p instead of q as base, tau ignored, prefix vs twist).
PT's coldest chain must match the same target and its swap acceptance the exact stationary
expectation; compute is checked against hand-counted tokens.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ppl
from ppl.lm.potentials import odds, odds_ratio
from ppl.smc.base import factor_one
from ppl.scaling.gibbs import parallel_tempering, particle_gibbs, swap_log_ratio
from tests.lm.tiny import TinyLM
from tests.scaling.test_power import (DELIM, EOS, MAX_LEN, MAX_STEP_TOKENS, MAX_STEPS, PROMPT, enumerate_generations,
                                      normalise)

W = np.array([0.3, -0.2, 0.8, -0.6, 0.4])
B = -0.5
TEMP, TAU = 0.8, 0.7
LM = TinyLM(seed=5, scale=1.0)


class TokenReward:
    """log r = log sigmoid(sum of w over the generated tokens + b): log-odds s exactly."""

    flops_per_token = 3.0

    def __init__(self, w=W, b=B):
        self.params = {"w": jnp.asarray(w, jnp.float32), "b": jnp.asarray(b, jnp.float32)}

    def static_key(self):
        return ("TokenReward",)

    def log_score(self, params, state):
        idx = jnp.arange(state.tokens.shape[0])
        gen = (idx >= state.prompt_length) & (idx < state.length)
        return jax.nn.log_sigmoid(jnp.sum(jnp.where(gen, params["w"][state.tokens], 0.0)) + params["b"])


def program(lm=LM, temperature=TEMP, **kw):
    opts = dict(max_steps=MAX_STEPS, step_delimiter=DELIM, max_step_tokens=MAX_STEP_TOKENS, max_length=MAX_LEN)
    opts.update(kw)
    return ppl.lm.LMProgram(lm, PROMPT, None, temperature=temperature, **opts)


@pytest.fixture(scope="module")
def exact():
    gens, log_p, log_q, bounds = enumerate_generations(LM, TEMP)
    s = [np.array([W[list(g[:e])].sum() + B for e in b]) for g, b in zip(gens, bounds)]
    phi_prefix = np.array([x.sum() for x in s]) / TAU
    phi_twist = np.array([x[-1] for x in s]) / TAU
    phi_absorbing = np.array([x.sum() + (MAX_STEPS - len(x)) * x[-1] for x in s]) / TAU
    m = [np.minimum.accumulate(x) for x in s]  # log-odds of the running minimum of the scores
    phi_min = np.array([x.sum() + (MAX_STEPS - len(x)) * x[-1] for x in m]) / TAU
    return dict(gens=gens, log_q=log_q, phi=phi_prefix, min_absorbing=normalise(log_q + phi_min),
                prefix=normalise(log_q + phi_prefix), twist=normalise(log_q + phi_twist),
                absorbing=normalise(log_q + phi_absorbing),
                p_base=normalise(log_p + phi_prefix), tau_ignored=normalise(log_q + phi_prefix * TAU))


FEATURES = {"twos": lambda g: g.count(2), "fours": lambda g: g.count(4)}


def marginal(gens, weights, feature):
    out = {}
    for g, w in zip(gens, weights):
        k = feature(list(g))
        out[k] = out.get(k, 0.0) + float(w)
    return out


def tv(a, b):
    return 0.5 * sum(abs(a.get(k, 0.0) - b.get(k, 0.0)) for k in set(a) | set(b))


def pooled(results):
    """Generations and weights of several runs, each run weighted equally."""
    gens, weights = [], []
    for r in results:
        gens += [tuple(g) for g in r.generations()]
        weights += list(np.exp(r.log_weights) / len(results))
    return gens, np.array(weights)


def check_against(exact, results, target="prefix", tol=0.045):
    gens, weights = pooled(results)
    known = set(map(tuple, exact["gens"]))
    assert set(gens) <= known, "a chain produced a generation the sampler cannot produce"
    for name, f in FEATURES.items():
        want = marginal(exact["gens"], exact[target], f)
        got = marginal(gens, weights, f)
        assert tv(got, want) < tol, (name, tv(got, want), got, want)


def test_wrong_targets_are_far_on_the_checked_marginals(exact):
    """The check can fail: each wrong target moves one of the marginals by > 2 tol."""
    for wrong in ("p_base", "tau_ignored", "twist"):
        far = max(tv(marginal(exact["gens"], exact["prefix"], f), marginal(exact["gens"], exact[wrong], f))
                  for f in FEATURES.values())
        assert far > 0.08, wrong


@pytest.mark.parametrize("posterior", ["particles", "references"])
def test_particle_gibbs_matches_the_enumerated_target(exact, posterior):
    prog, reward = program(), TokenReward()
    runs = [particle_gibbs(prog, 8, 1000, key=jax.random.key(k), reward=reward, potential=odds(TAU), posterior=posterior,
                           burn_in=20, finished=factor_one)
            for k in range(4)]
    check_against(exact, runs)
    r = runs[0]
    n = 8 * 980 if posterior == "particles" else 980
    assert r.num_particles == n and r.budget == 8 * 1000
    assert abs(np.exp(r.log_weights).sum() - 1.0) < 1e-9
    assert 0.1 < r.diagnostics["reference_update_rate"] < 1.0
    assert r.diagnostics["ess"].shape == (1000, MAX_STEPS)
    # Scores are the reward of each final generation.
    s = np.array([1 / (1 + np.exp(-(W[g].sum() + B))) for g in r.generations()[:50]])
    np.testing.assert_allclose(r.scores[:50], s, rtol=1e-4)


def test_twist_potential_targets_the_final_score(exact):
    prog, reward = program(), TokenReward()
    runs = [particle_gibbs(prog, 8, 1000, key=jax.random.key(10 + k), reward=reward, potential=odds_ratio(TAU),
                           burn_in=20) for k in range(4)]
    check_against(exact, runs, target="twist")


def test_parallel_tempering_coldest_chain_and_swap_rate(exact):
    prog, reward = program(), TokenReward()
    temps = (3.0, 1.0)
    runs = [parallel_tempering(prog, 8, 600, temperatures=temps, key=jax.random.key(20 + k), reward=reward,
                               potential=odds(TAU), burn_in=20, finished=factor_one) for k in range(4)]
    check_against(exact, runs)
    # At stationarity the two references are independent draws from pi_hot and pi_cold, so the
    # mean swap acceptance probability is E min(1, exp((phi(x') - phi(x)) (1/T1 - 1/T2))).
    phi, log_q = exact["phi"], exact["log_q"]
    hot, cold = normalise(log_q + phi / temps[0]), normalise(log_q + phi / temps[1])
    ratio = np.minimum(1.0, np.exp(swap_log_ratio(phi[:, None], phi[None, :], *temps)))
    expected = float(hot @ ratio @ cold)
    got = np.mean([r.diagnostics["swap_acceptance_prob"][0] for r in runs])
    rate = np.mean([r.diagnostics["swap_acceptance"][0] for r in runs])
    assert abs(got - expected) < 0.03, (got, expected)
    assert abs(rate - expected) < 0.05, (rate, expected)
    assert runs[0].budget == 2 * 8 * 600 and runs[0].diagnostics["temperatures"] == temps


@pytest.mark.slow  # 11-14 s; each method against the enumerated target stays in the default suite
def test_gibbs_tempering_and_the_particle_filter_target_one_model(exact):
    """With the same options (prefix log-odds over tau, finished generations absorbing: the
    defaults of all three), particle Gibbs, parallel tempering's coldest chain and the particle
    filter all target pi(x) ∝ q(x) prod_{t <= T} odds(r(x_{1:min(t, K)}))^(1/tau)."""
    far = max(tv(marginal(exact["gens"], exact["absorbing"], f), marginal(exact["gens"], exact["prefix"], f))
              for f in FEATURES.values())
    assert far > 0.08, far  # the check tells absorbing from factor-one finished generations
    prog, reward = program(), TokenReward()
    pg = [particle_gibbs(prog, 8, 600, key=jax.random.key(30 + k), reward=reward, potential=odds(TAU), burn_in=20)
          for k in range(4)]
    assert pg[0].diagnostics["finished"] == "absorbing"
    check_against(exact, pg, target="absorbing")
    pt = [parallel_tempering(prog, 8, 400, temperatures=(3.0, 1.0), key=jax.random.key(40 + k), reward=reward,
                             potential=odds(TAU), burn_in=20) for k in range(3)]
    check_against(exact, pt, target="absorbing")
    pf = [ppl.scaling.particle_filter(prog, 4000, key=jax.random.key(50 + k), reward=reward, potential=odds(TAU))
          for k in range(2)]
    check_against(exact, pf, target="absorbing")



def test_one_recipe_one_target_with_the_minimum_aggregate(exact):
    """The same recipe, odds(tau, aggregate="min"), in particle Gibbs and the particle filter:
    both target q(x) prod_{t <= T} odds(min_{u <= min(t, K)} r_u)^(1/tau). The reference, cut back
    to step t, must weigh its children from its running minimum at t (the recorded memory), not
    at its end."""
    far = max(tv(marginal(exact["gens"], exact["min_absorbing"], f), marginal(exact["gens"], exact["absorbing"], f))
              for f in FEATURES.values())
    assert far > 0.08, far  # the check tells the minimum from the last score
    prog, reward, pot = program(), TokenReward(), odds(TAU, aggregate="min")
    pg = [particle_gibbs(prog, 8, 500, key=jax.random.key(60 + k), reward=reward, potential=pot, burn_in=20)
          for k in range(3)]
    check_against(exact, pg, target="min_absorbing")
    pf = [ppl.scaling.particle_filter(prog, 4000, key=jax.random.key(70), reward=reward, potential=pot)]
    check_against(exact, pf, target="min_absorbing")

def test_swap_log_ratio_by_hand():
    # pi_k(x) ∝ q(x) exp(phi(x) / T_k); chain 1 (T=2) holds x with phi 2, chain 2 (T=1) holds x' with phi 5:
    # log [pi_1(x') pi_2(x) / (pi_1(x) pi_2(x'))] = 5/2 + 2/1 - 2/2 - 5/1 = -1.5.
    assert swap_log_ratio(2.0, 5.0, 2.0, 1.0) == pytest.approx(-1.5)
    assert swap_log_ratio(5.0, 2.0, 2.0, 1.0) == pytest.approx(1.5)  # a better state moves to the cold chain
    assert swap_log_ratio(3.0, 7.0, 1.0, 1.0) == 0.0


def _no_eos_lm():
    lm = TinyLM(seed=5, scale=1.0)
    lm.params = dict(lm.params, emb=lm.params["emb"].at[:, EOS].set(-60.0))  # EOS never sampled
    return lm


@pytest.mark.parametrize("method", ["particle_gibbs", "parallel_tempering"])
def test_compute_is_counted_exactly(method):
    # One token per step, no EOS: every particle takes all T = 3 steps.
    lm = _no_eos_lm()
    prog = program(lm, 1.0, max_step_tokens=1)
    N, I, T, P = 3, 4, 3, len(PROMPT)
    kw = dict(temperatures=(2.0, 1.0)) if method == "parallel_tempering" else {}
    M = 2 if kw else 1
    fn = parallel_tempering if kw else particle_gibbs
    res = fn(prog, N, I, key=jax.random.key(0), reward=TokenReward(), **kw)
    # The first sweep extends N particles; the conditional ones N - 1 (the reference is kept).
    extended = M * (N + (I - 1) * (N - 1))
    assert res.compute.generated_tokens == extended * T
    assert res.compute.lm_forward_tokens == P + extended * T
    assert res.compute.prm_calls == extended * T
    assert res.compute.prm_forward_tokens == extended * sum(P + t for t in range(1, T + 1))
    assert res.compute.flops == pytest.approx(ppl.scaling.flops_per_token(lm) * (P + extended * T)
                                              + 3.0 * res.compute.prm_forward_tokens)
    assert all(len(g) == T for g in res.generations())


def test_same_key_same_result_and_no_recompile_for_new_prompt_or_reward_params():
    prog, reward = program(), TokenReward()
    a = particle_gibbs(prog, 8, 1000, key=jax.random.key(5), reward=reward, potential=odds(TAU))
    b = particle_gibbs(prog, 8, 1000, key=jax.random.key(5), reward=reward, potential=odds(TAU))
    assert a.generations() == b.generations() and a.answer == b.answer
    before = list(ppl.core.cache.JIT_CACHE)
    particle_gibbs(prog.with_prompt(np.array([4, 2])), 8, 1000, key=jax.random.key(5),
                   reward=TokenReward(w=-W, b=0.3), potential=odds(2.0))
    assert list(ppl.core.cache.JIT_CACHE) == before


def test_errors_name_the_argument():
    prog, reward, key = program(), TokenReward(), jax.random.key(0)
    with_potential = ppl.lm.LMProgram(LM, PROMPT, ppl.lm.on_prefix(lambda s: 0.0), max_steps=2,
                                      max_step_tokens=2, max_length=MAX_LEN)
    with pytest.raises(ValueError, match="program"):
        particle_gibbs(with_potential, 4, 2, key=key, reward=reward)
    with pytest.raises(ValueError, match="num_particles"):
        particle_gibbs(prog, 1, 2, key=key, reward=reward)
    with pytest.raises(ValueError, match="num_iterations"):
        particle_gibbs(prog, 4, 0, key=key, reward=reward)
    with pytest.raises(TypeError, match="reward"):
        particle_gibbs(prog, 4, 2, key=key, reward=None)
    with pytest.raises(ValueError, match="tau"):
        particle_gibbs(prog, 4, 2, key=key, reward=reward, potential=odds(0.0))
    with pytest.raises(ValueError, match="burn_in"):
        particle_gibbs(prog, 4, 2, key=key, reward=reward, burn_in=2)
    with pytest.raises(ValueError, match="posterior"):
        particle_gibbs(prog, 4, 2, key=key, reward=reward, posterior="all")
    with pytest.raises(TypeError, match="potential"):
        particle_gibbs(prog, 4, 2, key=key, reward=reward, potential="last")
    with pytest.raises(ValueError, match="select"):
        particle_gibbs(prog, 4, 2, key=key, reward=reward, select="best")
    with pytest.raises(ValueError, match="key"):
        particle_gibbs(prog, 4, 2, key=jax.random.split(key, 3), reward=reward)
    for temps in [(1.0, 2.0), (1.0,), (2.0, 2.0), (2.0, -1.0), "hot"]:
        with pytest.raises(ValueError, match="temperatures"):
            parallel_tempering(prog, 4, 2, temperatures=temps, key=key, reward=reward)
    nan_reward = TokenReward(b=np.nan)
    with pytest.raises(ppl.SMCError, match="NaN"):
        particle_gibbs(prog, 8, 1000, key=key, reward=nan_reward)  # (compiled already: same sizes)
