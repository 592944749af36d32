r"""Inference-time scaling methods as inference on one LM-state Feynman–Kac model.

Every method takes an :class:`~ppl.lm.LMProgram` without potential (the LM, the prompt, the
step delimiter and the sampler :math:`q`), a budget, a reward model, an ``answer_fn`` and a key,
and returns a :class:`~ppl.scaling.result.ScalingResult`: the chosen answer, the posterior over
answers, the weighted particles, diagnostics and the compute spent, counted exactly
(:class:`~ppl.lm.compute.Compute`).

==========================  ====================================================================
method                      is, on the Feynman–Kac model :math:`q(x) \prod_t G_t`
==========================  ====================================================================
:func:`best_of_n`           importance sampling with :math:`G` = the final score; argmax
:func:`weighted_best_of_n`  the same, answers scored by their summed scores
:func:`self_consistency`    the unweighted posterior marginal of the answer (majority vote)
:func:`weighted_majority`   the answer marginal under the one-step Puri target (odds :math:`^{1/\tau}`)
:func:`rpc`                 perplexity consistency after reasoning pruning (Zhou et al. 2025)
:func:`beam_search`         SMC with deterministic top-:math:`N/M` selection instead of resampling
:func:`dvts`                :math:`N/M` independent greedy subtrees (diverse verifier tree search)
:func:`particle_filter`     SMC with PRM potentials, softmax of log-odds (Puri et al. 2025)
:func:`particle_gibbs`      conditional SMC as an MCMC kernel over whole reasoning chains
:func:`parallel_tempering`  CSMC chains at several temperatures with swap moves
:func:`power_sampling`      Metropolis–Hastings over suffixes targeting :math:`p(x)^\alpha`
:func:`a_star`              best-first search, priority :math:`\log p` + reward log-score, bounded frontier
==========================  ====================================================================

**Rewards.** A reward model follows :class:`ppl.core.protocols.RewardModel`: ``params`` (passed
to compiled code as data: a new problem's oracle or new weights do not recompile) and
``log_score(params, state) -> log r`` for *one* particle, :math:`r \in [0, 1]` the score of its
prefix. How its scores weigh the particles is a :class:`~ppl.lm.potentials.RewardPotential`.

**Answers.** ``answer_fn(token_ids) -> answer | None`` maps a generation (prompt excluded) to a
hashable answer (default: the whole generation); :mod:`ppl.scaling.aggregate` forms the answer
posterior and applies the selection rule.

**Many prompts.** :func:`batched` runs a method on a batch of programs (a benchmark's problems)
with one compiled function, data-parallel over a device mesh (:func:`prompt_mesh`, axis
``"prompts"``): :func:`rollouts` and the methods built on it, :func:`particle_filter`,
:func:`beam_search` and :func:`dvts`; see :mod:`ppl.smc.batch`.

**Specs.** Every method is declared with :func:`~ppl.scaling.method.method`, which records its
:class:`~ppl.scaling.method.MethodSpec` (budget → arguments, reward or not, batched path,
selection from a rollout pool); :func:`spec` and :func:`specs` read them.
"""

from ppl.scaling.aggregate import SELECT_RULES, answer_posterior, select_answer, whole_generation
from ppl.scaling.method import MethodSpec, batched, prompt_mesh, spec, specs
from ppl.lm.compute import Compute, flops_per_token
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
from ppl.scaling.particle_filter import particle_filter
from ppl.scaling.power import power_sampling
from ppl.scaling.search import beam_search, dvts
from ppl.scaling.a_star import a_star

__all__ = [
    "batched", "prompt_mesh", "MethodSpec", "spec", "specs",  # ppl.scaling.method
    "Compute", "flops_per_token", "ScalingResult", "finish", "generations",
    "SELECT_RULES", "answer_posterior", "select_answer", "whole_generation",
    "Rollouts", "rollouts", "best_of_n", "best_of_n_from", "weighted_best_of_n", "weighted_best_of_n_from",
    "self_consistency", "self_consistency_from", "weighted_majority", "weighted_majority_from",
    "WeibullMixture", "fit_weibull_mixture", "perplexity_consistency", "reasoning_pruning", "rpc",
    "beam_search", "dvts", "a_star", "particle_filter", "parallel_tempering", "particle_gibbs", "power_sampling",
    "swap_log_ratio",
]
