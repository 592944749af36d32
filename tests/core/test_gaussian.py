"""ppl.Gaussian is numpyro's MultivariateNormal computed another way: same draws, same densities."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import pytest
from numpyro.distributions.batch_util import promote_batch_shape

import ppl

COV = jnp.array([[1.0, 0.3, 0.1], [0.3, 0.8, 0.2], [0.1, 0.2, 0.5]])


@pytest.mark.parametrize("d", [3, 20])  # the elementwise form, and the einsum form above 16
def test_same_draws_and_densities_as_numpyro(d):
    cov = jnp.eye(d) + 0.3 * jnp.ones((d, d)) / d
    loc = jnp.linspace(-1.0, 1.0, d)
    ours, theirs = ppl.Gaussian(loc, cov), dist.MultivariateNormal(loc, cov)
    key = jax.random.key(0)
    np.testing.assert_allclose(np.asarray(ours.sample(key, (7,))), np.asarray(theirs.sample(key, (7,))),
                               rtol=1e-5, atol=1e-6)
    x = jax.random.normal(jax.random.key(1), (7, d)) * 2.0
    np.testing.assert_allclose(np.asarray(ours.log_prob(x)), np.asarray(theirs.log_prob(x)), rtol=1e-5)
    prec = ppl.Gaussian(loc, precision_matrix=jnp.linalg.inv(cov))
    np.testing.assert_allclose(np.asarray(prec.log_prob(x)), np.asarray(theirs.log_prob(x)), rtol=1e-4)


def test_lifts_over_particles_and_batches():
    x = jax.random.normal(jax.random.key(2), (6, 3))
    lifted = promote_batch_shape(jax.vmap(lambda xi: ppl.Gaussian(0.9 * xi, COV))(x))
    assert isinstance(lifted, ppl.Gaussian) and lifted.batch_shape == (6,)
    draws = lifted.sample(jax.random.key(3))
    L = jnp.linalg.cholesky(COV)
    expected = 0.9 * x + jax.random.normal(jax.random.key(3), (6, 3)) @ L.T
    np.testing.assert_allclose(np.asarray(draws), np.asarray(expected), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(lifted.log_prob(draws)),
                               np.asarray(dist.MultivariateNormal(0.9 * x, COV).log_prob(draws)), rtol=1e-5)


def test_engine_draws_a_numpyro_multivariate_normal_transition_the_same():
    """The engine draws a lifted MultivariateNormal as a Gaussian: loc + L eps with one key."""
    fk = ppl.FeynmanKac(dist.MultivariateNormal(jnp.zeros(3), COV),
                        lambda x, t, d: dist.MultivariateNormal(0.5 * x, COV),
                        lambda xp, x, t, d: 0.0, num_steps=2)
    x0 = jax.random.normal(jax.random.key(4), (5, 3))
    x1, _ = fk.step_batch(jax.random.key(5), x0, 1, None)
    numpyro_draw = promote_batch_shape(jax.vmap(lambda xi: dist.MultivariateNormal(0.5 * xi, COV))(x0))
    np.testing.assert_allclose(np.asarray(x1), np.asarray(numpyro_draw.sample(jax.random.key(5))),
                               rtol=1e-5, atol=1e-6)
