"""Step programs: the numpyro form and the Feynman–Kac form of a model agree exactly."""

import dataclasses
import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest

import ppl
from tests import exact
from tests.smc import models as m


@pytest.mark.parametrize("resampling", ["systematic", "multinomial", "killing"])
def test_identical_particles_for_the_same_key(resampling):
    ys = jnp.asarray(m.simulate_lg(0, T=12))
    sp = ppl.from_step_program(m.lg_step, init=0.5, data=ys)
    fk = ppl.FeynmanKac(init=lambda y: m.lg_transition(0.5, 0, y), transition=m.lg_transition,
                        log_potential=m.lg_potential, data=ys, batched_randomness=False)
    a = ppl.run_smc(sp, 200, key=jax.random.key(9), resampling=resampling, keep_history=True)
    b = ppl.run_smc(fk, 200, key=jax.random.key(9), resampling=resampling, keep_history=True)
    np.testing.assert_array_equal(np.asarray(a.particles.value), np.asarray(b.particles))
    np.testing.assert_array_equal(np.asarray(a.particles.sites["x"]), np.asarray(b.particles))
    assert len(jax.tree_util.tree_leaves(a.particles)) == 1  # `return x`: the site is stored once
    np.testing.assert_array_equal(np.asarray(a.ancestors), np.asarray(b.ancestors))
    np.testing.assert_allclose(float(a.log_evidence), float(b.log_evidence), rtol=1e-6)


def test_factor_sites_are_potentials():
    def program(x_prev, d, t):
        # Step 0 draws from M_0 and weights by G_0; later steps use the transition and G.
        p0 = jnp.asarray(m.LOG_P0, jnp.float32)
        tr = jnp.asarray(m.LOG_TRANS, jnp.float32)
        logits = jnp.where(t == 0, p0, tr[x_prev])
        x = numpyro.sample("x", dist.Categorical(logits=logits))
        g = jnp.where(t == 0, jnp.asarray(m.LOG_G0, jnp.float32)[x], jnp.asarray(m.LOG_G, jnp.float32)[x_prev, x])
        numpyro.factor("g", g)
        return x

    sp = ppl.from_step_program(program, init=jnp.asarray(0), num_steps=m.T_D)
    log_z, last, _ = exact.enumerate_chain(m.LOG_P0, m.LOG_TRANS, m.LOG_G0, m.LOG_G, m.T_D)
    res = ppl.run_smc(sp, 4000, key=jax.random.split(jax.random.key(0), 8))
    lz = np.asarray(res.log_evidence, np.float64)
    assert abs(lz.mean() - log_z) < max(4 * lz.std(ddof=1) / np.sqrt(8), 0.01)
    w = np.exp(np.asarray(res.log_weights, np.float64))
    marg = np.stack([(w * (np.asarray(res.particles.value) == k)).sum(1) for k in range(m.K)], 1).mean(0)
    np.testing.assert_allclose(marg, last, atol=0.015)


def test_random_init_matches_kalman():
    """x_{-1} ~ N(0, 1), then the step: the same as x_0 ~ N(0, A^2 + Q) for the Kalman filter."""
    ys = m.simulate_lg(4, T=15)
    log_z = dataclasses.replace(m.LG, p0=m.A**2 * 1.0 + m.Q).kalman_filter(ys).log_evidence
    sp = ppl.from_step_program(m.lg_step, init=dist.Normal(0.0, 1.0), data=jnp.asarray(ys))
    res = ppl.run_smc(sp, 4096, key=jax.random.split(jax.random.key(1), 8))
    lz = np.asarray(res.log_evidence, np.float64)
    assert abs(lz.mean() - log_z) < 4 * lz.std(ddof=1) / np.sqrt(8) + 0.01
    # The initial draw travels with the particle.
    assert res.particles.sites["_init"].shape == (8, 4096)


def test_multiple_sites_and_done_on_value():
    def step(x_prev, d, t):
        jump = numpyro.sample("jump", dist.Bernoulli(0.5))
        size = numpyro.sample("size", dist.Exponential(1.0))
        numpyro.factor("prefer_small", -size)
        return {"pos": x_prev["pos"] + jump * size, "n": x_prev["n"] + 1}

    init = {"pos": jnp.asarray(0.0), "n": jnp.asarray(0)}
    sp = ppl.from_step_program(step, init=init, num_steps=6, done=lambda v: v["pos"] > 1.0)
    res = ppl.run_smc(sp, 64, key=jax.random.key(0), keep_history=True)
    paths = ppl.trajectories(res).value  # leaves [N, T]
    pos, n = np.asarray(paths["pos"]), np.asarray(paths["n"])
    # Along every ancestral line: once past 1.0 a particle never moves (nor counts) again.
    frozen = pos[:, :-1] > 1.0
    assert (pos[:, 1:][frozen] == pos[:, :-1][frozen]).all()
    assert (n[:, 1:][frozen] == n[:, :-1][frozen]).all()
    assert ((n[:, 1:] == n[:, :-1] + 1) | frozen).all()
    assert frozen.any() and set(res.particles.sites) == {"jump", "size"}


def test_step_program_needs_a_callable():
    with pytest.raises(TypeError, match="step"):
        ppl.from_step_program(3.0, init=0.0, num_steps=3)
