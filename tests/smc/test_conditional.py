"""Conditional SMC and particle Gibbs reproduce the exact smoothing marginals (enumeration)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ppl
from tests import exact
from tests.smc import models as m


@pytest.mark.parametrize("ancestor_sampling, num_particles", [(False, 5), (True, 5)])
def test_particle_gibbs_matches_enumeration(ancestor_sampling, num_particles):
    log_z, last, first = exact.enumerate_chain(m.LOG_P0, m.LOG_TRANS, m.LOG_G0, m.LOG_G, m.T_D)
    chains, iters, burn = 8, 2000, 50
    out = ppl.particle_gibbs(m.discrete_fk(), num_particles, iters, key=jax.random.split(jax.random.key(0), chains),
                             ancestor_sampling=ancestor_sampling)
    traj = np.asarray(out.trajectories)  # [chains, iters, T]
    assert traj.shape == (chains, iters, m.T_D)
    kept = traj[:, burn:]
    marg_last = np.bincount(kept[..., -1].ravel(), minlength=m.K) / kept[..., -1].size
    marg_first = np.bincount(kept[..., 0].ravel(), minlength=m.K) / kept[..., 0].size
    # 15600 correlated draws: a Monte Carlo error of about 0.01 (800 iterations left about 0.02
    # without ancestor sampling); 0.03 fails a wrong kernel.
    np.testing.assert_allclose(marg_last, last, atol=0.03)
    np.testing.assert_allclose(marg_first, first, atol=0.03)


def test_ancestor_sampling_mixes_better_with_few_particles():
    """With N = 2 and a long horizon, plain PG rarely changes x_0; PGAS changes it often."""
    ys = m.simulate_lg(1, T=40)
    fk = m.lg_bootstrap(ys)
    key = jax.random.key(1)
    plain = np.asarray(ppl.particle_gibbs(fk, 2, 60, key=key).trajectories)
    pgas = np.asarray(ppl.particle_gibbs(fk, 2, 60, key=key, ancestor_sampling=True).trajectories)
    moves = lambda tr: np.mean(tr[1:, 0] != tr[:-1, 0])  # noqa: E731
    assert moves(pgas) > moves(plain) + 0.2


def test_conditional_smc_keeps_reference_in_slot_zero():
    ys = m.simulate_lg(2, T=10)
    fk = m.lg_bootstrap(ys)
    res = ppl.run_smc(fk, 32, key=jax.random.key(0), keep_history=True)
    ref = ppl.trajectory(res, 5)
    new_ref, sweep = ppl.conditional_smc(fk, 32, ref, key=jax.random.key(1))
    np.testing.assert_array_equal(np.asarray(ppl.trajectory(sweep, 0)), np.asarray(ref))
    assert new_ref.shape == ref.shape
    with pytest.raises(ValueError, match="reference"):
        ppl.conditional_smc(fk, 32, ref[:3], key=jax.random.key(1))
    with pytest.raises(ValueError, match="num_particles"):
        ppl.conditional_smc(fk, 1, ref, key=jax.random.key(1))


def test_step_program_and_feynman_kac_give_the_same_chain():
    ys = jnp.asarray(m.simulate_lg(3, T=8))
    fk = ppl.FeynmanKac(init=lambda y: m.lg_transition(0.0, 0, y), transition=m.lg_transition,
                        log_potential=m.lg_potential, data=ys, batched_randomness=False)
    sp = ppl.from_step_program(m.lg_step, init=0.0, data=ys)
    ref = jnp.linspace(-1.0, 1.0, 8)
    a = ppl.particle_gibbs(fk, 8, 5, key=jax.random.key(4), ancestor_sampling=True, init_reference=ref)
    b = ppl.particle_gibbs(sp, 8, 5, key=jax.random.key(4), ancestor_sampling=True,
                           init_reference=ppl.ProgramState(ref, {"x": ref}))
    np.testing.assert_allclose(np.asarray(a.trajectories), np.asarray(b.trajectories.value), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(a.log_evidence), np.asarray(b.log_evidence), rtol=1e-5)


def test_free_slots_draw_ancestors_from_the_weights():
    # With N = 2 the free slot's ancestor at step 1 must be the reference's slot 0 with
    # probability W_0 (its normalised weight at step 0). Sorted multinomial draws with slot 0
    # overwritten give W_0^2 instead: a difference of W_0 (1 - W_0), about 0.2 here.
    fk = m.discrete_fk()
    ref = ppl.trajectory(ppl.run_smc(fk, 16, key=jax.random.key(1), keep_history=True), 0)
    diffs = []
    for i in range(400):
        _, res = ppl.conditional_smc(fk, 2, ref, key=jax.random.key(100 + i))
        w0 = float(np.exp(res.history_log_weights[0, 0]))
        diffs.append(float(res.ancestors[1, 1] == 0) - w0)
    # Mean of 400 bounded, independent terms: standard error <= 0.025.
    assert abs(np.mean(diffs)) < 0.08
