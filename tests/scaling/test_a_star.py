"""A* decoding on an enumerable LM program (vocabulary 4, steps of one token, at most 4 tokens).

With the exact heuristic h(x_1:t) = max over completions c of log p(c | x_1:t) + log phi (phi = 1
for two 2s, else 0), A* must return the most probable correct generation after expanding only
the prefixes on its path; with h = 0 (uniform-cost search) the most probable generation.
"""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ppl
from ppl import scaling
from tests.lm.tiny import TinyLM

PROMPT = np.array([2, 3])
MAX_LEN, MAX_STEPS, EOS = 6, 4, 0


class TinyLM4(TinyLM):
    vocab_size = 4


def code(tokens):
    return sum((int(t) + 1) * 5 ** j for j, t in enumerate(tokens))


def complete(gen):
    return len(gen) == MAX_LEN - len(PROMPT) or gen[-1] == EOS


class TableReward:
    """log r(prefix) read from a table indexed by the generated tokens (``code``)."""

    def __init__(self, table):
        self.params = jnp.asarray(table, jnp.float32)

    def log_score(self, params, state):
        idx = jnp.arange(state.tokens.shape[0]) - state.prompt_length
        gen = (idx >= 0) & (idx < state.length - state.prompt_length)
        return params[jnp.sum(jnp.where(gen, (state.tokens + 1) * 5 ** jnp.maximum(idx, 0), 0))]


@pytest.fixture(scope="module")
def setting():
    lm = TinyLM4(seed=5)
    gens = [g for k in range(1, 5) for g in itertools.product(range(4), repeat=k)
            if complete(g) and EOS not in g[:-1]]
    log_p = {g: lm.log_prob_sequence(PROMPT, np.array(g)) for g in gens}
    assert abs(np.logaddexp.reduce(list(log_p.values()))) < 1e-4
    good = {g: g.count(2) >= 2 for g in gens}
    best = {}  # prefix -> log p of its most probable correct completion
    for g in gens:
        if good[g]:
            for t in range(1, len(g) + 1):
                best[g[:t]] = max(best.get(g[:t], -np.inf), log_p[g])
    exact = np.full(5 ** 4, -np.inf, np.float32)
    for prefix in {g[:t] for g in gens for t in range(1, len(g) + 1)}:
        if prefix in gens and complete(prefix):
            exact[code(prefix)] = 0.0 if good[prefix] else -np.inf
        elif prefix in best:  # h = log p(best completion) - log p(prefix)
            lp_prefix = np.logaddexp.reduce([log_p[g] for g in gens if g[:len(prefix)] == prefix])
            exact[code(prefix)] = best[prefix] - lp_prefix
    program = ppl.lm.LMProgram(lm, PROMPT, max_steps=MAX_STEPS, max_step_tokens=1, max_length=MAX_LEN,
                               temperature=20.0)  # a flat sampler: every step is drawn among the children
    return program, TableReward(exact), log_p, good


def _generation(res):
    return tuple(res.generations()[res.selected])


def test_exact_heuristic_finds_the_most_probable_correct_generation_on_its_path(setting):
    program, reward, log_p, good = setting
    target = max((g for g in log_p if good[g]), key=log_p.get)
    res = scaling.a_star(program, 20, key=jax.random.key(0), reward=reward, pool=32, children=16)
    assert _generation(res) == target
    assert res.diagnostics["goal"]
    # Best-first search expands the prompt, then only the prefixes on the solution's path.
    assert res.diagnostics["expansions"] == len(target) - 1
    # Its score: exp(priority) = p(x) r(x), with r = 1 (correct).
    np.testing.assert_allclose(np.log(res.scores[res.selected]), log_p[target], rtol=1e-5)
    # Exact compute: the prompt's 32 first steps, 16 one-token steps per expansion.
    assert res.compute.generated_tokens == 32 + 16 * res.diagnostics["expansions"]
    assert res.compute.prm_calls == 32 + 16 * res.diagnostics["expansions"]


def test_uniform_cost_search_finds_the_most_probable_generation(setting):
    program, _, log_p, _ = setting
    zero = TableReward(np.zeros(5 ** 4, np.float32))
    target = max(log_p, key=log_p.get)
    res = scaling.a_star(program, 30, key=jax.random.key(1), reward=zero, pool=32, children=16)
    assert _generation(res) == target and res.diagnostics["goal"]


def test_the_budget_stops_the_search(setting):
    program, reward, _, _ = setting
    res = scaling.a_star(program, 1, key=jax.random.key(0), reward=reward, pool=8, children=4)
    assert res.diagnostics["expansions"] == 1 and not res.diagnostics["goal"]
    assert res.compute.generated_tokens == 8 + 4


def test_a_star_checks_its_inputs(setting):
    program, reward, _, _ = setting
    with pytest.raises(ValueError, match="children: at most pool=4"):
        scaling.a_star(program, 3, key=jax.random.key(0), reward=reward, pool=4, children=8)
    with pytest.raises(ValueError, match="expansions"):
        scaling.a_star(program, 0, key=jax.random.key(0), reward=reward)
    with pytest.raises(TypeError, match="reward"):
        scaling.a_star(program, 3, key=jax.random.key(0), reward=None)


def test_budget_rule_of_ppl_scale():
    """A budget of B rollouts of T steps: frontier min(16, 4B), min(beam_width, B) children, and
    expansions filling B T steps but at least T (one solution can reach the step limit)."""
    at = lambda b: scaling.spec("a_star").at(b, {"max_steps": 8, "beam_width": 4})  # noqa: E731
    assert at(1) == ((8,), {"pool": 4, "children": 1})
    assert at(16) == ((28,), {"pool": 16, "children": 4})
    assert at(64) == ((124,), {"pool": 16, "children": 4})
