"""Bayesian judge and ranking models with honest uncertainty.

- :mod:`ppl_models.judges.data`: battle logs (CSV / JSONL, the Chatbot Arena convention),
  validation, aggregation to sufficient statistics.
- :mod:`ppl_models.judges.bradley_terry`: the Bradley–Terry family (logit / probit link; Davidson,
  Rao–Kupper or half-win ties; position, judge and covariate effects; counts as weights).
- :mod:`ppl_models.judges.ranking`: rank distributions, pairwise probabilities, tied groups,
  ArviZ output and plots; :mod:`ppl_models.judges.fit`: :func:`rank`, log to ranking in one call.
- :mod:`ppl_models.judges.mode`: posterior mode (maximum likelihood under a flat prior).
- :mod:`ppl_models.judges.dawid_skene`: Dawid–Skene judges and the judge-on-a-simplex model;
  :mod:`ppl_models.judges.scores`: score logs from files and candidate rankings under it;
  :mod:`ppl_models.judges.sensitivity`: its prior-sensitivity sweep.
- :mod:`ppl_models.judges.irt`: IRT 1PL / 2PL for per-item benchmark correctness.
- :mod:`ppl_models.judges.plackett_luce`: Plackett–Luce for full or partial rankings.

Every model is a plain numpyro function usable with :func:`ppl.infer` (NUTS or tempered SMC).
"""

from ppl_models.lazy import lazy_exports

# Names are imported on first use (PEP 562), so that `ppl --help` does not import JAX.
_EXPORTS = {
    **dict.fromkeys([
        'DEFAULT_PRIORS', 'SensitivityReport', 'kendall_tau', 'prior_sensitivity'
    ], 'sensitivity'),
    **dict.fromkeys([
        'IRT_KINDS', 'Responses', 'irt', 'rank_irt', 'read_responses', 'responses_from_matrix',
        'responses_from_records', 'simulate_responses'
    ], 'irt'),
    **dict.fromkeys([
        'Rankings', 'plackett_luce', 'plackett_luce_log_prob', 'rank_plackett_luce',
        'rankings_from_lists', 'read_rankings', 'simulate_rankings'
    ], 'plackett_luce'),
    **dict.fromkeys([
        'rank_simplex', 'read_scores', 'scores_from_records'
    ], 'scores'),
    **dict.fromkeys([
        'LINKS', 'TIES', 'bradley_terry', 'elo_scale', 'latent_difference', 'outcome_log_probs',
        'simulate_battles', 'sum_to_zero_basis'
    ], 'bradley_terry'),
    **dict.fromkeys([
        'PRESETS', 'pairwise_win_probability', 'rank'
    ], 'fit'),
    **dict.fromkeys([
        'WINNER_VALUES', 'BattleLogError', 'Battles', 'Comparisons', 'aggregate',
        'battles_from_records', 'read_battles'
    ], 'data'),
    **dict.fromkeys([
        'IdentifiabilityWarning', 'Judgments', 'dawid_skene', 'judgments_from_records', 'relabel',
        'simulate_judgments'
    ], 'dawid_skene'),
    **dict.fromkeys([
        'ModeNotFound', 'posterior_mode'
    ], 'mode'),
    **dict.fromkeys([
        'Ranking', 'rank_draws', 'summarize', 'tied_groups'
    ], 'ranking'),
}

__all__ = list(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
