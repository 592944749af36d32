r"""Plackett–Luce for full or partial rankings of models.

A judge (a person or an LLM) orders several candidate answers, best first. Under the
Plackett–Luce model (Luce 1959, Plackett 1975) with strengths :math:`r_k` (logit units, as in
Bradley–Terry), a ranking :math:`o_1 \succ o_2 \succ \dots \succ o_L` is built by choosing the
best item among those left, with probability proportional to :math:`e^{r}`:

.. math:: P(o_1 \succ \dots \succ o_L) = \prod_{p=1}^{L-1}
          \frac{e^{r_{o_p}}}{\sum_{q \ge p} e^{r_{o_q}} + \sum_{u \in U} e^{r_u}} .

**Partial rankings.** A ranking of a *subset* of the models is the same formula over that
subset (Luce's choice axiom: it equals the marginal probability of the induced order under a
full ranking of all models). A *top-k* ranking — the best :math:`k` in order, out of a larger
set whose other members :math:`U` were shown but not ordered — keeps the unranked members in
every denominator, as written above (:math:`U = \emptyset` for a full or subset ranking). With
two items it is the Bradley–Terry model, so strengths are on the same scale.

**Vectorised likelihood.** Rankings of different lengths are stored in one padded ``[R, L]``
array of model indices (the ranked ones first, then the unranked ones, then padding) with the
number of ranked and of present items per row. The denominators of all stages are reverse
cumulative sums of :math:`e^{r - \max r}` along the row with padding masked out, so the whole
log-likelihood is a few array operations, one term per distinct ranking times its count.

Sites: ``rating_free [K-1]`` (sum-to-zero coordinates, ``Normal(0, prior_scale)``),
``rating [K]`` (deterministic) and the factor ``log_likelihood``.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist

from ppl_models.judges.bradley_terry import _basis, elo_scale
from ppl_models.judges.data import BattleLogError, _is_missing, _name, _number, read_records
from ppl_models.judges.ranking import Ranking, summarize

__all__ = [
    "Rankings",
    "plackett_luce",
    "plackett_luce_log_prob",
    "rank_plackett_luce",
    "rankings_from_lists",
    "read_rankings",
    "simulate_rankings",
]


@jax.tree_util.register_pytree_node_class
@dataclasses.dataclass(frozen=True)
class Rankings:
    """Distinct rankings, padded, with counts.

    Attributes:
        order: ``[R, L]`` int32 model indices: the ranked models best first, then the
            unranked-but-present ones (top-k rankings), then padding (0).
        num_ranked: ``[R]`` int32 number of ordered models in each row.
        length: ``[R]`` int32 number of present models (ranked + unranked), ``>= 2``.
        counts: ``[R]`` float32 multiplicities.
        models: static names.
    """

    order: np.ndarray
    num_ranked: np.ndarray
    length: np.ndarray
    counts: np.ndarray
    models: tuple

    def tree_flatten(self):
        return (self.order, self.num_ranked, self.length, self.counts), (self.models,)

    @classmethod
    def tree_unflatten(cls, aux, children):
        return cls(*children, *aux)

    @property
    def num_models(self) -> int:
        return len(self.models)

    @property
    def num_rows(self) -> int:
        return int(np.shape(self.order)[0])

    def appearances(self) -> np.ndarray:
        """``[K]`` number of rankings (weighted by count) each model was present in."""
        order, length, counts = (np.asarray(v) for v in (self.order, self.length, self.counts))
        present = np.arange(order.shape[1])[None, :] < length[:, None]
        return np.bincount(order[present], np.broadcast_to(counts[:, None], order.shape)[present], self.num_models)


def rankings_from_lists(
    rankings: Sequence[Sequence[str]],
    *,
    unranked: Optional[Sequence[Optional[Sequence[str]]]] = None,
    counts: Optional[Sequence[float]] = None,
    models: Optional[Sequence[str]] = None,
    locations: Optional[Sequence[str]] = None,
) -> Rankings:
    """Validate rankings (each a list of model names, best first) and merge identical ones.

    Args:
        rankings: per row, the ordered models (at least one; with no ``unranked`` at least two).
        unranked: optional per row, models that were present but not ordered (a top-k
            ranking: they rank below every ordered one, in unknown order).
        counts: optional non-negative multiplicities.
        models: optional full list of names in display order (unlisted names are an error;
            listed models in no ranking are kept and come from the prior).
        locations: per-row descriptions for error messages (default ``"row i"``).

    Raises:
        BattleLogError: naming the row and field: an empty or one-item ranking, a model listed
            twice in a row, an unknown model, a negative / NaN count, no rankings at all.
    """
    index: dict = {}
    names: list = []
    if models is not None:
        for m in models:
            m = str(m).strip()
            if m in index:
                raise BattleLogError(f"models: {m!r} is listed twice")
            index[m] = len(names)
            names.append(m)
    if unranked is not None and len(unranked) != len(rankings):
        raise BattleLogError(f"unranked has {len(unranked)} rows but there are {len(rankings)} rankings")
    if counts is not None and len(counts) != len(rankings):
        raise BattleLogError(f"counts has {len(counts)} rows but there are {len(rankings)} rankings")
    rows, nr, cs = [], [], []
    for r, ranking in enumerate(rankings):
        where = locations[r] if locations is not None else f"row {r + 1}"
        if isinstance(ranking, str) or not isinstance(ranking, (list, tuple, np.ndarray)):
            raise BattleLogError(f"{where}, field 'ranking': expected a list of model names, got {ranking!r}")
        un = [] if unranked is None or unranked[r] is None else unranked[r]
        if isinstance(un, str) or not isinstance(un, (list, tuple, np.ndarray)):
            raise BattleLogError(f"{where}, field 'unranked': expected a list of model names, got {un!r}")
        row = []
        seen = set()
        for field, seq in (("ranking", ranking), ("unranked", un)):
            for p, m in enumerate(seq):
                m = _name(m, f"{where}", f"{field}[{p}]")
                if m in seen:
                    raise BattleLogError(f"{where}, field '{field}[{p}]': model {m!r} appears twice in one ranking")
                seen.add(m)
                if m not in index:
                    if models is not None:
                        raise BattleLogError(f"{where}, field '{field}[{p}]': model {m!r} is not in the given model list")
                    index[m] = len(names)
                    names.append(m)
                row.append(index[m])
        if len(ranking) < 1 or len(row) < 2:
            raise BattleLogError(
                f"{where}, field 'ranking': a ranking needs at least two models present "
                f"(ordered plus unranked), got {list(ranking)} and {list(un)}"
            )
        c = 1.0
        if counts is not None:
            c = _number(counts[r], where, "count")
            if c < 0:
                raise BattleLogError(f"{where}, field 'count': negative count {c!r}")
        # the order among unranked models is irrelevant: canonicalise it for merging
        k_r = len(ranking)
        row = row[:k_r] + sorted(row[k_r:])
        if k_r == len(row) - 1:  # ranking all but one: the last one is implied
            k_r = len(row)
        rows.append(tuple(row))
        nr.append(min(k_r, len(row)))
        cs.append(c)
    if not rows:
        raise BattleLogError("no rankings: the input is empty")
    merged: dict = {}
    for row, k_r, c in zip(rows, nr, cs):
        key = (row, k_r)
        merged[key] = merged.get(key, 0.0) + c
    merged = {k: v for k, v in merged.items() if v > 0}
    if not merged:
        raise BattleLogError("no rankings: every ranking has count 0")
    width = max(len(k[0]) for k in merged)
    order = np.zeros((len(merged), width), np.int32)
    num_ranked = np.zeros(len(merged), np.int32)
    length = np.zeros(len(merged), np.int32)
    cnt = np.zeros(len(merged), np.float32)
    for i, ((row, k_r), c) in enumerate(merged.items()):
        order[i, : len(row)] = row
        num_ranked[i], length[i], cnt[i] = k_r, len(row), c
    return Rankings(order, num_ranked, length, cnt, tuple(names))


def read_rankings(path, *, format: Optional[str] = None, models: Optional[Sequence[str]] = None) -> Rankings:
    """Read rankings from JSONL (objects with ``ranking``: a list of names best first,
    optional ``unranked``: a list, optional ``count``) or CSV / TSV (column ``ranking`` with
    names separated by ``>``, optional ``unranked`` separated by ``,``, optional ``count``).
    Errors name the file, line and field."""
    records, locs = read_records(path, format, what="rankings")
    rk, un, cn = [], [], []
    for rec, where in zip(records, locs):
        if not isinstance(rec, dict):
            raise BattleLogError(f"{where}: expected an object with named fields")
        unknown = sorted(set(rec) - {"ranking", "unranked", "count", "weight"})
        if unknown:
            raise BattleLogError(f"{where}: unknown column(s) {unknown}; known: ranking, unranked, count")
        if "ranking" not in rec or _is_missing(rec["ranking"]):
            raise BattleLogError(f"{where}, field 'ranking': missing")
        r, u = rec["ranking"], rec.get("unranked")
        if isinstance(r, str):
            r = [s.strip() for s in r.split(">")]
        if isinstance(u, str):
            u = [s.strip() for s in u.split(",") if s.strip()]
        elif u is not None and _is_missing(u):
            u = None
        rk.append(r)
        un.append(u)
        cn.append(rec.get("count", rec.get("weight", 1.0)))
    return rankings_from_lists(rk, unranked=un, counts=cn, models=models, locations=locs)


def plackett_luce_log_prob(rating, data: Rankings):
    """``[..., R]`` log-probability of each row of ``data`` under strengths ``rating [..., K]``
    (one ranking, not multiplied by its count)."""
    rating = jnp.asarray(rating)
    order = jnp.asarray(data.order)
    width = order.shape[1]
    pos = jnp.arange(width)
    present = pos < jnp.asarray(data.length)[:, None]  # [R, L]
    stage = pos < jnp.minimum(jnp.asarray(data.num_ranked), jnp.asarray(data.length) - 1)[:, None]
    x = rating[..., order]  # [..., R, L]
    mx = jnp.max(jnp.where(present, x, -jnp.inf), axis=-1, keepdims=True)
    e = jnp.where(present, jnp.exp(x - mx), 0.0)
    tail = jnp.flip(jnp.cumsum(jnp.flip(e, -1), axis=-1), -1)  # sum over q >= p
    denom = jnp.log(jnp.where(stage, tail, 1.0)) + mx
    return jnp.sum(jnp.where(stage, x - denom, 0.0), axis=-1)


def plackett_luce(data: Rankings, *, prior_scale: float = 2.0):
    """Plackett–Luce as a numpyro model: sum-to-zero strengths with a ``Normal(0,
    prior_scale)`` prior on their coordinates (see the module docstring)."""
    k = data.num_models
    z = jnp.asarray(numpyro.sample("rating_free", dist.Normal(jnp.zeros(k - 1), prior_scale).to_event(1)))
    rating = numpyro.deterministic("rating", jnp.asarray(_basis(k), dtype=z.dtype) @ z)
    lp = plackett_luce_log_prob(rating, data)
    numpyro.factor("log_likelihood", jnp.sum(jnp.asarray(data.counts) * lp))


def simulate_rankings(
    rng: np.random.Generator, ratings, num_rankings: int, *, size: int = 4, top: Optional[int] = None,
    names: Optional[Sequence[str]] = None,
):
    """Simulate rankings: each shows ``size`` distinct models drawn uniformly and orders them
    by ``rating + Gumbel noise`` (exactly Plackett–Luce). With ``top`` only the best ``top``
    are ordered and the others returned as unranked. Returns ``(rankings, unranked)`` lists of
    names."""
    ratings = np.asarray(ratings, float)
    k = len(ratings)
    names = list(names) if names is not None else [f"model_{i:03d}" for i in range(k)]
    rk, un = [], []
    for _ in range(num_rankings):
        shown = rng.choice(k, size=size, replace=False)
        o = shown[np.argsort(-(ratings[shown] + rng.gumbel(size=size)))]
        t = size if top is None else top
        rk.append([names[i] for i in o[:t]])
        un.append([names[i] for i in o[t:]])
    return rk, un


def rank_plackett_luce(
    data: Rankings,
    *,
    key=None,
    method: str = "nuts",
    prior_scale: float = 2.0,
    display: str = "elo",
    ci: float = 0.95,
    level: float = 0.95,
    **infer_options,
) -> Ranking:
    """Fit :func:`plackett_luce` and summarise the strengths as a :class:`Ranking` (Elo-like
    display scale by default, as for Bradley–Terry; ``p_win`` is the posterior-mean
    probability that ``i`` is ranked above ``j`` when the two are compared alone)."""
    if not isinstance(data, Rankings):
        raise TypeError(f"data must be Rankings, got {type(data).__name__}")
    if data.num_models < 2:
        raise ValueError("ranking needs at least 2 models")
    if display not in ("elo", "latent"):
        raise ValueError(f"display must be 'elo' or 'latent', got {display!r}")
    import ppl

    if method == "nuts":
        infer_options.setdefault("num_chains", 4)
    key = jax.random.key(0) if key is None else key
    t0 = time.perf_counter()
    res = ppl.infer(plackett_luce, data, method=method, key=key, prior_scale=float(prior_scale), **infer_options)
    jax.block_until_ready(res.samples)
    t1 = time.perf_counter()
    r = np.asarray(res.samples["rating"], np.float64)
    if not np.all(np.isfinite(r)):
        raise FloatingPointError("rank_plackett_luce: the sampler returned non-finite ratings")
    flat = r.reshape(-1, r.shape[-1])[:: max(1, r.shape[0] * r.shape[1] // 2000)]
    p_win = (1 / (1 + np.exp(-(flat[:, :, None] - flat[:, None, :])))).mean(0)
    scale = elo_scale("logit") if display == "elo" else 1.0
    ranking = summarize(
        r, data.models, ci=ci, level=level, scale=scale, base=1000.0 if display == "elo" else 0.0,
        scale_name="Elo scale, Plackett-Luce strengths, mean = 1000" if display == "elo" else "latent units",
        p_win=p_win, num_battles=data.appearances(), result=res,
    )
    ranking.diagnostics.update({"method": method, "model": {"plackett_luce": True}, "num_rows": data.num_rows,
                                "inference_s": t1 - t0, "summary_s": time.perf_counter() - t1})
    if "divergences" in res.diagnostics:
        ranking.diagnostics["divergences"] = int(np.asarray(res.diagnostics["divergences"]).sum())
    return ranking
