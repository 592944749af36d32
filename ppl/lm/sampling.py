r"""Sampling one reasoning *step* per particle, and scoring a given step.

A step is the tokens generated until a step delimiter (one token or a token sequence, e.g. a
newline), the end-of-sequence token, a per-step token limit, or the end of the buffer. All
particles decode together in one compiled ``lax.while_loop`` — one batched LM call per token —
and each stops at its own length.

Tokens are drawn from a *proposal* :math:`q` obtained from the LM's logits :math:`\ell` by

* temperature :math:`\tau`: :math:`\ell / \tau`;
* top-k: keep the :math:`k` largest logits;
* top-p (nucleus): keep the smallest set of most likely tokens whose probability under the
  tempered distribution reaches :math:`p`;

and both log-probabilities of the step are returned: under the LM,
:math:`\log p(s \mid x) = \sum_j \log \mathrm{softmax}(\ell_j)[s_j]`, and under the proposal,
:math:`\log q(s \mid x)`. Their difference is the importance weight that makes a filter whose
particles move with :math:`q` target the LM's own distribution (see :class:`ppl.lm.LMProgram`).
"""

from __future__ import annotations

import dataclasses
from typing import Optional

import jax
import jax.numpy as jnp

from ppl.lm.state import LMState, apply_lm

__all__ = ["StepConfig", "process_logits", "sample_step", "score_step"]


@dataclasses.dataclass(frozen=True)
class StepConfig:
    """How one step is generated (static: part of the compiled program).

    Parameters
    ----------
    delimiter
        Token id or tuple of ids that ends a step (included in the step); ``()`` for none.
    max_step_tokens
        At most this many tokens per step.
    temperature, top_k, top_p
        The proposal's logit processing (``top_k=None`` / ``top_p=None``: off).
    """

    delimiter: tuple = ()
    max_step_tokens: int = 32
    temperature: float = 1.0
    top_k: Optional[int] = None
    top_p: Optional[float] = None

    def __post_init__(self):
        delim = self.delimiter
        if isinstance(delim, int) or (hasattr(delim, "ndim") and getattr(delim, "ndim") == 0):
            delim = (int(delim),)
        object.__setattr__(self, "delimiter", tuple(int(d) for d in delim))
        if int(self.max_step_tokens) < 1:
            raise ValueError(f"max_step_tokens: expected a positive integer, got {self.max_step_tokens!r}")
        if not self.temperature > 0:
            raise ValueError(f"temperature: expected a positive number, got {self.temperature!r}")
        if self.top_k is not None and int(self.top_k) < 1:
            raise ValueError(f"top_k: expected a positive integer or None, got {self.top_k!r}")
        if self.top_p is not None and not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"top_p: expected a number in (0, 1] or None, got {self.top_p!r}")

    @property
    def is_exact(self) -> bool:
        """Whether the proposal is the LM itself (temperature 1, no truncation)."""
        return self.temperature == 1.0 and self.top_k is None and (self.top_p is None or self.top_p == 1.0)


def process_logits(logits: jax.Array, cfg: StepConfig) -> jax.Array:
    """Temperature, then top-k, then top-p, on logits ``[..., V]``; masked entries are ``-inf``."""
    out = logits / cfg.temperature
    if cfg.top_k is not None and cfg.top_k < out.shape[-1]:
        kth = jax.lax.top_k(out, int(cfg.top_k))[0][..., -1:]
        out = jnp.where(out < kth, -jnp.inf, out)
    if cfg.top_p is not None and cfg.top_p < 1.0:
        sorted_desc = -jnp.sort(-out, axis=-1)
        probs = jax.nn.softmax(sorted_desc, axis=-1)
        before = jnp.cumsum(probs, axis=-1) - probs  # mass strictly before each token
        kept = jnp.where(before < cfg.top_p, sorted_desc, jnp.inf)
        threshold = jnp.min(kept, axis=-1, keepdims=True)
        out = jnp.where(out < threshold, -jnp.inf, out)
    return out


def _ends_with(tokens, end, delim):
    """Whether ``tokens[end - len(delim):end] == delim`` (one row)."""
    d = len(delim)
    start = jnp.maximum(end - d, 0)
    window = jax.lax.dynamic_slice(tokens, (start,), (d,))
    return jnp.all(window == jnp.asarray(delim, jnp.int32)) & (end >= d)


def eos_ids(lm) -> tuple:
    """The LM's end-of-sequence ids: ``lm.eos_token_ids`` if it has several, else
    ``(lm.eos_token_id,)`` (empty if ``None``)."""
    many = getattr(lm, "eos_token_ids", None)
    if many is not None:
        return tuple(int(v) for v in many)
    return () if lm.eos_token_id is None else (int(lm.eos_token_id),)


