"""Bayesian judge and ranking models with honest uncertainty.

- :mod:`models.judges.data`: battle logs (CSV / JSONL, the Chatbot Arena convention),
  validation, aggregation to sufficient statistics.
- :mod:`models.judges.bradley_terry`: the Bradley–Terry family (logit / probit link; Davidson,
  Rao–Kupper or half-win ties; position, judge and covariate effects; counts as weights).
- :mod:`models.judges.ranking`: rank distributions, pairwise probabilities, tied groups,
  ArviZ output and plots; :mod:`models.judges.fit`: :func:`rank`, log to ranking in one call.
- :mod:`models.judges.mode`: posterior mode (maximum likelihood under a flat prior).
- :mod:`models.judges.dawid_skene`: Dawid–Skene judges and the judge-on-a-simplex model.

Every model is a plain numpyro function usable with :func:`ppl.infer` (NUTS or tempered SMC).
"""

from models.judges.bradley_terry import (
    LINKS,
    TIES,
    bradley_terry,
    elo_scale,
    latent_difference,
    outcome_log_probs,
    simulate_battles,
    sum_to_zero_basis,
)
from models.judges.data import (
    WINNER_VALUES,
    BattleLogError,
    Battles,
    Comparisons,
    aggregate,
    battles_from_records,
    read_battles,
)
from models.judges.dawid_skene import (
    IdentifiabilityWarning,
    Judgments,
    dawid_skene,
    judgments_from_records,
    relabel,
    simulate_judgments,
)
from models.judges.fit import PRESETS, pairwise_win_probability, rank
from models.judges.mode import ModeNotFound, posterior_mode
from models.judges.ranking import Ranking, rank_draws, summarize, tied_groups

__all__ = [
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
