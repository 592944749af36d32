r"""Compute accounting of LM-state runs: what the inference-time scaling methods spend.

Every method of :mod:`ppl.scaling` counts what it spends, exactly, as it runs:

``generated_tokens``
    tokens sampled from the LM (every particle's tokens, those of particles later discarded by
    resampling or pruning included);
``lm_forward_tokens``
    tokens fed through the LM: the prompt once (prefill), one per generated token (decoding
    with the KV cache), and the tokens re-scored teacher-forced (conditional SMC, MH);
``prm_calls``
    prefix scorings by the reward model (one per particle and scored prefix);
``prm_forward_tokens``
    tokens the reward model reads: the length of each scored prefix (prompt included) for a
    reward model without a cache, which reads the whole prefix at every call; for an
    incremental reward (:class:`ppl.core.protocols.IncrementalReward`) the prompt once and then
    the tokens it actually feeds at each step (the step's new tokens, rounded up to its chunk).

The counts are taken inside the compiled loop by the SMC collector :func:`counter` (the kernel's
auxiliary collector hook), and :class:`Compute` holds them on the host, with FLOPs;
:data:`path_log_probs` sums each slot's step log-probabilities (rollouts without resampling).
The FLOP estimate is the usual :math:`2P` per token and forward pass (Kaplan et al. 2020),
attention ignored:

.. math::

    \mathrm{FLOPs} \approx 2 P_{\mathrm{LM}} \cdot \text{lm\_forward\_tokens}
                     + 2 P_{\mathrm{RM}} \cdot \text{prm\_forward\_tokens},

with :math:`P` the parameter counts (:func:`flops_per_token`). A reward model that reads an
LM's token features (the bundled PRM reads the verifier LM's) reports its own
``flops_per_token`` including that LM's.

Budgets are stated, as in Puri et al. (2025), in *rollouts*: a budget of :math:`B` is the
compute of :math:`B` full generations from the LM. :meth:`Compute.rollouts` converts tokens
to that unit given the mean length of one rollout.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ppl.lm.potentials import Lookahead, RewardMemory, WithLogP
from ppl.lm.state import prefix_tokens
from ppl.smc.base import Collector

__all__ = ["Compute", "flops_per_token", "num_params", "counter", "token_counter", "path_log_probs"]


def num_params(params) -> int:
    """The number of scalars in a parameter pytree."""
    return int(sum(np.prod(np.shape(leaf)) for leaf in jax.tree_util.tree_leaves(params)))


def flops_per_token(model) -> float:
    """Forward FLOPs per token of an LM or reward model: ``model.flops_per_token`` if it has
    one, else :math:`2 \\times` the number of scalars in ``model.params``; 0 for ``None``."""
    if model is None:
        return 0.0
    own = getattr(model, "flops_per_token", None)
    if own is not None:
        return float(own() if callable(own) else own)
    params = getattr(model, "params", None)
    return 2.0 * num_params(params) if params is not None else 0.0


class Compute(NamedTuple):
    """What one run of a method spent (host-side integers; ``a + b`` adds two runs)."""

    generated_tokens: int = 0
    lm_forward_tokens: int = 0
    prm_calls: int = 0
    prm_forward_tokens: int = 0
    flops: float = 0.0

    def __add__(self, other: "Compute") -> "Compute":  # type: ignore[override]
        if not isinstance(other, Compute):
            return NotImplemented
        return Compute(*(a + b for a, b in zip(self, other)))

    @classmethod
    def count(cls, *, generated_tokens=0, lm_forward_tokens=0, prm_calls=0, prm_forward_tokens=0,
              lm=None, reward=None) -> "Compute":
        """Build from (possibly JAX) counters, with FLOPs estimated from the models' sizes."""
        g, f, c, r = (int(np.asarray(v)) for v in (generated_tokens, lm_forward_tokens, prm_calls,
                                                   prm_forward_tokens))
        flops = flops_per_token(lm) * f + flops_per_token(reward) * r
        return cls(g, f, c, r, float(flops))

    @classmethod
    def from_counts(cls, counts, prompt_length: int, lm, reward) -> "Compute":
        """From a filter's :func:`counter` (generated tokens, reward calls, reward tokens read): the
        LM reads the prompt once and every generated token."""
        gen, calls, read = (int(v) for v in np.asarray(counts))
        return cls.count(generated_tokens=gen, lm_forward_tokens=int(prompt_length) + gen, prm_calls=calls,
                         prm_forward_tokens=read, lm=lm, reward=reward)

    def rollouts(self, tokens_per_rollout: float) -> float:
        """The budget in full rollouts: generated tokens / the mean tokens of one rollout."""
        if not tokens_per_rollout > 0:
            raise ValueError(f"tokens_per_rollout: expected a positive number, got {tokens_per_rollout!r}")
        return self.generated_tokens / float(tokens_per_rollout)

    def as_dict(self) -> dict:
        return self._asdict()


def _counts(parents_length, children, live):
    grown, read = children.length - parents_length, prefix_tokens(children)
    if isinstance(children.memory, WithLogP):  # A*'s path cost beside the reward's memory
        children = children._replace(memory=children.memory.inner)
    if isinstance(children.memory, Lookahead):  # the look-ahead's tokens, and the longer prefix scored
        grown, read = grown + children.memory.tokens, children.memory.length
    elif isinstance(children.memory, RewardMemory):  # what the reward read: the prefix, or the new tokens
        read = children.memory.read
    grown = jnp.sum(jnp.where(live, grown, 0))
    calls = jnp.sum(live.astype(jnp.int32))
    read = jnp.sum(jnp.where(live, read, 0))
    return jnp.stack([grown, calls, read]).astype(jnp.int32)


def counter(skip=None) -> Collector:
    """The SMC collector of an LM filter's exact compute, ``int32[3]``: generated tokens, reward
    calls (one per particle moved at a step) and reward tokens read (the length of each scored
    prefix). Every particle moved counts, those later discarded by resampling included; with a
    :func:`~ppl.lm.potentials.lookahead` potential, its greedy tokens count as generated and the
    reward reads the extended prefix; slots
    where ``skip [N]`` is true are not counted (conditional SMC's reference, never re-sampled)."""
    keep = (lambda live: live) if skip is None else (lambda live: live & ~skip)

    def init(x):
        counts = _counts(x.prompt_length, x, keep(jnp.ones_like(x.done)))
        memory = x.memory.inner if isinstance(x.memory, WithLogP) else x.memory
        if isinstance(memory, RewardMemory):  # an incremental reward's read of the prompt: once for all
            counts = counts.at[2].add(memory.prompt_read[0])
        return counts

    return Collector(
        init=init,
        update=lambda aux, parents, children, done: aux + _counts(parents.length, children, keep(~done)),
    )


#: :func:`counter` of every particle.
token_counter = counter()


def _path_log_probs_init(x):
    return x.step_log_p, x.step_log_q


def _path_log_probs_update(aux, parents, children, done):
    return (aux[0] + jnp.where(done, 0.0, children.step_log_p), aux[1] + jnp.where(done, 0.0, children.step_log_q))


#: Per slot, :math:`\sum_t \log p` and :math:`\sum_t \log q` of the steps it generated (valid
#: without resampling: slot :math:`n` is rollout :math:`n`).
path_log_probs = Collector(_path_log_probs_init, _path_log_probs_update)
