r"""Final answers of math solutions: extraction and equivalence grading.

* :func:`extract_answer` reads the final answer of a solution: the content of its *last*
  ``\boxed{...}`` (or ``\fbox{...}``; braces balanced, so ``\boxed{\frac{1}{2}}`` gives
  ``\frac{1}{2}``), else what follows its last ``####`` (the GSM8K convention; thousands
  separators dropped), else ``None``.
* :func:`grade` says whether an answer equals a reference *mathematically*: both are parsed by
  the `math-verify <https://github.com/huggingface/Math-Verify>`_ library (LaTeX and plain
  expressions to SymPy) and compared by it: ``\frac{1}{2}`` and ``0.5``, ``x=3`` and ``3``, equal
  intervals, sets and matrices are equal; unparsable text falls back to string equality. No
  hand-written normaliser.
"""

from __future__ import annotations

import re
from typing import Optional

__all__ = ["extract_answer", "grade"]

_BOXED = re.compile(r"\\(?:boxed|fbox)\s*\{")
_HASHES = re.compile(r"####\s*(.+?)\s*$", re.MULTILINE)


def _balanced(text: str, start: int) -> Optional[str]:
    """The text from ``start`` (just after an opening brace) to its matching closing brace."""
    depth = 1
    for i in range(start, len(text)):
        c = text[i]
        if c == "{" and text[i - 1] != "\\":
            depth += 1
        elif c == "}" and text[i - 1] != "\\":
            depth -= 1
            if depth == 0:
                return text[start:i]
    return None


def extract_answer(text: str) -> Optional[str]:
    r"""The final answer of a solution: its last ``\boxed{...}``, else its last ``#### ...``
    line (commas between digits removed), else ``None`` (see the module docstring)."""
    if not isinstance(text, str):
        raise TypeError(f"extract_answer: expected a str, got {type(text).__name__}")
    for m in reversed(list(_BOXED.finditer(text))):
        inner = _balanced(text, m.end())
        if inner is not None:
            return inner.strip()
    hashes = _HASHES.findall(text)
    if hashes:
        return re.sub(r"(?<=\d),(?=\d{3}\b)", "", hashes[-1]).strip()
    return None


#: Seconds math-verify may spend parsing or comparing one answer (its signal-based timeout works in
#: the main thread only; elsewhere there is none).
TIMEOUT = 5


def _timeout():
    import threading

    return TIMEOUT if threading.current_thread() is threading.main_thread() else None


def _quiet():
    """math-verify warns on every call made without a timeout; silence that (not other errors)."""
    import logging

    logging.getLogger("math_verify").setLevel(logging.ERROR)


def _parse(text: str):
    from math_verify import parse

    _quiet()
    # math-verify finds LaTeX inside $...$ or \boxed{}; a bare answer is given both chances
    wrapped = text if ("$" in text or "\\boxed" in text) else f"${text}$"
    parsed = parse(wrapped, parsing_timeout=_timeout())
    return parsed if parsed else parse(text, parsing_timeout=_timeout())


def grade(answer: Optional[str], reference: str) -> bool:
    r"""Whether ``answer`` equals ``reference`` mathematically (math-verify; see the module
    docstring). ``None`` (no answer) is wrong. Both may be bare (``0.5``), in ``$...$`` or in
    ``\boxed{...}``."""
    if answer is None:
        return False
    if not isinstance(answer, str) or not isinstance(reference, str):
        raise TypeError(f"grade: expected strings, got {type(answer).__name__} and {type(reference).__name__}")
    if answer.strip() == reference.strip():
        return True
    from math_verify import verify

    gold, pred = _parse(reference), _parse(answer)
    if not gold or not pred:
        return False
    return bool(verify(gold, pred, timeout_seconds=_timeout()))
