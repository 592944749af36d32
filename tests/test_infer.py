"""ppl.infer: switching methods on one model gives consistent answers; arviz conversion; errors.

Model: Gamma-Poisson (a positive latent, so both samplers work through a log-Jacobian), exact
posterior Gamma(a + sum y, b + n). Tolerances: NUTS mean within 4 se with se = sd/sqrt(ESS)
(ArviZ bulk ESS); tempered SMC mean within 4 sd/sqrt(N) (replicate studies in
tests/smc/test_tempering.py show its spread is about the iid value); the two methods agree within
4 times their combined standard error.
"""

import arviz as az
import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from scipy.special import gammaln

import ppl
from ppl.infer import infer

N = 1000


def gamma_poisson(y, a=2.0, b=1.0):
    lam = numpyro.sample("lam", dist.Gamma(a, b))
    with numpyro.plate("n", y.shape[0]):
        numpyro.sample("y", dist.Poisson(lam), obs=y)


def exact(y, a=2.0, b=1.0):
    s, n = float(y.sum()), y.shape[0]
    pa, pb = a + s, b + n
    lz = a * np.log(b) - gammaln(a) + gammaln(pa) - pa * np.log(pb) - gammaln(y + 1).sum()
    return pa / pb, pa / pb**2, lz


@pytest.fixture(scope="module")
def y():
    return np.random.default_rng(3).poisson(3.0, 15).astype(np.float32)


@pytest.fixture(scope="module")
def smc(y):
    return infer(gamma_poisson, y, method="tempered_smc", key=jax.random.key(0), num_particles=N)


@pytest.fixture(scope="module")
def mcmc(y):
    return infer(gamma_poisson, y, method="nuts", key=jax.random.key(0), num_chains=2,
                 num_warmup=300, num_samples=300, chain_method="sequential")


def test_methods_agree_with_exact_and_each_other(smc, mcmc, y):
    mean, var, lz = exact(y)
    assert smc.method == "tempered_smc" and mcmc.method == "nuts"
    ess = float(az.ess(ppl.to_arviz(mcmc))["lam"])
    assert ess >= 100
    se_nuts = np.sqrt(var / ess)
    se_smc = np.sqrt(var / N)
    assert abs(float(mcmc.mean("lam")) - mean) < 4 * se_nuts
    assert abs(float(smc.mean("lam")) - mean) < 4 * se_smc
    assert abs(float(mcmc.mean("lam")) - float(smc.mean("lam"))) < 4 * np.hypot(se_nuts, se_smc)
    assert abs(float(smc.var("lam")) - var) < 4 * var * np.sqrt(2.2 / N)
    # Single-run log-evidence spread is about 0.05 nats here (see test_tempering); allow 0.25.
    assert abs(float(smc.log_evidence[0]) - lz) < 0.25


def test_smc_to_arviz(smc):
    idata = ppl.to_arviz(smc)
    summary = az.summary(idata)
    assert list(summary.index) == ["lam"]
    np.testing.assert_allclose(summary.loc["lam", "mean"], float(smc.mean("lam")), atol=1e-3)
    stats = idata.sample_stats
    assert stats["log_weight"].shape == (1, N)
    assert stats["log_evidence"].shape == (1, N)
    np.testing.assert_allclose(stats["log_evidence"].values, float(smc.log_evidence[0]), rtol=1e-6)
    assert stats["temperature"].dims == ("tempering_step",)
    assert float(stats["temperature"][-1]) == 1.0
    assert idata.posterior["lam"].dims == ("chain", "draw")


def test_plot_posterior(smc, mcmc):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    for res in (smc, mcmc):
        axes = az.plot_posterior(ppl.to_arviz(res))
        assert np.size(axes) == 1
        plt.close("all")


def test_model_kwargs_pass_through(y):
    # `a` is a model parameter, not an option: passed to the model (as an array: traced).
    res = infer(gamma_poisson, y, method="tempered_smc", key=jax.random.key(1), num_particles=N,
                a=jnp.asarray(20.0))
    mean, var, _ = exact(y, a=20.0)
    assert abs(float(res.mean("lam")) - mean) < 4 * np.sqrt(var / N)
    res2 = infer(gamma_poisson, y, method="tempered_smc", key=jax.random.key(1), num_particles=N,
                 model_kwargs={"a": jnp.asarray(20.0)})
    np.testing.assert_array_equal(res.samples["lam"], res2.samples["lam"])


def test_unknown_method(y):
    with pytest.raises(ValueError, match="unknown method='hmc'"):
        infer(gamma_poisson, y, method="hmc", key=jax.random.key(0))


def test_option_of_other_method(y):
    with pytest.raises(ValueError, match="'num_particles' is an option of method='tempered_smc'"):
        infer(gamma_poisson, y, method="nuts", key=jax.random.key(0), num_particles=100)
    with pytest.raises(ValueError, match="'num_chains' is an option of method='nuts'"):
        infer(gamma_poisson, y, method="tempered_smc", key=jax.random.key(0), num_chains=2)


def test_unknown_option(y):
    with pytest.raises(ValueError, match="'num_sample'.*neither an option"):
        infer(gamma_poisson, y, method="nuts", key=jax.random.key(0), num_sample=10)
