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

from ppl_models.judges.bradley_terry import (
    LINKS,
    TIES,
    bradley_terry,
    elo_scale,
    latent_difference,
    outcome_log_probs,
    simulate_battles,
    sum_to_zero_basis,
)
from ppl_models.judges.data import (
    WINNER_VALUES,
    BattleLogError,
    Battles,
    Comparisons,
    aggregate,
    battles_from_records,
    read_battles,
)
from ppl_models.judges.dawid_skene import (
    IdentifiabilityWarning,
    Judgments,
    dawid_skene,
    judgments_from_records,
    relabel,
    simulate_judgments,
)
from ppl_models.judges.fit import PRESETS, pairwise_win_probability, rank
from ppl_models.judges.irt import (
    IRT_KINDS,
    Responses,
    irt,
    rank_irt,
    read_responses,
    responses_from_matrix,
    responses_from_records,
    simulate_responses,
)
from ppl_models.judges.mode import ModeNotFound, posterior_mode
from ppl_models.judges.plackett_luce import (
    Rankings,
    plackett_luce,
    plackett_luce_log_prob,
    rank_plackett_luce,
    rankings_from_lists,
    read_rankings,
    simulate_rankings,
)
from ppl_models.judges.ranking import Ranking, rank_draws, summarize, tied_groups
from ppl_models.judges.scores import rank_simplex, read_scores, scores_from_records
from ppl_models.judges.sensitivity import DEFAULT_PRIORS, SensitivityReport, kendall_tau, prior_sensitivity

__all__ = [
    "DEFAULT_PRIORS",
    "IRT_KINDS",
    "Rankings",
    "Responses",
    "SensitivityReport",
    "irt",
    "kendall_tau",
    "plackett_luce",
    "plackett_luce_log_prob",
    "prior_sensitivity",
    "rank_irt",
    "rank_plackett_luce",
    "rank_simplex",
    "rankings_from_lists",
    "read_rankings",
    "read_responses",
    "read_scores",
    "responses_from_matrix",
    "responses_from_records",
    "scores_from_records",
    "simulate_rankings",
    "simulate_responses",
    "LINKS",
    "PRESETS",
    "TIES",
    "WINNER_VALUES",
    "BattleLogError",
    "IdentifiabilityWarning",
    "Judgments",
    "dawid_skene",
    "judgments_from_records",
    "relabel",
    "simulate_judgments",
    "Battles",
    "Comparisons",
    "ModeNotFound",
    "Ranking",
    "aggregate",
    "battles_from_records",
    "bradley_terry",
    "elo_scale",
    "latent_difference",
    "outcome_log_probs",
    "pairwise_win_probability",
    "posterior_mode",
    "rank",
    "rank_draws",
    "read_battles",
    "simulate_battles",
    "sum_to_zero_basis",
    "summarize",
    "tied_groups",
]
