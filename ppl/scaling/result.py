r"""One result type for every inference-time scaling method.

A :class:`ScalingResult` holds the chosen answer, the posterior over answers, the final
particles with their weights and scores, method-specific diagnostics and the compute spent
(:class:`~ppl.scaling.compute.Compute`). Methods build it with :func:`finish`, which extracts
answers host-side with the task's ``answer_fn`` and applies a selection rule
(:mod:`ppl.scaling.aggregate`).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Hashable, Optional

import numpy as np

from ppl.scaling.aggregate import _as_answer_fn, answer_posterior, select_answer
from ppl.scaling.compute import Compute

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
        What the run spent (:class:`~ppl.scaling.compute.Compute`).
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
        """``arviz.InferenceData`` of the particles (one chain), as for an SMC run
        (:func:`ppl.analysis.arviz.smc_to_inference_data`).

        ``weighted_posterior`` holds the particles as they are: ``score`` and ``num_tokens``,
        with ``log_weight``; ``posterior`` holds :math:`N` equally weighted draws of them (a
        systematic resample; ``resample_key`` defaults to ``jax.random.key(0)``), so that
        ``az.summary`` gives weighted means. Answers are labels, not quantities: the group
        ``answers`` holds ``probability`` along ``answer`` (the labels of ``answer_posterior``,
        as text), and each particle's answer index (``-1``: none) is ``answer`` in
        ``weighted_posterior``. ``attrs`` hold the method, the budget, the chosen answer and the
        compute."""
        import arviz as az
        import jax
        import xarray as xr

        from ppl.smc.resampling import systematic

        labels = list(self.answer_posterior)
        codes = {a: i for i, a in enumerate(labels)}
        answer_code = np.array([codes[a] if a is not None else -1 for a in self.answers], np.int64)
        n_tok = np.array([len(g) for g in self.generations()], np.int64)
        n = len(self.answers)
        coords = {"chain": [0], "draw": np.arange(n)}
        values = {"score": np.asarray(self.scores, np.float64), "num_tokens": n_tok}
        lw = np.asarray(self.log_weights, np.float64)
        idx = np.asarray(systematic(jax.random.key(0) if resample_key is None else resample_key,
                                    jax.numpy.asarray(lw, jax.numpy.float32), n))
        dims = ["chain", "draw"]
        posterior = xr.Dataset({k: (dims, v[idx][None]) for k, v in values.items()}, coords=coords)
        weighted = xr.Dataset({**{k: (dims, v[None]) for k, v in values.items()},
                               "answer": (dims, answer_code[None]), "log_weight": (dims, lw[None])}, coords=coords)
        answers = xr.Dataset({"probability": (["answer"], np.array(list(self.answer_posterior.values())))},
                             coords={"answer": [str(a) for a in labels]})
        attrs = {"method": self.method, "budget": -1 if self.budget is None else int(self.budget),
                 "answer": str(self.answer), "answer_code": codes.get(self.answer, -1) if self.answer is not None else -1}
        attrs.update({f"compute_{k}": v for k, v in self.compute.as_dict().items()})
        for ds in (posterior, weighted):
            ds.attrs.update(attrs)
        return az.InferenceData(posterior=posterior, weighted_posterior=weighted, answers=answers)


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
