"""Left padding with an attention mask (``LMProgram(padding="left")``): prompts of different
lengths end at one slot, share one compiled program and a whole-prompt shared prefix, and every
method gives what the unpadded program gives on each prompt alone."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ppl
import ppl.scaling
from ppl_models.lm import LMConfig, random_lm
from ppl_models.rewards.checkpoint import CheckpointReward

V, T, S, DELIM = 29, 3, 4, 5
PROMPTS = [np.random.default_rng(i).integers(2, V, n).astype(np.int32) for i, n in enumerate((3, 7, 12))]


@pytest.fixture(scope="module")
def lm():
    cfg = LMConfig.qwen2(vocab_size=V, hidden_size=32, num_layers=2, num_heads=4, num_kv_heads=2,
                         intermediate_size=48, max_position_embeddings=128, eos_token_id=1)
    return random_lm(cfg, seed=0, std=0.3)


@pytest.fixture(scope="module")
def reward(lm):
    rng = np.random.default_rng(5)
    d = lm.config.hidden_size
    head = {"score.0.weight": rng.normal(0, 0.3, (d, d)), "score.0.bias": rng.normal(0, 0.3, d),
            "score.2.weight": rng.normal(0, 0.3, (2, d)), "score.2.bias": rng.normal(0, 0.3, 2)}
    return CheckpointReward(random_lm(lm.config, seed=1, std=0.3), head, "classifier")


class _FullRead:
    """The reward without its incremental path: every prefix re-read through ``log_score``."""

    def __init__(self, reward):
        self.inner, self.params, self.left_padding = reward, reward.params, reward.left_padding
        self.flops_per_token = reward.flops_per_token

    def log_score(self, params, state):
        return self.inner.log_score(params, state)

    def static_key(self):
        return ("full", self.inner.static_key())


def _program(lm, prompt, padding, **kw):
    return ppl.lm.LMProgram(lm, prompt, max_steps=T, step_delimiter=DELIM, max_step_tokens=S,
                            max_length=16 + T * S + 1, padding=padding, **kw)


def _generations(state):
    return [np.asarray(state.tokens[i, int(state.prompt_length[i]):int(state.length[i])]).tolist()
            for i in range(state.tokens.shape[0])]


def test_left_padded_program_layout(lm):
    base = _program(lm, PROMPTS[-1], "left")
    for prompt in PROMPTS:
        prog = base.with_prompt(prompt)
        assert prog.static_key() == base.static_key()  # one compiled program for every length
        assert prog.shared_prefix == 15  # the whole prompt but its pending token, for every prompt
        state = prog.prompt_state(prog.data)
        pad = 16 - len(prompt)
        assert int(state.pad) == pad and int(state.prompt_length) == 16 and int(state.length) == 16
        np.testing.assert_array_equal(np.asarray(state.tokens[pad:16]), prompt)
        assert ppl.lm.text_of(state, include_prompt=True) == prompt.tolist()
        # no particle carries any of its prompt's cache: its own cache starts at slot 15
        assert state.cache[0].k.shape[1] == base.max_length - 15  # [H_kv, slots, D_h]
    # the default buffer leaves max_steps * max_step_tokens after the padded width; a short buffer
    # narrows the padding so that the generation keeps a slot
    assert ppl.lm.LMProgram(lm, PROMPTS[0], max_steps=T, max_step_tokens=S, padding="left").max_length == 16 + T * S + 1
    short = ppl.lm.LMProgram(lm, PROMPTS[-1], max_steps=T, max_length=14, padding="left")
    assert short.data["prompt"].shape == (13,) and int(short.prompt_state(short.data).length) == 13
    # unpadded, each prompt lowers the shared prefix (and so changes the compiled program)
    right = _program(lm, PROMPTS[-1], "right")
    assert right.with_prompt(PROMPTS[0]).shared_prefix == 0


@pytest.mark.slow  # the batch test below compares the generations too (default suite)
def test_left_padded_rollouts_equal_unpadded(lm):
    """Same key, same LM: the same tokens and log-probabilities, padded or not."""
    base = _program(lm, PROMPTS[-1], "left")
    for i, prompt in enumerate(PROMPTS):
        key = jax.random.key(i)
        left = ppl.scaling.rollouts(base.with_prompt(prompt), 8, key=key)
        right = ppl.scaling.rollouts(_program(lm, prompt, "right", shared_prefix=0), 8, key=key)
        assert _generations(left.particles) == _generations(right.particles)
        np.testing.assert_allclose(left.log_p, right.log_p, atol=1e-4)
        assert min(left.num_tokens) > 0


@pytest.mark.parametrize("incremental", [True, pytest.param(False, marks=pytest.mark.slow)])
def test_left_padded_batch_equals_each_prompt_alone(lm, reward, incremental):
    """Three prompts of lengths 3, 7, 12 in one vmapped call of one compiled particle filter
    (left-padded, reward read through its body with the padding masked) against each prompt run
    alone, unpadded: same generations, weights and reward scores; the reward reads the same tokens."""
    reward = reward if incremental else _FullRead(reward)
    base = _program(lm, PROMPTS[-1], "left")
    keys = [jax.random.key(10 + i) for i in range(len(PROMPTS))]
    batch = ppl.scaling.batched("particle_filter", [base.with_prompt(p) for p in PROMPTS], 8, keys=keys,
                                reward=reward, problems_per_device=len(PROMPTS))
    for prompt, key, got in zip(PROMPTS, keys, batch):
        alone = ppl.scaling.particle_filter(_program(lm, prompt, "right", shared_prefix=0), 8, key=key,
                                            reward=reward)
        assert _generations(got.particles) == _generations(alone.particles)
        np.testing.assert_allclose(got.log_weights, alone.log_weights, atol=1e-3)
        np.testing.assert_allclose(got.scores, alone.scores, atol=1e-4)
        assert got.compute.prm_forward_tokens == alone.compute.prm_forward_tokens
        assert got.compute.lm_forward_tokens == alone.compute.lm_forward_tokens


def test_left_padding_refusals(lm):
    class NoPad:  # an LM whose apply takes no pad=
        vocab_size, eos_token_id, params = V, 1, {}

        def init_cache(self, batch_size, max_length):
            return ()

        def apply(self, params, tokens, positions, cache):
            return jnp.zeros(tokens.shape + (V,)), cache

    with pytest.raises(ValueError, match="padding='left'.*pad="):
        _program(NoPad(), PROMPTS[0], "left")
    with pytest.raises(ValueError, match="padding: expected"):
        _program(lm, PROMPTS[0], "middle")

    class Blind:  # a reward that reads tokens but does not say it masks the padding
        params = {}

        def log_score(self, params, state):
            return jnp.zeros(())

    with pytest.raises(ValueError, match="reward: Blind does not say it reads left-padded"):
        ppl.scaling.best_of_n(_program(lm, PROMPTS[0], "left"), 4, key=jax.random.key(0), reward=Blind())


METHODS = {
    "beam_search": lambda prog, key, reward: ppl.scaling.beam_search(prog, 4, beam_width=2, key=key, reward=reward,
                                                                     lookahead=1),
    "dvts": lambda prog, key, reward: ppl.scaling.dvts(prog, 4, beam_width=2, key=key, reward=reward),
    "particle_gibbs": lambda prog, key, reward: ppl.scaling.particle_gibbs(prog, 4, 2, key=key, reward=reward,
                                                                           ancestor_sampling=True),
    "power_sampling": lambda prog, key, reward: ppl.scaling.power_sampling(prog, 2, 2, key=key, reward=reward),
    "a_star": lambda prog, key, reward: ppl.scaling.a_star(prog, 4, key=key, reward=reward, pool=4, children=2),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(METHODS))
def test_every_method_left_padded_equals_unpadded(lm, reward, name):
    """Search, look-ahead, conditional SMC with ancestor sampling (re-scoring given steps), MH over
    suffixes and A* on a left-padded prompt: the same generations and scores as unpadded."""
    prompt, key = PROMPTS[0], jax.random.key(3)
    left = METHODS[name](_program(lm, PROMPTS[-1], "left").with_prompt(prompt), key, reward)
    right = METHODS[name](_program(lm, prompt, "right", shared_prefix=0), key, reward)
    assert _generations(left.particles) == _generations(right.particles)
    assert left.answer == right.answer
    np.testing.assert_allclose(left.scores, right.scores, atol=1e-4)
    np.testing.assert_allclose(left.log_weights, right.log_weights, atol=1e-3)
