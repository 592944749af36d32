r"""Inference-time scaling methods as inference on one LM-state Feynman–Kac model.

Every method takes an :class:`~ppl.lm.LMProgram` (the LM, the prompt, how a step is generated),
a reward model with ``log_prefix_score(state) -> log r`` for one particle (a PRM), an
``answer_fn(token_ids) -> answer`` and a key, and returns a
:class:`~ppl.scaling.result.ScalingResult` with the compute spent counted exactly.
"""

from ppl.scaling.aggregate import SELECT_RULES, answer_posterior, select_answer, whole_generation
from ppl.scaling.compute import Compute, flops_per_token
from ppl.scaling.result import ScalingResult, finish, generations
from ppl.scaling.sampling import (
    Rollouts,
    best_of_n,
    best_of_n_from,
    rollouts,
    self_consistency,
    self_consistency_from,
    weighted_best_of_n,
    weighted_best_of_n_from,
    weighted_majority,
    weighted_majority_from,
)
from ppl.scaling.consistency import WeibullMixture, fit_weibull_mixture, perplexity_consistency, reasoning_pruning, rpc
from ppl.scaling.gibbs import parallel_tempering, particle_gibbs, swap_log_ratio
from ppl.scaling.power import power_sampling

__all__ = [
    "Compute",
    "SELECT_RULES",
    "ScalingResult",
    "answer_posterior",
    "finish",
    "flops_per_token",
    "generations",
    "select_answer",
    "whole_generation",
    # independent rollouts and selection (ppl.scaling.sampling)
    "Rollouts",
    "best_of_n",
    "best_of_n_from",
    "rollouts",
    "self_consistency",
    "self_consistency_from",
    "weighted_best_of_n",
    "weighted_best_of_n_from",
    "weighted_majority",
    "weighted_majority_from",
    # perplexity consistency and reasoning pruning (ppl.scaling.consistency)
    "WeibullMixture",
    "fit_weibull_mixture",
    "perplexity_consistency",
    "reasoning_pruning",
    "rpc",
    # MCMC over whole generations (ppl.scaling.gibbs, ppl.scaling.power)
    "parallel_tempering",
    "particle_gibbs",
    "power_sampling",
    "swap_log_ratio",
]