def sample_step(lm, params, key: jax.Array, state: LMState, cfg: StepConfig, prefix=None):
    """Generate one step for every particle of a batched ``state``.

    ``prefix``: the prompt's cache shared by the particles (:func:`ppl.lm.state.prompt_prefix`),
    when their own caches start after it.

    Returns ``(new_state, log_p, log_q)`` with ``log_p``/``log_q`` ``[N]`` the step's
    log-probability under the LM and under the proposal (0 for particles already done).
    """
    n, max_len = state.tokens.shape
    rows = jnp.arange(n)
    eos = eos_ids(lm)
    delim = cfg.delimiter
    active0 = ~state.done
    zeros = jnp.zeros((n,), jnp.float32)

    def cond(c):
        return jnp.any(c[4])

    def body(c):
        key, tokens, length, cache, active, n_new, log_p, log_q, hit_eos = c
        key, k_tok = jax.random.split(key)
        pos = length - 1
        pending = tokens[rows, pos]
        logits, cache = apply_lm(lm, params, pending[:, None], pos[:, None], cache, prefix, state.pad)
        logits = logits[:, 0].astype(jnp.float32)
        logp_all = jax.nn.log_softmax(logits, axis=-1)
        proc = process_logits(logits, cfg)
        logq_all = jax.nn.log_softmax(proc, axis=-1)
        new = jax.random.categorical(k_tok, proc, axis=-1).astype(jnp.int32)
        write_at = jnp.minimum(length, max_len - 1)
        tokens = tokens.at[rows, write_at].set(jnp.where(active, new, tokens[rows, write_at]))
        length = jnp.where(active, length + 1, length)
        n_new = jnp.where(active, n_new + 1, n_new)
        log_p = log_p + jnp.where(active, logp_all[rows, new], 0.0)
        log_q = log_q + jnp.where(active, logq_all[rows, new], 0.0)
        is_eos = jnp.isin(new, jnp.asarray(eos, jnp.int32)) if eos else jnp.zeros((n,), bool)
        stop = is_eos | (n_new >= cfg.max_step_tokens) | (length >= max_len)
        if delim:
            ended = jax.vmap(lambda t, e: _ends_with(t, e, delim))(tokens, length)
            stop = stop | (ended & (n_new >= len(delim)))
        hit_eos = hit_eos | (active & is_eos)
        active = active & ~stop
        return key, tokens, length, cache, active, n_new, log_p, log_q, hit_eos

    carry = (key, state.tokens, state.length, state.cache, active0, jnp.zeros((n,), jnp.int32),
             zeros, zeros, jnp.zeros((n,), bool))
    _, tokens, length, cache, _, _, log_p, log_q, hit_eos = jax.lax.while_loop(cond, body, carry)
    new_state = LMState(
        tokens=tokens,
        length=length,
        cache=cache,
        num_steps=jnp.where(active0, state.num_steps + 1, state.num_steps),
        step_start=jnp.where(active0, state.length, state.step_start),
        prompt_length=state.prompt_length,
        done=state.done | hit_eos | (length >= max_len),
        step_log_p=jnp.where(active0, log_p, state.step_log_p),
        step_log_q=jnp.where(active0, log_q, state.step_log_q),
        memory=state.memory,
        pad=state.pad,
    )
    return new_state, log_p, log_q


def score_step(lm, params, prev: LMState, new: LMState, cfg: StepConfig, prefix=None):
    """Log-probabilities ``(log_p, log_q)`` ``[N]`` of the step that leads from ``prev`` to ``new``.

    The step's tokens are ``new.tokens[prev.length:new.length]``; they are scored teacher-forced
    in one chunked forward pass of ``cfg.max_step_tokens`` tokens from ``prev``'s cache (used by
    conditional SMC and ancestor sampling, which re-score given trajectories). ``prefix`` as in
    :func:`sample_step`.
    """
    n, max_len = new.tokens.shape
    s = int(cfg.max_step_tokens)
    offs = jnp.arange(s, dtype=jnp.int32)
    in_pos = prev.length[:, None] - 1 + offs[None]  # pending token, then the step's tokens
    tgt_pos = in_pos + 1
    valid = (tgt_pos < new.length[:, None]) & ~prev.done[:, None]
    inputs = jnp.take_along_axis(new.tokens, jnp.clip(in_pos, 0, max_len - 1), axis=1)
    targets = jnp.take_along_axis(new.tokens, jnp.clip(tgt_pos, 0, max_len - 1), axis=1)
    logits, _ = apply_lm(lm, params, inputs, jnp.clip(in_pos, 0, max_len - 1), prev.cache, prefix, prev.pad)
    logits = logits.astype(jnp.float32)
    lp = jnp.take_along_axis(jax.nn.log_softmax(logits, -1), targets[..., None], -1)[..., 0]
    lq = jnp.take_along_axis(jax.nn.log_softmax(process_logits(logits, cfg), -1), targets[..., None], -1)[..., 0]
    return jnp.sum(jnp.where(valid, lp, 0.0), -1), jnp.sum(jnp.where(valid, lq, 0.0), -1)
