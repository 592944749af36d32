r"""Dawid–Skene judges and the judge-on-a-simplex model, with the true label summed out.

**Dawid–Skene** (Dawid & Skene 1979). Item :math:`i` has an unobserved true level
:math:`z_i \in \{1..M\}` with prevalence :math:`\pi`; judge :math:`j` reports level :math:`l`
with probability :math:`\theta^{(j)}_{z_i l}` (row :math:`m` of judge :math:`j`'s confusion
matrix). Judgments are conditionally independent given :math:`z_i`, so

.. math:: \log p(y_i) = \operatorname{logsumexp}_m \Big[\log \pi_m
          + \sum_{(j, l) \in y_i} n_{ijl} \log \theta^{(j)}_{ml}\Big],

computed for all items at once with a segment sum and ``logsumexp`` (no discrete latent site,
no enumeration), so NUTS runs vectorized across chains and tempered SMC works unchanged.

**Judge on a simplex** (Vossler, Xia, Mai & Feng 2025, arXiv 2505.21972). Each candidate
:math:`k` (an LLM being judged) has its own distribution :math:`\pi_k` over true levels — a point
on the simplex — and item :math:`i` belongs to candidate :math:`k(i)`: replace :math:`\pi` by
:math:`\pi_{k(i)}` above. Candidates are ranked by their expected true score
:math:`\sum_m m\,\pi_{km}`. With two levels the ranking is identifiable from the data; with
three or more it is not, even with infinite data, unless something anchors judge quality
(gold labels, or a prior that carries information) — :func:`dawid_skene` warns in that case,
and the answer should be checked for sensitivity to the judge-quality prior.

Priors: :math:`\pi \sim \mathrm{Dirichlet}(\mathbf 1)`; each confusion row
:math:`\theta^{(j)}_m \sim \mathrm{Dirichlet}(a_\text{off}\mathbf 1 + (a_\text{diag} - a_\text{off}) e_m)`
(``confusion_prior=(a_diag, a_off)``; the default ``(2, 1)`` mildly favours correct labels,
which also fixes the labelling of the latent levels).
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from jax.scipy.special import logsumexp

__all__ = ["Judgments", "IdentifiabilityWarning", "dawid_skene", "judgments_from_records", "relabel", "simulate_judgments"]


class IdentifiabilityWarning(UserWarning):
    """The model's answer is not identified by the data alone (it depends on the prior)."""


@jax.tree_util.register_pytree_node_class
@dataclasses.dataclass(frozen=True)
class Judgments:
    """Aggregated judgments: one row per distinct (item, judge, level) with its count.

    Attributes:
        item, judge, label: ``[N]`` int32 indices (label in ``0..M-1``).
        counts: ``[N]`` float32 multiplicities.
        candidate: ``[I]`` int32 candidate of each item (simplex model) or ``None``.
        gold: ``[I]`` int32 known true level of each item, ``-1`` where unknown, or ``None``.
        num_items, num_levels: static sizes; ``judges``, ``candidates``: static names.
    """

    item: np.ndarray
    judge: np.ndarray
    label: np.ndarray
    counts: np.ndarray
    candidate: Optional[np.ndarray]
    gold: Optional[np.ndarray]
    num_items: int
    num_levels: int
    judges: tuple
    candidates: tuple = ()

    def tree_flatten(self):
        return (self.item, self.judge, self.label, self.counts, self.candidate, self.gold), (
            self.num_items, self.num_levels, self.judges, self.candidates)

    @classmethod
    def tree_unflatten(cls, aux, children):
        return cls(*children, *aux)

    @property
    def num_judges(self) -> int:
        return len(self.judges)


