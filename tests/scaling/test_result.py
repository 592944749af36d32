"""ScalingResult, finish, answer aggregation and Compute (ppl.scaling.result / aggregate / compute)."""

import numpy as np
import pytest
from scipy.special import logsumexp

from ppl import scaling
from tests.scaling.test_sampling import NO, answer_fn, make_state

GENS = [[4, 1], [2], [3, 2], [NO], [1], [5, 2]]  # answers 1, 2, 2, None, 1, 2


def test_answer_posterior_edge_cases():
    assert scaling.answer_posterior([]) == {}
    post = scaling.answer_posterior(["a", "b", "b", None])
    assert list(post) == ["b", "a", None] and post["b"] == pytest.approx(0.5)
    # ties keep the order of first appearance
    assert list(scaling.answer_posterior(["x", "y", "y", "x", None])) == ["x", "y", None]
    # unnormalised log-weights; a -inf weight contributes nothing but the answer is listed
    post = scaling.answer_posterior(["a", "b", "c"], [0.0, np.log(3.0), -np.inf])
    assert post == pytest.approx({"b": 0.75, "a": 0.25, "c": 0.0})
    # all weights zero: uniform
    assert scaling.answer_posterior(["a", "b"], [-np.inf, -np.inf]) == pytest.approx({"a": 0.5, "b": 0.5})
    with pytest.raises(ValueError, match="log_weights"):
        scaling.answer_posterior(["a", "b"], [0.0])


def test_select_answer_rules_and_edge_cases():
    answers = [1, 2, 2, None, 1]
    assert scaling.select_answer([], rule="vote") == (None, -1)
    assert scaling.select_answer([None, None], rule="argmax", scores=[0.3, 0.9]) == (None, -1)
    with pytest.raises(ValueError, match="select"):
        scaling.select_answer(answers, rule="best")
    # argmax: highest score among particles with an answer; NaN scores count as -inf
    assert scaling.select_answer(answers, rule="argmax", scores=[0.2, np.nan, 0.1, 0.99, 0.3]) == (1, 4)
    # argmax without scores uses the log-weights; all scores NaN: the first particle with an answer
    assert scaling.select_answer(answers, rule="argmax", log_weights=np.log([0.1, 0.1, 0.5, 0.2, 0.1])) == (2, 2)
    assert scaling.select_answer(answers, rule="argmax", scores=[np.nan] * 5) == (1, 0)
    # vote uses the weights, majority ignores them; the index is the best-scored particle of the answer
    lw = np.log([0.05, 0.1, 0.1, 0.7, 0.05])
    assert scaling.select_answer(answers, rule="vote", log_weights=lw) == (2, 1)
    assert scaling.select_answer(answers, rule="vote", log_weights=lw, scores=[0, 0.1, 0.4, 1, 0]) == (2, 2)
    lw = np.array([np.log(0.4), np.log(0.1), np.log(0.1), -np.inf, np.log(0.4)])
    assert scaling.select_answer(answers, rule="vote", log_weights=lw)[0] == 1
    lw = np.log([0.1, 0.1, 0.8])
    assert scaling.select_answer([1, 1, 2], rule="majority", log_weights=lw) == (1, 0)
    assert scaling.select_answer([1, 1, 2], rule="vote", log_weights=lw) == (2, 2)
    assert scaling.select_answer([3, 4, 4, 3], rule="majority") == (3, 0)  # tie: first seen


