"""FeynmanKac validation: user errors are caught before any compute, naming the field."""

import jax.numpy as jnp
import numpyro.distributions as dist
import pytest

import ppl

TR = lambda x, t, d: dist.Normal(x, 1.0)  # noqa: E731
G = lambda xp, x, t, d: 0.0  # noqa: E731


def test_num_steps_from_data():
    fk = ppl.FeynmanKac(dist.Normal(0, 1), TR, G, data={"y": jnp.zeros(7), "z": jnp.zeros((7, 2))})
    assert fk.num_steps == 7
    assert fk.with_data({"y": jnp.ones(7), "z": jnp.ones((7, 2))}).static_key() == fk.static_key()


@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(init=3.0), TypeError, "init"),
    (dict(transition=None), TypeError, "transition"),
    (dict(log_potential="x"), TypeError, "log_potential"),
    (dict(proposal=1), TypeError, "proposal"),
    (dict(num_steps=None), ValueError, "num_steps"),
    (dict(num_steps=0), ValueError, "num_steps"),
    (dict(num_steps=3, data=jnp.zeros(4)), ValueError, "num_steps"),
    (dict(num_steps=None, data={"a": jnp.zeros(3), "b": jnp.zeros(4)}), ValueError, "data"),
    (dict(num_steps=None, data=jnp.zeros(())), ValueError, "data"),
])
def test_bad_models_are_rejected(kwargs, exc, match):
    args = dict(init=dist.Normal(0, 1), transition=TR, log_potential=G, num_steps=5)
    args.update(kwargs)
    with pytest.raises(exc, match=match):
        ppl.FeynmanKac(**args)


def test_point_mass_initial_state():
    fk = ppl.FeynmanKac(ppl.PointMass({"a": jnp.ones(2)}), lambda x, t, d: ppl.PointMass(x), G, num_steps=2)
    import jax
    res = ppl.run_smc(fk, 4, key=jax.random.key(0))
    assert res.particles["a"].shape == (4, 2)
    assert float(res.log_evidence) == 0.0


# ------------------------------------------------------------------ batched randomness (issue 16)
def test_batched_randomness_draws_the_set_with_one_key():
    """One key per step: the particle set is one draw of the lifted distribution."""
    import jax
    import numpy as np

    fk = ppl.FeynmanKac(dist.Normal(1.0, 2.0), lambda x, t, d: dist.Normal(0.5 * x, 0.1 + d), G,
                        data=jnp.arange(3.0))
    key = jax.random.key(3)
    x0, lw0 = fk.init_batch(key, 6, fk.data_at(fk.data, 0))
    np.testing.assert_array_equal(np.asarray(x0), np.asarray(dist.Normal(1.0, 2.0).sample(key, (6,))))
    assert lw0.shape == (6,)
    x1, lw1 = fk.step_batch(key, x0, 1, fk.data_at(fk.data, 1))
    expected = 0.5 * x0 + 1.1 * jax.random.normal(key, (6,))
    np.testing.assert_allclose(np.asarray(x1), np.asarray(expected), rtol=1e-6)
    # The per-particle path is the same model, drawn with N keys.
    per = ppl.FeynmanKac(fk.init, fk.transition, G, data=fk.data, batched_randomness=False)
    y1, _ = per.step_batch(key, x0, 1, fk.data_at(fk.data, 1))
    assert not np.allclose(np.asarray(y1), np.asarray(x1))
    assert fk.static_key() != per.static_key()


def test_batched_randomness_with_a_proposal_and_vector_states():
    """A guided 2-d model: proposal draws are batched, weights carry M/q per particle."""
    import jax
    import numpy as np

    cov = jnp.array([[1.0, 0.3], [0.3, 0.5]])
    M = lambda x, t, d: dist.MultivariateNormal(0.9 * x, cov)  # noqa: E731
    q = lambda x, t, d: dist.MultivariateNormal(jnp.zeros(2) if x is None else 0.8 * x, 2.0 * cov)  # noqa: E731
    pot = lambda xp, x, t, d: -0.5 * jnp.sum((x - d) ** 2)  # noqa: E731
    fk = ppl.FeynmanKac(dist.MultivariateNormal(jnp.zeros(2), cov), M, pot, proposal=q,
                        data=jnp.ones((4, 2)))
    x, lw = fk.init_batch(jax.random.key(0), 5, fk.data[0])
    assert x.shape == (5, 2) and lw.shape == (5,)
    x1, lw1 = fk.step_batch(jax.random.key(1), x, 1, fk.data[1])
    assert x1.shape == (5, 2)
    expected = jax.vmap(fk.log_weight, in_axes=(0, 0, None, None))(x, x1, 1, fk.data[1])
    np.testing.assert_allclose(np.asarray(lw1), np.asarray(expected), rtol=1e-6)
    # Draws differ across particles (a lifted distribution whose batch shape was lost would
    # give every particle the same noise).
    noise = np.asarray(x1) - 0.8 * np.asarray(x)
    assert np.unique(np.round(noise[:, 0], 6)).size == 5


def test_non_numpyro_transitions_fall_back_to_one_key_per_particle():
    import jax
    import numpy as np

    class Shift:  # has .sample and .log_prob, but is not a numpyro distribution
        def __init__(self, x):
            self.x = x

        def sample(self, key, sample_shape=()):
            return self.x + jax.random.normal(key, sample_shape + jnp.shape(self.x))

        def log_prob(self, v):
            return -0.5 * (v - self.x) ** 2

    fk = ppl.FeynmanKac(dist.Normal(0.0, 1.0), lambda x, t, d: Shift(x), G, num_steps=3)
    x, _ = fk.init_batch(jax.random.key(0), 4, None)
    x1, lw = fk.step_batch(jax.random.key(1), x, 1, None)
    keys = jax.random.split(jax.random.key(1), 4)
    np.testing.assert_allclose(np.asarray(x1), np.asarray(x + jax.vmap(jax.random.normal)(keys)), rtol=1e-6)
