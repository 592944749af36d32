"""Errors, not numbers (issue 16): bad data and invalid potentials raise, naming step or argument."""

import jax
import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist
import pytest

import ppl

TR = lambda x, t, y: dist.Normal(0.9 * x, 1.0)  # noqa: E731
POT = lambda xp, x, t, y: dist.Normal(x, 0.5).log_prob(y)  # noqa: E731
YS = jnp.linspace(-1.0, 1.0, 10)


def _fk(data=YS, pot=POT):
    return ppl.FeynmanKac(dist.Normal(0.0, 1.0), TR, pot, data=data)


def test_plus_infinite_potential_is_an_error_naming_the_step():
    pot = lambda xp, x, t, y: jnp.where(t == 3, jnp.inf, 0.0)  # noqa: E731
    with pytest.raises(ppl.SMCError, match=r"\+inf at step 3") as err:
        ppl.run_smc(_fk(pot=pot), 64, key=jax.random.key(0))
    assert err.value.step == 3


def test_nan_in_data_is_named_before_compute():
    with pytest.raises(ValueError, match=r"data: NaN at index \(3,\) \(time step 3\)"):
        ppl.run_smc(_fk(YS.at[3].set(jnp.nan)), 64, key=jax.random.key(0))
    with pytest.raises(ValueError, match=r"data\['y'\]: NaN at index \(5, 1\) \(time step 5\)"):
        data = {"y": jnp.zeros((8, 2)).at[5, 1].set(jnp.nan)}
        ppl.run_smc(ppl.FeynmanKac(dist.Normal(0.0, 1.0), TR,
                                   lambda xp, x, t, d: jnp.sum(dist.Normal(x, 1.0).log_prob(d["y"])),
                                   data=data), 16, key=jax.random.key(0))

    def step(x, y):
        x = numpyro.sample("x", dist.Normal(0.9 * x, 1.0))
        numpyro.sample("y", dist.Normal(x, 0.5), obs=y)
        return x

    sp = ppl.from_step_program(step, init=0.0, data=YS.at[7].set(jnp.nan))
    with pytest.raises(ValueError, match="time step 7"):
        ppl.run_smc(sp, 16, key=jax.random.key(0))
    with pytest.raises(ValueError, match="time step 7"):
        ppl.particle_gibbs(sp, 4, 2, key=jax.random.key(0))


def test_empty_and_list_data_are_clear_errors():
    with pytest.raises(ValueError, match="length 0"):
        _fk(jnp.zeros(0))
    with pytest.raises(ValueError, match=r"Python list of numbers.*jnp.asarray"):
        _fk([1.0, 2.0, 3.0])


def test_potential_of_the_wrong_shape_names_the_shapes():
    with pytest.raises(ValueError, match=r"log_potential: .*shape \(3,\) per particle at step 0"):
        ppl.run_smc(_fk(jnp.ones((10, 3))), 64, key=jax.random.key(0))
    with pytest.raises(ValueError, match=r"log_potential: .*shape \(3,\)"):
        ppl.conditional_smc(_fk(jnp.ones((10, 3))), 4, jnp.zeros(10), key=jax.random.key(0))


def _model(y=None):
    mu = numpyro.sample("mu", dist.Normal(0.0, 10.0))
    numpyro.sample("y", dist.Normal(mu, 1.0), obs=y)


@pytest.mark.parametrize("method", ["nuts", "tempered_smc"])
def test_static_models_refuse_nan_data_naming_the_argument(method):
    y = jnp.ones(20).at[4].set(jnp.nan)
    with pytest.raises(ValueError, match=rf"{method}: model argument 'y': NaN at index \(4,\)"):
        ppl.infer(_model, y=y, method=method, key=jax.random.key(0))
    with pytest.raises(ValueError, match=r"model argument 'y'"):
        ppl.infer(_model, y, method=method, key=jax.random.key(0))
