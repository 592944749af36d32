r"""Battle logs: reading, validation and aggregation to sufficient statistics.

A *battle* is one comparison of two models, ``model_a`` shown first and ``model_b`` second,
with an outcome: ``model_a`` wins, ``model_b`` wins, or a tie. The Chatbot Arena log
convention is read as is: columns ``model_a``, ``model_b``, ``winner`` with values
``model_a``, ``model_b``, ``tie``, ``tie (bothbad)`` (both tie values are ties).

Optional columns:

``judge``
    who judged the battle (an annotator or an LLM judge); enables per-judge effects.
``count`` (alias ``weight``)
    a non-negative multiplicity (default 1): a row can stand for many identical battles.
``p_model_a``, ``p_model_b``, ``p_tie``
    soft (probabilistic) outcomes instead of ``winner``: the probability of each outcome
    (for example a judge's normalised preference). They must be in [0, 1] and sum to 1
    (``p_tie`` may be omitted, meaning 0). A row with a ``winner`` is a hard outcome.
covariate columns
    numeric columns named with :func:`read_battles`'s ``covariates=`` argument, for example
    ``length_diff`` for the "style control" idea; their values enter the outcome model
    linearly (a model-a-minus-model-b feature).

Every likelihood in :mod:`ppl_models.judges.bradley_terry` is a sum over battles of
:math:`\sum_o n_o \log p_o`, which depends on the data only through the counts of each outcome
per distinct (first model, second model, judge, covariates) combination. :func:`aggregate`
computes those counts once, so the likelihood costs one term per pair and outcome instead of
one per battle. Soft outcomes are fractional counts in the same table. Per-battle continuous
covariates are summarised by a few moment-matching nodes per pair and outcome
(:mod:`ppl_models.judges.quadrature`).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import os
from typing import Iterable, Mapping, Optional, Sequence

import jax
import numpy as np

__all__ = [
    "BattleLogError",
    "Battles",
    "Comparisons",
    "WINNER_VALUES",
    "aggregate",
    "battles_from_records",
    "read_battles",
]

#: Accepted ``winner`` values and the outcome index they map to (0: first wins, 1: second
#: wins, 2: tie).
WINNER_VALUES = {"model_a": 0, "model_b": 1, "tie": 2, "tie (bothbad)": 2}

_REQUIRED = ("model_a", "model_b")
_SOFT = ("p_model_a", "p_model_b", "p_tie")
_KNOWN = set(_REQUIRED) | {"winner", "judge", "count", "weight"} | set(_SOFT)


class BattleLogError(ValueError):
    """Bad battle-log input; the message names the line (or row) and the field."""


@dataclasses.dataclass(frozen=True)
class Battles:
    """A validated, per-battle log (one row per battle; nothing aggregated yet).

    Attributes:
        models: model names; index ``i`` in ``first`` / ``second`` refers to ``models[i]``.
        first, second: ``[N]`` int indices of the models shown first (``model_a``) and second.
        outcome: ``[N, 3]`` float outcome weights (first wins, second wins, tie) of each
            battle, already multiplied by its ``count``: one-hot times the count for a hard
            outcome, probabilities times the count for a soft one.
        judges: judge names (``()`` when the log has no ``judge`` column).
        judge: ``[N]`` int judge indices (zeros without judges).
        covariates: ``[N, P]`` float covariates or ``None``; ``covariate_names`` their names.
    """

    models: tuple
    first: np.ndarray
    second: np.ndarray
    outcome: np.ndarray
    judges: tuple = ()
    judge: Optional[np.ndarray] = None
    covariates: Optional[np.ndarray] = None
    covariate_names: tuple = ()

    @property
    def num_battles(self) -> float:
        return float(self.outcome.sum())


@jax.tree_util.register_pytree_node_class
@dataclasses.dataclass(frozen=True)
class Comparisons:
    """Sufficient statistics of a battle log: one row per distinct (first, second, judge,
    covariates), with the count of each outcome.

    It is a JAX pytree: the arrays are its leaves (traced by :func:`ppl.infer`, so new data of
    the same shape reuses the compiled sampler) and the names are static metadata.

    Attributes:
        models: model names (static); ``num_models = len(models)``.
        first, second: ``[R]`` int32 model indices.
        counts: ``[R, 3]`` float32 counts of (first wins, second wins, tie); fractional for
            soft outcomes.
        judge: ``[R]`` int32 judge indices (zeros without judges).
        covariates: ``[R, P]`` float32 or ``None``.
        judges, covariate_names: static names.
    """

    models: tuple
    first: np.ndarray
    second: np.ndarray
    counts: np.ndarray
    judge: np.ndarray
    covariates: Optional[np.ndarray] = None
    judges: tuple = ()
    covariate_names: tuple = ()

    # -- pytree protocol
    def tree_flatten(self):
        children = (self.first, self.second, self.counts, self.judge, self.covariates)
        return children, (self.models, self.judges, self.covariate_names)

    @classmethod
    def tree_unflatten(cls, aux, children):
        first, second, counts, judge, cov = children
        models, judges, cov_names = aux
        return cls(models, first, second, counts, judge, cov, judges, cov_names)

    @property
    def num_models(self) -> int:
        return len(self.models)

    @property
    def num_judges(self) -> int:
        return max(len(self.judges), 1)

    @property
    def num_rows(self) -> int:
        return int(np.shape(self.first)[0])

    def battles_per_model(self) -> np.ndarray:
        """``[K]`` total count of battles (any outcome) each model took part in."""
        n = np.asarray(self.counts).sum(1)
        out = np.zeros(self.num_models)
        np.add.at(out, np.asarray(self.first), n)
        np.add.at(out, np.asarray(self.second), n)
        return out

    def unused_models(self) -> tuple:
        """Names of models that appear in no battle with a positive count."""
        used = self.battles_per_model() > 0
        return tuple(m for m, u in zip(self.models, used) if not u)

    def components(self) -> list:
        """The parts of the comparison graph (models with battles; an edge per compared pair),
        largest first, each a list of model names. More than one part: the ratings of different
        parts are related only through the prior, so their order says nothing."""
        parent = list(range(self.num_models))

        def find(i):
            while parent[i] != i:
                parent[i] = parent[parent[i]]
                i = parent[i]
            return i

        live = np.asarray(self.counts).sum(1) > 0
        for a, b in zip(np.asarray(self.first)[live], np.asarray(self.second)[live]):
            parent[find(int(a))] = find(int(b))
        used = self.battles_per_model() > 0
        parts: dict = {}
        for i in range(self.num_models):
            if used[i]:
                parts.setdefault(find(i), []).append(self.models[i])
        return sorted(parts.values(), key=len, reverse=True)


# ------------------------------------------------------------------------------------------
# Reading
# ------------------------------------------------------------------------------------------


def _is_missing(v) -> bool:
    if v is None:
        return True
    if isinstance(v, float) and math.isnan(v):
        return True
    if isinstance(v, str) and not v.strip():  # only an empty cell: a model may be named "NA" or "None"
        return True
    return False


def _number(v, where: str, field: str) -> float:
    if isinstance(v, bool):
        raise BattleLogError(f"{where}, field {field!r}: expected a number, got {v!r}")
    if _is_missing(v):
        raise BattleLogError(f"{where}, field {field!r}: missing value or NaN ({v!r})")
    try:
        x = float(v)
    except (TypeError, ValueError):
        raise BattleLogError(f"{where}, field {field!r}: expected a number, got {v!r}") from None
    if not math.isfinite(x):
        raise BattleLogError(f"{where}, field {field!r}: value must be finite (not NaN or infinite), got {v!r}")
    return x


def _name(v, where: str, field: str) -> str:
    if _is_missing(v):
        raise BattleLogError(f"{where}, field {field!r}: missing value or NaN ({v!r})")
    if not isinstance(v, (str, int)) or isinstance(v, bool):
        raise BattleLogError(f"{where}, field {field!r}: expected a name, got {v!r}")
    return str(v).strip()


def battles_from_records(
    records: Iterable[Mapping],
    *,
    models: Optional[Sequence[str]] = None,
    covariates: Sequence[str] = (),
    extra_columns: str = "error",
    locations: Optional[Sequence[str]] = None,
) -> Battles:
    """Validate battle records (dicts with the columns described in the module docstring).

    Args:
        records: an iterable of mappings, one per battle (a CSV row, a JSON object).
        models: optional full list of model names, in display order. Models listed here that
            appear in no battle are kept (and reported by :meth:`Comparisons.unused_models`);
            a battle naming a model not in the list is an error. Default: every model seen, in
            order of first appearance.
        covariates: names of numeric covariate columns.
        extra_columns: ``"error"`` (default) rejects columns that are not recognised;
            ``"ignore"`` skips them (real Arena logs carry many metadata columns).
        locations: optional description of each record for error messages (e.g.
            ``"line 7"``); default ``"row i"`` (1-based).

    Raises:
        BattleLogError: naming the row and field: missing or unknown columns, an empty log,
            unknown ``winner`` values, a model compared with itself, negative, NaN or
            non-numeric counts / probabilities / covariates, probabilities not summing to 1.
    """
    if extra_columns not in ("error", "ignore"):
        raise ValueError(f"extra_columns must be 'error' or 'ignore', got {extra_columns!r}")
    covariates = tuple(covariates)
    known = _KNOWN | set(covariates)
    index: dict[str, int] = {}
    names: list[str] = []
    if models is not None:
        for m in models:
            m = str(m).strip()
            if m in index:
                raise BattleLogError(f"models: {m!r} is listed twice")
            index[m] = len(names)
            names.append(m)
    judge_index: dict[str, int] = {}
    first, second, outcome, judge, cov = [], [], [], [], []
    has_judge = None
    columns_checked = False
    for r, rec in enumerate(records):
        where = locations[r] if locations is not None else f"row {r + 1}"
        if not isinstance(rec, Mapping):
            raise BattleLogError(f"{where}: expected an object with named fields, got {type(rec).__name__}")
        if not columns_checked or extra_columns == "error":
            cols = set(rec.keys())
            missing = [c for c in _REQUIRED if c not in cols]
            if missing:
                raise BattleLogError(
                    f"{where}: missing column(s) {missing}; a battle log needs columns "
                    f"'model_a', 'model_b' and 'winner' (or soft outcomes {list(_SOFT[:2])}); "
                    f"found {sorted(map(str, cols))}"
                )
            unknown = sorted(str(c) for c in cols - known)
            if unknown and extra_columns == "error":
                raise BattleLogError(
                    f"{where}: unknown column(s) {unknown}; known columns are "
                    f"{sorted(known)}. Name numeric covariates with covariates=[...] "
                    "(--covariate), or ignore extra columns with extra_columns='ignore' "
                    "(--ignore-extra-columns)"
                )
            columns_checked = True
        a = _name(rec.get("model_a"), where, "model_a")
        b = _name(rec.get("model_b"), where, "model_b")
        if a == b:
            raise BattleLogError(
                f"{where}, fields 'model_a'/'model_b': model {a!r} is compared with itself"
            )
        ids = []
        for field, m in (("model_a", a), ("model_b", b)):
            if m not in index:
                if models is not None:
                    raise BattleLogError(
                        f"{where}, field {field!r}: model {m!r} is not in the given model list"
                    )
                index[m] = len(names)
                names.append(m)
            ids.append(index[m])
        count = 1.0
        fields = [f for f in ("count", "weight") if f in rec]
        if len(fields) == 2:  # both columns: one value per row
            given = [f for f in fields if not _is_missing(rec[f])]
            if len(given) == 2:
                raise BattleLogError(f"{where}: fields 'count' and 'weight' are both given; they mean the same, give one")
            fields = given or fields[:1]
        for field in fields:
            count = _number(rec[field], where, field)
            if count < 0:
                raise BattleLogError(f"{where}, field {field!r}: negative count {count!r}")
        soft = [f for f in _SOFT if f in rec and not _is_missing(rec[f])]
        w = rec.get("winner")
        if soft and not _is_missing(w):
            raise BattleLogError(
                f"{where}: both 'winner' and soft outcome fields {soft} are given; use one"
            )
        if soft:
            p = []
            for f in _SOFT:
                if f == "p_tie" and f not in soft:
                    p.append(0.0)
                    continue
                if f not in soft:
                    raise BattleLogError(f"{where}, field {f!r}: missing (soft outcomes need p_model_a and p_model_b)")
                x = _number(rec[f], where, f)
                if not 0.0 <= x <= 1.0:
                    raise BattleLogError(f"{where}, field {f!r}: a probability must be in [0, 1], got {x!r}")
                p.append(x)
            if abs(sum(p) - 1.0) > 1e-6:
                raise BattleLogError(
                    f"{where}, fields {list(_SOFT)}: probabilities sum to {sum(p)!r}, not 1"
                )
            o = np.asarray(p) * count
        else:
            if _is_missing(w):
                raise BattleLogError(f"{where}, field 'winner': missing value or NaN ({w!r})")
            key = str(w).strip()
            if key not in WINNER_VALUES:
                raise BattleLogError(
                    f"{where}, field 'winner': unknown value {w!r}; expected one of "
                    f"{sorted(WINNER_VALUES)}"
                )
            o = np.zeros(3)
            o[WINNER_VALUES[key]] = count
        jv = rec.get("judge")
        if has_judge is None:
            has_judge = "judge" in rec
        if has_judge:
            jname = _name(jv, where, "judge")
            if jname not in judge_index:
                judge_index[jname] = len(judge_index)
            judge.append(judge_index[jname])
        cov.append([_number(rec.get(c), where, c) for c in covariates])
        first.append(ids[0])
        second.append(ids[1])
        outcome.append(o)
    if not first:
        raise BattleLogError("the battle log is empty: no battles to rank")
    if not np.any(np.asarray(outcome) > 0):
        raise BattleLogError("every battle has count 0: no battles to rank")
    n = len(first)
    return Battles(
        models=tuple(names),
        first=np.asarray(first, np.int32),
        second=np.asarray(second, np.int32),
        outcome=np.asarray(outcome, np.float64).reshape(n, 3),
        judges=tuple(judge_index),
        judge=np.asarray(judge, np.int32) if has_judge else np.zeros(n, np.int32),
        covariates=np.asarray(cov, np.float64).reshape(n, len(covariates)) if covariates else None,
        covariate_names=covariates,
    )


def _read_text(path) -> str:
    """A file's text: UTF-8, with or without a byte-order mark (spreadsheet exports); a byte that
    is not UTF-8 is an error naming its line."""
    with open(path, "rb") as f:
        raw = f.read()
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[:e.start].count(b"\n") + 1
        raise BattleLogError(f"{path}: line {line}: byte 0x{raw[e.start]:02x} is not UTF-8; save the file as UTF-8"
                             ) from None


def _read_jsonl(text: str, path: str):
    records, locs = [], []
    stripped = text.lstrip()
    if stripped.startswith("["):  # a JSON array of objects
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise BattleLogError(f"{path}: invalid JSON: {e}") from None
        return data, [f"{path}: record {i + 1}" for i in range(len(data))]
    for ln, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as e:
            try:
                whole = json.loads(text)
            except json.JSONDecodeError:
                whole = None
            if isinstance(whole, dict):
                raise BattleLogError(f"{path}: the file is one JSON object (keys {sorted(whole)[:5]}), not JSON lines; "
                                     "write one battle object per line, or an array of them") from None
            raise BattleLogError(f"{path}: line {ln}: invalid JSON ({e.msg})") from None
        locs.append(f"{path}: line {ln}")
    return records, locs


def _read_csv(text: str, path: str, delimiter: str = ","):
    reader = csv.DictReader(io.StringIO(text), delimiter=delimiter)
    if reader.fieldnames is None:
        return [], []
    header = [h.strip() for h in reader.fieldnames]
    if len(set(header)) != len(header):
        raise BattleLogError(f"{path}: line 1 (header): duplicate column names {header}")
    records, locs = [], []
    for rec in reader:
        ln = reader.line_num
        if None in rec:
            raise BattleLogError(f"{path}: line {ln}: more fields than header columns")
        rec = {k.strip(): v for k, v in rec.items()}
        if all(_is_missing(v) for v in rec.values()):
            continue
        if any(v is None for v in rec.values()):
            missing = [k for k, v in rec.items() if v is None]
            raise BattleLogError(f"{path}: line {ln}, field {missing[0]!r}: missing (row too short)")
        records.append(rec)
        locs.append(f"{path}: line {ln}")
    return records, locs


def read_battles(
    path: str | os.PathLike,
    *,
    format: Optional[str] = None,
    models: Optional[Sequence[str]] = None,
    covariates: Sequence[str] = (),
    extra_columns: str = "error",
) -> Battles:
    """Read and validate a battle log from a CSV or JSONL file (or a JSON array of objects).

    Args:
        path: the file. ``.csv`` / ``.tsv`` are read as CSV (header row), ``.jsonl`` /
            ``.ndjson`` / ``.json`` as JSON lines or a JSON array; override with ``format``.
        format: ``"csv"``, ``"tsv"`` or ``"jsonl"``.
        models, covariates, extra_columns: see :func:`battles_from_records`.

    Raises:
        BattleLogError: an unreadable or empty file, or a bad row (the message names the file,
            line and field), before any computation.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise BattleLogError(f"{path}: no such file")
    if format is None:
        ext = os.path.splitext(path)[1].lower()
        format = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl"}.get(ext)
        if format is None:
            raise BattleLogError(
                f"{path}: cannot tell the format from the extension {ext!r}; use .csv, .tsv, "
                ".jsonl or .json, or pass format='csv'|'jsonl' (--format)"
            )
    text = _read_text(path)
    if not text.strip():
        raise BattleLogError(f"{path}: the file is empty: no battles to rank")
    if format == "csv":
        records, locs = _read_csv(text, path)
    elif format == "tsv":
        records, locs = _read_csv(text, path, delimiter="\t")
    elif format == "jsonl":
        records, locs = _read_jsonl(text, path)
    else:
        raise BattleLogError(f"format must be 'csv', 'tsv' or 'jsonl', got {format!r}")
    if not records:
        raise BattleLogError(f"{path}: the file has no battle rows (only a header or blank lines)")
    return battles_from_records(
        records, models=models, covariates=covariates, extra_columns=extra_columns, locations=locs
    )


