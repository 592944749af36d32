"""ppl.scaling.batched: one method on many prompts, one compiled call, equals a call per prompt.

TinyLM program and prefix reward as in test_particle_filter.py; three prompts of one width, each
with its own reward parameters (stacked along the problem axis) or one shared reward (passed
once). On one device here; tests/models/scale/test_sharded.py runs the same path on 8 fake
devices in a subprocess.
"""

from __future__ import annotations

import jax
import numpy as np
import pytest

import ppl
from ppl import scaling
from tests.scaling.test_particle_filter import REWARD, PrefixReward, _program

PROMPTS = [np.array([2, 3]), np.array([3, 2]), np.array([2, 2])]


class Reward(PrefixReward):
    """The prefix reward with a ``static_key``: instances differ only in their traced ``params``."""

    def static_key(self):
        return ("PrefixReward",)


def _problems(shared_reward=False):
    base = _program()
    programs = [base.with_prompt(p) for p in PROMPTS]
    rewards = [REWARD] * 3 if shared_reward else [Reward(0.9, 0.7, -0.3), Reward(0.5, 0.9, 0.1),
                                                  Reward(1.2, 0.2, -0.5)]
    keys = [jax.random.fold_in(jax.random.key(5), i) for i in range(3)]
    return programs, rewards, keys


def _assert_same(a, b):
    assert a.answer == b.answer and a.answers == b.answers and a.compute == b.compute
    np.testing.assert_array_equal(a.log_weights, b.log_weights)
    np.testing.assert_array_equal(np.asarray(a.particles.tokens), np.asarray(b.particles.tokens))
    np.testing.assert_array_equal(np.asarray(a.particles.length), np.asarray(b.particles.length))


_SLOW = pytest.mark.slow  # 8-10 s each: the batched path is the same for every method (run_problems)
CASES = [pytest.param("best_of_n", (4,), {}, marks=_SLOW), ("weighted_majority", (4,), {"tau": 0.5}),
         ("particle_filter", (4,), {"potential": ppl.lm.potentials.odds(0.7)}), pytest.param("beam_search", (4,), {"beam_width": 2}, marks=_SLOW),
         pytest.param("dvts", (4,), {"beam_width": 2}, marks=_SLOW)]


@pytest.mark.parametrize("name, args, options", CASES)
def test_batched_equals_one_call_per_prompt(name, args, options):
    programs, rewards, keys = _problems()
    fn = getattr(scaling, name)
    single = [fn(p, *args, key=k, reward=r, **options) for p, k, r in zip(programs, keys, rewards)]
    assert len({str(s.generations()) for s in single}) == 3  # three different problems
    mesh = scaling.prompt_mesh(1)
    # b = 1: the one-prompt program on each device; b = 2: vmapped, 3 problems in calls of 2
    # (the last padded with a repeat); also without a mesh.
    for kw in ({"mesh": mesh}, {"mesh": mesh, "problems_per_device": 2}, {"problems_per_device": 2}, {}):
        got = scaling.batched(fn, programs, *args, keys=keys, reward=rewards, **kw, **options)
        assert len(got) == 3
        for a, b in zip(single, got):
            _assert_same(a, b)
    # The method by name is the same thing.
    got = scaling.batched(name, programs, *args, keys=keys, reward=rewards, mesh=mesh, **options)
    _assert_same(single[2], got[2])


def test_batched_rollouts_with_a_shared_or_no_reward():
    programs, rewards, keys = _problems(shared_reward=True)
    for reward in (REWARD, None):
        single = [scaling.rollouts(p, 3, key=k, reward=reward) for p, k in zip(programs, keys)]
        got = scaling.batched(scaling.rollouts, programs, 3, keys=jax.numpy.stack(keys), reward=reward,
                              mesh=scaling.prompt_mesh(1), problems_per_device=2)
        for a, b in zip(single, got):
            assert isinstance(b, scaling.Rollouts) and a.prompt_length == b.prompt_length
            for f in ("scores", "log_p", "log_q", "num_tokens", "prm_forward_tokens"):
                np.testing.assert_array_equal(getattr(a, f), getattr(b, f))
            assert a.compute() == b.compute()
        assert np.isnan(got[0].scores).all() == (reward is None)


def test_batched_validates_its_inputs():
    programs, rewards, keys = _problems()
    with pytest.raises(ValueError, match="method: 'particle_gibbs' has no batched path"):
        scaling.batched(scaling.particle_gibbs, programs, 4, 2, keys=keys, reward=rewards)
    with pytest.raises(ValueError, match="method"):
        scaling.batched("nope", programs, 4, keys=keys, reward=rewards)
    with pytest.raises(ValueError, match="keys: expected one key per program"):
        scaling.batched(scaling.particle_filter, programs, 4, keys=keys[:2], reward=rewards)
    with pytest.raises(ValueError, match="reward: expected one reward per program"):
        scaling.batched(scaling.particle_filter, programs, 4, keys=keys, reward=rewards[:2])
    with pytest.raises(ValueError, match="problems_per_device"):
        scaling.batched(scaling.particle_filter, programs, 4, keys=keys, reward=rewards, problems_per_device=0)
    with pytest.raises(ValueError, match="programs: expected at least one"):
        scaling.batched(scaling.particle_filter, [], 4, keys=[], reward=rewards)
    with pytest.raises(TypeError, match="mesh"):
        scaling.batched(scaling.particle_filter, programs, 4, keys=keys, reward=rewards, mesh="cpu")
    other = _program(max_steps=2).with_prompt(PROMPTS[0])  # another static structure
    with pytest.raises(ValueError, match="programs: problem 1 differs"):
        scaling.batched(scaling.particle_filter, [programs[0], other], 4, keys=keys[:2], reward=rewards[:2])
    # A method's own checks name the field and the problem.
    with pytest.raises(ValueError, match="tau") as err:
        scaling.batched(scaling.particle_filter, programs, 4, keys=keys, reward=rewards,
                        potential=ppl.lm.potentials.RewardPotential(tau=-1.0))
    assert "problem 0" in " ".join(getattr(err.value, "__notes__", []))
    with pytest.raises(ValueError, match="devices: expected an integer in"):
        scaling.prompt_mesh(jax.device_count() + 1)
