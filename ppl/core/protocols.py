r"""The roles, as ``typing.Protocol`` types: what the engine asks of a model, an LM and a reward.

Nothing needs to subclass these: any object with the members is one (``isinstance`` checks the
members' presence, as the engine's input checks do).

:class:`FeynmanKacModel`
    what :func:`ppl.run_smc`, the kernel (:mod:`ppl.smc.base`) and conditional SMC call: the
    batched draws and weights of a particle set, which particles are finished, the data each
    step receives and the static structure that keys compiled code.
    :class:`~ppl.core.feynman_kac.FeynmanKac` (and the step-program model) and
    :class:`~ppl.lm.LMProgram` implement it.
:class:`LanguageModel`
    what an LM program asks of an LM (see :mod:`ppl.lm.state`).
:class:`RewardModel`
    what the scaling methods ask of a reward model: ``log_score(params, state)`` for one
    particle, with ``params`` passed as traced data.
"""

from __future__ import annotations

from typing import Any, Optional, Protocol, runtime_checkable

import jax

__all__ = ["FeynmanKacModel", "IncrementalReward", "LanguageModel", "RewardModel"]


@runtime_checkable
class FeynmanKacModel(Protocol):
    r"""A Feynman–Kac model :math:`(M_0, G_0, M_t, G_t)_{t < T}` for the SMC engine.

    ``init_batch(key, n, data_0) -> (x, log_w)`` and ``step_batch(key, x, t, data_t) -> (x,
    log_w)`` draw a particle set and its incremental log-weights; ``done_batch(x) -> bool[n]``
    marks finished particles (held in place); ``data_at(data, t)`` is what step ``t`` receives;
    ``static_key()`` is everything but ``data`` (equal keys share compiled code). The one-particle
    ``log_weight(x_prev, x, t, data_t)`` and ``log_density(x_prev, x, t, data_t)`` (the
    transition density times the potential) serve conditional SMC and ancestor sampling.
    """

    data: Any
    num_steps: Optional[int]
    time_indexed: bool
    freezes_done: bool

    def init_batch(self, key: jax.Array, num_particles: int, data_0) -> tuple[Any, jax.Array]: ...

    def step_batch(self, key: jax.Array, x, t, data_t) -> tuple[Any, jax.Array]: ...

    def done_batch(self, x) -> jax.Array: ...

    def data_at(self, data, t): ...

    def static_key(self) -> tuple: ...

    def log_weight(self, x_prev, x, t, data_t) -> jax.Array: ...

    def log_density(self, x_prev, x, t, data_t) -> jax.Array: ...


@runtime_checkable
class LanguageModel(Protocol):
    """An autoregressive LM with a KV cache (the protocol of :mod:`ppl.lm.state`). Optional:
    ``apply_with_prefix(params, tokens, positions, prefix, cache)``, reading a prompt's cache
    stored once for all rows (``shared_prefix`` of :class:`~ppl.lm.LMProgram`)."""

    vocab_size: int
    eos_token_id: Optional[int]
    params: Any

    def init_cache(self, batch_size: int, max_length: int) -> Any: ...

    def apply(self, params, tokens: jax.Array, positions: jax.Array, cache) -> tuple[jax.Array, Any]: ...


@runtime_checkable
class RewardModel(Protocol):
    """A reward model: ``log_score(params, state) -> log r`` of one particle's prefix, ``r`` in
    :math:`[0, 1]`; ``params`` is a pytree passed as traced data (new weights do not recompile).
    Optional: ``static_key()`` (what keys compiled code) and ``flops_per_token``."""

    params: Any

    def log_score(self, params, state) -> jax.Array: ...


@runtime_checkable
class IncrementalReward(Protocol):
    """A reward model that carries its own state in the particle, so that scoring a step reads
    only the step's new tokens (a KV cache and running features instead of the whole prefix).

    ``init_state(params, prompt_state) -> (rstate, tokens_read)`` reads the prompt once (one
    particle's :class:`~ppl.lm.LMState` after the prompt) and returns the reward's state;
    ``extend(params, rstate, state) -> (log r, rstate, tokens_read)`` reads the tokens of
    ``state`` past what ``rstate`` has read and scores the prefix ``state`` ends with; the
    score must equal ``log_score(params, state)`` (to float tolerance). The state is a pytree
    with fixed shapes; the program stores it in ``state.memory`` and resampling gathers it with
    the particle (:func:`ppl.lm.potentials.from_reward`).
    """

    params: Any

    def log_score(self, params, state) -> jax.Array: ...

    def init_state(self, params, prompt_state) -> tuple[Any, jax.Array]: ...

    def extend(self, params, rstate, state) -> tuple[jax.Array, Any, jax.Array]: ...
