"""Resampling schemes: unbiased offspring counts E[O_i] = N W_i, and top-k selection."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ppl.smc import resampling as rs

UNBIASED = ["multinomial", "stratified", "systematic", "residual", "killing"]
W = np.array([0.31, 0.02, 0.0, 0.17, 0.05, 0.25, 0.12, 0.08])


@pytest.mark.parametrize("name", UNBIASED)
def test_expected_offspring_is_n_times_weight(name):
    n, reps = W.shape[0], 20000
    scheme = rs.get_scheme(name)
    log_w = jnp.log(jnp.asarray(W, jnp.float32)) + 3.7  # unnormalised on purpose
    anc = jax.jit(jax.vmap(lambda k: scheme(k, log_w, n)))(jax.random.split(jax.random.key(0), reps))
    anc = np.asarray(anc)
    assert anc.shape == (reps, n) and anc.dtype == np.int32
    counts = np.stack([np.bincount(a, minlength=n) for a in anc])
    assert (counts.sum(1) == n).all()
    mean = counts.mean(0)
    se = counts.std(0, ddof=1) / np.sqrt(reps)
    # Within 4.5 standard errors (plus float32 slack for near-deterministic counts).
    np.testing.assert_array_less(np.abs(mean - n * W), 4.5 * se + 2e-3)
    # Zero-weight particles never get offspring.
    assert counts[:, 2].max() == 0


def test_low_variance_schemes_beat_multinomial():
    n, reps = W.shape[0], 4000
    log_w = jnp.log(jnp.asarray(W, jnp.float32))
    keys = jax.random.split(jax.random.key(1), reps)

    def var_of(name):
        s = rs.get_scheme(name)
        anc = np.asarray(jax.vmap(lambda k: s(k, log_w, n))(keys))
        return np.stack([np.bincount(a, minlength=n) for a in anc]).var(0).sum()

    v_multi = var_of("multinomial")
    for name in ["stratified", "systematic", "residual"]:
        assert var_of(name) < 0.6 * v_multi, name
    # Systematic: every count is floor or ceil of N W_i.
    anc = np.asarray(jax.vmap(lambda k: rs.systematic(k, log_w, n))(keys))
    counts = np.stack([np.bincount(a, minlength=n) for a in anc])
    assert (counts >= np.floor(n * W) - 1e-9).all() and (counts <= np.ceil(n * W) + 1e-9).all()


def test_different_number_of_samples():
    log_w = jnp.log(jnp.asarray(W, jnp.float32))
    for name in ["multinomial", "stratified", "systematic", "residual"]:
        anc = rs.get_scheme(name)(jax.random.key(0), log_w, 40)
        assert anc.shape == (40,)
        assert int(anc.max()) < W.shape[0] and int(anc.min()) >= 0


def test_degenerate_weights_pick_the_single_particle():
    log_w = jnp.array([-jnp.inf, 0.0, -jnp.inf, -jnp.inf])
    for name in UNBIASED:
        anc = rs.get_scheme(name)(jax.random.key(3), log_w, 4)
        np.testing.assert_array_equal(np.asarray(anc), [1, 1, 1, 1])


def test_top_k_is_deterministic_selection():
    log_w = jnp.array([0.1, 3.0, -1.0, 2.0, 0.5, 2.5])
    anc = rs.top_k(3)(jax.random.key(0), log_w, 6)
    np.testing.assert_array_equal(np.asarray(anc), [1, 1, 5, 5, 3, 3])
    assert rs.top_k(3).unbiased is False
    with pytest.raises(ValueError, match="multiple"):
        rs.top_k(4)(jax.random.key(0), log_w, 6)
    with pytest.raises(ValueError, match="k"):
        rs.top_k(0)


def test_unknown_scheme_is_named():
    with pytest.raises(ValueError, match="bogus"):
        rs.get_scheme("bogus")


def test_gather_moves_whole_pytree():
    state = {"a": jnp.arange(4), "b": (jnp.arange(8).reshape(4, 2), jnp.ones((4, 3, 2)))}
    out = rs.gather(state, jnp.array([3, 3, 0, 1]))
    np.testing.assert_array_equal(np.asarray(out["a"]), [3, 3, 0, 1])
    np.testing.assert_array_equal(np.asarray(out["b"][0]), [[6, 7], [6, 7], [0, 1], [2, 3]])
    assert out["b"][1].shape == (4, 3, 2)
