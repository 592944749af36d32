r"""One result type for every inference-time scaling method.

A :class:`ScalingResult` holds the chosen answer, the posterior over answers, the final
particles with their weights and scores, method-specific diagnostics and the compute spent
(:class:`~ppl.lm.compute.Compute`). Methods build it with :func:`finish`, which extracts
answers host-side with the task's ``answer_fn`` and applies a selection rule
(:mod:`ppl.scaling.aggregate`).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Hashable, Optional

import numpy as np

from ppl.lm.compute import Compute
from ppl.scaling.aggregate import _as_answer_fn, answer_posterior, select_answer

__all__ = ["ScalingResult", "finish", "generations"]


def generations(particles) -> list[list[int]]:
    """The generated token ids of each particle of a batched :class:`~ppl.lm.LMState` (host side;
    prompt excluded, end-of-sequence token included if emitted)."""
    tokens = np.asarray(particles.tokens)
    length = np.asarray(particles.length)
    start = np.asarray(particles.prompt_length)
    return [tokens[i, int(start[i]):int(length[i])].tolist() for i in range(tokens.shape[0])]


@dataclasses.dataclass
class ScalingResult:
    """What every method of :mod:`ppl.scaling` returns.

    Attributes
    ----------
    method
        The method's name (e.g. ``"particle_filter"``).
    answer
        The chosen answer (``None`` if no particle produced one).
    answer_posterior
        ``{answer: probability}`` under the particles' weights, most probable first.
    answers
        The answer of each particle (``None`` where it has none).
    particles
        The final particles, an :class:`~ppl.lm.LMState` with leaves ``[N, ...]``.
    log_weights
        ``[N]`` normalised log-weights of the particles.
    scores
        ``[N]`` final reward scores in :math:`[0, 1]` (NaN where no reward was computed).
    selected
        Index of the particle whose answer was chosen (``-1`` if none).
    compute
        What the run spent (:class:`~ppl.lm.compute.Compute`).
    budget
        The budget asked for, in rollouts (``None`` if the method has none).
    diagnostics
        Method-specific arrays: ESS and resampling flags per step, acceptance rates, ...
    """

    method: str
    answer: Optional[Hashable]
    answer_posterior: dict
    answers: list
    particles: Any
    log_weights: np.ndarray
    scores: np.ndarray
    selected: int
    compute: Compute
    budget: Optional[int] = None
    diagnostics: dict = dataclasses.field(default_factory=dict)

    @property
    def num_particles(self) -> int:
        return len(self.answers)

    def generations(self) -> list[list[int]]:
        """The generated token ids of every particle."""
        return generations(self.particles)

    def texts(self, tokenizer) -> list[str]:
        """The generations decoded with a ``tokenizers.Tokenizer`` (or anything with ``decode``)."""
        return [tokenizer.decode(ids) for ids in self.generations()]

    def to_arviz(self, resample_key=None):
        """``arviz.InferenceData`` of the particles: :func:`ppl.analysis.arviz.scaling_to_inference_data`."""
        from ppl.analysis.arviz import scaling_to_inference_data

        return scaling_to_inference_data(self, resample_key)

def finish(method: str, particles, log_weights, *, scores=None, answer_fn: Optional[Callable] = None,
           select: str = "vote", compute: Compute = Compute(), budget: Optional[int] = None,
           diagnostics: Optional[dict] = None) -> ScalingResult:
    """Build a :class:`ScalingResult`: extract answers, form the posterior, apply ``select``.

    ``log_weights`` may be unnormalised (they are normalised here); ``scores`` default to NaN.
    With ``select="argmax"`` and no scores, the highest weight decides."""
    fn = _as_answer_fn(answer_fn)
    gens = generations(particles)
    answers = [fn(g) for g in gens]
    n = len(gens)
    lw = np.asarray(log_weights, np.float64).reshape(-1)
    if lw.shape != (n,):
        raise ValueError(f"log_weights: expected shape ({n},), got {lw.shape}")
    if np.isnan(lw).any():
        raise FloatingPointError(f"{method}: {int(np.isnan(lw).sum())} of {n} log-weights are NaN; "
                                 "check the reward model's scores")
    m = np.max(lw)
    lw = lw - (m + np.log(np.sum(np.exp(lw - m)))) if np.isfinite(m) else np.full(n, -np.log(n))
    sc = np.full(n, np.nan) if scores is None else np.asarray(scores, np.float64).reshape(-1)
    if sc.shape != (n,):
        raise ValueError(f"scores: expected shape ({n},), got {sc.shape}")
    answer, idx = select_answer(answers, rule=select, log_weights=lw,
                                scores=None if scores is None else sc)
    return ScalingResult(method=method, answer=answer, answer_posterior=answer_posterior(answers, lw),
                         answers=answers, particles=particles, log_weights=lw, scores=sc, selected=idx,
                         compute=compute, budget=budget, diagnostics=dict(diagnostics or {}))