def aggregate(battles: Battles, *, merge: bool = True, by_judge: bool = True,
              covariate_nodes: Optional[int] = 3) -> Comparisons:
    r"""Sufficient statistics: sum the outcome counts of identical (first, second, judge,
    covariates) rows, dropping rows whose counts are all zero.

    Without covariates (or with covariates taking few values) this is exact: the aggregated and
    per-battle likelihoods are equal. Per-battle continuous covariates make almost every row
    distinct; then each pair (and judge) whose exact rows outnumber :math:`3 P m` is replaced by
    an :math:`m`-node rule per outcome that keeps the covariates' moments
    (:mod:`ppl_models.judges.quadrature`: for one covariate, every moment up to degree
    :math:`2m - 1`), so the table stays at most pairs × outcomes × :math:`P m` rows.

    Args:
        battles: a validated log (:func:`read_battles`, :func:`battles_from_records`).
        merge: ``False`` keeps one row per battle (the per-battle form, for checking).
        by_judge: ``False`` ignores the ``judge`` column (a model without judge effects does not
            read it; real logs carry one, e.g. an anonymised user id, and grouping by it would
            keep about one row per battle).
        covariate_nodes: :math:`m`, the nodes per cell of the covariate rule; ``None`` keeps
            every distinct covariate value (exact, about one row per battle for continuous
            covariates).
    """
    if covariate_nodes is not None and int(covariate_nodes) < 1:
        raise ValueError(f"covariate_nodes must be >= 1 or None, got {covariate_nodes}")
    first, second, judge = battles.first, battles.second, battles.judge
    if not by_judge:
        battles = dataclasses.replace(battles, judges=(), judge=None)
        judge = None
    if judge is None:
        judge = np.zeros_like(first)
    cov = battles.covariates
    out = np.asarray(battles.outcome, np.float64)
    if merge:
        keys = np.stack([first, second, judge], axis=1).astype(np.float64)
        if cov is not None:
            keys = np.concatenate([keys, cov], axis=1)
        uniq, inv = np.unique(keys, axis=0, return_inverse=True)
        inv = inv.reshape(-1)
        counts = np.zeros((len(uniq), 3))
        for o in range(3):
            counts[:, o] = np.bincount(inv, weights=out[:, o], minlength=len(uniq))
        first = uniq[:, 0].astype(np.int32)
        second = uniq[:, 1].astype(np.int32)
        judge = uniq[:, 2].astype(np.int32)
        cov = uniq[:, 3:] if cov is not None else None
        out = counts
        if cov is not None and covariate_nodes is not None:
            first, second, judge, cov, out = _compress_covariates(first, second, judge, cov, out, int(covariate_nodes))
    keep = out.sum(1) > 0
    return Comparisons(
        models=tuple(battles.models),
        first=np.asarray(first[keep], np.int32),
        second=np.asarray(second[keep], np.int32),
        counts=np.asarray(out[keep], np.float32),
        judge=np.asarray(judge[keep], np.int32),
        covariates=None if cov is None else np.asarray(cov[keep], np.float32),
        judges=tuple(battles.judges),
        covariate_names=tuple(battles.covariate_names),
    )


