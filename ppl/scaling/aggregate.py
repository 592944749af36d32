r"""Answer aggregation: from a weighted set of finished generations to a final answer.

Every method of :mod:`ppl.scaling` ends with particles :math:`x^{(n)}`, normalised weights
:math:`W^{(n)}` and (optionally) reward scores :math:`r^{(n)}`. With :math:`a(x)` the answer
extracted from a generation (``answer_fn``; ``None`` when there is none), the *answer
posterior* is the weighted marginal

.. math::

    \hat\pi(a) = \sum_n W^{(n)} \, \mathbb{1}[a(x^{(n)}) = a],

the particle approximation of :math:`\pi(a(x) = a)` under the method's target. The selection
rules are

* ``"argmax"`` — the answer of the particle with the highest score (best-of-N, and the final
  rule of Puri et al. 2025);
* ``"vote"`` — :math:`\arg\max_a \hat\pi(a)` (weighted majority vote; with uniform weights,
  self-consistency);
* ``"majority"`` — the most frequent answer, weights ignored.

Generations without an answer take part in the posterior (under the key ``None``) but are
never selected while any generation has an answer. Ties go to the answer seen first.
"""

from __future__ import annotations

from typing import Callable, Hashable, Optional, Sequence

import numpy as np

__all__ = ["SELECT_RULES", "answer_posterior", "select_answer", "whole_generation", "check_select"]

SELECT_RULES = ("argmax", "vote", "majority")


def whole_generation(token_ids: Sequence[int]) -> Optional[Hashable]:
    """The default ``answer_fn``: the whole generation (prompt excluded) as a tuple of token ids —
    exact-match voting on complete outputs; ``None`` for an empty generation.

    Tasks pass their own ``answer_fn(token_ids) -> answer or None`` (for the bundled task,
    :func:`ppl_models.tasks.arithmetic.answer_fn`)."""
    return tuple(int(t) for t in token_ids) if len(token_ids) else None


def answer_posterior(answers: Sequence[Optional[Hashable]], log_weights=None) -> dict:
    r"""``{answer: probability}``, sorted by decreasing probability (ties: first seen first).

    ``log_weights`` are the particles' log-weights (normalised or not; uniform if ``None``)."""
    n = len(answers)
    if n == 0:
        return {}
    if log_weights is None:
        w = np.full(n, 1.0 / n)
    else:
        lw = np.asarray(log_weights, np.float64)
        if lw.shape != (n,):
            raise ValueError(f"log_weights: expected shape ({n},), got {lw.shape}")
        if np.isnan(lw).any():
            raise FloatingPointError("log_weights: NaN entries; a weight must be a number or -inf")
        m = np.max(lw)
        if not np.isfinite(m):
            w = np.full(n, 1.0 / n)
        else:
            w = np.exp(lw - m)
            w = w / w.sum()
    post: dict = {}
    for a, wi in zip(answers, w):
        post[a] = post.get(a, 0.0) + float(wi)
    order = sorted(range(len(post)), key=lambda i: -list(post.values())[i])
    items = list(post.items())
    return {items[i][0]: items[i][1] for i in order}


def select_answer(answers: Sequence[Optional[Hashable]], *, rule: str = "vote", log_weights=None,
                  scores=None) -> tuple[Optional[Hashable], int]:
    """``(answer, index)``: the chosen answer and the index of a particle that gives it.

    ``rule`` is one of :data:`SELECT_RULES`; ``"argmax"`` needs ``scores`` (or uses the
    log-weights when ``scores`` is ``None``). The index is the highest-scored (or highest-weighted)
    particle with the chosen answer; ``(None, -1)`` when no particle has an answer."""
    if rule not in SELECT_RULES:
        raise ValueError(f"select: expected one of {SELECT_RULES}, got {rule!r}")
    n = len(answers)
    has = np.array([a is not None for a in answers], bool)
    if n == 0 or not has.any():
        return None, -1
    lw = np.zeros(n) if log_weights is None else np.asarray(log_weights, np.float64)
    key = lw if scores is None else np.nan_to_num(np.asarray(scores, np.float64), nan=-np.inf)
    if rule == "argmax":
        masked = np.where(has, key, -np.inf)
        if not np.isfinite(masked).any():
            masked = np.where(has, 0.0, -np.inf)
        i = int(np.argmax(masked))
        return answers[i], i
    valid = [a for a in answers if a is not None]
    if rule == "majority":
        post = answer_posterior(valid)
    else:
        post = answer_posterior(valid, lw[has])
    best = next(iter(post))
    idx = [i for i in range(n) if answers[i] == best and answers[i] is not None]
    i = max(idx, key=lambda j: key[j])
    return best, int(i)


def check_select(select, allowed: Sequence[str], answer_fn=None) -> None:
    """``select`` is one of ``allowed``; ``answer_fn`` is ``None`` or callable."""
    if select not in allowed:
        raise ValueError(f"select: expected one of {tuple(allowed)}, got {select!r}")
    if answer_fn is not None and not callable(answer_fn):
        raise TypeError(f"answer_fn: expected a callable token_ids -> answer, got {type(answer_fn).__name__}")


def _as_answer_fn(answer_fn: Optional[Callable]) -> Callable:
    if answer_fn is None:
        return whole_generation
    if not callable(answer_fn):
        raise TypeError(f"answer_fn: expected a callable token_ids -> answer, got {type(answer_fn).__name__}")
    return answer_fn
