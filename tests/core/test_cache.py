"""structural_key: equal structure and values give one key; anything compiled in differs."""

import functools

import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist

from ppl.core.cache import structural_key


def _closure(a):
    return lambda x: x + a


def test_equal_objects_share_a_key():
    assert structural_key(dist.Normal(0.0, 1.0)) == structural_key(dist.Normal(0.0, 1.0))
    assert structural_key(_closure(jnp.ones(3))) == structural_key(_closure(jnp.ones(3)))
    f = lambda x, s=2.0: x * s  # noqa: E731
    g = lambda x, s=2.0: x * s  # noqa: E731  (other code object: differs)
    assert structural_key(f) != structural_key(g)
    assert structural_key(functools.partial(f, s=3.0)) == structural_key(functools.partial(f, s=3.0))
    hash(structural_key(dist.MultivariateNormal(jnp.zeros(2), jnp.eye(2))))


def test_anything_compiled_in_changes_the_key():
    assert structural_key(dist.Normal(0.0, 1.0)) != structural_key(dist.Normal(0.0, 2.0))
    assert structural_key(dist.Normal(0.0, 1.0)) != structural_key(dist.Laplace(0.0, 1.0))
    assert structural_key(_closure(jnp.ones(3))) != structural_key(_closure(jnp.zeros(3)))
    assert structural_key(_closure(jnp.ones(3))) != structural_key(_closure(jnp.ones(3, jnp.int32)))
    assert structural_key(_closure(np.ones(3))) != structural_key(_closure(np.ones(4)))


def test_unhashable_objects_fall_back_to_identity():
    class Thing:
        __hash__ = None

    a, b = Thing(), Thing()
    assert structural_key(a) == structural_key(a) and structural_key(a) != structural_key(b)
