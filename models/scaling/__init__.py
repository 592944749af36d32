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

from ppl_models.lazy import lazy_exports

# Names are imported on first use (PEP 562), so that `ppl --help` does not import JAX.
_EXPORTS = {
    **dict.fromkeys([
        'Allocation', 'BinnedAccuracy', 'allocate', 'allocate_from_outcomes',
        'allocate_from_posterior', 'difficulty_bins'
    ], 'allocation'),
    **dict.fromkeys([
        'BetaBinomialFit', 'PowerLawFit', 'beta_binomial_model', 'beta_coverage',
        'fit_beta_binomial', 'fit_coverage_power_law', 'fit_power_law_to_pass_at_k',
        'power_law_model'
    ], 'coverage'),
    **dict.fromkeys([
        'InputError', 'ScaleProblems', 'read_samples_csv', 'read_scale_json', 'read_scale_problems'
    ], 'data'),
    **dict.fromkeys([
        'PassAtK', 'pass_at_k', 'pass_at_k_curve'
    ], 'passk'),
    **dict.fromkeys([
        'SaturationFit', 'fit_saturation', 'saturation_budget', 'saturation_curve',
        'saturation_model'
    ], 'saturation'),
    **dict.fromkeys([
        'VerifierFit', 'accuracy_at_k', 'accuracy_ceiling', 'expected_utility', 'fit_verifier',
        'marginal_utility', 'optimal_k', 'verifier_data', 'verifier_model'
    ], 'verifiers'),
    **dict.fromkeys([
        'GaussianPosterior', 'JudgeDecayFit', 'JudgeOptimum', 'JudgeSelectionResult',
        'blr_posterior', 'blr_predictive', 'fit_judge_decay', 'judge_optimal_k',
        'judge_optimal_temperature', 'selection_errors', 'simulate_judge_selection'
    ], 'judge_selection'),
}

__all__ = list(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
