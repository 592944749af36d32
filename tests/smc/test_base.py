"""The SMC kernel: init and step compose into run_smc, and their hooks do what they say."""

import jax
import jax.numpy as jnp
import numpy as np

import ppl
from ppl.smc import base
from ppl.smc import resampling as rs
from tests.smc import models as m


def test_init_and_step_compose_into_run_smc_bit_for_bit():
    ys = jnp.asarray(m.simulate_lg(2, T=10))
    fk = m.lg_bootstrap(ys)
    key = jax.random.key(5)
    res = ppl.run_smc(fk, 64, key=key, ess_threshold=0.5)

    k, _, k0 = jax.random.split(key, 3)  # the loop's documented key schedule (ppl.smc.loop.build_filter)
    state, lz0 = base.init(fk, 64, k0, fk.data_at(fk.data, 0))
    lz, anc = [lz0], []
    step = jax.jit(lambda s, t, a, b, d: base.step(fk, s, t, a, b, d, selection=rs.systematic,
                                                   ess_threshold=0.5))
    for t in range(1, 10):
        k, k_res, k_move = jax.random.split(k, 3)
        state, info = step(state, t, k_res, k_move, fk.data_at(fk.data, t))
        lz.append(info.log_evidence_increment)
        anc.append(info.ancestors)
    np.testing.assert_array_equal(np.asarray(state.particles), np.asarray(res.particles))
    np.testing.assert_array_equal(np.asarray(jnp.stack(anc)), np.asarray(res.ancestors[1:]))
    np.testing.assert_allclose(float(jnp.sum(jnp.stack(lz))), float(res.log_evidence), rtol=1e-6)
    assert int(state.failure) == base.OK


def test_selection_and_resampling_rule_hooks():
    ys = jnp.asarray(m.simulate_lg(3, T=4))
    fk = m.lg_bootstrap(ys)
    state, _ = base.init(fk, 8, jax.random.key(0), fk.data_at(fk.data, 0))
    keys = jax.random.split(jax.random.key(1), 2)
    args = (fk, state, 1, keys[0], keys[1], fk.data_at(fk.data, 1))
    # top_k(2) at every step: slots descend from the two heaviest particles, 4 copies each;
    # in stable order (the default) the two keep their own slots.
    _, info = base.step(*args, selection=rs.top_k(2), ess_threshold=1.0)
    best = np.argsort(-np.asarray(state.log_weights))[:2]
    anc = np.asarray(info.ancestors)
    np.testing.assert_array_equal(np.sort(anc), np.sort(np.repeat(best, 4)))
    np.testing.assert_array_equal(anc[best], best)
    assert bool(info.resampled)
    _, info = base.step(*args, selection=rs.top_k(2), ess_threshold=1.0, stable=False)
    np.testing.assert_array_equal(np.asarray(info.ancestors), np.repeat(best, 4))
    # Never resample: the identity, and the weights carry over.
    new, info = base.step(*args, ess_threshold=0.0)
    np.testing.assert_array_equal(np.asarray(info.ancestors), np.arange(8))
    assert not bool(info.resampled)
    assert abs(float(jax.scipy.special.logsumexp(new.log_weights))) < 1e-5


def test_absorbing_finished_particles_match_enumeration():
    """finished=absorbing: a particle that reached the absorbing state gets the potential it
    entered with at every later step. log Z and the final marginal match enumeration of that
    target, whether the filter runs all T steps or stops early (closed-form remaining factors)."""
    from tests import exact

    log_z, last, _ = exact.enumerate_chain(m.LOG_P0, m.LOG_TRANS, m.LOG_G0, m.LOG_G, m.T_D,
                                           absorbing=2, repeat_final=True)
    log_z_one, _, _ = exact.enumerate_chain(m.LOG_P0, m.LOG_TRANS, m.LOG_G0, m.LOG_G, m.T_D, absorbing=2)
    assert abs(log_z - log_z_one) > 0.1  # the two targets differ: the test can tell them apart
    runs = 8
    res = ppl.run_smc(m.discrete_fk(done=lambda x: x == 2), 4000, key=jax.random.split(jax.random.key(13), runs),
                      ess_threshold=0.5, finished=base.absorbing)
    lz = np.asarray(res.log_evidence, np.float64)
    assert abs(lz.mean() - log_z) < max(4 * lz.std(ddof=1) / np.sqrt(runs), 0.01)
    w = np.exp(np.asarray(res.log_weights, np.float64))
    marg = np.stack([(w * (np.asarray(res.particles) == k)).sum(1) for k in range(m.K)], 1).mean(0)
    np.testing.assert_allclose(marg, last, atol=0.015)

    # Every particle starts absorbed: the filter stops after step 0 and applies T - 1 factors.
    fk = ppl.FeynmanKac(init=ppl.PointMass(jnp.asarray(2)), transition=lambda x, t, d: ppl.PointMass(x),
                        log_potential=lambda xp, x, t, d: jnp.asarray(-0.25), num_steps=m.T_D,
                        done=lambda x: x == 2)
    res = ppl.run_smc(fk, 8, key=jax.random.key(0), finished=base.absorbing)
    assert int(res.num_steps) == 1
    np.testing.assert_allclose(float(res.log_evidence), -0.25 * m.T_D, rtol=1e-6)
    assert float(ppl.run_smc(fk, 8, key=jax.random.key(0)).log_evidence) == -0.25
