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

    k0, k = jax.random.split(key)
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
    # top_k(2) at every step: slots descend from the two heaviest particles, 4 copies each.
    _, info = base.step(*args, selection=rs.top_k(2), ess_threshold=1.0)
    best = np.argsort(-np.asarray(state.log_weights))[:2]
    np.testing.assert_array_equal(np.asarray(info.ancestors), np.repeat(best, 4))
    assert bool(info.resampled)
    # Never resample: the identity, and the weights carry over.
    new, info = base.step(*args, ess_threshold=0.0)
    np.testing.assert_array_equal(np.asarray(info.ancestors), np.arange(8))
    assert not bool(info.resampled)
    assert abs(float(jax.scipy.special.logsumexp(new.log_weights))) < 1e-5