def judgments_from_records(
    item: Sequence, judge: Sequence, label: Sequence, *, num_levels: int, candidate=None,
    gold=None, counts=None, judges: Optional[Sequence[str]] = None, candidates=None,
) -> Judgments:
    """Validate and aggregate judgments given as parallel integer sequences.

    Args:
        item, judge, label: per judgment, 0-based indices (label in ``0..num_levels-1``).
        num_levels: :math:`M`.
        candidate: optional ``[I]`` candidate index of each item (enables the simplex model).
        gold: optional ``[I]`` known levels (``-1`` = unknown).
        counts: optional non-negative multiplicities.
    """
    item, judge, label = (np.asarray(v) for v in (item, judge, label))
    n = len(item)
    if n == 0:
        raise ValueError("judgments: no judgments given")
    for name, v in (("item", item), ("judge", judge), ("label", label)):
        if v.shape != (n,) or not np.issubdtype(v.dtype, np.integer):
            raise ValueError(f"judgments: {name} must be a 1-d integer sequence of length {n}")
        bad = np.flatnonzero(v < 0)
        if bad.size:
            raise ValueError(f"judgments: row {bad[0]}, field {name!r}: negative index {v[bad[0]]}")
    bad = np.flatnonzero(label >= num_levels)
    if bad.size:
        raise ValueError(f"judgments: row {bad[0]}, field 'label': {label[bad[0]]} >= num_levels={num_levels}")
    counts = np.ones(n) if counts is None else np.asarray(counts, np.float64)
    bad = np.flatnonzero(~np.isfinite(counts) | (counts < 0))
    if bad.size:
        raise ValueError(f"judgments: row {bad[0]}, field 'count': must be finite and >= 0, got {counts[bad[0]]}")
    num_items = int(item.max()) + 1
    nj = int(judge.max()) + 1
    judges = tuple(judges) if judges is not None else tuple(f"judge_{j}" for j in range(nj))
    keys = np.stack([item, judge, label], 1)
    uniq, inv = np.unique(keys, axis=0, return_inverse=True)
    c = np.bincount(inv.reshape(-1), weights=counts, minlength=len(uniq))
    keep = c > 0
    if candidate is not None:
        candidate = np.asarray(candidate, np.int32)
        if candidate.shape != (num_items,):
            raise ValueError(f"judgments: candidate must have one entry per item ({num_items}), got {candidate.shape}")
        candidates = tuple(candidates) if candidates is not None else tuple(
            f"candidate_{k}" for k in range(int(candidate.max()) + 1))
    if gold is not None:
        gold = np.asarray(gold, np.int32)
        if gold.shape != (num_items,) or np.any(gold >= num_levels) or np.any(gold < -1):
            raise ValueError("judgments: gold must be [num_items] levels in -1..num_levels-1")
    return Judgments(
        item=uniq[keep, 0].astype(np.int32), judge=uniq[keep, 1].astype(np.int32),
        label=uniq[keep, 2].astype(np.int32), counts=c[keep].astype(np.float32),
        candidate=candidate, gold=gold, num_items=num_items, num_levels=int(num_levels),
        judges=judges, candidates=tuple(candidates or ()),
    )


def dawid_skene(data: Judgments, *, simplex: Optional[bool] = None, confusion_prior=(2.0, 1.0)):
    r"""Dawid–Skene (shared prevalence) or, with candidates, the judge-on-a-simplex model.

    Sites: ``prevalence [M]`` (or ``[K, M]`` with ``simplex``), ``confusion [J, M, M]``
    (rows: true level; columns: reported level), deterministic ``expected_score [K]`` (simplex
    model: :math:`\sum_m m\,\pi_{km}`, levels numbered ``0..M-1``) and the factor
    ``log_likelihood``.

    Args:
        data: :class:`Judgments`.
        simplex: per-candidate prevalences; default: when ``data.candidate`` is given.
        confusion_prior: ``(a_diag, a_off)`` Dirichlet concentrations of confusion rows.

    Warns:
        IdentifiabilityWarning: simplex model with three or more levels and no gold labels
            (the ranking is then determined by the judge-quality prior, not by the data).
    """
    m, j = data.num_levels, data.num_judges
    simplex = data.candidate is not None if simplex is None else simplex
    if simplex and data.candidate is None:
        raise ValueError("simplex=True needs data.candidate (the candidate of each item)")
    a_diag, a_off = (float(v) for v in confusion_prior)
    if not (a_diag > 0 and a_off > 0):
        raise ValueError(f"confusion_prior must be positive, got {confusion_prior!r}")
    if simplex and m >= 3 and data.gold is None:
        warnings.warn(
            f"judge-on-a-simplex model with {m} score levels and no gold labels: the ranking of "
            "candidates is not identifiable from the data (Vossler et al. 2025); it is set by the "
            f"judge-quality prior confusion_prior={confusion_prior!r}. Add gold labels or check "
            "the sensitivity of the ranking to that prior",
            IdentifiabilityWarning,
            stacklevel=2,
        )
    conc = jnp.full((m, m), a_off) + (a_diag - a_off) * jnp.eye(m)
    confusion = numpyro.sample("confusion", dist.Dirichlet(jnp.broadcast_to(conc, (j, m, m))).to_event(2))
    if simplex:
        k = len(data.candidates) if data.candidates else int(np.max(np.asarray(data.candidate))) + 1
        prev = jnp.asarray(numpyro.sample("prevalence", dist.Dirichlet(jnp.ones((k, m))).to_event(1)))
        numpyro.deterministic("expected_score", prev @ jnp.arange(m, dtype=prev.dtype))
        log_prior_z = jnp.log(prev)[jnp.asarray(data.candidate)]  # [I, M]
    else:
        prev = numpyro.sample("prevalence", dist.Dirichlet(jnp.ones(m)))
        log_prior_z = jnp.broadcast_to(jnp.log(prev), (data.num_items, m))
    log_conf = jnp.log(confusion)  # [J, M(true), M(reported)]
    contrib = jnp.asarray(data.counts)[:, None] * log_conf[jnp.asarray(data.judge), :, jnp.asarray(data.label)]
    per_item = jax.ops.segment_sum(contrib, jnp.asarray(data.item), num_segments=data.num_items)  # [I, M]
    logp = log_prior_z + per_item
    if data.gold is not None:
        gold = jnp.asarray(data.gold)
        known = jax.nn.one_hot(gold, m, dtype=bool)
        logp = jnp.where((gold[:, None] < 0) | known, logp, -jnp.inf)
    numpyro.factor("log_likelihood", jnp.sum(logsumexp(logp, axis=-1)))


