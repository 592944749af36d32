"""Beam search and DVTS against host-side reimplementations of the search-and-learn algorithms.

The compiled searches and plain-Python versions (lists of beams, a list of completed beams,
sorting by score) draw the same steps — ``sample_step`` with the same keys on the same states —
so, selection being deterministic, their final beams, scores, step counts and compute counters
must agree exactly. TinyLM program and prefix reward as in test_particle_filter.py.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ppl
from ppl import scaling
from ppl.scaling.search import expand_top, subtree_best
from ppl.smc import resampling as rs
from tests.lm.test_program_exact import PROMPT
from tests.scaling.test_particle_filter import LM, REWARD, PrefixReward, _program, _sample, segment

P = len(PROMPT)


def _start(prog, n):
    return jax.tree_util.tree_map(lambda a: jnp.broadcast_to(a, (n,) + a.shape), prog.prompt_state(prog.data))


def _step(prog, key, x, frozen=None):
    """One step of the live slots; returns the new state, the generations and the counters' increments."""
    done = np.asarray(x.done) if frozen is None else np.asarray(x.done) | frozen
    new, _, _ = _sample(LM, prog.data["params"], key, x._replace(done=jnp.asarray(done)), prog.config)
    new = new._replace(done=jnp.where(jnp.asarray(done), x.done, new.done))
    tokens, length = np.asarray(new.tokens), np.asarray(new.length)
    gens = [tokens[i, P:length[i]].tolist() for i in range(len(length))]
    live = ~done
    grown = int((length - np.asarray(x.length)).sum())
    return new, gens, live, (grown, int(live.sum()), int(length[live].sum()))


