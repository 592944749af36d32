r"""Prior sensitivity of the judge-on-a-simplex ranking.

With three or more score levels and no gold labels, the ranking of candidates under the
judge-on-a-simplex model (:func:`ppl_models.judges.dawid_skene`, Vossler et al. 2025) is not
identified by the data: it is set by the prior on judge quality. :func:`prior_sensitivity`
refits the model under several confusion-matrix priors ``(a_diag, a_off)`` — from "judges are
no better than chance" ``(1, 1)`` to "judges are usually right" ``(10, 1)`` — summarises each
fit's expected true scores :math:`\sum_m m\,\pi_{km}` as a :class:`~ppl_models.judges.ranking.Ranking`,
and reports how the ranking moves: the order under each prior, Kendall's :math:`\tau` against a
reference prior, the best candidate and its :math:`P(\mathrm{rank} = 1)`, and the range of each
candidate's posterior mean rank and score across priors. A ranking that does not move is
supported by the data; one that does is an artefact of the prior, and gold labels are needed.
"""

from __future__ import annotations

import dataclasses
import itertools
import warnings
from typing import Sequence

import jax
import numpy as np

from ppl_models.judges.dawid_skene import IdentifiabilityWarning, Judgments
from ppl_models.judges.scores import rank_simplex

__all__ = ["DEFAULT_PRIORS", "SensitivityReport", "kendall_tau", "prior_sensitivity"]

#: Default judge-quality priors ``(a_diag, a_off)``: chance-level, the model's default, and two
#: increasingly confident ones.
DEFAULT_PRIORS = ((1.0, 1.0), (2.0, 1.0), (5.0, 1.0), (10.0, 1.0))


def kendall_tau(x, y) -> float:
    """Kendall's :math:`\\tau_a` between two score vectors (``1`` = same order, ``-1`` =
    reversed; pairs tied in either count as discordant-neutral, i.e. zero)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    n = len(x)
    if n < 2:
        return 1.0
    s = 0.0
    for i, j in itertools.combinations(range(n), 2):
        s += np.sign(x[i] - x[j]) * np.sign(y[i] - y[j])
    return float(s / (n * (n - 1) / 2))


@dataclasses.dataclass
class SensitivityReport:
    """How the candidate ranking changes across judge-quality priors.

    Attributes:
        priors: the ``(a_diag, a_off)`` pairs, in order.
        rankings: one :class:`~ppl_models.judges.ranking.Ranking` of expected true scores per prior.
        reference: index of the reference prior for ``tau``.
        identifiability_warning: whether the model warned that the ranking is not identified.
    """

    priors: list
    rankings: list
    reference: int = 0
    identifiability_warning: bool = False

    @property
    def candidates(self) -> tuple:
        return self.rankings[0].models

    @property
    def orders(self) -> list:
        """Per prior, candidate names best first (by posterior mean expected score)."""
        return [[r.models[i] for i in r.order] for r in self.rankings]

    @property
    def means(self) -> np.ndarray:
        """``[P, K]`` posterior-mean expected scores."""
        return np.stack([r.mean for r in self.rankings])

    @property
    def mean_ranks(self) -> np.ndarray:
        """``[P, K]`` posterior-mean rank of each candidate (1 = best)."""
        k = len(self.candidates)
        return np.stack([(r.rank_probs * np.arange(1, k + 1)).sum(1) for r in self.rankings])

    @property
    def tau(self) -> np.ndarray:
        """``[P]`` Kendall's tau of each prior's posterior means against the reference."""
        m = self.means
        return np.array([kendall_tau(m[self.reference], row) for row in m])

    @property
    def stable(self) -> bool:
        """True when every prior gives the same order of posterior means."""
        return all(o == self.orders[0] for o in self.orders)

    def table(self) -> str:
        k = len(self.candidates)
        lines = [f"{'prior (diag, off)':<18} {'tau':>6}  {'top':<20} {'P(rank=1)':>9}  order (best first)"]
        lines.append("-" * len(lines[0]))
        for p, r, t, o in zip(self.priors, self.rankings, self.tau, self.orders):
            best = int(r.order[0])
            shown = " > ".join(o) if k <= 8 else " > ".join(o[:8]) + " > ..."
            lines.append(f"{str(tuple(p)):<18} {t:>6.2f}  {r.models[best][:20]:<20} {r.rank_probs[best, 0]:>9.3f}  {shown}")
        mr = self.mean_ranks
        spread = mr.max(0) - mr.min(0)
        lines.append(
            f"# ranking {'unchanged' if self.stable else 'CHANGES'} across priors; largest shift of a "
            f"mean rank {spread.max():.2f} ({self.candidates[int(spread.argmax())]})"
        )
        if self.identifiability_warning:
            lines.append("# not identifiable from the data (>= 3 levels, no gold labels): the prior decides")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        mr, m = self.mean_ranks, self.means
        return {
            "priors": [list(map(float, p)) for p in self.priors],
            "candidates": list(self.candidates),
            "orders": self.orders,
            "tau": self.tau.tolist(),
            "stable": self.stable,
            "identifiability_warning": self.identifiability_warning,
            "mean_expected_score": m.tolist(),
            "mean_rank": mr.tolist(),
            "p_rank_1": [r.rank_probs[:, 0].tolist() for r in self.rankings],
            "max_mean_rank_shift": (mr.max(0) - mr.min(0)).tolist(),
            "max_score_shift": (m.max(0) - m.min(0)).tolist(),
        }


def prior_sensitivity(
    data: Judgments,
    priors: Sequence = DEFAULT_PRIORS,
    *,
    key=None,
    method: str = "nuts",
    reference: int = 1,
    ci: float = 0.95,
    level: float = 0.95,
    **infer_options,
) -> SensitivityReport:
    """Refit the judge-on-a-simplex model under each judge-quality prior and compare rankings.

    Args:
        data: :class:`~ppl_models.judges.dawid_skene.Judgments` with ``candidate`` set.
        priors: ``(a_diag, a_off)`` Dirichlet concentrations of the confusion rows (see
            :func:`~ppl_models.judges.dawid_skene.dawid_skene`), at least two.
        key: PRNG key (the same key is used for every fit, so differences come from the prior).
        method: ``"nuts"`` or ``"tempered_smc"``.
        reference: index in ``priors`` of the prior the others are compared with (default 1,
            the model's default ``(2, 1)`` in :data:`DEFAULT_PRIORS`).
        ci, level: see :func:`~ppl_models.judges.ranking.summarize`.
        **infer_options: options of the method (``num_chains`` default 4, ``num_warmup``, ...).

    Returns:
        :class:`SensitivityReport` (``.table()``, ``.to_dict()``, ``.rankings``).
    """
    if data.candidate is None:
        raise ValueError("prior_sensitivity needs judgments with a candidate per item (the simplex model)")
    priors = [tuple(float(v) for v in p) for p in priors]
    if len(priors) < 2:
        raise ValueError(f"prior_sensitivity needs at least two priors, got {priors}")
    for p in priors:
        if len(p) != 2 or min(p) <= 0:
            raise ValueError(f"each prior must be a pair (a_diag, a_off) of positive numbers, got {p}")
    if not 0 <= reference < len(priors):
        reference = 0
    key = jax.random.key(0) if key is None else key
    rankings, warned = [], False
    for p in priors:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", IdentifiabilityWarning)  # reported once, in the report
            r = rank_simplex(data, confusion_prior=p, key=key, method=method, ci=ci, level=level, **infer_options)
        warned = warned or not r.params["identifiable"]
        rankings.append(r)
    return SensitivityReport(priors=priors, rankings=rankings, reference=reference, identifiability_warning=warned)
