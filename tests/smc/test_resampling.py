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


# ------------------------------------------------------------------ zero-weight slots (issue 16)
def _adversarial_log_weights(key, n):
    """Float32 log-weight vectors built to make a float32 CDF end short of 1 and dead slots sit
    where round-off lands: random, last slot dead, one live particle, all but the last dead,
    a dynamic range of 1e30 (log 1e30 = 69), and half dead at random."""
    k1, k2, k3 = jax.random.split(key, 3)
    z = 2.0 * jax.random.normal(k1, (n,))
    one = jax.random.randint(k2, (), 0, n)
    dead = jnp.full((n,), -jnp.inf)
    return jnp.stack([
        z.at[-1].set(-jnp.inf),
        dead.at[one].set(0.0),
        dead.at[-1].set(1.0),
        dead.at[0].set(5.0),
        jnp.where(jnp.arange(n) % 2 == 0, 0.0, -69.0).at[-1].set(-jnp.inf),
        jnp.linspace(0.0, -69.0, n).at[-1].set(-jnp.inf).at[-2].set(-jnp.inf),
        jnp.where(jax.random.bernoulli(k3, 0.5, (n,)), z, -jnp.inf).at[-1].set(-jnp.inf),
    ])


def test_reproducer_of_issue_16_picks_no_dead_particle():
    n = 4096
    lw = (2.0 * jax.random.normal(jax.random.key(6), (n,))).at[-1].set(-jnp.inf)
    assert int((rs.systematic(jax.random.key(956), lw, n) == n - 1).sum()) == 0


def _iid(key, log_w, n):  # what conditional SMC draws its free slots with
    return rs._iid_draws(key, rs._normalise(log_w), n)


@pytest.mark.parametrize("name", UNBIASED + ["conditional"])
def test_zero_weight_slot_is_never_drawn(name):
    """Over thousands of adversarial float32 weight vectors, no scheme draws a dead slot.

    Before the fix, 2000 vectors of Gaussian log-weights with the last slot dead made
    multinomial, stratified and systematic resampling pick that slot 1-2 times each."""
    n = 4096
    scheme = _iid if name == "conditional" else rs.get_scheme(name)
    gaussian = (2.0 * jax.random.normal(jax.random.key(1), (2000, n))).at[:, -1].set(-jnp.inf)
    crafted = jax.vmap(lambda k: _adversarial_log_weights(k, n))(
        jax.random.split(jax.random.key(11), 96)).reshape(-1, n)
    vectors = jnp.concatenate([gaussian, crafted])
    keys = jax.random.split(jax.random.key(2), vectors.shape[0])
    anc = jax.jit(jax.vmap(lambda k, lw: scheme(k, lw, n)))(keys, vectors)
    picked_w = np.take_along_axis(np.asarray(vectors), np.asarray(anc), axis=1)
    assert vectors.dtype == jnp.float32
    assert np.isfinite(picked_w).all(), f"{name}: {int((~np.isfinite(picked_w)).sum())} dead draws"


def test_inverse_cdf_handles_uniforms_at_one_and_a_short_total():
    # A weight vector whose float32 sum is below one, searched with uniforms at exactly 1.0.
    w = jnp.full((7,), 1 / 7, jnp.float32).at[-1].set(0.0).at[-2].set(0.0)
    idx = rs._inverse_cdf(jnp.array([0.0, 0.5, 0.9999999, 1.0], jnp.float32), w)
    np.testing.assert_array_equal(np.asarray(idx), [0, 2, 4, 4])


def test_conditional_smc_free_slots_draw_no_dead_particle():
    """Conditional SMC under a per-step hard constraint: no slot descends from a dead one."""
    from ppl.smc.conditional import conditional_smc
    import numpyro.distributions as dist
    import ppl

    T, N = 40, 512
    # A Gaussian random walk that must stay above -1 at every step: about a sixth of the
    # particles die each step, so dead slots sit everywhere in the weight vector.
    fk = ppl.FeynmanKac(init=dist.Normal(0.0, 1.0),
                        transition=lambda x, t, d: dist.Normal(x, 1.0),
                        log_potential=lambda xp, x, t, d: jnp.where(x > -1.0, 0.0, -jnp.inf),
                        num_steps=T)
    ref = jnp.abs(jnp.sin(jnp.arange(T, dtype=jnp.float32)))  # satisfies the constraint
    for seed in range(4):
        _, res = conditional_smc(fk, N, ref, key=jax.random.key(seed))
        prev_w = np.asarray(res.history_log_weights[:-1])
        anc = np.asarray(res.ancestors[1:])
        parents = np.take_along_axis(prev_w, anc, axis=1)
        assert np.isfinite(parents).all()
        assert (np.asarray(res.history)[np.isfinite(np.asarray(res.history_log_weights))] > -1.0).all()


@pytest.mark.parametrize("name", ["multinomial", "systematic", "residual", "killing"])
def test_stable_order_keeps_survivors_in_their_slots(name):
    scheme = rs.SCHEMES[name]
    for seed in range(20):
        k1, k2 = jax.random.split(jax.random.key(seed))
        log_w = 3.0 * jax.random.normal(k1, (13,))
        anc = scheme(k2, log_w, 13)
        st = np.asarray(rs.stable_order(anc))
        anc = np.asarray(anc)
        assert sorted(st) == sorted(anc)  # the same offspring counts
        survivors = np.unique(anc)
        assert np.all(st[survivors] == survivors)  # survivors keep their slots
        dead = np.setdiff1d(np.arange(13), survivors)
        assert np.all(np.isin(st[dead], survivors))  # dead slots take copies of survivors


def test_gather_changed_equals_gather_and_writes_only_dead_rows():
    anc = rs.stable_order(jnp.array([4, 4, 4, 0, 2, 2, 7, 7], jnp.int32))
    np.testing.assert_array_equal(anc, [0, 2, 2, 4, 4, 4, 7, 7])  # extras 2, 4, 4, 7 into dead slots 1, 3, 5, 6
    tree = {"cache": jnp.arange(8 * 3 * 2.0).reshape(8, 3, 2), "n": jnp.arange(8)}
    got, want = jax.jit(rs.gather_changed)(tree, anc), rs.gather(tree, anc)
    for k in tree:
        np.testing.assert_array_equal(got[k], want[k])
    # nothing changes: the tree comes back as it was
    same = rs.gather_changed(tree, jnp.arange(8, dtype=jnp.int32))
    np.testing.assert_array_equal(same["cache"], tree["cache"])
