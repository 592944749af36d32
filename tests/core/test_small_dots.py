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


def test_triangular_solves_by_substitution():
    from jax.lax.linalg import triangular_solve

    L = jnp.linalg.cholesky(jnp.array([[2.0, 0.3, 0.1], [0.3, 1.5, 0.2], [0.1, 0.2, 1.0]]))
    b = jax.random.normal(jax.random.key(1), (3, 2))
    for lower, a in [(True, L), (False, L.T)]:
        for transpose_a in (False, True):
            for unit in (False, True):
                fn = lambda a, b: triangular_solve(a, b, left_side=True, lower=lower,  # noqa: E731
                                                   transpose_a=transpose_a, unit_diagonal=unit)
                np.testing.assert_allclose(np.asarray(small_dots(fn)(a, b)), np.asarray(fn(a, b)),
                                           rtol=1e-5, atol=1e-6)
    mvn = lambda x: dist.MultivariateNormal(x, S).log_prob(jnp.ones(3))  # noqa: E731
    assert not [e for e in jax.make_jaxpr(small_dots(mvn))(jnp.zeros(3)).jaxpr.eqns
                if e.primitive.name in ("triangular_solve", "jit")]
    np.testing.assert_allclose(float(small_dots(mvn)(jnp.zeros(3))), float(mvn(jnp.zeros(3))), rtol=1e-6)
