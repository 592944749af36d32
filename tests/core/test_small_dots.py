"""small_dots: the same values, with tiny-contraction products no longer dot_general."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist

from ppl.core.small_dots import small_dots

F = jnp.array([[0.9, 0.1, 0.0], [0.0, 0.8, 0.2], [0.1, 0.0, 0.7]])
S = jnp.eye(3) + 0.2


def f(x, y):
    batched = jnp.einsum("bij,bj->bi", jnp.stack([F, F.T]), jnp.stack([x, 2 * x]))  # batch dims
    return (dist.MultivariateNormal(F @ x, S).log_prob(y) + jnp.sum((F @ F) @ x)
            + jnp.sum(batched) + jnp.ones(20) @ jnp.arange(20.0))


def _dots(fn, *args):
    return [e for e in jax.make_jaxpr(fn)(*args).jaxpr.eqns if e.primitive.name == "dot_general"]


def test_same_values_gradients_and_batches():
    x, y = jnp.arange(3.0), jnp.ones(3)
    np.testing.assert_allclose(float(small_dots(f)(x, y)), float(f(x, y)), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(jax.grad(small_dots(f))(x, y)), np.asarray(jax.grad(f)(x, y)),
                               rtol=1e-5)
    xs = jax.random.normal(jax.random.key(0), (6, 3))
    np.testing.assert_allclose(np.asarray(jax.vmap(small_dots(f), (0, None))(xs, y)),
                               np.asarray(jax.vmap(f, (0, None))(xs, y)), rtol=1e-5)


def test_only_tiny_contractions_are_rewritten():
    x, y = jnp.arange(3.0), jnp.ones(3)
    assert len(_dots(f, x, y)) >= 4
    left = _dots(small_dots(f), x, y)
    assert len(left) == 1 and left[0].invars[0].aval.shape == (20,)  # the 20-long dot stays


def test_functions_returning_distributions_and_non_arrays():
    d = small_dots(lambda x: dist.MultivariateNormal(F @ x, S))(jnp.ones(3))
    assert isinstance(d, dist.MultivariateNormal)
    np.testing.assert_allclose(np.asarray(d.loc), np.asarray(F @ jnp.ones(3)), rtol=1e-6)
    assert small_dots(lambda s: s + "!")("ok") == "ok!"  # not traceable: run as written
