r"""Item response theory (IRT) for per-item benchmark correctness of many models.

Model (an LLM) :math:`k` has an ability :math:`\theta_k`; benchmark item :math:`i` has a
difficulty :math:`b_i` and, in the two-parameter model, a discrimination :math:`a_i > 0`. The
probability that model :math:`k` answers item :math:`i` correctly is

.. math:: \text{1PL (Rasch)}:\ P(y_{ki} = 1) = \sigma(\theta_k - b_i), \qquad
          \text{2PL}:\ P(y_{ki} = 1) = \sigma\big(a_i(\theta_k - b_i)\big),

with :math:`\sigma` the logistic function. Unlike accuracy (the fraction of items solved), the
ability accounts for which items a model attempted and how hard they are, so models evaluated
on different subsets of a benchmark are comparable, and the 2PL model down-weights items that
do not separate strong from weak models (noisy or mislabelled items have :math:`a_i \approx 0`).

Counts are weights: with :math:`s_{ki}` successes in :math:`n_{ki}` attempts (several samples
per item, or a fractional score in [0, 1] as a soft outcome), the log-likelihood is
:math:`\sum_{k,i} s_{ki}\log\sigma(\eta_{ki}) + (n_{ki} - s_{ki})\log\sigma(-\eta_{ki})`, one
term per (model, item) pair however many attempts there are.

Priors and identification. Abilities :math:`\theta_k \sim N(0, 1)` fix the location and (in
the 2PL model, where :math:`a_i` carries the scale) the scale; in the 1PL model the abilities
have a free scale, :math:`\theta_k = \sigma_\theta z_k`, :math:`z_k \sim N(0, 1)`,
:math:`\sigma_\theta \sim \text{HalfNormal}(2)`. Difficulties are hierarchical and
non-centred, :math:`b_i = \mu_b + \sigma_b u_i`, :math:`u_i \sim N(0,1)`,
:math:`\mu_b \sim N(0, 2)`, :math:`\sigma_b \sim \text{HalfNormal}(2)`; discriminations are
:math:`\log a_i \sim N(0, 0.5^2)` (positive, which fixes the direction of the ability axis).

Sites: ``ability_raw [K]``, ``ability_scale`` (1PL), ``ability [K]`` (deterministic),
``difficulty_mean``, ``difficulty_scale``, ``difficulty_raw [I]``, ``difficulty [I]``
(deterministic), ``log_discrimination [I]`` and ``discrimination [I]`` (2PL), and the factor
``log_likelihood``.

Data: :func:`responses_from_records` (long format: one record per model and item, fields
``model``, ``item``, ``correct`` and optional ``count``), :func:`read_responses` (CSV / TSV /
JSONL files of those records) or :func:`responses_from_matrix` (a models-by-items matrix with
NaN for items a model did not attempt). :func:`rank_irt` fits the model and returns abilities
as a :class:`~ppl_models.judges.ranking.Ranking`.
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Iterable, Mapping, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist

from ppl_models.judges.data import BattleLogError, _name, _number, read_records
from ppl_models.judges.ranking import Ranking, summarize

__all__ = [
    "IRT_KINDS",
    "Responses",
    "irt",
    "rank_irt",
    "read_responses",
    "responses_from_matrix",
    "responses_from_records",
    "simulate_responses",
]

#: Supported models: ``"1pl"`` (Rasch) and ``"2pl"``.
IRT_KINDS = ("1pl", "2pl")

_TRUE = {"1", "true", "yes", "correct", "t", "y"}
_FALSE = {"0", "false", "no", "incorrect", "wrong", "f", "n"}
_KNOWN = {"model", "item", "correct", "count", "weight"}


@jax.tree_util.register_pytree_node_class
@dataclasses.dataclass(frozen=True)
class Responses:
    """Benchmark responses aggregated to one row per (model, item) pair.

    A JAX pytree: arrays are leaves (traced by :func:`ppl.infer`), names are static.

    Attributes:
        model, item: ``[R]`` int32 indices into ``models`` / ``items``.
        successes: ``[R]`` float32 number of correct answers (fractional for soft scores).
        trials: ``[R]`` float32 number of attempts (``>= successes``, ``> 0``).
        models, items: static names.
    """

    model: np.ndarray
    item: np.ndarray
    successes: np.ndarray
    trials: np.ndarray
    models: tuple
    items: tuple

    def tree_flatten(self):
        return (self.model, self.item, self.successes, self.trials), (self.models, self.items)

    @classmethod
    def tree_unflatten(cls, aux, children):
        return cls(*children, *aux)

    @property
    def num_models(self) -> int:
        return len(self.models)

    @property
    def num_items(self) -> int:
        return len(self.items)

    @property
    def num_rows(self) -> int:
        return int(np.shape(self.model)[0])

    def attempts_per_model(self) -> np.ndarray:
        """``[K]`` attempts of each model (sum of ``trials``)."""
        return np.bincount(np.asarray(self.model), np.asarray(self.trials, np.float64), self.num_models)

    def accuracy(self) -> np.ndarray:
        """``[K]`` raw accuracy of each model (successes / attempts; NaN without attempts)."""
        s = np.bincount(np.asarray(self.model), np.asarray(self.successes, np.float64), self.num_models)
        n = self.attempts_per_model()
        with np.errstate(invalid="ignore", divide="ignore"):
            return s / n


def _correct(v, where: str) -> float:
    if isinstance(v, bool):
        return float(v)
    if isinstance(v, str):
        s = v.strip().lower()
        if s in _TRUE:
            return 1.0
        if s in _FALSE:
            return 0.0
    x = _number(v, where, "correct")
    if not 0.0 <= x <= 1.0:
        raise BattleLogError(
            f"{where}, field 'correct': must be 0/1, true/false or a score in [0, 1], got {v!r}"
        )
    return x


def _build(model_idx, item_idx, succ, trials, models, items) -> Responses:
    model_idx, item_idx = np.asarray(model_idx, np.int64), np.asarray(item_idx, np.int64)
    succ, trials = np.asarray(succ, np.float64), np.asarray(trials, np.float64)
    key = model_idx * max(len(items), 1) + item_idx
    uniq, inv = np.unique(key, return_inverse=True)
    inv = inv.reshape(-1)
    s = np.bincount(inv, succ, len(uniq))
    n = np.bincount(inv, trials, len(uniq))
    keep = n > 0
    uniq, s, n = uniq[keep], s[keep], n[keep]
    return Responses(
        model=(uniq // max(len(items), 1)).astype(np.int32),
        item=(uniq % max(len(items), 1)).astype(np.int32),
        successes=s.astype(np.float32),
        trials=n.astype(np.float32),
        models=tuple(models),
        items=tuple(items),
    )


def responses_from_records(
    records: Iterable[Mapping],
    *,
    models: Optional[Sequence[str]] = None,
    extra_columns: str = "error",
    locations: Optional[Sequence[str]] = None,
) -> Responses:
    """Validate per-item results and aggregate them per (model, item).

    Each record has ``model`` and ``item`` (names), ``correct`` (``0``/``1``,
    ``true``/``false``, ``correct``/``incorrect``, or a score in [0, 1] taken as a soft
    outcome), and an optional non-negative ``count`` (alias ``weight``, default 1: the
    record stands for that many attempts). Several records of the same pair add up
    (repeated samples).

    Args:
        records: an iterable of mappings (CSV rows, JSON objects).
        models: optional full list of model names in display order; models listed with no
            responses are kept (their ability comes from the prior) and a record naming a model
            not in the list is an error.
        extra_columns: ``"error"`` or ``"ignore"`` for unrecognised columns.
        locations: optional description of each record for messages (default ``"row i"``).

    Raises:
        BattleLogError: naming the row and field: a missing or unknown column, a missing /
            NaN / out-of-range value, a negative count, an empty input.
    """
    if extra_columns not in ("error", "ignore"):
        raise ValueError(f"extra_columns must be 'error' or 'ignore', got {extra_columns!r}")
    mindex: dict = {}
    mnames: list = []
    if models is not None:
        for m in models:
            m = str(m).strip()
            if m in mindex:
                raise BattleLogError(f"models: {m!r} is listed twice")
            mindex[m] = len(mnames)
            mnames.append(m)
    iindex: dict = {}
    inames: list = []
    mi, ii, ss, nn = [], [], [], []
    for r, rec in enumerate(records):
        where = locations[r] if locations is not None else f"row {r + 1}"
        if not isinstance(rec, Mapping):
            raise BattleLogError(f"{where}: expected an object with named fields, got {type(rec).__name__}")
        cols = set(rec.keys())
        missing = [c for c in ("model", "item", "correct") if c not in cols]
        if missing:
            raise BattleLogError(
                f"{where}: missing column(s) {missing}; per-item results need columns 'model', "
                f"'item', 'correct' (optional 'count'); found {sorted(map(str, cols))}"
            )
        unknown = sorted(str(c) for c in cols - _KNOWN)
        if unknown and extra_columns == "error":
            raise BattleLogError(
                f"{where}: unknown column(s) {unknown}; known columns are {sorted(_KNOWN)} "
                "(ignore others with extra_columns='ignore')"
            )
        m = _name(rec["model"], where, "model")
        it = _name(rec["item"], where, "item")
        c = _correct(rec["correct"], where)
        count = 1.0
        for field in ("count", "weight"):
            if field in rec:
                count = _number(rec[field], where, field)
                if count < 0:
                    raise BattleLogError(f"{where}, field {field!r}: negative count {count!r}")
        if m not in mindex:
            if models is not None:
                raise BattleLogError(f"{where}, field 'model': model {m!r} is not in the given model list")
            mindex[m] = len(mnames)
            mnames.append(m)
        if it not in iindex:
            iindex[it] = len(inames)
            inames.append(it)
        mi.append(mindex[m])
        ii.append(iindex[it])
        ss.append(c * count)
        nn.append(count)
    if not mi:
        raise BattleLogError("no responses: the input has no records")
    out = _build(mi, ii, ss, nn, mnames, inames)
    if out.num_rows == 0:
        raise BattleLogError("no responses: every record has count 0")
    return out


def read_responses(
    path, *, format: Optional[str] = None, models: Optional[Sequence[str]] = None, extra_columns: str = "error"
) -> Responses:
    """Read per-item results (columns ``model``, ``item``, ``correct``, optional ``count``)
    from a CSV / TSV / JSONL / JSON file; errors name the file, line and field."""
    records, locs = read_records(path, format, what="responses")
    return responses_from_records(records, models=models, extra_columns=extra_columns, locations=locs)


def responses_from_matrix(
    matrix, *, models: Optional[Sequence[str]] = None, items: Optional[Sequence[str]] = None
) -> Responses:
    """Responses from a ``[K, I]`` models-by-items matrix of scores in [0, 1] (``NaN`` = not
    attempted). Raises ``BattleLogError`` naming the row (model) and item of a bad entry."""
    x = np.asarray(matrix, np.float64)
    if x.ndim != 2 or x.size == 0:
        raise BattleLogError(f"matrix must be a non-empty [models, items] array, got shape {x.shape}")
    k, n = x.shape
    models = tuple(models) if models is not None else tuple(f"model_{i:03d}" for i in range(k))
    items = tuple(items) if items is not None else tuple(f"item_{i:04d}" for i in range(n))
    if len(models) != k or len(items) != n:
        raise BattleLogError(f"matrix is {x.shape} but got {len(models)} model and {len(items)} item names")
    bad = np.argwhere(np.isinf(x) | (x < 0) | (x > 1))
    if len(bad):
        r, c = bad[0]
        raise BattleLogError(f"row {r} (model {models[r]!r}), item {items[c]!r}: score must be in [0, 1] or NaN, got {x[r, c]!r}")
    seen = ~np.isnan(x)
    if not seen.any():
        raise BattleLogError("matrix: every entry is NaN (no responses)")
    mi, ii = np.nonzero(seen)
    return _build(mi, ii, x[mi, ii], np.ones(len(mi)), models, items)


def irt(data: Responses, *, kind: str = "2pl", ability_prior: str = "normal"):
    """The 1PL (Rasch) or 2PL IRT model as a numpyro model (math in the module docstring).

    Args:
        data: :class:`Responses`.
        kind: ``"1pl"`` or ``"2pl"``.
        ability_prior: ``"normal"`` (default) only; reserved for alternatives.
    """
    if kind not in IRT_KINDS:
        raise ValueError(f"kind must be one of {IRT_KINDS}, got {kind!r}")
    if ability_prior != "normal":
        raise ValueError(f"ability_prior must be 'normal', got {ability_prior!r}")
    k, n = data.num_models, data.num_items
    z = numpyro.sample("ability_raw", dist.Normal(jnp.zeros(k), 1.0).to_event(1))
    if kind == "1pl":
        s = numpyro.sample("ability_scale", dist.HalfNormal(2.0))
        ability = numpyro.deterministic("ability", s * z)
    else:
        ability = numpyro.deterministic("ability", z)
    mu = numpyro.sample("difficulty_mean", dist.Normal(0.0, 2.0))
    sb = numpyro.sample("difficulty_scale", dist.HalfNormal(2.0))
    u = numpyro.sample("difficulty_raw", dist.Normal(jnp.zeros(n), 1.0).to_event(1))
    difficulty = numpyro.deterministic("difficulty", mu + sb * u)
    m, i = jnp.asarray(data.model), jnp.asarray(data.item)
    eta = ability[m] - difficulty[i]
    if kind == "2pl":
        la = numpyro.sample("log_discrimination", dist.Normal(jnp.zeros(n), 0.5).to_event(1))
        a = numpyro.deterministic("discrimination", jnp.exp(la))
        eta = a[i] * eta
    s_, t_ = jnp.asarray(data.successes), jnp.asarray(data.trials)
    ll = s_ * jax.nn.log_sigmoid(eta) + (t_ - s_) * jax.nn.log_sigmoid(-eta)
    numpyro.factor("log_likelihood", jnp.sum(ll))


def simulate_responses(
    rng: np.random.Generator, ability, difficulty, discrimination=None, *, trials: int = 1,
    attempt_fraction: float = 1.0,
) -> np.ndarray:
    """Simulate a ``[K, I]`` matrix of scores (fraction correct of ``trials`` attempts; NaN
    where a model did not attempt an item, each attempted with probability
    ``attempt_fraction``)."""
    ability, difficulty = np.asarray(ability, float), np.asarray(difficulty, float)
    a = np.ones_like(difficulty) if discrimination is None else np.asarray(discrimination, float)
    p = 1 / (1 + np.exp(-a[None] * (ability[:, None] - difficulty[None])))
    x = rng.binomial(trials, p) / trials
    if attempt_fraction < 1:
        x = np.where(rng.random(x.shape) < attempt_fraction, x, np.nan)
    return x


def _summ(x, ci=0.95):
    x = np.asarray(x, np.float64)
    x = x.reshape(-1, x.shape[-1])
    q = np.quantile(x, [(1 - ci) / 2, (1 + ci) / 2], axis=0)
    return {"mean": x.mean(0).tolist(), "ci_low": q[0].tolist(), "ci_high": q[1].tolist()}


def rank_irt(
    data: Responses,
    *,
    kind: str = "2pl",
    key=None,
    method: str = "nuts",
    ci: float = 0.95,
    level: float = 0.95,
    item_summaries: bool = True,
    **infer_options,
) -> Ranking:
    """Fit :func:`irt` and summarise posterior abilities as a :class:`Ranking`.

    The display scale is the ability in logits, centred at the mean model. Extra outputs in
    ``ranking.params``: ``expected_accuracy`` (posterior mean and interval of each model's
    expected accuracy on the benchmark's items, :math:`\\frac1I\\sum_i P(y_{ki}=1)`), the
    ``raw_accuracy``, ``ability_scale`` (1PL) and, with ``item_summaries``, ``difficulty``
    and ``discrimination`` (2PL) per item with ``items`` (the names).

    Args:
        data: :class:`Responses`.
        kind: ``"1pl"`` or ``"2pl"``.
        key: PRNG key (default ``jax.random.key(0)``); method: ``"nuts"`` or
            ``"tempered_smc"``; ci, level: see :func:`~ppl_models.judges.ranking.summarize`.
        **infer_options: ``num_chains`` (default 4), ``num_warmup``, ``num_samples``, ...
    """
    if not isinstance(data, Responses):
        raise TypeError(f"data must be Responses, got {type(data).__name__}")
    if kind not in IRT_KINDS:
        raise ValueError(f"kind must be one of {IRT_KINDS}, got {kind!r}")
    if data.num_models < 2:
        raise ValueError(f"ranking needs at least 2 models, got {list(data.models)}")
    import ppl

    if method == "nuts":
        infer_options.setdefault("num_chains", 4)
    key = jax.random.key(0) if key is None else key
    t0 = time.perf_counter()
    res = ppl.infer(irt, data, method=method, key=key, kind=kind, **infer_options)
    jax.block_until_ready(res.samples)
    t1 = time.perf_counter()
    smp = {k: np.asarray(v) for k, v in res.samples.items()}
    ab = smp["ability"]
    if not np.all(np.isfinite(ab)):
        raise FloatingPointError("rank_irt: the sampler returned non-finite abilities")
    flat = lambda v: v.reshape((-1,) + v.shape[2:])  # noqa: E731
    a = flat(smp["discrimination"]) if kind == "2pl" else np.ones_like(flat(smp["difficulty"]))
    b = flat(smp["difficulty"])
    th = flat(ab)
    step = max(1, len(th) // 1000)
    p = 1 / (1 + np.exp(-a[::step, None, :] * (th[::step, :, None] - b[::step, None, :])))
    exp_acc = p.mean(-1)
    params = {"kind": kind, "expected_accuracy": _summ(exp_acc, ci),
              "raw_accuracy": [None if not math.isfinite(v) else float(v) for v in data.accuracy()]}
    if kind == "1pl":
        s = smp["ability_scale"].reshape(-1)
        q = np.quantile(s, [(1 - ci) / 2, (1 + ci) / 2])
        params["ability_scale"] = {"mean": float(s.mean()), "ci_low": float(q[0]), "ci_high": float(q[1])}
    if item_summaries:
        params["items"] = list(data.items)
        params["difficulty"] = _summ(b, ci)
        if kind == "2pl":
            params["discrimination"] = _summ(a, ci)
    ranking = summarize(ab, data.models, ci=ci, level=level, scale_name=f"IRT {kind} ability (logits, mean model = 0)",
                        num_battles=data.attempts_per_model(), params=params, result=res)
    ranking.diagnostics.update({"method": method, "model": {"irt": kind}, "num_rows": data.num_rows,
                                "inference_s": t1 - t0, "summary_s": time.perf_counter() - t1})
    if "divergences" in res.diagnostics:
        ranking.diagnostics["divergences"] = int(np.asarray(res.diagnostics["divergences"]).sum())
    return ranking