def simulate_judgments(rng: np.random.Generator, confusion: np.ndarray, num_items: int, *,
                       prevalence=None, candidate=None, judge_fraction: float = 1.0):
    """Simulate true levels and judgments. ``confusion`` ``[J, M, M]``; ``prevalence`` ``[M]``
    or ``[K, M]`` with ``candidate`` ``[I]``. Returns ``(truth [I], item, judge, label)``."""
    confusion = np.asarray(confusion)
    j, m, _ = confusion.shape
    if candidate is not None:
        z = np.array([rng.choice(m, p=prevalence[c]) for c in candidate])
    else:
        p = np.ones(m) / m if prevalence is None else prevalence
        z = rng.choice(m, size=num_items, p=p)
    item, judge, label = [], [], []
    for i in range(num_items):
        for jj in range(j):
            if rng.random() < judge_fraction:
                item.append(i)
                judge.append(jj)
                label.append(rng.choice(m, p=confusion[jj, z[i]]))
    return z, np.array(item), np.array(judge), np.array(label)


def relabel(samples: dict) -> dict:
    """Undo label switching in posterior draws of :func:`dawid_skene`.

    The likelihood is invariant to permuting the latent levels (rows of every confusion
    matrix and the prevalence together), so a chain can settle in a permuted mode. The levels
    are identified by the assumption that judges are, on the whole, better than chance: for
    each draw, the permutation :math:`P` maximising :math:`\\sum_m \\sum_j \\theta^{(j)}_{m,P(m)}`
    (an assignment problem) maps latent level :math:`m` to :math:`P(m)`. Returns a new dict
    with ``confusion``, ``prevalence`` and ``expected_score`` (if present) relabelled.
    """
    from scipy.optimize import linear_sum_assignment

    conf = np.asarray(samples["confusion"])  # [..., J, M, M]
    lead = conf.shape[:-3]
    j, m = conf.shape[-3], conf.shape[-1]
    c = conf.reshape(-1, j, m, m)
    prev = np.asarray(samples["prevalence"])
    pr = prev.reshape((c.shape[0],) + prev.shape[len(lead):])
    new_c, new_p = np.empty_like(c), np.empty_like(pr)
    for s in range(c.shape[0]):
        rows, cols = linear_sum_assignment(-c[s].sum(0))
        new_c[s][:, cols, :] = c[s][:, rows, :]
        new_p[s][..., cols] = pr[s][..., rows]
    out = dict(samples)
    out["confusion"] = new_c.reshape(conf.shape)
    out["prevalence"] = new_p.reshape(prev.shape)
    if "expected_score" in samples:
        out["expected_score"] = out["prevalence"] @ np.arange(m, dtype=out["prevalence"].dtype)
    return out
