"""NUTS (through numpyro) on a conjugate Normal model against the closed-form posterior.

Monte Carlo tolerance: the standard error of a posterior-mean estimate from MCMC is
``sd / sqrt(ESS)`` with ArviZ's bulk ESS; for the variance, ``var * sqrt(2 / ESS)`` (Gaussian
posterior). We require the estimates within 4 standard errors, and ESS >= 100 (a sampler that
does not mix fails here).
"""

import arviz as az
import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest

import ppl
from ppl.mcmc import nuts

CHAINS, DRAWS = 2, 300
TRACES = []  # the model appends here each time it runs, i.e. only while JAX traces it


def normal_model(y):
    """mu ~ N(0, 2^2 I_2), y_i ~ N(mu, I_2); deterministic total."""
    TRACES.append(1)
    mu = numpyro.sample("mu", dist.Normal(jnp.zeros(2), 2.0).to_event(1))
    numpyro.deterministic("total", mu.sum())
    with numpyro.plate("n", y.shape[0]):
        numpyro.sample("y", dist.Normal(mu, 1.0).to_event(1), obs=y)


def exact(y, prior_var=4.0):
    var = 1.0 / (1.0 / prior_var + y.shape[0])
    return var * y.sum(0), var


@pytest.fixture(scope="module")
def y():
    return np.random.default_rng(0).normal(1.0, 1.0, (20, 2)).astype(np.float32)


@pytest.fixture(scope="module")
def result(y):
    return nuts(normal_model, y, key=jax.random.key(0), num_chains=CHAINS, num_warmup=DRAWS,
                num_samples=DRAWS)


def test_matches_closed_form(result, y):
    mean, var = exact(y)
    x = np.asarray(result.samples["mu"]).reshape(-1, 2)
    ess = np.asarray(az.ess(ppl.to_arviz(result))["mu"])  # bulk ESS per coordinate
    assert np.all(ess >= 100), ess
    np.testing.assert_array_less(np.abs(x.mean(0) - mean), 4 * np.sqrt(var / ess))
    np.testing.assert_array_less(np.abs(x.var(0) - var), 4 * var * np.sqrt(2 / ess))
    np.testing.assert_allclose(result.mean("mu"), x.mean(0), rtol=1e-5)


def test_result_layout(result):
    assert result.method == "nuts"
    assert result.samples["mu"].shape == (CHAINS, DRAWS, 2)
    assert result.samples["total"].shape == (CHAINS, DRAWS)
    np.testing.assert_allclose(result.samples["total"], result.samples["mu"].sum(-1), rtol=1e-5)
    assert result.log_weights is None and result.log_evidence is None
    d = result.diagnostics
    for name in ("diverging", "accept_prob", "num_steps", "tree_depth", "step_size", "energy",
                 "potential_energy"):
        assert d[name].shape == (CHAINS, DRAWS), name
    assert d["divergences"].shape == (CHAINS,) and int(d["divergences"].sum()) == 0
    assert 0.5 < float(d["accept_prob"].mean()) <= 1.0


def test_to_arviz(result):
    idata = ppl.to_arviz(result)
    summary = az.summary(idata)
    assert list(summary.index) == ["mu[0]", "mu[1]", "total"]
    assert np.all(summary["r_hat"] < 1.05)
    stats = idata.sample_stats
    for name in ("diverging", "acceptance_rate", "n_steps", "tree_depth", "step_size", "energy",
                 "lp", "log_weight"):
        assert stats[name].dims == ("chain", "draw"), name
    assert "log_evidence" not in stats
    np.testing.assert_allclose(stats["lp"], -np.asarray(result.diagnostics["potential_energy"]))


def test_new_data_does_not_recompile(result, y):
    traced = len(TRACES)
    res = nuts(normal_model, y + 1.0, key=jax.random.key(1), num_chains=CHAINS, num_warmup=DRAWS,
               num_samples=DRAWS)
    assert len(TRACES) == traced
    mean, var = exact(y + 1.0)
    np.testing.assert_allclose(res.mean("mu"), mean, atol=6 * np.sqrt(var / 100))


def test_discrete_latent_is_rejected():
    def model():
        z = numpyro.sample("z_switch", dist.Bernoulli(0.5))
        numpyro.sample("y", dist.Normal(z, 1.0), obs=0.3)

    try:
        import funsor  # noqa: F401

        pytest.skip("funsor installed: numpyro enumerates discrete sites")
    except ImportError:
        pass
    with pytest.raises(ValueError, match="z_switch"):
        nuts(model, key=jax.random.key(0), num_chains=1, num_warmup=5, num_samples=5)


@pytest.mark.parametrize(
    "kwargs,exc,match",
    [
        (dict(num_chains=0), ValueError, "num_chains"),
        (dict(num_samples=0), ValueError, "num_samples"),
        (dict(chain_method="threads"), ValueError, "chain_method"),
        (dict(key=1), TypeError, "key"),
    ],
)
def test_bad_options(y, kwargs, exc, match):
    kwargs = {"key": jax.random.key(0), **kwargs}
    with pytest.raises(exc, match=match):
        nuts(normal_model, y, **kwargs)
