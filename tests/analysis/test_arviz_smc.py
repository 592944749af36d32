"""SMC and particle Gibbs results convert to ArviZ, and az.summary works on them."""

import arviz as az
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ppl
from tests.smc import models as m


def test_smc_result_to_arviz():
    ys = m.simulate_lg(0, T=8)
    res = ppl.run_smc(m.lg_bootstrap(ys), 256, key=jax.random.key(0))
    idata = ppl.to_arviz(res)
    assert idata.posterior["x"].shape == (1, 256)
    # The particles with their weights are kept as they are, beside the equally weighted draws.
    np.testing.assert_allclose(idata.weighted_posterior["log_weight"].values[0], np.asarray(res.log_weights))
    np.testing.assert_allclose(idata.weighted_posterior["x"].values[0], np.asarray(res.particles))
    assert idata.weighted_posterior.attrs["ess"][0] == pytest.approx(float(1 / jnp.sum(jnp.exp(2 * res.log_weights))))
    # az.summary of the posterior group estimates the *weighted* mean (the resample is systematic).
    weighted_mean = float(jnp.sum(jnp.exp(res.log_weights) * res.particles))
    plain_mean = float(jnp.mean(res.particles))
    summary_mean = float(az.summary(idata, var_names=["x"])["mean"].iloc[0])
    sd = float(jnp.sqrt(jnp.sum(jnp.exp(res.log_weights) * (res.particles - weighted_mean) ** 2)))
    assert abs(summary_mean - weighted_mean) < 3 * sd / np.sqrt(idata.weighted_posterior.attrs["ess"][0])
    assert abs(plain_mean - weighted_mean) > 5 * abs(summary_mean - weighted_mean)  # what ignoring weights gives
    assert float(idata.sample_stats["log_evidence"].values[0, 3]) == float(res.log_evidence)
    assert idata.sample_stats["ess"].shape == (1, 8)
    # Resampled draws are equally weighted; their mean estimates the weighted posterior mean.
    eq = ppl.to_arviz(res, resample_key=jax.random.key(1))
    weighted = float(jnp.sum(jnp.exp(res.log_weights) * res.particles))
    assert abs(float(eq.posterior["x"].mean()) - weighted) < 0.3
    np.testing.assert_allclose(eq.sample_stats["log_weight"].values, -np.log(256), rtol=1e-6)
    assert "mean" in az.summary(eq).columns


def test_batched_history_and_step_program_states():
    ys = m.simulate_lg(1, T=6)
    sp = ppl.from_step_program(m.lg_step, init=0.0, data=jnp.asarray(ys))
    res = ppl.run_smc(sp, 64, key=jax.random.split(jax.random.key(0), 3), keep_history=True)
    idata = ppl.to_arviz(res)
    # Three runs are three chains; each draw is a whole ancestral path.
    assert idata.posterior["x"].shape == (3, 64, 6)
    assert idata.posterior["x"].dims == ("chain", "draw", "time")
    assert "value" not in idata.posterior  # the step returns its site x: one variable, not two
    np.testing.assert_array_equal(idata.weighted_posterior["x"].values[..., -1], np.asarray(res.particles.value))


def test_particle_gibbs_to_arviz():
    out = ppl.particle_gibbs(m.discrete_fk(), 4, 20, key=jax.random.split(jax.random.key(0), 2))
    idata = ppl.to_arviz(out)
    assert idata.posterior["x"].shape == (2, 20, m.T_D)
    assert idata.sample_stats["log_evidence"].shape == (2, 20)
