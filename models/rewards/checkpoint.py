r"""Reward models from Hugging Face checkpoints: a transformer body and a head read at a prefix's end.

Three conventions, each a reward of ``ppl.scaling`` (``params``, ``log_score(params, state)``,
``static_key()``, ``flops_per_token``) and, through the body's KV cache, an *incremental* one
(``init_state``/``extend``: each step reads only its new tokens):

* ``"classifier"`` — a process reward model with a classification head (the layout of
  Qwen2.5-Math-PRM: a Qwen2 body, then ``score.0`` (:math:`D \to D`), ReLU, ``score.2``
  (:math:`D \to 2`)); the score of a prefix ending at a step separator is
  :math:`\mathrm{softmax}(z)_1`, the probability of the "good" class, read at its last token.
  Qwen2.5-Math-PRM's convention is a separator token after each step (``<extra_0>``, with the
  steps split at ``"\n\n"``): with ``separator`` and ``step_ends``, every generated token in
  ``step_ends`` (the policy's step delimiter and end-of-sequence ids) is *read as* the separator,
  so the reward reads ``step<extra_0>step<extra_0>...`` position for position with the policy's
  buffer, and each step's score at its separator.
* ``"lm-judge"`` — an LM read as a judge (the Math-Shepherd / RLHFlow convention): after a step,
  the probability of a "good" token against a "bad" one,
  :math:`p(\text{good}) / (p(\text{good}) + p(\text{bad}))` of the next-token distribution at the
  prefix's last token.
* ``"outcome"`` — an outcome reward model with a sequence-classification head
  (``LlamaForSequenceClassification``, ``Qwen2ForSequenceClassification``: ``score.weight``
  :math:`1 \times D`, no bias), :math:`\sigma(w^\top h)` at the last token.

:func:`load_reward` reads a folder; the body is :func:`ppl_models.lm.load_pretrained`'s.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from ppl_models.rewards.base import PrefixScore

__all__ = ["CheckpointReward", "RewardState", "load_reward", "REWARD_KINDS"]

REWARD_KINDS = ("classifier", "lm-judge", "outcome")


class RewardState(NamedTuple):
    """The incremental state of one particle: the body's KV cache, the head's log-score of the
    prefix read so far and how many tokens were read."""

    cache: tuple
    log_score: jax.Array
    read: jax.Array


class CheckpointReward(PrefixScore):
    """A body (:class:`ppl_models.lm.LanguageModel`) and a head; see the module docstring.

    ``params`` is ``{"body": body params, "head": head arrays}``; ``good``/``bad`` the token
    ids of an ``"lm-judge"``. ``chunk_size``: tokens per forward pass of the incremental path.
    """

    chunk_size = 8
    left_padding = True  # reads a left-padded buffer: the body masks LMState.pad slots

    def __init__(self, body, head: dict, kind: str, *, good: Optional[int] = None, bad: Optional[int] = None,
                 separator: Optional[int] = None, step_ends: tuple = ()):
        if kind not in REWARD_KINDS:
            raise ValueError(f"kind: expected one of {REWARD_KINDS}, got {kind!r}")
        if kind == "lm-judge" and (good is None or bad is None):
            raise ValueError("an 'lm-judge' reward needs the token ids good= and bad=")
        if (separator is None) != (not step_ends):
            raise ValueError("separator and step_ends: give both (the separator token id, and the ids it replaces) "
                             "or neither")
        self.body, self.kind, self.good, self.bad = body, kind, good, bad
        self.separator, self.step_ends = separator, tuple(int(t) for t in step_ends)
        self.tokenizer = body.tokenizer
        self.params = {"body": body.params, "head": {k: jnp.asarray(v, jnp.float32) for k, v in head.items()}}
        self._jit_forward = jax.jit(self._forward)  # one compiled forward for scores(), not one per call

    def static_key(self):
        return ("CheckpointReward", id(self))

    @property
    def flops_per_token(self) -> float:
        from ppl.lm.compute import flops_per_token

        return flops_per_token(self.body)

    # -------------------------------------------------------------- the head
    def head_log_score(self, head: dict, out) -> jax.Array:
        """``log r`` from the body's output at a position: hidden states ``[..., D]`` (logits
        ``[..., V]`` for an ``"lm-judge"``)."""
        out = out.astype(jnp.float32)
        if self.kind == "outcome":
            return jax.nn.log_sigmoid(out @ head["score.weight"][0])
        if self.kind == "classifier":
            z = jax.nn.relu(out @ head["score.0.weight"].T + head["score.0.bias"])
            z = z @ head["score.2.weight"].T + head["score.2.bias"]
            return jax.nn.log_softmax(z, axis=-1)[..., 1]
        pair = jnp.stack([out[..., self.good], out[..., self.bad]], axis=-1)
        return jax.nn.log_softmax(pair, axis=-1)[..., 0]

    def _read_as(self, state, tokens, positions):
        """``tokens`` at ``positions`` of ``state``'s buffer as the reward reads them: a generated
        token of ``step_ends`` becomes the separator."""
        if self.separator is None:
            return tokens
        ends = jnp.isin(tokens, jnp.asarray(self.step_ends, jnp.int32)) & (positions >= state.prompt_length)
        return jnp.where(ends, jnp.int32(self.separator), tokens)

    def _forward(self, body_params, tokens, positions, cache, pad=None):
        fn = self.body.apply if self.kind == "lm-judge" else self.body.apply_hidden
        return fn(body_params, tokens, positions, cache, pad=None if pad is None else jnp.reshape(pad, (1,)))

    def scores(self, tokens) -> np.ndarray:
        """``r`` at every position of ``tokens [B, S]`` (one forward pass; host side)."""
        tokens = jnp.asarray(tokens, jnp.int32)
        pos = jnp.broadcast_to(jnp.arange(tokens.shape[1], dtype=jnp.int32), tokens.shape)
        out, _ = self._jit_forward(self.params["body"], tokens, pos, None)
        return np.exp(np.asarray(self.head_log_score(self.params["head"], out)))

    def log_prefix_score(self, state) -> jax.Array:
        """``log r`` of one particle's prefix with this reward's own ``params``."""
        return self.log_score(self.params, state)

    def log_score(self, params, state) -> jax.Array:
        """``log r`` of one particle's prefix (an :class:`ppl.lm.LMState`), read at its last token."""
        pos = jnp.arange(state.tokens.shape[0], dtype=jnp.int32)
        tokens = self._read_as(state, state.tokens, pos)
        out, _ = self._forward(params["body"], tokens[None], pos[None], None, state.pad)
        last = jnp.clip(state.length - 1, 0, tokens.shape[0] - 1)
        return self.head_log_score(params["head"], out[0, last])

    # -------------------------------------------------------------- incremental
    def init_state(self, params, prompt_state):
        """``(RewardState, tokens read)`` after reading the prompt of ``prompt_state`` (from the
        first slot after its left padding, if any)."""
        cache = self.body.init_cache(1, prompt_state.tokens.shape[0])
        start = jnp.zeros((), jnp.int32) if prompt_state.pad is None else jnp.asarray(prompt_state.pad, jnp.int32)
        empty = RewardState(cache, jnp.zeros((), jnp.float32), start)
        return self._read(params, empty, prompt_state)

    def extend(self, params, rstate: RewardState, state):
        """``(log r, RewardState, tokens read)``: only the tokens past ``rstate.read``."""
        new, read = self._read(params, rstate, state)
        return new.log_score, new, read

    def _read(self, params, rstate: RewardState, state):
        size, width = int(self.chunk_size), state.tokens.shape[0]
        stop = jnp.minimum(state.length, width).astype(jnp.int32)

        def chunk(r: RewardState) -> RewardState:
            pos = r.read + jnp.arange(size, dtype=jnp.int32)
            toks = self._read_as(state, state.tokens[jnp.clip(pos, 0, width - 1)], pos)
            n = jnp.clip(stop - r.read, 0, size)
            out, cache = self._forward(params["body"], toks[None], pos[None], r.cache, state.pad)
            score = self.head_log_score(params["head"], out[0, jnp.maximum(n - 1, 0)])
            return RewardState(cache, score, r.read + n)

        out = jax.lax.while_loop(lambda r: r.read < stop, chunk, rstate)
        fed = (-(-(stop - jnp.minimum(rstate.read, stop)) // size)) * size
        return out, fed.astype(jnp.int32)


def load_reward(path, kind: str, *, good: Optional[str | int] = None, bad: Optional[str | int] = None,
                dtype=jnp.float32, separator: Optional[str | int] = None, step_ends=()) -> CheckpointReward:
    """A :class:`CheckpointReward` from a Hugging Face folder (safetensors). ``good``/``bad``
    (``"lm-judge"``): token ids, or strings the folder's tokenizer encodes as one token each;
    ``separator`` likewise (e.g. ``"<extra_0>"``), read in place of the generated ``step_ends``
    ids. Missing or mis-shaped head tensors are errors naming them."""
    from safetensors import safe_open

    from ppl_models.lm import load_pretrained
    from ppl_models.lm.checkpoint import _weight_files

    if kind not in REWARD_KINDS:
        raise ValueError(f"kind: expected one of {REWARD_KINDS}, got {kind!r}")
    folder = Path(os.fspath(path))
    body = load_pretrained(folder, dtype=dtype, lm_head=kind == "lm-judge")
    sep = {} if separator is None else {"separator": _token_id(body, separator, "separator"), "step_ends": step_ends}
    if kind == "lm-judge":
        ids = [_token_id(body, t, name) for t, name in ((good, "good"), (bad, "bad"))]
        return CheckpointReward(body, {}, kind, good=ids[0], bad=ids[1], **sep)
    d = body.config.hidden_size
    want = ({"score.weight": (1, d)} if kind == "outcome" else
            {"score.0.weight": (d, d), "score.0.bias": (d,), "score.2.weight": (2, d), "score.2.bias": (2,)})
    files = _weight_files(folder)
    paths = sorted(set(files.values())) if isinstance(files, dict) else files
    head = {}
    for fpath in paths:
        with safe_open(str(fpath), framework="np") as fh:
            for name in want:
                if name in fh.keys():
                    head[name] = np.asarray(fh.get_tensor(name), np.float32)
    for name, shape in want.items():
        if name not in head:
            raise ValueError(f"{folder}: the {kind!r} head needs the tensor {name!r} of shape {shape}; not found")
        if head[name].shape != shape:
            raise ValueError(f"{folder}: tensor {name!r} has shape {head[name].shape}, expected {shape} "
                             f"({'one label' if kind == 'outcome' else 'two classes'})")
    return CheckpointReward(body, head, kind, **sep)


def _token_id(body, token, name: str) -> int:
    if isinstance(token, (int, np.integer)) and not isinstance(token, bool):
        tid = int(token)
    elif isinstance(token, str):
        if body.tokenizer is None:
            raise ValueError(f"{name}={token!r}: the checkpoint has no tokenizer.json; pass a token id")
        ids = body.tokenizer.encode(token, add_special_tokens=False).ids
        if len(ids) != 1:
            raise ValueError(f"{name}={token!r} encodes as {len(ids)} tokens {ids}; pass one token or its id")
        tid = ids[0]
    else:
        raise ValueError(f"{name}: expected a token or its id, got {token!r}")
    if not 0 <= tid < body.vocab_size:
        raise ValueError(f"{name}={token!r}: token id {tid} is outside the vocabulary [0, {body.vocab_size})")
    return tid