def _compress_covariates(first, second, judge, cov, counts, m):
    """The exact rows of pairs with at most 3·P·m of them, the node rule's rows for the others."""
    from ppl_models.judges.quadrature import covariate_nodes

    groups, g = np.unique(np.stack([first, second, judge], 1), axis=0, return_inverse=True)
    g = g.reshape(-1)
    big = (np.bincount(g) > 3 * cov.shape[1] * m)[g]
    rows, num_outcomes = np.nonzero((counts > 0) & big[:, None]), counts.shape[1]
    cell = g[rows[0]] * num_outcomes + rows[1]
    c, x, w = covariate_nodes(cov[rows[0]], counts[rows], cell, len(groups) * num_outcomes, m)
    grp, o = c // num_outcomes, c % num_outcomes
    node_counts = np.zeros((len(c), num_outcomes))
    node_counts[np.arange(len(c)), o] = w
    small = ~big
    return (np.r_[first[small], groups[grp, 0]], np.r_[second[small], groups[grp, 1]],
            np.r_[judge[small], groups[grp, 2]], np.r_[cov[small], x], np.r_[counts[small], node_counts])


def read_records(path, format: Optional[str] = None, what: str = "rows"):
    """Read a CSV / TSV / JSONL file into ``(records, locations)``; errors name the file and line.

    ``format`` is taken from the extension when ``None``; ``what`` names the rows in messages.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise BattleLogError(f"{path}: no such file")
    if format is None:
        ext = os.path.splitext(path)[1].lower()
        format = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl"}.get(ext)
        if format is None:
            raise BattleLogError(f"{path}: cannot tell the format from the extension {ext!r}; pass format=")
    text = _read_text(path)
    if not text.strip():
        raise BattleLogError(f"{path}: the file is empty: no {what}")
    if format in ("csv", "tsv"):
        records, locs = _read_csv(text, path, delimiter="," if format == "csv" else "\t")
    elif format == "jsonl":
        records, locs = _read_jsonl(text, path)
    else:
        raise BattleLogError(f"format must be 'csv', 'tsv' or 'jsonl', got {format!r}")
    if not records:
        raise BattleLogError(f"{path}: the file has no rows")
    return records, locs
