"""Step sampling: logit processing, stopping rules, scoring, and KV-cache resampling."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ppl
from ppl.lm import StepConfig, process_logits, sample_step, score_step
from tests.lm.tiny import TinyLM

LM = TinyLM(seed=3)


def _states(prompt, n, max_length):
    s = ppl.lm.prompt_state(LM, prompt, max_length)
    return jax.tree_util.tree_map(lambda a: jnp.broadcast_to(a, (n,) + a.shape), s)


def test_process_logits():
    logits = jnp.log(jnp.array([0.5, 0.2, 0.15, 0.1, 0.05]))
    k2 = process_logits(logits, StepConfig(top_k=2))
    assert np.isfinite(np.asarray(k2)).sum() == 2 and np.isfinite(k2[:2]).all()
    p = process_logits(logits, StepConfig(top_p=0.8))  # 0.5 + 0.2 < 0.8 <= 0.85
    np.testing.assert_array_equal(np.isfinite(np.asarray(p)), [True, True, True, False, False])
    t = process_logits(logits, StepConfig(temperature=0.5))
    np.testing.assert_allclose(np.asarray(t), np.asarray(logits) * 2, rtol=1e-6)
    with pytest.raises(ValueError, match="top_p"):
        StepConfig(top_p=0.0)
    with pytest.raises(ValueError, match="temperature"):
        StepConfig(temperature=0.0)


def test_stopping_rules_and_bookkeeping():
    cfg = StepConfig(delimiter=(1, 2), max_step_tokens=6)
    st = _states([3, 4, 2], 256, 20)
    new, log_p, log_q = sample_step(LM, LM.params, jax.random.key(0), st, cfg)
    tokens, length, start = np.asarray(new.tokens), np.asarray(new.length), np.asarray(new.step_start)
    assert (start == 3).all() and (np.asarray(new.num_steps) == 1).all()
    n_new = length - start
    assert (n_new >= 1).all() and (n_new <= 6).all() and len(set(n_new.tolist())) > 1
    for row, n, d in zip(tokens, length, np.asarray(new.done)):
        step = row[3:n].tolist()
        ends_delim = step[-2:] == [1, 2]
        assert d == (step[-1] == 0)
        assert ends_delim or step[-1] == 0 or len(step) == 6
        # The delimiter (or EOS) occurs only at the end of a step.
        assert all(step[i:i + 2] != [1, 2] for i in range(len(step) - 2))
        assert 0 not in step[:-1]
    np.testing.assert_allclose(np.asarray(log_p), np.asarray(log_q), rtol=1e-6)  # exact proposal
    # A done particle does not move.
    again, lp2, _ = sample_step(LM, LM.params, jax.random.key(1), new, cfg)
    done = np.asarray(new.done)
    np.testing.assert_array_equal(np.asarray(again.tokens)[done], tokens[done])
    assert (np.asarray(lp2)[done] == 0).all()


@pytest.mark.parametrize("cfg", [StepConfig(delimiter=1, max_step_tokens=4),
                                 StepConfig(delimiter=1, max_step_tokens=4, temperature=0.6, top_k=3)])
def test_score_step_matches_sampling(cfg):
    st = _states([2, 3], 64, 16)
    new, log_p, log_q = sample_step(LM, LM.params, jax.random.key(4), st, cfg)
    sp, sq = score_step(LM, LM.params, st, new, cfg)
    np.testing.assert_allclose(np.asarray(sp), np.asarray(log_p), atol=1e-4)
    np.testing.assert_allclose(np.asarray(sq), np.asarray(log_q), atol=1e-4)
    # And against a full forward pass of each sequence (no cache at all).
    for i in range(4):
        n = int(new.length[i])
        gen = np.asarray(new.tokens[i, 2:n]).tolist()
        assert abs(LM.log_prob_sequence(np.array([2, 3]), gen) - float(log_p[i])) < 1e-4


def test_resampled_particles_continue_from_their_parents_cache():
    """After SMC with resampling at every step, each particle's last step has the LM log-probability
    that a full forward pass over its own prefix gives."""
    prog = ppl.lm.LMProgram(LM, [2, 3, 4], ppl.lm.on_prefix(lambda s: 0.5 * jnp.sum(s.tokens == 2)),
                            max_steps=4, step_delimiter=1, max_step_tokens=3)
    res = ppl.run_smc(prog, 64, key=jax.random.key(0), ess_threshold=1.0)
    assert bool(res.resampled[1:].all())
    p = res.particles
    prompt = np.array([2, 3, 4])
    for i in range(16):
        start, n = int(p.step_start[i]), int(p.length[i])
        gen = np.asarray(p.tokens[i, 3:n]).tolist()
        expected = LM.log_prob_sequence(prompt, gen) - LM.log_prob_sequence(prompt, gen[:start - 3])
        assert abs(expected - float(p.step_log_p[i])) < 1e-4


def test_new_prompt_does_not_recompile():
    from ppl.smc import loop

    prog = ppl.lm.LMProgram(LM, [2, 3], None, max_steps=2, step_delimiter=1, max_step_tokens=3, max_length=12)
    ppl.run_smc(prog, 8, key=jax.random.key(0))
    n_cached = len(loop._CACHE)
    other = prog.with_prompt([4, 4, 1])
    res = ppl.run_smc(other, 8, key=jax.random.key(0))
    assert len(loop._CACHE) == n_cached
    np.testing.assert_array_equal(np.asarray(res.particles.tokens[:, :3]), np.tile([4, 4, 1], (8, 1)))
    assert (np.asarray(res.particles.prompt_length) == 3).all()


def test_bad_lm_and_prompt_are_named():
    with pytest.raises(TypeError, match="lm"):
        ppl.lm.LMProgram(object(), [1], None, max_steps=2)
    with pytest.raises(ValueError, match="prompt"):
        ppl.lm.LMProgram(LM, [], None, max_steps=2)
    with pytest.raises(ValueError, match="max_length"):
        ppl.lm.LMProgram(LM, [1, 2, 3], None, max_steps=2, max_length=3)


def test_potential_from_a_prefix_score():
    """from_score: prefix, twist (ratio of successive scores) and last (needs max_steps)."""
    from types import SimpleNamespace

    from ppl.lm import potentials

    score = lambda s: s.value  # noqa: E731  (a stand-in state with a log-score field)
    prev, state = SimpleNamespace(value=jnp.asarray(-1.0), num_steps=1), SimpleNamespace(value=jnp.asarray(-0.25))
    assert float(potentials.from_score(score, "prefix").fn(prev, state)) == -0.25
    assert float(potentials.from_score(score, "twist").fn(prev, state)) == 0.75
    at_prompt = SimpleNamespace(value=jnp.asarray(-1.0), num_steps=0)
    assert float(potentials.from_score(score, "twist").fn(at_prompt, state)) == -0.25
    with pytest.raises(ValueError, match="needs max_steps"):
        potentials.from_score(score, "last")
    with pytest.raises(ValueError, match="expected 'prefix', 'twist' or 'last'"):
        potentials.from_score(score, "final")
