"""The Bradley–Terry family against independent per-battle formulas (written with strengths
pi = exp(r), as in the papers), an independent scipy L-BFGS maximum-likelihood fit, and
simulation-based coverage."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpyro.handlers import seed, substitute, trace
from scipy import optimize, stats

from ppl_models import judges
from ppl_models.judges import aggregate, battles_from_records, bradley_terry, outcome_log_probs


def per_battle_probs(d, ties, link, nu=None, eta=None):
    """(P(first wins), P(second wins), P(tie)) from the textbook formulas, numpy, per battle."""
    d = np.asarray(d, np.float64)
    if ties in ("none", "half"):
        pa = 1 / (1 + np.exp(-d)) if link == "logit" else stats.norm.cdf(d)
        return np.stack([pa, 1 - pa, np.zeros_like(d)], -1)
    pi_a, pi_b = np.exp(d), np.ones_like(d)  # strengths with pi_b = 1 (only the ratio matters)
    if ties == "davidson":
        den = pi_a + pi_b + nu * np.sqrt(pi_a * pi_b)
        return np.stack([pi_a / den, pi_b / den, nu * np.sqrt(pi_a * pi_b) / den], -1)
    theta = np.exp(eta)
    if link == "logit":
        pa = pi_a / (pi_a + theta * pi_b)
        pb = pi_b / (pi_b + theta * pi_a)
    else:
        pa, pb = stats.norm.cdf(d - eta), stats.norm.cdf(-d - eta)
    return np.stack([pa, pb, 1 - pa - pb], -1)


@pytest.mark.parametrize(
    "ties, link", [("none", "logit"), ("none", "probit"), ("davidson", "logit"),
                   ("rao_kupper", "logit"), ("rao_kupper", "probit")]
)
def test_outcome_probabilities_match_textbook_formulas(ties, link):
    d = np.linspace(-6, 6, 25)
    lp = outcome_log_probs(jnp.asarray(d), link=link, ties=ties, log_nu=np.log(0.6), log_eta=np.log(0.4))
    ref = per_battle_probs(d, ties, link, nu=0.6, eta=0.4)
    np.testing.assert_allclose(np.exp(np.asarray(lp)), ref, atol=2e-6)


def test_davidson_needs_logit_and_flat_prior_needs_identification():
    c = aggregate(battles_from_records([{"model_a": "a", "model_b": "b", "winner": "tie"}]))
    with pytest.raises(ValueError, match="Glenn"):
        trace(seed(bradley_terry, 0)).get_trace(c, link="probit", ties="davidson")
    with pytest.raises(ValueError, match="identify"):
        trace(seed(bradley_terry, 0)).get_trace(c, prior="flat", identify="prior")


@pytest.fixture(scope="module")
def log5():
    """A log with 5 models, 2 judges, a 3-valued covariate and ties: many repeated rows."""
    rng = np.random.default_rng(1)
    recs = judges.simulate_battles(rng, rng.normal(0, 1, 5), 600, ties="davidson", log_nu=-0.3,
                                   judge_bias=np.array([0.3, -0.2]))
    for rec in recs:
        rec["len"] = float(rng.integers(-1, 2))
    return battles_from_records(recs, covariates=["len"])


OPTIONS = [
    dict(ties="none"),
    dict(ties="half", link="probit", position_bias=True),
    dict(ties="davidson", position_bias=True, judge_effects=True),
    dict(ties="rao_kupper", link="probit", judge_effects=True),
    dict(ties="rao_kupper", identify="anchor", anchor=2),
]


def _loglik_and_params(data, params, opts):
    tr = trace(substitute(bradley_terry, data=params)).get_trace(data, **opts)
    return float(tr["log_likelihood"]["fn"].log_factor), {k: np.asarray(v["value"]) for k, v in tr.items()}


@pytest.mark.parametrize("opts", OPTIONS)
def test_aggregated_likelihood_equals_per_battle_likelihood(log5, opts):
    agg, per = aggregate(log5), aggregate(log5, merge=False)
    assert agg.num_rows <= 120 < per.num_rows  # the aggregation does aggregate
    rng = np.random.default_rng(7)
    with jax.enable_x64(True):
        params = {
            "rating_free": rng.normal(0, 1, 4),
            "position_bias": 0.4, "judge_bias": np.array([0.2, -0.5]),
            "judge_log_discrimination_free": np.array([0.3]), "beta": np.array([0.7]),
            "log_nu": -0.4, "log_eta": -0.8,
        }
        ll_agg, sites = _loglik_and_params(agg, params, opts)
        ll_per, _ = _loglik_and_params(per, params, opts)
    # independent per-battle computation
    r = sites["rating"]
    f, s, j = log5.first, log5.second, log5.judge
    alpha = sites["judge_discrimination"][j] if "judge_discrimination" in sites else 1.0
    d = alpha * (r[f] - r[s]) + log5.covariates[:, 0] * 0.7
    if opts.get("position_bias"):
        d = d + 0.4
    if opts.get("judge_effects"):
        d = d + np.array([0.2, -0.5])[j]
    ties = opts["ties"]
    p = per_battle_probs(d, ties, opts.get("link", "logit"), nu=np.exp(-0.4), eta=np.exp(-0.8))
    o = log5.outcome.copy()
    if ties == "none":
        o[:, 2] = 0
    elif ties == "half":
        o[:, :2] += o[:, 2:] / 2
        o[:, 2] = 0
    ref = np.sum(np.where(o > 0, o * np.log(np.where(o > 0, p, 1.0)), 0.0))
    assert ll_agg == pytest.approx(ll_per, rel=1e-12, abs=1e-9)
    assert ll_agg == pytest.approx(ref, rel=1e-10)
    if opts.get("identify") == "anchor":
        assert r[2] == 0.0
    else:
        assert abs(r.sum()) < 1e-12


def _scipy_mle(b, ties, position_bias):
    """Independent MLE: anchored parametrisation r_0 = 0, per-battle likelihood, L-BFGS."""
    k = len(b.models)

    def nll(theta):
        r = np.concatenate([[0.0], theta[: k - 1]])
        rest = theta[k - 1 :]
        d = r[b.first] - r[b.second] + (rest[0] if position_bias else 0.0)
        nu = np.exp(rest[-1]) if ties == "davidson" else None
        p = per_battle_probs(d, ties, "logit", nu=nu)
        o = b.outcome.copy()
        if ties == "none":
            o[:, 2] = 0
        return -np.sum(np.where(o > 0, o * np.log(np.where(o > 0, p, 1.0)), 0.0))

    n = k - 1 + int(position_bias) + int(ties == "davidson")
    res = optimize.minimize(nll, np.zeros(n), method="L-BFGS-B",
                            options={"ftol": 1e-15, "gtol": 1e-10, "maxiter": 5000})
    r = np.concatenate([[0.0], res.x[: k - 1]])
    return r - r.mean(), res.x[k - 1 :]


@pytest.mark.parametrize("ties, position_bias", [("none", False), ("davidson", True)])
def test_posterior_mode_under_flat_prior_is_the_scipy_mle(ties, position_bias):
    rng = np.random.default_rng(3)
    recs = judges.simulate_battles(rng, rng.normal(0, 0.8, 6), 1500, ties="davidson", log_nu=-0.5,
                                   position_bias=0.3)
    b = battles_from_records(recs)
    with jax.enable_x64(True):
        mode = judges.posterior_mode(bradley_terry, aggregate(b), prior="flat", ties=ties,
                                     position_bias=position_bias)
    r_ref, rest = _scipy_mle(b, ties, position_bias)
    np.testing.assert_allclose(mode["rating"], r_ref, atol=1e-3)
    if position_bias:
        assert mode["position_bias"] == pytest.approx(rest[0], abs=1e-3)
        assert mode["position_bias"] == pytest.approx(0.3, abs=0.2)  # and near the truth
    if ties == "davidson":
        assert mode["log_nu"] == pytest.approx(rest[-1], abs=1e-3)


def test_mode_of_a_separated_log_under_flat_prior_fails_clearly():
    recs = [{"model_a": "a", "model_b": "b", "winner": "model_a"}] * 5
    with pytest.raises(judges.ModeNotFound):
        judges.posterior_mode(bradley_terry, aggregate(battles_from_records(recs)), prior="flat",
                              ties="none", max_iter=30)


def _all_pairs_comparisons(k, counts):
    f, s = np.array([(i, j) for i in range(k) for j in range(k) if i != j]).T
    return judges.Comparisons(models=tuple(f"m{i}" for i in range(k)), first=f.astype(np.int32),
                              second=s.astype(np.int32), counts=counts.astype(np.float32),
                              judge=np.zeros(len(f), np.int32))


def _coverage(num_datasets, k, n_per_pair, chains, draws, seed):
    """Simulate ratings from the model's own prior, battles from the model, fit with NUTS; the
    fraction of 90% intervals (ratings and log_nu) that contain the truth. Every dataset has
    the same shape, so the compiled sampler is reused."""
    import ppl

    rng = np.random.default_rng(seed)
    q = judges.sum_to_zero_basis(k)
    hits = []
    for n in range(num_datasets):
        r = q @ rng.normal(0, 1.0, k - 1)
        log_nu = rng.normal(0, 1.5)
        pairs = np.array([(i, j) for i in range(k) for j in range(k) if i != j])
        p = per_battle_probs(r[pairs[:, 0]] - r[pairs[:, 1]], "davidson", "logit", nu=np.exp(log_nu))
        counts = np.stack([rng.multinomial(n_per_pair, pp / pp.sum()) for pp in p])
        data = _all_pairs_comparisons(k, counts)
        res = ppl.infer(bradley_terry, data, method="nuts", key=jax.random.key(n), ties="davidson",
                        prior_scale=1.0, num_chains=chains, num_warmup=draws, num_samples=draws)
        x = np.c_[np.asarray(res.samples["rating"]).reshape(-1, k), np.asarray(res.samples["log_nu"]).reshape(-1)]
        lo, hi = np.quantile(x, [0.05, 0.95], axis=0)
        truth = np.r_[r, log_nu]
        hits.append((lo <= truth) & (truth <= hi))
    return np.mean(hits), np.size(hits)


@pytest.mark.slow  # 6.5 s statistical coverage
def test_coverage_of_90_percent_intervals_small():
    # 12 datasets x 5 quantities = 60 intervals; binomial sd at 0.9 is 0.039 (quantities within a
    # dataset are correlated, so allow ~3 sd). A likelihood with a wrong sign or scale fails.
    cov, n = _coverage(num_datasets=12, k=4, n_per_pair=6, chains=2, draws=250, seed=0)
    assert 0.75 <= cov <= 0.99, (cov, n)


@pytest.mark.slow
def test_coverage_of_90_percent_intervals_large():
    cov, n = _coverage(num_datasets=100, k=6, n_per_pair=10, chains=2, draws=500, seed=1)
    assert abs(cov - 0.9) <= 3 * np.sqrt(0.09 / n) + 0.01, (cov, n)
