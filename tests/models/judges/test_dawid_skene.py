"""Dawid–Skene: the summed-out likelihood against brute-force enumeration, recovery of known
confusion matrices with NUTS, and the simplex model's identifiability warning."""

import itertools

import jax
import numpy as np
import pytest
from numpyro.handlers import substitute, trace

import ppl
from ppl_models.judges.dawid_skene import (
    IdentifiabilityWarning, dawid_skene, judgments_from_records, relabel, simulate_judgments)


def _confusions(m, diags):
    out = []
    for d in diags:
        c = np.full((m, m), (1 - d) / (m - 1))
        np.fill_diagonal(c, d)
        out.append(c)
    return np.array(out)


def test_likelihood_equals_brute_force_enumeration_of_true_labels():
    rng = np.random.default_rng(0)
    m, conf = 3, _confusions(3, [0.7, 0.5])
    truth, it, jd, lb = simulate_judgments(rng, conf, 3)
    data = judgments_from_records(it, jd, lb, num_levels=m, candidate=[0, 1, 1])
    prev = np.array([[0.2, 0.3, 0.5], [0.6, 0.3, 0.1]])
    with jax.enable_x64(True), pytest.warns(IdentifiabilityWarning):
        tr = trace(substitute(dawid_skene, data={"confusion": conf, "prevalence": prev})).get_trace(data)
    ll = float(tr["log_likelihood"]["fn"].log_factor)
    total = 0.0
    for z in itertools.product(range(m), repeat=3):  # all joint true labels of the 3 items
        p = np.prod([prev[[0, 1, 1][i], z[i]] for i in range(3)])
        p *= np.prod([conf[j, z[i], l] for i, j, l in zip(it, jd, lb)])
        total += p
    assert ll == pytest.approx(np.log(total), rel=1e-10)


@pytest.mark.slow  # NUTS compile dominates: ~10-20 s on 2 shared cores
def test_nuts_recovers_known_confusion_matrices():
    rng = np.random.default_rng(1)
    conf = _confusions(3, [0.85, 0.7, 0.55, 0.9])
    truth, it, jd, lb = simulate_judgments(rng, conf, 200, prevalence=np.array([0.5, 0.3, 0.2]))
    data = judgments_from_records(it, jd, lb, num_levels=3)
    res = ppl.infer(dawid_skene, data, method="nuts", key=jax.random.key(2), num_chains=2,
                    num_warmup=200, num_samples=200)
    post = relabel(res.samples)["confusion"].reshape(-1, 4, 3, 3)
    mean, sd = post.mean(0), post.std(0)
    assert np.all(np.abs(mean - conf) < 4 * sd + 0.02), np.abs(mean - conf) / sd
    # judge accuracy ordering is recovered
    acc = np.trace(mean, axis1=1, axis2=2)
    assert list(np.argsort(acc)) == [2, 1, 0, 3]
    assert np.asarray(res.diagnostics["divergences"]).sum() < 10


def test_simplex_warning_only_without_anchor():
    it, jd, lb = np.array([0, 1]), np.array([0, 0]), np.array([1, 0])
    two = judgments_from_records(it, jd, lb, num_levels=2, candidate=[0, 1])
    three = judgments_from_records(it, jd, lb, num_levels=3, candidate=[0, 1])
    gold = judgments_from_records(it, jd, lb, num_levels=3, candidate=[0, 1], gold=[1, -1])
    import warnings

    def run(d):
        m = d.num_levels
        vals = {"confusion": _confusions(m, [0.8]), "prevalence": np.full((2, m), 1 / m)}
        trace(substitute(dawid_skene, data=vals)).get_trace(d)

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        run(two)
        run(gold)
    with pytest.warns(IdentifiabilityWarning, match="not identifiable"):
        run(three)


def test_gold_labels_pin_the_true_level():
    it, jd, lb = np.array([0, 0]), np.array([0, 1]), np.array([1, 1])
    data = judgments_from_records(it, jd, lb, num_levels=2, gold=[0])
    conf = _confusions(2, [0.8, 0.6])
    prev = np.array([0.5, 0.5])
    tr = trace(substitute(dawid_skene, data={"confusion": conf, "prevalence": prev})).get_trace(data)
    # only z = 0 allowed: log(0.5 * 0.2 * 0.4)
    assert float(tr["log_likelihood"]["fn"].log_factor) == pytest.approx(np.log(0.5 * 0.2 * 0.4), rel=1e-6)


def test_bad_judgments_are_rejected():
    with pytest.raises(ValueError, match="row 1, field 'label'"):
        judgments_from_records([0, 1], [0, 0], [0, 5], num_levels=3)
    with pytest.raises(ValueError, match="field 'count'"):
        judgments_from_records([0, 1], [0, 0], [0, 1], num_levels=3, counts=[1, np.nan])


def test_relabel_undoes_a_permutation_of_latent_levels():
    conf = _confusions(3, [0.8, 0.6])[None]  # one draw
    prev = np.array([[0.5, 0.3, 0.2]])
    perm = [2, 0, 1]
    swapped = {"confusion": conf[:, :, perm, :], "prevalence": prev[:, perm]}
    out = relabel(swapped)
    np.testing.assert_allclose(out["confusion"], conf)
    np.testing.assert_allclose(out["prevalence"], prev)
