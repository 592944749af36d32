"""Training batches for the bundled LM: tokenized prompt + chain-of-thought solutions.

Batch ``i`` of a run with seed ``s`` is a pure function of ``(s, i)``: its difficulty is
``mixture[i % len(mixture)]`` (every batch is homogeneous in difficulty, so it is padded only
to that difficulty's length, a multiple of 16, and only a few shapes are ever compiled) and its
problems are drawn from the *train* split with a numpy generator seeded by ``(s, i)``.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import numpy as np

from ppl_models.tasks import arithmetic
from ppl_models.tasks.tokenizer import EOS, PAD, encode

__all__ = ["Batch", "encode_example", "make_batch", "batch_for_step"]


class Batch(NamedTuple):
    """``tokens int32[B, L]`` (inputs), ``targets int32[B, L]`` (next tokens), ``mask f32[B, L]``
    (1 where the target is a solution token or the end-of-sequence token)."""

    tokens: np.ndarray
    targets: np.ndarray
    mask: np.ndarray


def encode_example(tokenizer, problem: arithmetic.Problem) -> tuple[list[int], int]:
    """``(ids, prompt_length)``: prompt, solution and end-of-sequence token ids."""
    prompt = encode(tokenizer, problem.prompt)
    ids = prompt + encode(tokenizer, problem.solution) + [tokenizer.token_to_id(EOS)]
    return ids, len(prompt)


def make_batch(tokenizer, problems: Sequence[arithmetic.Problem], pad_multiple: int = 16) -> Batch:
    """Pad a list of problems into a :class:`Batch` (length a multiple of ``pad_multiple``)."""
    encoded = [encode_example(tokenizer, p) for p in problems]
    longest = max(len(ids) for ids, _ in encoded) - 1
    length = -(-longest // pad_multiple) * pad_multiple
    pad = tokenizer.token_to_id(PAD)
    b = len(encoded)
    tokens = np.full((b, length), pad, np.int32)
    targets = np.full((b, length), pad, np.int32)
    mask = np.zeros((b, length), np.float32)
    for r, (ids, p) in enumerate(encoded):
        n = len(ids) - 1
        tokens[r, :n] = ids[:-1]
        targets[r, :n] = ids[1:]
        mask[r, p - 1:n] = 1.0  # predict every solution token and the end of sequence
    return Batch(tokens, targets, mask)


def batch_for_step(tokenizer, step: int, seed: int, batch_size: int,
                   mixture: Sequence[arithmetic.Difficulty]) -> Batch:
    """The training batch of optimizer step ``step`` (deterministic in ``(seed, step)``)."""
    d = mixture[step % len(mixture)]
    problems = arithmetic.generate(batch_size, d, split="train", seed=_mix(seed, step),
                                   unique=False)
    return make_batch(tokenizer, problems)


def _mix(seed: int, step: int) -> int:
    return (int(seed) & 0xFFFFFFFF) << 32 | (int(step) & 0xFFFFFFFF)
