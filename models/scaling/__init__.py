"""Inference-scaling laws as Bayesian models (see docs/scaling-laws.md).

- :mod:`~ppl_models.scaling.passk`: the unbiased pass@k estimator and its average over problems.
- :mod:`~ppl_models.scaling.coverage`: hierarchical Beta–Binomial coverage and the exp(a k^b) law.
- :mod:`~ppl_models.scaling.verifiers`: imperfect-verifier ceiling, utility and optimal K.
- :mod:`~ppl_models.scaling.saturation`: F(N) = F_max (1 - (1-p)^N) and the saturation budget.
- :mod:`~ppl_models.scaling.allocation`: compute-optimal allocation across difficulty bins, from
  Beta–Binomial posteriors or from measured per-problem outcomes of ``ppl scale``.
- :mod:`~ppl_models.scaling.judge_selection`: the LLM-as-a-judge selection model, simulated exactly.

- :mod:`~ppl_models.scaling.data`, :mod:`~ppl_models.scaling.cli`: input files and ``ppl analyze``.
"""

from ppl_models.scaling.allocation import (
    Allocation,
    BinnedAccuracy,
    allocate,
    allocate_from_outcomes,
    allocate_from_posterior,
    difficulty_bins,
)
from ppl_models.scaling.coverage import (
    BetaBinomialFit,
    PowerLawFit,
    beta_binomial_model,
    beta_coverage,
    fit_beta_binomial,
    fit_coverage_power_law,
    fit_power_law_to_pass_at_k,
    power_law_model,
)
from ppl_models.scaling.data import (
    InputError,
    ScaleProblems,
    read_samples_csv,
    read_scale_json,
    read_scale_problems,
)
from ppl_models.scaling.judge_selection import (
    GaussianPosterior,
    JudgeDecayFit,
    JudgeOptimum,
    JudgeSelectionResult,
    blr_posterior,
    blr_predictive,
    fit_judge_decay,
    judge_optimal_k,
    judge_optimal_temperature,
    selection_errors,
    simulate_judge_selection,
)
from ppl_models.scaling.passk import PassAtK, pass_at_k, pass_at_k_curve
from ppl_models.scaling.saturation import (
    SaturationFit,
    fit_saturation,
    saturation_budget,
    saturation_curve,
    saturation_model,
)
from ppl_models.scaling.verifiers import (
    VerifierFit,
    accuracy_at_k,
    accuracy_ceiling,
    expected_utility,
    fit_verifier,
    marginal_utility,
    optimal_k,
    verifier_data,
    verifier_model,
)

__all__ = [
    "Allocation", "BetaBinomialFit", "BinnedAccuracy", "InputError", "PassAtK", "PowerLawFit",
    "SaturationFit", "ScaleProblems", "VerifierFit", "accuracy_at_k", "accuracy_ceiling",
    "allocate", "allocate_from_outcomes", "allocate_from_posterior", "beta_binomial_model",
    "beta_coverage", "difficulty_bins", "expected_utility", "fit_beta_binomial",
    "fit_coverage_power_law", "fit_power_law_to_pass_at_k", "fit_saturation", "fit_verifier",
    "marginal_utility", "optimal_k", "pass_at_k", "pass_at_k_curve", "power_law_model",
    "read_samples_csv", "read_scale_json", "read_scale_problems", "saturation_budget",
    "saturation_curve", "saturation_model", "verifier_data", "verifier_model",
    # judge selection
    "GaussianPosterior", "JudgeDecayFit", "JudgeOptimum", "JudgeSelectionResult",
    "blr_posterior", "blr_predictive", "fit_judge_decay", "judge_optimal_k",
    "judge_optimal_temperature", "selection_errors", "simulate_judge_selection",
]
