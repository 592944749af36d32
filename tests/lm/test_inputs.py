"""LM programs refuse inputs that would otherwise give silent numbers."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ppl
from tests.lm.test_program_exact import DELIM, MAX_LEN, MAX_STEP_TOKENS, MAX_STEPS, PROMPT
from tests.lm.tiny import TinyLM

LM = TinyLM(seed=1)


def _program(prompt=PROMPT, potential=None, max_steps=MAX_STEPS):
    return ppl.lm.LMProgram(LM, prompt, potential, max_steps=max_steps, step_delimiter=DELIM,
                            max_step_tokens=MAX_STEP_TOKENS, max_length=MAX_LEN)


def test_prompt_ids_outside_the_vocabulary_are_errors():
    for bad, pos in (([2, 5], 1), ([-1, 2], 0)):  # TinyLM has 5 tokens
        with pytest.raises(ValueError, match=f"prompt: token id .* at position {pos} is outside"):
            _program(np.array(bad))
    prog = _program()
    with pytest.raises(ValueError, match="outside the LM's vocabulary"):
        prog.with_prompt(np.array([3, 7]))
    with pytest.raises(ValueError, match="outside"):
        ppl.lm.prompt_state(LM, np.array([9]), MAX_LEN)
    assert int(prog.with_prompt(np.array([4, 4])).data["prompt_length"]) == 2


def test_when_finished_must_share_the_programs_horizon():
    final = ppl.lm.when_finished(ppl.lm.on_prefix(lambda s: jnp.float32(-1.0)), MAX_STEPS + 1)
    with pytest.raises(ValueError, match=f"max_steps={MAX_STEPS + 1}.*max_steps={MAX_STEPS}"):
        _program(potential=final)
    with pytest.raises(ValueError, match="when_finished"):  # also inside a product
        _program(potential=ppl.lm.on_prefix(lambda s: jnp.float32(0.0)) * final)
    with pytest.raises(ValueError, match="when_finished"):
        _program().with_potential(final)
    ok = ppl.lm.when_finished(ppl.lm.on_prefix(lambda s: jnp.float32(-1.0)), MAX_STEPS)
    # Every generation gets the final factor once: log Z = -1 exactly, whatever the draws.
    res = ppl.run_smc(_program(potential=ok), 16, key=jax.random.key(0))
    assert float(res.log_evidence) == pytest.approx(-1.0, abs=1e-5)


def test_generated_marks_only_generated_positions():
    prog = _program(np.array([2, 2]))
    res = ppl.run_smc(prog, 4, key=jax.random.key(1))
    for i in range(4):
        state = jax.tree_util.tree_map(lambda a: a[i], res.particles)
        mask = np.asarray(ppl.lm.generated(state))
        n, p = int(state.length), int(state.prompt_length)
        assert mask.tolist() == [p <= j < n for j in range(state.tokens.shape[0])]
        assert np.asarray(state.tokens)[mask].tolist() == ppl.lm.text_of(state)


def test_top_k_with_the_pq_correction_warns_of_the_restricted_target():
    pot = ppl.lm.on_prefix(lambda s: jnp.float32(0.0))
    kw = dict(max_steps=MAX_STEPS, step_delimiter=DELIM, max_step_tokens=MAX_STEP_TOKENS, max_length=MAX_LEN)
    with pytest.warns(ppl.lm.program.RestrictedSupportWarning, match="restricted"):
        ppl.lm.LMProgram(LM, PROMPT, pot, top_k=2, **kw)
    with pytest.warns(ppl.lm.program.RestrictedSupportWarning):
        ppl.lm.LMProgram(LM, PROMPT, None, top_p=0.5, **kw).with_potential(pot)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ppl.lm.LMProgram(LM, PROMPT, pot, temperature=0.7, **kw)  # a temperature reaches everything
        ppl.lm.LMProgram(LM, PROMPT, pot, top_k=2, correct_proposal=False, **kw)  # targets q itself
        ppl.lm.LMProgram(LM, PROMPT, None, top_k=2, **kw).with_potential(pot, correct_proposal=False)
