"""IRT 1PL / 2PL: data validation, the aggregated likelihood against per-response Bernoulli
terms, and recovery of known abilities from simulated benchmark results."""

import jax
import numpy as np
import pytest
from numpyro.handlers import substitute, trace

from ppl_models.judges.data import BattleLogError
from ppl_models.judges.irt import (
    irt, rank_irt, read_responses, responses_from_matrix, responses_from_records, simulate_responses)
from ppl_models.judges.mode import posterior_mode


def _log_factor(model, data, values, **kw):
    tr = trace(substitute(model, data=values)).get_trace(data, **kw)
    return float(tr["log_likelihood"]["fn"].log_factor)


@pytest.mark.parametrize("kind", ["1pl", "2pl"])
def test_aggregated_likelihood_equals_per_response_bernoulli(kind):
    recs = [
        {"model": "a", "item": "q1", "correct": 1},
        {"model": "a", "item": "q1", "correct": "false"},
        {"model": "a", "item": "q2", "correct": True, "count": 3},
        {"model": "b", "item": "q1", "correct": 0.25},  # soft score
        {"model": "b", "item": "q3", "correct": "correct"},
    ]
    data = responses_from_records(recs)
    assert data.num_rows == 4 and data.models == ("a", "b") and data.items == ("q1", "q2", "q3")
    theta, b, a = np.array([0.7, -0.4]), np.array([0.2, -1.0, 0.5]), np.array([1.5, 0.6, 0.9])
    vals = {"ability_raw": theta, "ability_scale": 1.0, "difficulty_mean": 0.0, "difficulty_scale": 1.0,
            "difficulty_raw": b, "log_discrimination": np.log(a)}
    with jax.enable_x64(True):
        got = _log_factor(irt, data, vals, kind=kind)
    a = a if kind == "2pl" else np.ones(3)
    logsig = lambda x: -np.log1p(np.exp(-x))  # noqa: E731
    want = 0.0
    for m, i, y, n in [(0, 0, 1, 1), (0, 0, 0, 1), (0, 1, 1, 3), (1, 0, 0.25, 1), (1, 2, 1, 1)]:
        eta = a[i] * (theta[m] - b[i])
        want += n * (y * logsig(eta) + (1 - y) * logsig(-eta))
    assert got == pytest.approx(want, rel=1e-10)


def test_bad_responses_name_row_and_field(tmp_path):
    ok = {"model": "a", "item": "q", "correct": 1}
    with pytest.raises(BattleLogError, match=r"row 2, field 'correct'"):
        responses_from_records([ok, {"model": "b", "item": "q", "correct": 1.5}])
    with pytest.raises(BattleLogError, match=r"row 2, field 'correct': missing value or NaN"):
        responses_from_records([ok, {"model": "b", "item": "q", "correct": float("nan")}])
    with pytest.raises(BattleLogError, match=r"row 1, field 'count': negative"):
        responses_from_records([{**ok, "count": -1}])
    with pytest.raises(BattleLogError, match=r"row 1: missing column\(s\) \['item'\]"):
        responses_from_records([{"model": "a", "correct": 1}])
    with pytest.raises(BattleLogError, match=r"unknown column\(s\) \['score'\]"):
        responses_from_records([{**ok, "score": 3}])
    with pytest.raises(BattleLogError, match="no records"):
        responses_from_records([])
    p = tmp_path / "r.csv"
    p.write_text("model,item,correct\na,q1,1\nb,q1,maybe\n")
    with pytest.raises(BattleLogError, match=r"r.csv: line 3, field 'correct'"):
        read_responses(p)
    with pytest.raises(BattleLogError, match=r"row 1 \(model 'm1'\), item 'i0'"):
        responses_from_matrix([[1, 0], [2, np.nan]], models=["m0", "m1"], items=["i0", "i1"])


def test_matrix_input_skips_nan_and_keeps_unattempted_models_visible():
    x = np.array([[1, 0, np.nan], [np.nan, 1, 1]])
    d = responses_from_matrix(x)
    assert d.num_rows == 4
    np.testing.assert_allclose(d.accuracy(), [0.5, 1.0])
    d2 = responses_from_records([{"model": "a", "item": "q", "correct": 1}], models=["a", "b"])
    np.testing.assert_allclose(d2.attempts_per_model(), [1, 0])


def _simulated(kind, seed=0, k=6, n=50):
    rng = np.random.default_rng(seed)
    theta = np.linspace(-1.5, 1.5, k)
    b = rng.normal(0, 1, n)
    a = np.exp(rng.normal(0, 0.3, n)) if kind == "2pl" else None
    x = simulate_responses(rng, theta, b, a, trials=4, attempt_fraction=0.9)
    return theta, b, a, responses_from_matrix(x)


@pytest.mark.slow
def test_1pl_nuts_recovers_abilities():
    theta, b, _, data = _simulated("1pl")
    r = rank_irt(data, kind="1pl", key=jax.random.key(0), num_chains=2, num_warmup=150, num_samples=150)
    c = theta - theta.mean()
    sd = r.draws.reshape(-1, len(theta)).std(0)
    assert np.all(np.abs(r.mean - c) < 4 * sd + 0.05), (r.mean, c, sd)
    assert np.corrcoef(r.mean, theta)[0, 1] > 0.95
    assert r.order[0] == len(theta) - 1 and r.order[-1] == 0  # the extremes are identified
    assert r.diagnostics["max_r_hat"] < 1.1
    assert r.params["kind"] == "1pl" and len(r.params["difficulty"]["mean"]) == data.num_items
    d = r.to_dict()
    assert d["models"][0]["name"] == data.models[-1] and d["models"][0]["rank"] == 1


@pytest.mark.slow
def test_2pl_posterior_mode_recovers_abilities_and_discriminations():
    theta, b, a, data = _simulated("2pl", seed=3, n=120)
    mode = posterior_mode(irt, data, kind="2pl")
    est = mode["ability"]
    assert np.corrcoef(est, theta)[0, 1] > 0.97
    assert np.corrcoef(mode["difficulty"], b)[0, 1] > 0.8
    assert np.all(mode["discrimination"] > 0)


@pytest.mark.slow
def test_2pl_nuts_interval_coverage_of_abilities():
    theta, b, a, data = _simulated("2pl", seed=5, k=8, n=150)
    r = rank_irt(data, kind="2pl", key=jax.random.key(1), num_chains=2, num_warmup=400, num_samples=400, ci=0.9)
    # the 2PL ability scale is fixed by the N(0, 1) prior: compare standardised abilities
    z = (theta - theta.mean()) / theta.std()
    m = r.mean / r.mean.std()
    assert np.corrcoef(m, z)[0, 1] > 0.97
    assert r.diagnostics["max_r_hat"] < 1.05
