"""Reading per-sample results (CSV) and ``ppl scale`` results (JSON) with clear errors.

CSV: one row per sample, columns ``problem_id``, ``sample``, ``correct`` (0/1), optional
``accepted`` (0/1, the verifier's verdict), ``tokens`` (>= 0) and ``task_type`` (groups problems
into types for the verifier model). JSON (written by ``ppl scale --json``)::

    {"methods": {name: {"budgets": [...], "accuracy": [...],
                        "ci_low": [...], "ci_high": [...], "tokens": [...]}}, ...}

(``ci_low``, ``ci_high`` and ``tokens`` optional), and optionally a per-problem block
``"problems": {"pool_success": [P numbers in [0, 1]], "solved": {method: {"<budget>": [P 0/1]}}}``
(:func:`read_scale_problems`). Every error names the file, the row (CSV line number, header =
line 1) or method, and the field.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
from pathlib import Path
from typing import Optional

import numpy as np

__all__ = ["SampleTable", "read_samples_csv", "MethodCurve", "read_scale_json", "ScaleProblems",
           "read_scale_problems", "InputError"]

REQUIRED = ("problem_id", "sample", "correct")
OPTIONAL = ("accepted", "tokens", "task_type")


class InputError(ValueError):
    """Bad input data: the message names the file, the row or method, and the field."""


@dataclasses.dataclass(frozen=True)
class SampleTable:
    """Per-sample results: ``problem [N]`` (index into ``problem_ids``), ``correct [N]``,
    ``accepted [N]`` or ``None``, ``tokens [N]`` or ``None``, ``task_type [N]`` or ``None``."""

    problem_ids: list
    problem: np.ndarray
    correct: np.ndarray
    accepted: Optional[np.ndarray]
    tokens: Optional[np.ndarray]
    task_type: Optional[np.ndarray]

    @property
    def num_problems(self) -> int:
        return len(self.problem_ids)

    def counts(self):
        """``(n, c)``: samples and correct samples per problem ``[P]``."""
        P = self.num_problems
        n = np.bincount(self.problem, minlength=P)
        c = np.bincount(self.problem, weights=self.correct, minlength=P).astype(np.int64)
        return n, c


def _bit(value: str, path, line, field, pid):
    v = value.strip().lower()
    if v in ("0", "1", "0.0", "1.0", "true", "false"):
        return 1 if v in ("1", "1.0", "true") else 0
    raise InputError(f"{path}: row {line} (problem_id={pid!r}), field {field!r}: expected 0 or 1, "
                     f"got {value!r}")


def read_samples_csv(path) -> SampleTable:
    """Read and validate a per-sample CSV (see the module docstring)."""
    path = Path(path)
    try:
        fh = open(path, newline="", encoding="utf-8")
    except OSError as e:
        raise InputError(f"{path}: cannot open ({e.strerror})") from None
    with fh:
        reader = csv.DictReader(fh)
        header = [h.strip() for h in (reader.fieldnames or [])]
        if not header:
            raise InputError(f"{path}: empty file; expected a header with columns "
                             f"{', '.join(REQUIRED)}")
        reader.fieldnames = header
        missing = [c for c in REQUIRED if c not in header]
        if missing:
            raise InputError(f"{path}: row 1 (header): missing column(s) {missing}; found "
                             f"{header}. Required: {list(REQUIRED)}; optional: {list(OPTIONAL)}")
        has_acc, has_tok, has_type = (c in header for c in OPTIONAL)
        ids: dict = {}
        seen: dict = {}
        prob, cor, acc, tok, typ = [], [], [], [], []
        for line, row in enumerate(reader, start=2):
            if None in row:
                raise InputError(f"{path}: row {line}: more fields than the header's {len(header)}")
            vals = {k: (v if v is not None else "") for k, v in row.items()}
            if all(not v.strip() for v in vals.values()):
                continue  # blank line
            pid = vals["problem_id"].strip()
            if not pid:
                raise InputError(f"{path}: row {line}, field 'problem_id': empty")
            s = vals["sample"].strip()
            if not s:
                raise InputError(f"{path}: row {line} (problem_id={pid!r}), field 'sample': empty")
            if (pid, s) in seen:
                raise InputError(f"{path}: row {line} (problem_id={pid!r}), field 'sample': "
                                 f"duplicate sample {s!r} (first at row {seen[(pid, s)]})")
            seen[(pid, s)] = line
            prob.append(ids.setdefault(pid, len(ids)))
            cor.append(_bit(vals["correct"], path, line, "correct", pid))
            if has_acc:
                acc.append(_bit(vals["accepted"], path, line, "accepted", pid))
            if has_tok:
                t = vals["tokens"].strip()
                try:
                    tv = float(t)
                except ValueError:
                    tv = float("nan")
                if not math.isfinite(tv) or tv < 0:
                    raise InputError(f"{path}: row {line} (problem_id={pid!r}), field 'tokens': "
                                     f"expected a number >= 0, got {t!r}")
                tok.append(tv)
            if has_type:
                typ.append(vals["task_type"].strip())
    if not prob:
        raise InputError(f"{path}: no data rows after the header")
    return SampleTable(
        list(ids), np.asarray(prob, np.int64), np.asarray(cor, np.int64),
        np.asarray(acc, np.int64) if has_acc else None,
        np.asarray(tok, np.float64) if has_tok else None,
        np.asarray(typ) if has_type else None,
    )


@dataclasses.dataclass(frozen=True)
class MethodCurve:
    """One method's accuracy against budget from ``ppl scale``: arrays ``[M]`` sorted by
    budget; ``ci_low``, ``ci_high``, ``tokens`` may be ``None``."""

    name: str
    budgets: np.ndarray
    accuracy: np.ndarray
    ci_low: Optional[np.ndarray]
    ci_high: Optional[np.ndarray]
    tokens: Optional[np.ndarray]

    def standard_error(self, level: float = 0.95) -> np.ndarray:
        """Half-width of the interval over the normal quantile (0 without an interval)."""
        if self.ci_low is None or self.ci_high is None:
            return np.zeros_like(self.accuracy)
        from scipy.stats import norm

        return (self.ci_high - self.ci_low) / (2 * norm.ppf(0.5 + level / 2))


def _num_list(value, path, name, field, length, lo=None, hi=None):
    where = f"{path}: method {name!r}, field {field!r}"
    if not isinstance(value, list):
        raise InputError(f"{where}: expected a list of numbers, got {type(value).__name__}")
    if length is not None and len(value) != length:
        raise InputError(f"{where}: has {len(value)} entries, 'budgets' has {length}")
    out = []
    for i, v in enumerate(value):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise InputError(f"{where}[{i}]: expected a finite number, got {v!r}")
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            raise InputError(f"{where}[{i}]: {v!r} outside [{lo}, {hi}]")
        out.append(float(v))
    return np.asarray(out)


def _load_json(path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise InputError(f"{path}: cannot open ({e.strerror})") from None
    except json.JSONDecodeError as e:
        raise InputError(f"{path}: not valid JSON (line {e.lineno}, column {e.colno}: {e.msg})") from None


def read_scale_json(path) -> dict:
    """Read and validate the JSON of ``ppl scale --json``: ``{name: MethodCurve}``."""
    path = Path(path)
    return _parse_methods(_load_json(path), path)


def _parse_methods(obj, path) -> dict:
    if not isinstance(obj, dict) or not isinstance(obj.get("methods"), dict) or not obj["methods"]:
        raise InputError(f"{path}: field 'methods': expected a non-empty object "
                         "{name: {budgets, accuracy, ...}}")
    out = {}
    for name, m in obj["methods"].items():
        if not isinstance(m, dict):
            raise InputError(f"{path}: method {name!r}: expected an object")
        for field in ("budgets", "accuracy"):
            if field not in m:
                raise InputError(f"{path}: method {name!r}, field {field!r}: missing")
        budgets = _num_list(m["budgets"], path, name, "budgets", None, lo=1)
        if budgets.size == 0:
            raise InputError(f"{path}: method {name!r}, field 'budgets': empty")
        L = budgets.size
        acc = _num_list(m["accuracy"], path, name, "accuracy", L, 0, 1)
        opt = {f: (_num_list(m[f], path, name, f, L, *((0, 1) if f != "tokens" else (0, None)))
                   if m.get(f) is not None else None)
               for f in ("ci_low", "ci_high", "tokens")}
        order = np.argsort(budgets, kind="stable")
        if np.any(np.diff(budgets[order]) == 0):
            raise InputError(f"{path}: method {name!r}, field 'budgets': repeated budget")
        out[name] = MethodCurve(name, budgets[order], acc[order],
                                *(None if v is None else v[order] for v in opt.values()))
    return out


@dataclasses.dataclass(frozen=True)
class ScaleProblems:
    """The per-problem block of ``ppl scale`` JSON.

    ``pool_success [P]``: the fraction of each problem's rollout pool that is right (its
    difficulty: a pass@1 estimate); ``solved``: ``{method: (budgets [G] int, outcome [G, P]
    0/1)}``, budgets sorted.
    """

    pool_success: np.ndarray
    solved: dict

    @property
    def num_problems(self) -> int:
        return self.pool_success.size


def read_scale_problems(path, methods: Optional[dict] = None) -> Optional[ScaleProblems]:
    """Read and validate the per-problem block ``"problems"`` of ``ppl scale`` JSON.

    Returns ``None`` when the file has no such block (older files). With ``methods`` (the
    output of :func:`read_scale_json`), each method's per-problem outcomes must average to its
    reported accuracy at the same budget. Errors name the field, e.g.
    ``'problems.solved'['beam_search']['4'][3]``.
    """
    path = Path(path)
    obj = _load_json(path)
    if not isinstance(obj, dict) or obj.get("problems") is None:
        return None
    block = obj["problems"]
    where = f"{path}: field 'problems'"
    if not isinstance(block, dict):
        raise InputError(f"{where}: expected an object {{pool_success, solved}}, got "
                         f"{type(block).__name__}")
    for field in ("pool_success", "solved"):
        if field not in block:
            raise InputError(f"{path}: field 'problems.{field}': missing")
    ps = block["pool_success"]
    where = f"{path}: field 'problems.pool_success'"
    if not isinstance(ps, list) or not ps:
        raise InputError(f"{where}: expected a non-empty list of numbers in [0, 1]")
    for i, v in enumerate(ps):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= 1:
            raise InputError(f"{where}[{i}]: expected a number in [0, 1], got {v!r}")
    P = len(ps)
    n = obj.get("num_problems")
    if n is not None and n != P:
        raise InputError(f"{where}: has {P} entries, 'num_problems' is {n!r}")
    solved = block["solved"]
    if not isinstance(solved, dict):
        raise InputError(f"{path}: field 'problems.solved': expected an object "
                         f"{{method: {{budget: [0/1 per problem]}}}}, got {type(solved).__name__}")
    out = {}
    for name, per_budget in solved.items():
        where = f"{path}: field 'problems.solved'[{name!r}]"
        if not isinstance(per_budget, dict):
            raise InputError(f"{where}: expected an object {{budget: [0/1 per problem]}}")
        budgets, rows = [], []
        for b, v in per_budget.items():
            w = f"{where}[{b!r}]"
            try:
                bi = int(b)
            except (TypeError, ValueError):
                bi = 0
            if str(bi) != str(b).strip() or bi < 1:
                raise InputError(f"{w}: the key must be a positive integer budget")
            if not isinstance(v, list) or len(v) != P:
                got = f"{len(v)} entries" if isinstance(v, list) else type(v).__name__
                raise InputError(f"{w}: expected a list of {P} 0/1 entries (one per problem, as "
                                 f"'pool_success'), got {got}")
            for i, x in enumerate(v):
                if isinstance(x, str) or x not in (0, 1):
                    raise InputError(f"{w}[{i}]: expected 0 or 1, got {x!r}")
            if methods is not None and name in methods:
                m = methods[name]
                hit = np.nonzero(m.budgets == bi)[0]
                if hit.size and abs(np.mean(v) - m.accuracy[hit[0]]) > 0.5 / P + 1e-9:
                    raise InputError(f"{w}: solves {np.mean(v):.4f} of the problems but "
                                     f"'methods[{name!r}].accuracy' at budget {bi} is "
                                     f"{m.accuracy[hit[0]]:.4f}")
            budgets.append(bi)
            rows.append([int(x) for x in v])
        if not budgets:
            continue
        order = np.argsort(budgets)
        out[name] = (np.asarray(budgets, np.int64)[order],
                     np.asarray(rows, np.int64).reshape(len(budgets), P)[order])
    return ScaleProblems(np.asarray(ps, np.float64), out)
