r"""Perplexity consistency and reasoning pruning (RPC; Zhou et al. 2025, "Bridging Internal
Probability and Self-Consistency for Effective and Efficient LLM Reasoning", NeurIPS 2025).

Perplexity consistency scores each answer by the summed path probability of its *distinct*
sampled paths, :math:`\hat p(a) = \sum_{x \in \mathcal{D},\ a(x) = a} \bar p(x)` with
:math:`\bar p = \exp(\text{mean token} \log p)` under the LM itself. Reasoning pruning first fits
a two-component Weibull mixture to the :math:`\bar p`
(:func:`ppl.analysis.weibull.fit_weibull_mixture`) and drops the
paths that are more likely from the low-mean component *and* below the mean :math:`\bar p`.
:func:`rpc` is pruning, then perplexity consistency. Derivations: ``docs/scaling-methods.md``.
"""

from __future__ import annotations

from typing import Callable, Optional

import numpy as np

from ppl.analysis.weibull import WeibullMixture, fit_weibull_mixture
from ppl.scaling.aggregate import _as_answer_fn
from ppl.scaling.method import method
from ppl.scaling.result import ScalingResult, finish, generations
from ppl.scaling.sampling import Rollouts

__all__ = ["WeibullMixture", "fit_weibull_mixture", "perplexity_consistency", "reasoning_pruning", "rpc"]


def reasoning_pruning(path_probs, *, min_paths: int = 4) -> tuple[np.ndarray, Optional[WeibullMixture]]:
    r"""``(keep, mixture)``: which paths survive reasoning pruning.

    Path :math:`n` is dropped when its responsibility under the low component of the fitted
    Weibull mixture exceeds that of the high component **and** :math:`\bar p_n <
    \mathrm{mean}(\bar p)`; at least the most probable path always survives. With fewer than
    ``min_paths`` paths, or all path probabilities equal, nothing is pruned and ``mixture`` is
    ``None``.

    Parameters
    ----------
    path_probs
        ``[N]`` path probabilities :math:`\bar p_n \in (0, 1]` (exp of the mean token
        log-probability, e.g. ``np.exp(rollouts.mean_token_log_p)``).
    min_paths
        The fewest paths to fit a mixture to.
    """
    p = np.asarray(path_probs, np.float64).reshape(-1)
    if p.shape[0] < 1 or not np.all(np.isfinite(p)) or np.any(p <= 0):
        raise ValueError("path_probs: expected a non-empty array of finite positive probabilities")
    if isinstance(min_paths, bool) or not isinstance(min_paths, (int, np.integer)) or min_paths < 2:
        raise ValueError(f"min_paths: expected an integer >= 2, got {min_paths!r}")
    keep = np.ones(p.shape[0], bool)
    if p.shape[0] < min_paths or np.ptp(np.log(p)) < 1e-12:
        return keep, None
    mix = fit_weibull_mixture(p)
    resp = mix.responsibilities(p)
    keep = ~((resp[:, 0] > resp[:, 1]) & (p < p.mean()))
    return keep, mix


def _path_log_probs(pool: Rollouts) -> np.ndarray:
    lp = pool.mean_token_log_p
    if not np.all(np.isfinite(lp)):
        raise ValueError("rollouts: log_p has non-finite entries; perplexity consistency needs finite path "
                         "log-probabilities")
    return np.minimum(lp, 0.0)


def _consistency(method: str, rollouts: Rollouts, k, answer_fn, keep_fn) -> ScalingResult:
    if not isinstance(rollouts, Rollouts):
        raise TypeError(f"rollouts: expected a ppl.scaling.Rollouts (from ppl.scaling.rollouts), got "
                        f"{type(rollouts).__name__}")
    _as_answer_fn(answer_fn)
    pool = rollouts.take(k)
    log_pbar = _path_log_probs(pool)
    keep, mix = keep_fn(np.exp(log_pbar))
    # Each distinct path counts once: its probability goes to its first copy, repeats get weight 0.
    seen, first = set(), np.zeros(pool.n, bool)
    for i, g in enumerate(generations(pool.particles)):
        t = tuple(g)
        if t not in seen:
            seen.add(t)
            first[i] = True
    log_w = np.where(first & keep, log_pbar, -np.inf)
    diag = {"path_log_prob": log_pbar, "distinct": first, "kept": keep, "log_p": pool.log_p,
            "num_tokens": pool.num_tokens}
    if mix is not None:
        diag.update(weibull_weights=mix.weights, weibull_shapes=mix.shapes, weibull_scales=mix.scales)
    return finish(method, pool.particles, log_w, scores=pool.scores, answer_fn=answer_fn, select="vote",
                  compute=pool.compute(with_reward=False), budget=pool.n, diagnostics=diag)


def perplexity_consistency(rollouts: Rollouts, k: Optional[int] = None, *,
                           answer_fn: Optional[Callable] = None) -> ScalingResult:
    r"""Perplexity consistency on the first ``k`` rollouts: the answer maximising
    :math:`\hat p(a) = \sum_{\text{distinct paths } x,\ a(x) = a} \exp(\text{mean token} \log p(x))`.

    ``log_weights`` hold :math:`\log \bar p` on the first copy of each distinct path and
    :math:`-\infty` on repeats, so ``answer_posterior`` is :math:`\hat p` normalised.
    ``diagnostics``: ``path_log_prob`` (:math:`\log \bar p_n`), ``distinct``, ``kept``.
    """
    return _consistency("perplexity_consistency", rollouts, k, answer_fn,
                        lambda p: (np.ones(p.shape[0], bool), None))


@method(batchable=False, uses_reward=False,
        from_pool=lambda pool, k, answer_fn, settings: rpc(pool, k, answer_fn=answer_fn))
def rpc(rollouts: Rollouts, k: Optional[int] = None, *, answer_fn: Optional[Callable] = None,
        min_paths: int = 4) -> ScalingResult:
    r"""RPC on the first ``k`` rollouts: :func:`reasoning_pruning` of the path probabilities, then
    :func:`perplexity_consistency` on the surviving paths (pruned paths get weight 0).

    ``diagnostics`` adds the fitted mixture (``weibull_weights``, ``weibull_shapes``,
    ``weibull_scales``, low component first) when one was fitted.
    """
    if isinstance(min_paths, bool) or not isinstance(min_paths, (int, np.integer)) or min_paths < 2:
        raise ValueError(f"min_paths: expected an integer >= 2, got {min_paths!r}")
    return _consistency("rpc", rollouts, k, answer_fn, lambda p: reasoning_pruning(p, min_paths=min_paths))
