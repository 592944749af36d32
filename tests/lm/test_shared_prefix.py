"""The prompt's cache stored once for all particles (``shared_prefix``): the same filter as with a
whole cache per particle, smaller particles, clear errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ppl
from tests.lm.tiny import TinyLM

PROMPT = np.arange(40) % 29 + 1


@pytest.fixture(scope="module")
def lm():
    from ppl_models.lm import LMConfig, random_lm

    cfg = LMConfig(vocab_size=32, hidden_size=32, num_layers=2, num_heads=4, num_kv_heads=2, intermediate_size=64,
                   eos_token_id=0)
    return random_lm(cfg, seed=3, std=0.3)


def _step_reward(prev, state):
    idx = jnp.arange(state.tokens.shape[0])
    return -0.3 * jnp.sum((idx >= state.step_start) & (idx < state.length) & (state.tokens % 3 == 0))


def _program(lm, **kw):
    return ppl.lm.LMProgram(lm, PROMPT, ppl.lm.Potential(_step_reward), max_steps=4, max_step_tokens=6,
                            step_delimiter=5, temperature=0.9, **kw)


def _bytes(tree):
    return sum(a.size * a.dtype.itemsize for a in jax.tree_util.tree_leaves(tree))


def test_shared_prefix_gives_the_same_filter_with_smaller_particles(lm):
    shared, whole = _program(lm), _program(lm, shared_prefix=0)
    assert shared.shared_prefix == 32 and whole.shared_prefix == 0  # 39 rounded down to a multiple of 16
    key = jax.random.key(4)
    a = ppl.run_smc(shared, 24, key=key, ess_threshold=0.7)
    b = ppl.run_smc(whole, 24, key=key, ess_threshold=0.7)
    np.testing.assert_array_equal(np.asarray(a.particles.tokens), np.asarray(b.particles.tokens))
    np.testing.assert_allclose(np.asarray(a.log_weights), np.asarray(b.log_weights), atol=1e-4)
    np.testing.assert_allclose(float(a.log_evidence), float(b.log_evidence), atol=1e-4)
    # Each particle's cache holds positions 32..L-1 only; the prompt's 32 are stored once, in the data.
    L = shared.max_length
    assert _bytes(a.particles.cache) * L == _bytes(b.particles.cache) * (L - 32)
    assert _bytes(shared.data["prefix"]) * L == _bytes(b.particles.cache) // 24 * 32
    assert "prefix" not in whole.data


@pytest.mark.slow  # 13 s of eager calls; the filter test above checks the shared path
def test_shared_prefix_scores_steps_like_a_whole_cache(lm):
    """Conditional SMC and ancestor sampling re-score given steps (``log_weight``, ``log_density``)."""
    shared, whole = _program(lm, shared_prefix=39), _program(lm, shared_prefix=0)
    key = jax.random.key(1)
    xs = [shared.init_step(key, shared.data)[0], whole.init_step(key, whole.data)[0]]
    ys = [p.step(jax.random.key(2), x, 1, p.data)[0] for p, x in zip((shared, whole), xs)]
    np.testing.assert_array_equal(np.asarray(ys[0].tokens), np.asarray(ys[1].tokens))
    for f, t, prev, new in (("log_weight", 1, xs, ys), ("log_density", 0, (None, None), xs)):
        got = [float(jax.jit(lambda d, a, b: getattr(p, f)(a, b, t, d))(p.data, a, b))
               for p, a, b in zip((shared, whole), prev, new)]
        np.testing.assert_allclose(got[0], got[1], atol=1e-4)


def test_with_prompt_keeps_or_lowers_the_shared_prefix(lm):
    prog = _program(lm)
    same = prog.with_prompt(PROMPT[:35])  # 34 >= 32: the same compiled program
    assert same.shared_prefix == 32 and same.static_key() == prog.static_key()
    short = prog.with_prompt(PROMPT[:20])  # 19 < 32: lowered to 16, another program
    assert short.shared_prefix == 16 and short.static_key() != prog.static_key()
    res = ppl.run_smc(short, 8, key=jax.random.key(0))
    assert np.all(np.asarray(res.particles.tokens)[:, :20] == PROMPT[:20])


def test_shared_prefix_is_checked_before_compute(lm):
    with pytest.raises(ValueError, match="shared_prefix=40: at most the prompt's length minus one"):
        _program(lm, shared_prefix=40)
    with pytest.raises(ValueError, match="shared_prefix"):
        _program(lm, shared_prefix=-1)

    class NoPrefix(TinyLM):
        apply_with_prefix = None  # an LM without the optional method

    tiny = NoPrefix(max_positions=64)
    assert ppl.lm.LMProgram(tiny, PROMPT[:30] % 5, max_steps=2, max_step_tokens=2).shared_prefix == 0
    with pytest.raises(ValueError, match="shared_prefix=8: NoPrefix has no apply_with_prefix"):
        ppl.lm.LMProgram(tiny, PROMPT[:30] % 5, max_steps=2, max_step_tokens=2, shared_prefix=8)
