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
