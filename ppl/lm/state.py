r"""The LM state: what a particle of an LM program carries.

An LM is any object with the small protocol below (``ppl`` never imports a particular LM):

``lm.vocab_size``, ``lm.eos_token_id``
    sizes and the end-of-sequence token (``None`` if there is none);
``lm.params``
    a pytree of arrays, passed to ``apply`` as data (new weights do not recompile);
``lm.init_cache(batch_size, max_length)``
    a KV-cache pytree whose leaves all have the batch axis first;
``lm.apply(params, tokens[B, S], positions[B, S], cache) -> (logits[B, S, V], cache)``
    writes the keys and values of the tokens at their positions and attends, for a query at
    position :math:`p`, to cache entries at positions :math:`\le p` only.
``lm.apply(..., pad=pad)`` (optional: left padding)
    with ``pad: int[B]``, ``positions`` are the tokens' slots in their row: slots ``< pad[b]``
    are padding, never attended to, and slot :math:`s` holds position :math:`s - \text{pad}_b`
    (the attention mask and position ids of a left-padded batch). Needed only by programs with
    ``padding="left"`` (:class:`ppl.lm.LMProgram`).
``lm.apply_with_prefix(params, tokens, positions, prefix, cache)`` (optional)
    the same, reading a *prefix* cache shared by all rows — batch size one, :math:`F` slots
    holding positions :math:`0..F-1` — besides the rows' own ``cache``, whose slot :math:`t`
    holds position :math:`F + t`. An LM that has it stores the prompt's keys and values once
    for all particles (:func:`prompt_prefix`); one without it gives every particle a whole copy.

A particle is an :class:`LMState`: the token buffer (prompt and generation), its length, the
KV cache, the number of reasoning steps generated, where the current step starts, and a done
flag. **Invariant:** the cache holds the keys and values of positions ``< length - 1``; the last
token (at ``length - 1``) is *pending* — it is fed to the LM when the next token is sampled. So
no logits need to be stored, and resampling a particle set is one gather along the particle
axis of every leaf, the KV cache included: a resampled particle continues from its parent's
cache with no recomputation.

**Left padding.** A prompt of :math:`p` tokens left-padded to width :math:`W` fills buffer slots
:math:`W - p .. W - 1`, after ``pad`` :math:`= W - p` padding slots that the LM masks out; the
generation starts at slot :math:`W` whatever :math:`p`. ``prompt_length`` is the slot where the
generation starts (:math:`W`; the prompt's length when unpadded), so code that reads the
generation as ``tokens[prompt_length:length]`` is unchanged.

**Shared prompt.** With a prefix of :math:`F \le P - 1` prompt positions (``prefix``, the
program's data, not the particle's), a particle's ``cache`` holds positions :math:`F` to
:math:`L - 1` only: the prompt's first :math:`F` entries exist once, and resampling never
copies them.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["LMState", "apply_lm", "check_lm", "generated", "pad_prompt", "padded_width", "prefill", "prefix_tokens", "prompt_prefix",
           "step_tokens", "takes_pad", "text_of"]


class LMState(NamedTuple):
    """One particle of an LM program (leaves get a leading particle axis in a particle set).

    Attributes
    ----------
    tokens
        ``int32[L]`` the token buffer: prompt, then generated tokens; entries past ``length`` are
        padding.
    length
        Number of valid tokens.
    cache
        The LM's KV cache (positions ``< length - 1`` are filled).
    num_steps
        Reasoning steps generated so far.
    step_start
        Buffer index where the latest step starts: its tokens are ``tokens[step_start:length]``.
    prompt_length
        Where the generation starts: the prompt's length, plus its left padding if any.
    done
        Finished: end-of-sequence emitted, or the buffer is full.
    step_log_p, step_log_q
        Log-probability of the latest step under the LM and under the proposal that drew it
        (equal when the proposal is the LM), so potentials and corrections need no re-scoring.
    memory
        What the program's potential keeps between steps (``()`` for a memoryless one): e.g. the
        running aggregates of a reward's prefix scores (:func:`ppl.lm.potentials.from_reward`).
        It travels with the particle through resampling like the KV cache.
    pad
        ``None``, or (a program with ``padding="left"``) the number of padding slots before the
        prompt, passed to the LM as ``pad=`` and read by rewards that run a network over
        ``tokens``.
    """

    tokens: jax.Array
    length: jax.Array
    cache: Any
    num_steps: jax.Array
    step_start: jax.Array
    prompt_length: jax.Array
    done: jax.Array
    step_log_p: jax.Array
    step_log_q: jax.Array
    memory: Any = ()
    pad: Any = None


def check_lm(lm) -> None:
    """Raise a clear error if ``lm`` does not follow the LM protocol."""
    missing = [name for name in ("vocab_size", "eos_token_id", "params", "init_cache", "apply")
               if not hasattr(lm, name)]
    if missing:
        raise TypeError(
            f"lm: {type(lm).__name__} lacks {missing}; an LM needs vocab_size, eos_token_id, params, "
            "init_cache(batch_size, max_length) and apply(params, tokens, positions, cache) "
            "(see ppl.lm.state)")


def padded_width(length: int, multiple: int = 16) -> int:
    """The padded width of a prompt of ``length`` tokens: ``length`` rounded up to a multiple of
    ``multiple`` (what :func:`pad_prompt` pads to, before any cap)."""
    return -(-int(length) // multiple) * multiple


def pad_prompt(prompt, multiple: int = 16, max_length=None, vocab_size=None, width=None, left: bool = False):
    """``(padded int32[P_pad], length)``: the prompt padded with zeros to a multiple of ``multiple``
    (capped at ``max_length``), or to ``width`` if given and the prompt fits it; with ``left``, the
    zeros come first (left padding: the prompt ends at the last slot).

    Programs take the padded prompt as traced data, so prompts of similar length share one
    compiled program. With ``vocab_size``, a token id outside ``[0, vocab_size)`` is an error (an
    embedding lookup would silently clip it).
    """
    if vocab_size is not None and not isinstance(prompt, jax.core.Tracer):
        ids = np.asarray(prompt)
        bad = np.flatnonzero((ids < 0) | (ids >= int(vocab_size))) if ids.ndim == 1 else []
        if len(bad):
            raise ValueError(f"prompt: token id {int(ids[bad[0]])} at position {int(bad[0])} is outside the LM's "
                             f"vocabulary [0, {int(vocab_size)})")
    prompt = jnp.asarray(prompt, jnp.int32)
    if prompt.ndim != 1 or prompt.shape[0] < 1:
        raise ValueError(f"prompt: expected a non-empty 1-d array of token ids, got shape {prompt.shape}")
    p = int(prompt.shape[0])
    if max_length is not None and p >= int(max_length):
        raise ValueError(f"max_length={max_length} leaves no room after a prompt of {p} tokens")
    p_pad = padded_width(p, multiple)
    if max_length is not None:  # left-padded, the generation starts at p_pad: leave it a slot
        p_pad = min(p_pad, int(max_length) - 1 if left else int(max_length))
    if width is not None and p <= int(width):
        p_pad = int(width)
    at = p_pad - p if left else 0
    return jnp.zeros((p_pad,), jnp.int32).at[at:at + p].set(prompt), jnp.asarray(p, jnp.int32)


def takes_pad(lm) -> bool:
    """Whether ``lm.apply`` takes ``pad=`` (left padding; see the protocol above)."""
    import inspect

    try:
        return "pad" in inspect.signature(lm.apply).parameters
    except (TypeError, ValueError):
        return False


def apply_lm(lm, params, tokens, positions, cache, prefix=None, pad=None):
    """``lm.apply``, or ``lm.apply_with_prefix`` when the rows share a ``prefix`` cache; ``pad``
    (left padding, ``int[B]``) is passed on when given."""
    kw = {} if pad is None else {"pad": pad}
    if prefix is None:
        return lm.apply(params, tokens, positions, cache, **kw)
    return lm.apply_with_prefix(params, tokens, positions, prefix, cache, **kw)


def shares_prefix(lm) -> bool:
    """Whether ``lm`` can read a prefix cache shared by all rows (``apply_with_prefix``)."""
    return callable(getattr(lm, "apply_with_prefix", None))


@functools.partial(jax.jit, static_argnums=(0, 3))
def _prompt_prefix(lm, params, prompt_padded, shared, pad):
    _, cache = apply_lm(lm, params, prompt_padded[None, :shared], jnp.arange(shared, dtype=jnp.int32)[None],
                        lm.init_cache(1, shared), pad=None if pad is None else pad[None])
    return cache


def prompt_prefix(lm, params, prompt_padded, shared: int, pad=None):
    """The cache of the prompt's first ``shared`` slots (batch size one), stored once and read by
    every particle through ``lm.apply_with_prefix``. ``shared`` must be at most the slot of the
    prompt's last token: that token is pending (see :class:`LMState`). ``pad``: the prompt's
    left padding (``None``: unpadded)."""
    if not shares_prefix(lm):
        raise TypeError(f"shared_prefix: {type(lm).__name__} has no apply_with_prefix, so it cannot share the "
                        "prompt's cache; pass shared_prefix=0")
    return _prompt_prefix(lm, params, prompt_padded, int(shared), pad)


def prefill(lm, params, prompt_padded, prompt_length, max_length: int, prefix=None, shared: int = 0,
            pad=None) -> LMState:
    """The state of one particle after reading a prompt: all but its last token in the cache.

    ``prompt_padded`` is ``int32[P_pad]`` (see :func:`pad_prompt`) and ``prompt_length`` the true
    length (traced); ``pad`` (traced, or ``None``) the number of left-padding slots before it.
    One forward pass over the padded prompt, batch size one; the entries it writes at slots
    ``>= pad + prompt_length - 1`` are overwritten before they are read. With a
    shared ``prefix`` (:func:`prompt_prefix` of :math:`F` = ``shared`` positions), the pass reads it and runs
    over the prompt's positions :math:`F..P_{pad}-1` only, into a cache of the positions
    :math:`F..L-1`. Broadcast to a particle set with
    ``jax.tree.map(lambda a: jnp.broadcast_to(a, (n,) + a.shape), state)``.
    """
    p_pad = int(prompt_padded.shape[0])
    if p_pad > max_length:
        raise ValueError(f"max_length={max_length} is shorter than the padded prompt ({p_pad} tokens)")
    start = 0 if prefix is None else int(shared)
    if prefix is not None and not 0 < start < p_pad:
        raise ValueError(f"shared={shared}: a shared prefix covers 1 to {p_pad - 1} positions of this prompt")
    cache = lm.init_cache(1, max_length - start)
    pos = jnp.arange(start, p_pad, dtype=jnp.int32)[None]
    _, cache = apply_lm(lm, params, prompt_padded[None, start:], pos, cache, prefix,
                        None if pad is None else jnp.reshape(pad, (1,)))
    cache = jax.tree_util.tree_map(lambda a: a[0], cache)
    end = jnp.asarray(prompt_length if pad is None else pad + prompt_length, jnp.int32)
    keep = jnp.arange(max_length) < end
    tokens = jnp.where(keep, jnp.zeros((max_length,), jnp.int32).at[:p_pad].set(prompt_padded), 0)
    zero = jnp.zeros((), jnp.float32)
    return LMState(tokens=tokens, length=end, cache=cache, num_steps=jnp.asarray(0, jnp.int32), step_start=end,
                   prompt_length=end, done=jnp.asarray(False), step_log_p=zero, step_log_q=zero,
                   pad=None if pad is None else jnp.asarray(pad, jnp.int32))


def generated(state: LMState) -> jax.Array:
    """``bool[L]``: which buffer positions of one particle hold generated tokens (the prompt, the
    padding and the free tail excluded). Potentials that count tokens read ``state.tokens`` through
    it: the prompt may hold the same ids, and the padding id 0 may be a real token."""
    idx = jnp.arange(state.tokens.shape[-1])
    return (idx >= state.prompt_length) & (idx < state.length)


def prefix_tokens(state: LMState) -> jax.Array:
    """The number of tokens of the prefix (prompt and generation), padding excluded: what a
    reward that reads the whole prefix reads."""
    return state.length if state.pad is None else state.length - state.pad


def step_tokens(state: LMState) -> np.ndarray:
    """The latest step's tokens of one particle, as a numpy array (host side)."""
    return np.asarray(state.tokens)[int(state.step_start):int(state.length)]


def text_of(state: LMState, tokenizer=None, include_prompt: bool = False):
    """The generated tokens of one particle (host side), decoded with ``tokenizer`` if given."""
    start = (0 if state.pad is None else int(state.pad)) if include_prompt else int(state.prompt_length)
    ids = np.asarray(state.tokens)[start:int(state.length)].tolist()
    return tokenizer.decode(ids) if tokenizer is not None else ids
