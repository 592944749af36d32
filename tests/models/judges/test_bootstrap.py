"""Arena-style bootstrap of the MLE against the asymptotic standard errors of the same MLE."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree
from numpyro.infer.util import initialize_model, potential_energy

from ppl_models import judges
from ppl_models.judges.bootstrap import bootstrap_mle
from ppl_models.judges.mode import posterior_mode


@pytest.mark.slow  # 13 s statistical check
def test_bootstrap_centres_on_the_mle_with_its_fisher_standard_errors():
    rng = np.random.default_rng(0)
    recs = judges.simulate_battles(rng, np.array([1.0, 0.5, 0.0, -0.5, -1.0]), 3000, ties="davidson", log_nu=-0.7,
                                   names=list("abcde"))
    comps = judges.aggregate(judges.battles_from_records(recs))
    opts = dict(link="logit", ties="davidson", prior="flat")
    samples, info = bootstrap_mle(comps, num_bootstrap=400, seed=1, link="logit", ties="davidson")
    assert info == {"num_bootstrap": 400, "failed": 0} and samples["rating"].shape == (1, 400, 5)
    mle = posterior_mode(judges.bradley_terry, comps, **opts)
    # Independent: the inverse Hessian of the negative log-likelihood at the MLE, in the free
    # coordinates, mapped to ratings (rating = B z).
    init = initialize_model(jax.random.key(0), judges.bradley_terry, model_args=(comps,), model_kwargs=opts)
    flat, unravel = ravel_pytree({k: jnp.asarray(mle[k]) for k in init.param_info.z})
    h = jax.hessian(lambda x: potential_energy(judges.bradley_terry, (comps,), opts, unravel(x)))(flat)
    cov = np.linalg.inv(np.asarray(h, np.float64))
    basis = np.asarray(judges.sum_to_zero_basis(5), np.float64)
    free = np.asarray(ravel_pytree({k: (np.ones(4) if k == "rating_free" else np.zeros(np.shape(v)))
                                    for k, v in init.param_info.z.items()})[0], bool)  # where rating_free sits
    se = np.sqrt(np.diag(basis @ cov[np.ix_(free, free)] @ basis.T))
    boot = samples["rating"][0]
    np.testing.assert_allclose(boot.std(0), se, rtol=0.15)
    assert np.all(np.abs(boot.mean(0) - np.asarray(mle["rating"])) < 4 * se / np.sqrt(400) + 0.01)
    # ranked through rank(): percentile intervals, no R-hat
    ranking = judges.rank(comps, method="bootstrap", num_bootstrap=50, ties="davidson")
    assert ranking.diagnostics["num_bootstrap"] == 50 and "max_r_hat" not in ranking.diagnostics


def test_bootstrap_refuses_data_without_a_finite_mle():
    recs = [{"model_a": "a", "model_b": "b", "winner": "model_a"}] * 20  # a never loses: MLE at infinity
    comps = judges.aggregate(judges.battles_from_records(recs))
    with pytest.raises(ValueError, match="finite maximum-likelihood"):
        bootstrap_mle(comps, num_bootstrap=20, link="logit", ties="none")
