r"""Graded judge scores from files, and candidate rankings under the judge-on-a-simplex model.

A *score log* has one row per judgment: columns ``candidate`` (the LLM whose answer is
judged), ``item`` (the prompt / answer id; items are per candidate, so the same item name
under two candidates is two items), ``judge`` and ``score`` (an integer level
``0..M-1``, or ``true``/``false`` for binary scores); optional ``gold`` (the known true level
of the item, empty where unknown) and ``count``. :func:`read_scores` validates it (errors name
the line and field) into :class:`~ppl_models.judges.dawid_skene.Judgments` with candidate, judge
and item names; :func:`rank_simplex` fits :func:`~ppl_models.judges.dawid_skene.dawid_skene` and
ranks candidates by their expected true score :math:`\sum_m m\,\pi_{km}`.
"""

from __future__ import annotations

import time
import warnings
from typing import Iterable, Mapping, Optional, Sequence

import jax
import numpy as np

from ppl_models.judges.data import BattleLogError, _is_missing, _name, _number, read_records
from ppl_models.judges.dawid_skene import IdentifiabilityWarning, Judgments, dawid_skene, judgments_from_records, relabel
from ppl_models.judges.ranking import Ranking, summarize

__all__ = ["rank_simplex", "read_scores", "scores_from_records"]

_KNOWN = {"candidate", "item", "judge", "score", "gold", "count", "weight"}


def _level(v, where, field, num_levels):
    if isinstance(v, bool):
        x = float(v)
    elif isinstance(v, str) and v.strip().lower() in ("true", "false"):
        x = 1.0 if v.strip().lower() == "true" else 0.0
    else:
        x = _number(v, where, field)
    if x != int(x) or x < 0:
        raise BattleLogError(f"{where}, field {field!r}: a score level must be an integer >= 0, got {v!r}")
    if num_levels is not None and x >= num_levels:
        raise BattleLogError(f"{where}, field {field!r}: level {int(x)} >= num_levels={num_levels}")
    return int(x)


def scores_from_records(
    records: Iterable[Mapping],
    *,
    num_levels: Optional[int] = None,
    locations: Optional[Sequence[str]] = None,
    extra_columns: str = "error",
) -> Judgments:
    """Validate score records (see the module docstring) into :class:`Judgments`.

    Args:
        num_levels: :math:`M`; default ``max(score, gold) + 1`` (at least 2).
        locations: per-record descriptions for messages (default ``"row i"``).
        extra_columns: ``"error"`` or ``"ignore"``.

    Raises:
        BattleLogError: naming the row and field.
    """
    cand_ix, judge_ix, item_ix = {}, {}, {}
    cand_names, judge_names = [], []
    item_cand, gold = [], {}
    it, jd, lb, cn = [], [], [], []
    for r, rec in enumerate(records):
        where = locations[r] if locations is not None else f"row {r + 1}"
        if not isinstance(rec, Mapping):
            raise BattleLogError(f"{where}: expected an object with named fields")
        missing = [c for c in ("candidate", "item", "judge", "score") if c not in rec]
        if missing:
            raise BattleLogError(f"{where}: missing column(s) {missing}; a score log needs candidate, item, judge, score")
        unknown = sorted(str(c) for c in set(rec) - _KNOWN)
        if unknown and extra_columns == "error":
            raise BattleLogError(f"{where}: unknown column(s) {unknown}; known columns are {sorted(_KNOWN)}")
        c = _name(rec["candidate"], where, "candidate")
        i = _name(rec["item"], where, "item")
        j = _name(rec["judge"], where, "judge")
        s = _level(rec["score"], where, "score", num_levels)
        if c not in cand_ix:
            cand_ix[c] = len(cand_names)
            cand_names.append(c)
        if j not in judge_ix:
            judge_ix[j] = len(judge_names)
            judge_names.append(j)
        key = (c, i)
        if key not in item_ix:
            item_ix[key] = len(item_cand)
            item_cand.append(cand_ix[c])
        ii = item_ix[key]
        g = rec.get("gold")
        if g is not None and not _is_missing(g):
            g = _level(g, where, "gold", num_levels)
            if gold.get(ii, g) != g:
                raise BattleLogError(f"{where}, field 'gold': item {i!r} of {c!r} has two gold levels {gold[ii]} and {g}")
            gold[ii] = g
        count = 1.0
        for field in ("count", "weight"):
            if field in rec:
                count = _number(rec[field], where, field)
                if count < 0:
                    raise BattleLogError(f"{where}, field {field!r}: negative count {count!r}")
        it.append(ii)
        jd.append(judge_ix[j])
        lb.append(s)
        cn.append(count)
    if not it:
        raise BattleLogError("no judgments: the input has no records")
    m = num_levels or max(2, max(lb) + 1, max(gold.values(), default=0) + 1)
    g = None
    if gold:
        g = np.full(len(item_cand), -1, np.int32)
        for k, v in gold.items():
            g[k] = v
    return judgments_from_records(
        np.asarray(it), np.asarray(jd), np.asarray(lb), num_levels=m, candidate=np.asarray(item_cand), gold=g,
        counts=np.asarray(cn), judges=judge_names, candidates=cand_names,
    )