def test_finish_normalises_and_extracts_answers():
    lw = np.array([0.0, 1.0, -np.inf, 2.0, 0.5, 0.0])
    comp = scaling.Compute(10, 12, 3, 30, 1e3)
    res = scaling.finish("demo", make_state(GENS), lw, answer_fn=answer_fn, compute=comp, budget=6,
                         diagnostics={"x": 1})
    assert res.answers == [1, 2, 2, None, 1, 2]
    assert logsumexp(res.log_weights) == pytest.approx(0.0)
    np.testing.assert_allclose(np.exp(res.log_weights), np.exp(lw) / np.exp(lw).sum())
    assert np.all(np.isnan(res.scores))
    w = np.exp(lw) / np.exp(lw).sum()
    assert res.answer_posterior == pytest.approx({None: w[3], 2: w[1] + w[5], 1: w[0] + w[4]})
    assert res.answer == 2 and res.selected == 1  # None has the most weight but is never chosen
    assert res.num_particles == 6 and res.generations() == GENS and res.compute == comp
    assert res.diagnostics == {"x": 1}

    class Tok:
        def decode(self, ids):
            return ",".join(map(str, ids))

    assert res.texts(Tok())[0] == "4,1"
    # default answer_fn: the whole generation
    assert scaling.finish("demo", make_state(GENS), np.zeros(6)).answers[0] == (4, 1)
    # all weights -inf: uniform
    res = scaling.finish("demo", make_state(GENS), np.full(6, -np.inf), answer_fn=answer_fn)
    np.testing.assert_allclose(res.log_weights, -np.log(6))
    with pytest.raises(ValueError, match="log_weights"):
        scaling.finish("demo", make_state(GENS), np.zeros(5))
    with pytest.raises(ValueError, match="scores"):
        scaling.finish("demo", make_state(GENS), np.zeros(6), scores=np.zeros(4))
    with pytest.raises(ValueError, match="select"):
        scaling.finish("demo", make_state(GENS), np.zeros(6), select="nope")


def test_to_arviz_shapes_and_values():
    pytest.importorskip("arviz")
    scores = np.array([0.9, 0.2, 0.4, 0.99, 0.1, 0.3])
    comp = scaling.Compute(10, 12, 6, 30, 1e3)
    res = scaling.finish("best_of_n", make_state(GENS), np.log(scores), scores=scores, answer_fn=answer_fn,
                         select="argmax", compute=comp, budget=6)
    idata = res.to_arviz()
    post = idata.weighted_posterior  # the particles as they are, with their weights
    assert dict(post.sizes) == {"chain": 1, "draw": 6}
    # answer codes: rank in answer_posterior (None included in the ranking), -1 for no answer
    ranks = {a: i for i, a in enumerate(res.answer_posterior)}
    np.testing.assert_array_equal(post["answer"].values[0], [ranks[a] if a is not None else -1 for a in res.answers])
    np.testing.assert_allclose(post["score"].values[0], scores)
    np.testing.assert_array_equal(post["num_tokens"].values[0], [len(g) for g in GENS])
    np.testing.assert_allclose(post["log_weight"].values[0], res.log_weights)
    # Answers are labels with their probabilities, outside the posterior of quantities.
    assert "answer" not in idata.posterior
    assert list(idata.answers["answer"].values) == [str(a) for a in res.answer_posterior]
    np.testing.assert_allclose(idata.answers["probability"].values, list(res.answer_posterior.values()))
    # The posterior draws are an equally weighted resample: each is one of the particles.
    assert set(idata.posterior["score"].values[0]) <= set(scores)
    attrs = post.attrs
    assert attrs["method"] == "best_of_n" and attrs["budget"] == 6
    assert res.answer == 1 and attrs["answer_code"] == ranks[1]
    assert attrs["compute_generated_tokens"] == 10 and attrs["compute_prm_calls"] == 6
    assert attrs["compute_flops"] == 1e3
    # no budget, no answer
    none = scaling.finish("x", make_state([[NO], [NO]]), np.zeros(2), answer_fn=answer_fn).to_arviz()
    assert none.posterior.attrs["budget"] == -1 and none.posterior.attrs["answer_code"] == -1
    np.testing.assert_array_equal(none.weighted_posterior["answer"].values[0], [-1, -1])


def test_compute_arithmetic():
    a = scaling.Compute(1, 2, 3, 4, 5.0)
    b = scaling.Compute(10, 20, 30, 40, 50.0)
    assert a + b == scaling.Compute(11, 22, 33, 44, 55.0)
    assert a.as_dict() == {"generated_tokens": 1, "lm_forward_tokens": 2, "prm_calls": 3, "prm_forward_tokens": 4,
                           "flops": 5.0}
    assert b.rollouts(5.0) == 2.0
    with pytest.raises(ValueError, match="tokens_per_rollout"):
        a.rollouts(0)

    class Model:
        params = {"w": np.zeros((3, 4)), "b": np.zeros(4)}

    c = scaling.Compute.count(generated_tokens=np.int32(3), lm_forward_tokens=7, prm_calls=2, prm_forward_tokens=9,
                              lm=Model(), reward=None)
    assert c == scaling.Compute(3, 7, 2, 9, 2.0 * 16 * 7)
    assert scaling.flops_per_token(None) == 0.0
