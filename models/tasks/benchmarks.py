r"""Math benchmarks from local JSON-lines files: MATH / MATH500, GSM8K, AIME, or your own fields.

Nothing is downloaded: point :func:`load_jsonl` at a file you have. One JSON object per line;
the formats differ only in field names and in where the final answer is:

=========  ==========================  ============================================================
format     problem field               answer
=========  ==========================  ============================================================
``math``   ``problem``                 ``answer``, else the last ``\boxed{}`` of ``solution``
``gsm8k``  ``question``                after the ``####`` of ``answer`` (the rest is the solution)
``aime``   ``problem`` (or ``Problem``)  ``answer`` (or ``Answer``), a number
``auto``   the first format whose fields the first line has
=========  ==========================  ============================================================

Other field names map with ``fields={"problem": "prompt", "answer": "target"}`` (and optionally
``"solution"``, ``"id"``). Every line is checked before anything runs; an error names the file,
the line and the field. :func:`sample_problems` returns a handful of problems written for this
package (``tasks/data/math_sample.jsonl``, MATH format), for tests and the docs.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import NamedTuple, Optional

from .grading import extract_answer

__all__ = ["MathProblem", "FORMATS", "load_jsonl", "sample_problems", "SAMPLE_PATH"]

#: The known layouts: ``{format: (problem fields, answer fields, solution fields)}``, first match wins.
FORMATS = {
    "math": (("problem",), ("answer",), ("solution",)),
    "gsm8k": (("question",), (), ("answer",)),
    "aime": (("problem", "Problem"), ("answer", "Answer"), ("solution", "Solution")),
}
SAMPLE_PATH = Path(__file__).resolve().parent / "data" / "math_sample.jsonl"


class MathProblem(NamedTuple):
    """One problem: its text, the reference final answer (a string, LaTeX or plain), an id, and
    the reference solution if the file has one."""

    problem: str
    answer: str
    id: str
    solution: Optional[str] = None


def _first(obj: dict, names) -> Optional[str]:
    for n in names:
        if n in obj and obj[n] is not None:
            return n
    return None


def _detect(obj: dict, where: str) -> str:
    if "question" in obj and "answer" in obj:
        return "gsm8k"
    if _first(obj, ("problem", "Problem")) and (_first(obj, ("answer", "Answer")) or "solution" in obj):
        return "math"
    raise ValueError(f"{where}: cannot tell the format from the fields {sorted(obj)}; pass format='math', 'gsm8k' "
                     "or 'aime', or fields={'problem': ..., 'answer': ...}")


def _one(obj, fmt: str, fields: Optional[dict], where: str, index: int) -> MathProblem:
    if not isinstance(obj, dict):
        raise ValueError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    p_names, a_names, s_names = FORMATS[fmt]
    if fields:
        p_names = (fields["problem"],) if "problem" in fields else p_names
        a_names = (fields["answer"],) if "answer" in fields else a_names
        s_names = (fields["solution"],) if "solution" in fields else s_names
    p_key = _first(obj, p_names)
    if p_key is None:
        raise ValueError(f"{where}: no problem field (looked for {list(p_names)}; map yours with "
                         "fields={'problem': ...})")
    s_key = _first(obj, s_names)
    solution = None if s_key is None else str(obj[s_key])
    a_key = _first(obj, a_names)
    if a_key is not None:
        answer = str(obj[a_key]).strip()
    elif solution is not None:
        answer = extract_answer(solution)
        if fmt == "gsm8k" and solution is not None and "####" in solution:
            solution = solution[:solution.rindex("####")].rstrip()
    else:
        answer = None
    if not answer:
        raise ValueError(f"{where}: no answer (looked for the field {list(a_names)}, then a \\boxed{{}} or #### in "
                         f"{list(s_names)}; map yours with fields={{'answer': ...}})")
    id_key = (fields or {}).get("id", "id")
    pid = str(obj.get(id_key, obj.get("unique_id", index)))
    return MathProblem(str(obj[p_key]), answer, pid, solution)


def load_jsonl(path, format: str = "auto", fields: Optional[dict] = None, limit: Optional[int] = None) -> list:
    """The problems of a JSON-lines file (see the module docstring); every line is checked first.

    ``format``: ``"auto"``, ``"math"``, ``"gsm8k"`` or ``"aime"``; ``fields``: field names of
    your own for ``problem``, ``answer``, ``solution`` and ``id``; ``limit``: the first problems
    only. Blank lines are skipped.
    """
    if format not in ("auto", *FORMATS):
        raise ValueError(f"format: expected 'auto' or one of {list(FORMATS)}, got {format!r}")
    if fields is not None:
        bad = sorted(set(fields) - {"problem", "answer", "solution", "id"})
        if not isinstance(fields, dict) or bad:
            raise ValueError(f"fields: expected a dict with keys among problem, answer, solution, id; got {bad or fields!r}")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValueError(f"limit: expected a positive integer or None, got {limit!r}")
    path = Path(os.fspath(path))
    if not path.is_file():
        raise FileNotFoundError(f"load_jsonl: no file {path}")
    out, fmt = [], None if format == "auto" else format
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            where = f"{path} line {n}"
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{where}: not JSON ({e.msg})") from None
            if fmt is None:
                fmt = "math" if fields else _detect(obj, where)
            out.append(_one(obj, fmt, fields, where, len(out)))
            if limit is not None and len(out) >= limit:
                break
    if not out:
        raise ValueError(f"load_jsonl: {path} has no problems")
    return out


def sample_problems() -> list:
    """The handful of MATH-format problems shipped with the package (written for it)."""
    return load_jsonl(SAMPLE_PATH, format="math")