def read_scores(path, *, format: Optional[str] = None, num_levels: Optional[int] = None,
                extra_columns: str = "error") -> Judgments:
    """Read a score log from CSV / TSV / JSONL (see the module docstring)."""
    records, locs = read_records(path, format, what="judgments")
    return scores_from_records(records, num_levels=num_levels, locations=locs, extra_columns=extra_columns)


def rank_simplex(
    data: Judgments,
    *,
    confusion_prior=(2.0, 1.0),
    key=None,
    method: str = "nuts",
    ci: float = 0.95,
    level: float = 0.95,
    **infer_options,
) -> Ranking:
    """Fit the judge-on-a-simplex model and rank candidates by expected true score.

    The ranking's strengths are the expected scores themselves (levels ``0..M-1``, not
    centred). ``ranking.params`` has ``confusion`` (posterior-mean ``[J, M, M]`` per judge,
    after :func:`~ppl_models.judges.dawid_skene.relabel`), ``judges``, ``prevalence``
    (posterior-mean ``[K, M]``) and ``identifiable`` (False when the model warned).
    """
    if data.candidate is None:
        raise ValueError("rank_simplex needs judgments with a candidate per item")
    import ppl

    if method == "nuts":
        infer_options.setdefault("num_chains", 4)
    key = jax.random.key(0) if key is None else key
    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", IdentifiabilityWarning)
        res = ppl.infer(dawid_skene, data, method=method, key=key, confusion_prior=tuple(map(float, confusion_prior)),
                        **infer_options)
    warned = [w for w in caught if issubclass(w.category, IdentifiabilityWarning)]
    for w in caught:  # pass everything on to the caller
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    t1 = time.perf_counter()
    smp = relabel({k: np.asarray(v) for k, v in res.samples.items()})
    score = smp["expected_score"]
    if not np.all(np.isfinite(score)):
        raise FloatingPointError("rank_simplex: non-finite expected scores")
    names = data.candidates or tuple(f"candidate_{k}" for k in range(score.shape[-1]))
    conf = smp["confusion"].reshape((-1,) + smp["confusion"].shape[2:]).mean(0)
    prev = smp["prevalence"].reshape((-1,) + smp["prevalence"].shape[2:]).mean(0)
    r = summarize(score, names, ci=ci, level=level, scale_name=f"expected true score (levels 0..{data.num_levels - 1})",
                  params={"confusion": conf.tolist(), "judges": list(data.judges), "prevalence": prev.tolist(),
                          "confusion_prior": list(map(float, confusion_prior)), "identifiable": not warned},
                  result=res)
    flat = score.reshape(-1, score.shape[-1])
    q = np.quantile(flat, [(1 - ci) / 2, (1 + ci) / 2], axis=0)
    r.draws = score.astype(np.float64)
    r.mean, r.median, r.ci_low, r.ci_high = flat.mean(0), np.median(flat, 0), q[0], q[1]
    r.display_rank = 1 + (r.ci_low[None, :] > r.ci_high[:, None]).sum(1)
    r.num_battles = np.bincount(np.asarray(data.candidate), minlength=len(names)).astype(float)
    r.diagnostics.update({"method": method, "model": {"simplex": True}, "inference_s": t1 - t0})
    if "divergences" in res.diagnostics:
        r.diagnostics["divergences"] = int(np.asarray(res.diagnostics["divergences"]).sum())
    return r