def host_beam_search(prog, n, m, key, filter_duplicates=False, sort_completed=True):
    """search-and-learn's beam search: N active beams per step, completed beams set aside, the
    top N/M active beams kept and copied back to N slots (slot j continues the floor(jk/N)-th best).
    filter_duplicates drops an active beam whose text equals an earlier one's before the top-k;
    sort_completed=False keeps the first N completed beams (then those still active) unsorted."""
    x, score = _start(prog, n), np.zeros(n)
    completed, counts, t, fewer = [], np.zeros(3, int), 0, False
    while t < prog.num_steps and not np.asarray(x.done).all():
        key, k_move = jax.random.split(key)
        if t > 0:
            active = [i for i in range(n) if not bool(x.done[i])]
            if filter_duplicates:
                text = lambda i: tuple(np.asarray(x.tokens[i, :int(x.length[i])]).tolist())  # noqa: E731
                first = {}
                for i in active:
                    first.setdefault(text(i), i)
                active = sorted(first.values())
            best = sorted(active, key=lambda i: (-score[i], i))[:n // m]
            fewer |= len(best) < n // m
            anc = [best[j * len(best) // n] for j in range(n)]
            x, score = rs.gather(x, jnp.asarray(anc)), score[anc]
        x_new, gens, live, inc = _step(prog, k_move, x)
        counts += inc
        for i in range(n):
            if live[i]:
                score[i] = REWARD.host_log_score(gens[i])
                if bool(x_new.done[i]):
                    completed.append((score[i], gens[i]))
        x, t = x_new, t + 1
    tokens, length = np.asarray(x.tokens), np.asarray(x.length)
    still = [(score[i], tokens[i, P:length[i]].tolist()) for i in range(n) if not bool(x.done[i])]
    if sort_completed:
        final = sorted(completed + still, key=lambda c: -c[0])[:n]  # stable: ties keep their order
    else:
        final = (completed[:n] + still)[:n]
    return final, t, tuple(counts), fewer


def _greedy_ahead(prog, x, steps):
    """search-and-learn's generate_k_steps look-ahead: every row continued by ``steps`` greedy
    (top-1) steps, except those finished or at the last step; the extended generations."""
    greedy = ppl.lm.sampling.StepConfig(delimiter=prog.config.delimiter, max_step_tokens=prog.config.max_step_tokens,
                                        top_k=1)
    y = x._replace(done=x.done | (x.num_steps >= prog.num_steps))
    for _ in range(steps):
        y, _, _ = _sample(LM, prog.data["params"], jax.random.key(0), y, greedy)
    tokens, length = np.asarray(y.tokens), np.asarray(y.length)
    return [tokens[i, P:length[i]].tolist() for i in range(len(length))]


def host_dvts(prog, n, m, key, lookahead=0):
    """search-and-learn's DVTS: N/M subtrees; each scores its M candidates (after ``lookahead``
    greedy steps, not kept), stops if the best has finished, else continues the best M ways. The
    result: every subtree's last M candidates."""
    x, score, stopped = _start(prog, n), np.zeros(n), np.zeros(n, bool)
    counts, t = np.zeros(3, int), 0
    while t < prog.num_steps and (~np.asarray(x.done) & ~stopped).any():
        key, k_move = jax.random.split(key)
        if t > 0:
            anc = list(range(n))
            for g in range(n // m):
                slots = range(g * m, (g + 1) * m)
                if not stopped[g * m]:
                    best = max(slots, key=lambda i: (score[i], -i))
                    anc[g * m:(g + 1) * m] = [best] * m
            x, score = rs.gather(x, jnp.asarray(anc)), score[anc]
        x, gens, live, inc = _step(prog, k_move, x, frozen=stopped)
        counts += inc
        if lookahead:
            ahead = _greedy_ahead(prog, x, lookahead)
            extra = np.array([len(a) - len(g) for a, g in zip(ahead, gens)])
            counts += (int(extra[live].sum()), 0, int(extra[live].sum()))
            gens = ahead
        for i in np.flatnonzero(live):
            score[i] = REWARD.host_log_score(gens[i])
        for g in range(n // m):
            best = max(range(g * m, (g + 1) * m), key=lambda i: (score[i], -i))
            if bool(x.done[best]):
                stopped[g * m:(g + 1) * m] = True
        t += 1
    tokens, length = np.asarray(x.tokens), np.asarray(x.length)
    return [(score[i], tokens[i, P:length[i]].tolist()) for i in range(n)], t, tuple(counts)


def _beams(res):
    valid = res.diagnostics.get("valid", np.ones(res.num_particles, bool))
    return [(s, g) for s, g, ok in zip(res.scores, res.generations(), valid) if ok]


def _assert_same(res, final, steps, counts):
    got = _beams(res)
    assert [g for _, g in got] == [g for _, g in final]
    np.testing.assert_allclose([s for s, _ in got], [np.exp(s) for s, _ in final], rtol=1e-5)
    assert res.diagnostics["num_steps"] == steps
    c = res.compute
    assert (c.generated_tokens, c.prm_calls, c.prm_forward_tokens) == counts
    assert c.lm_forward_tokens == P + counts[0]


CASES = [(8, 2), (8, 4), (8, 8)]  # (N, M); M = N keeps the single best beam (DVTS: one greedy subtree)


def test_beam_search_equals_the_reference_algorithm_on_the_same_draws():
    prog = _program()
    fewer = False
    for n, m in CASES:
        for seed in range(3):
            key = jax.random.key(seed)
            res = scaling.beam_search(prog, n, beam_width=m, key=key, reward=REWARD)
            final, steps, counts, f = host_beam_search(prog, n, m, key)
            _assert_same(res, final, steps, counts)
            fewer |= f
            # Finished beams cost no slot: every step scores all N active beams.
            assert counts[1] == n * steps
            # Sorted by score; the answer is the best beam's.
            assert list(res.scores[res.diagnostics["valid"]]) == sorted(res.scores[res.diagnostics["valid"]],
                                                                       reverse=True)
            assert res.selected == 0
    assert fewer, "no case had fewer than N/M active beams: the refill rule went untested"


@pytest.mark.parametrize("filter_duplicates, sort_completed", [(True, True), (False, False), (True, False)])
def test_beam_search_options_of_search_and_learn(filter_duplicates, sort_completed):
    prog = _program()
    dropped = False
    for n, m in [(8, 2), (8, 4)]:
        for seed in range(3):
            key = jax.random.key(seed)
            res = scaling.beam_search(prog, n, beam_width=m, key=key, reward=REWARD,
                                      filter_duplicates=filter_duplicates, sort_completed=sort_completed)
            final, steps, counts, _ = host_beam_search(prog, n, m, key, filter_duplicates, sort_completed)
            _assert_same(res, final, steps, counts)
            plain = scaling.beam_search(prog, n, beam_width=m, key=key, reward=REWARD)
            dropped |= res.generations() != plain.generations()
    assert dropped, "the options changed no result: they went untested"


def test_duplicates_are_found_by_content():
    prog = _program()
    x = _start(prog, 4)
    toks = np.asarray(x.tokens).copy()
    toks[:, P:P + 2] = [[2, 3], [2, 3], [3, 2], [2, 3]]
    x = x._replace(tokens=jnp.asarray(toks), length=jnp.asarray([P + 2, P + 2, P + 2, P + 1]))
    dup = np.asarray(scaling.search.duplicates(x, jnp.asarray([True, True, True, True])))
    np.testing.assert_array_equal(dup, [False, True, False, False])  # slot 3 is shorter: not a copy
    dup = np.asarray(scaling.search.duplicates(x, jnp.asarray([False, True, True, True])))
    np.testing.assert_array_equal(dup, [False, False, False, False])  # only active beams count


def test_dvts_equals_the_reference_algorithm_on_the_same_draws():
    prog = _program()
    for n, m in CASES:
        for seed in range(3):
            key = jax.random.key(seed)
            res = scaling.dvts(prog, n, beam_width=m, key=key, reward=REWARD)
            final, steps, counts = host_dvts(prog, n, m, key)
            _assert_same(res, final, steps, counts)
            assert res.diagnostics["subtrees"] == n // m


@pytest.mark.parametrize("n, m, k", [(8, 2, 1), (8, 4, 2)])
def test_dvts_lookahead_equals_the_reference_algorithm(n, m, k):
    # Candidates are scored after k greedy steps (not kept); none at the last step. The final
    # beams' scores are those of their last (extended) prefixes, and the look-ahead tokens count.
    prog = _program()
    for seed in range(2):
        key = jax.random.key(seed)
        res = scaling.dvts(prog, n, beam_width=m, key=key, reward=REWARD, lookahead=k)
        final, steps, counts = host_dvts(prog, n, m, key, lookahead=k)
        got = _beams(res)
        assert [g for _, g in got] == [g for _, g in final]
        np.testing.assert_allclose([sc for sc, _ in got], [np.exp(sc) for sc, _ in final], rtol=1e-5)
        assert res.diagnostics["num_steps"] == steps and res.diagnostics["lookahead"] == k
        c = res.compute
        assert (c.generated_tokens, c.prm_calls, c.prm_forward_tokens) == counts
        assert c.lm_forward_tokens == P + counts[0]
    # The look-ahead changes the search: some seed selects other beams than without it.
    plain = [scaling.dvts(prog, n, beam_width=m, key=jax.random.key(s), reward=REWARD).generations() for s in range(4)]
    ahead = [scaling.dvts(prog, n, beam_width=m, key=jax.random.key(s), reward=REWARD, lookahead=k).generations()
             for s in range(4)]
    assert plain != ahead
    with pytest.raises(ValueError, match="lookahead"):
        scaling.dvts(prog, n, beam_width=m, key=key, reward=REWARD, lookahead=-1)


def test_dvts_subtrees_are_independent():
    # The final slots of subtree g all extend one of subtree g's own first-step candidates (the
    # first step uses the key's first split, whatever max_steps is).
    prog, one = _program(), _program(max_steps=1)
    for seed in range(3):
        res = scaling.dvts(prog, 8, beam_width=2, key=jax.random.key(seed), reward=REWARD)
        first = scaling.dvts(one, 8, beam_width=2, key=jax.random.key(seed), reward=REWARD).generations()
        for j, g in enumerate(res.generations()):
            own = first[(j // 2) * 2:(j // 2) * 2 + 2]
            assert any(g[:len(f)] == f for f in own), (j, g, own)


def test_selection_rules_match_numpy():
    rng = np.random.default_rng(0)
    for n, keep in [(8, 4), (8, 2), (6, 3), (8, 1)]:
        s = rng.normal(size=n).astype(np.float32)
        s[rng.integers(n)] = -np.inf  # a score of 0 still ranks above finished beams
        active = rng.random(n) < 0.5
        active[0] = True
        anc = np.asarray(expand_top(jnp.asarray(s), jnp.asarray(active), keep))
        best = sorted(np.flatnonzero(active), key=lambda i: (-s[i], i))[:keep]
        assert anc.tolist() == [best[j * len(best) // n] for j in range(n)]
    done = np.array([0, 0, 1, 0, 0, 0, 1, 1], bool)
    stopped = np.array([0, 0, 0, 0, 1, 1, 0, 0], bool)
    s = np.array([0.1, 0.3, 0.9, 0.2, 0.5, 0.4, 0.7, 0.8], np.float32)
    anc, stop = subtree_best(jnp.asarray(s), jnp.asarray(done), jnp.asarray(stopped), 2)
    assert np.asarray(anc).tolist() == [1, 1, 2, 3, 4, 5, 6, 7]
    assert np.asarray(stop).tolist() == [0, 0, 1, 1, 1, 1, 1, 1]


def test_search_with_zero_scores_and_answers():
    class Zero(PrefixReward):
        """An oracle with epsilon = 0 on every prefix: log-scores -inf, which must still rank."""

        def log_score(self, params, state):
            return jnp.float32(-jnp.inf)

    prog = _program()
    res = scaling.beam_search(prog, 4, beam_width=2, key=jax.random.key(0), reward=Zero())
    assert res.diagnostics["valid"].any() and np.all(res.scores[res.diagnostics["valid"]] == 0.0)
    out = scaling.beam_search(prog, 8, beam_width=2, key=jax.random.key(1), reward=REWARD, answer_fn=len)
    assert out.answer == len(out.generations()[0])
    vote = scaling.beam_search(prog, 8, beam_width=2, key=jax.random.key(1), reward=REWARD, answer_fn=len,
                               select="vote")
    post = {}
    for a, s in zip(vote.answers, vote.scores):
        post[a] = post.get(a, 0.0) + (0.0 if np.isnan(s) else s)
    assert vote.answer == max(post, key=post.get)


def test_search_validates_its_arguments():
    prog = _program()
    with pytest.raises(ValueError, match="beam_width"):
        scaling.beam_search(prog, 6, beam_width=4, key=jax.random.key(0), reward=REWARD)
    with pytest.raises(ValueError, match="num_beams"):
        scaling.dvts(prog, 0, beam_width=1, key=jax.random.key(0), reward=REWARD)
    with pytest.raises(ValueError, match="select"):
        scaling.dvts(prog, 4, beam_width=2, key=jax.random.key(0), reward=REWARD, select="best")
    with pytest.raises(TypeError, match="reward"):
        scaling.beam_search(prog, 4, beam_width=2, key=jax.random.key(0), reward=None)
    with pytest.raises(ValueError, match="program"):
        scaling.beam_search(ppl.lm.LMProgram(LM, PROMPT, lambda p, s: 0.0, max_steps=2), 4, beam_width=2,
                            key=jax.random.key(0), reward=REWARD)
    assert segment([2, 0]) == [2]  # the shared helper is the sampler's stopping rule
