r"""Modular arithmetic chains: a synthetic multi-step reasoning task with an exact checker.

A problem is a start value and a chain of operations, evaluated left to right modulo ``m``::

    prompt:    "34+21*3-17 mod 97\n"
    solution:  "34+21=55=55\n55*3=165=68\n68-17=51=51\nanswer: 51"

Each reasoning step is one line ``x<op>k=raw=value`` — the previous value, the operation, the
exact (un-reduced) result and its residue ``value = raw mod m`` in ``[0, m)`` — and the final
line is ``answer: N``. The LM is trained to write exactly this chain of thought, so a step is
what the LM generates between two newlines, and a *prefix* of a solution can be checked step
by step (:func:`step_correctness`).

Difficulty knob (:class:`Difficulty`): the number of steps, the modulus (size of the
numbers) and the largest multiplier. Presets, in order of the bundled LM's measured pass@1
(larger numbers are harder for it than more steps): ``"easy"`` (3 steps mod 23), ``"medium"``
(5 steps mod 23), ``"hard"`` (4 steps mod 97) and ``"expert"`` (6 steps mod 97).

Splits are hash-based: a problem belongs to the test split iff the SHA-256 of its prompt falls
in the first ``TEST_FRACTION`` of the hash range, so train and test never share a problem,
whatever the seed or difficulty. Generation is deterministic given the seed (numpy PCG64).

:func:`extract_answer` and :func:`check` never raise on malformed text: they return
:data:`NO_ANSWER` / ``False``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from typing import Iterable, Sequence

import numpy as np

__all__ = [
    "Difficulty",
    "DIFFICULTIES",
    "Problem",
    "NO_ANSWER",
    "TEST_FRACTION",
    "OPS",
    "make_problem",
    "split_of",
    "generate",
    "sample",
    "training_mixture",
    "solution_text",
    "solution_steps",
    "extract_answer",
    "answer_fn",
    "check",
    "step_correctness",
    "parse_step",
]

#: What :func:`extract_answer` returns when the text has no well-formed final answer.
NO_ANSWER = None
#: Fraction of the problem space (by prompt hash) that is the test split.
TEST_FRACTION = 0.2
#: Operations; each line of a solution applies one of them.
OPS = ("+", "-", "*")
ANSWER_PREFIX = "answer: "


@dataclasses.dataclass(frozen=True)
class Difficulty:
    """The difficulty knob of the generator.

    Attributes:
      num_steps: number of operations (reasoning steps before the answer line), >= 1.
      modulus: the modulus ``m`` (>= 2); start values and addends are drawn from ``[0, m)`` /
        ``[1, m)``, so larger moduli mean larger numbers.
      max_multiplier: multipliers are drawn from ``[2, max_multiplier]`` (>= 2).
      name: a label used in reports.
    """

    num_steps: int
    modulus: int
    max_multiplier: int = 9
    name: str = ""

    def __post_init__(self):
        for field, lo in (("num_steps", 1), ("modulus", 2), ("max_multiplier", 2)):
            v = getattr(self, field)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo:
                raise ValueError(f"Difficulty: {field} must be an int >= {lo}, got {v!r}.")
        if not self.name:
            object.__setattr__(self, "name", f"{self.num_steps}steps-mod{self.modulus}")


#: Named presets.
DIFFICULTIES: dict[str, Difficulty] = {
    "easy": Difficulty(num_steps=3, modulus=23, name="easy"),
    "medium": Difficulty(num_steps=5, modulus=23, name="medium"),
    "hard": Difficulty(num_steps=4, modulus=97, name="hard"),
    "expert": Difficulty(num_steps=6, modulus=97, name="expert"),
}


def _difficulty(d) -> Difficulty:
    if isinstance(d, Difficulty):
        return d
    if isinstance(d, str):
        if d not in DIFFICULTIES:
            raise ValueError(f"difficulty={d!r}: expected one of {sorted(DIFFICULTIES)} or a Difficulty.")
        return DIFFICULTIES[d]
    raise TypeError(f"difficulty: expected a preset name or a Difficulty, got {type(d).__name__}.")


@dataclasses.dataclass(frozen=True)
class Problem:
    """One problem: ``start`` then ``ops`` (pairs ``(op, k)``) left to right, modulo ``modulus``.

    Attributes:
      start, ops, modulus: the problem.
      prompt: the text the LM is conditioned on (ends with a newline).
      values: the residue after each step (the reference chain of thought).
      answer: the final residue (``values[-1]``).
    """

    start: int
    ops: tuple[tuple[str, int], ...]
    modulus: int

    @property
    def prompt(self) -> str:
        return f"{self.start}" + "".join(f"{op}{k}" for op, k in self.ops) + f" mod {self.modulus}\n"

    @property
    def values(self) -> tuple[int, ...]:
        out, x = [], self.start
        for op, k in self.ops:
            x = _apply(x, op, k) % self.modulus
            out.append(x)
        return tuple(out)

    @property
    def answer(self) -> int:
        return self.values[-1]

    @property
    def num_steps(self) -> int:
        return len(self.ops)

    @property
    def split(self) -> str:
        return split_of(self.prompt)

    @property
    def solution(self) -> str:
        """The reference solution (what follows the prompt), without end-of-sequence token."""
        return solution_text(self)


def _apply(x: int, op: str, k: int) -> int:
    if op == "+":
        return x + k
    if op == "-":
        return x - k
    if op == "*":
        return x * k
    raise ValueError(f"unknown operation {op!r}; expected one of {OPS}.")


def make_problem(start: int, ops: Sequence[tuple[str, int]], modulus: int) -> Problem:
    """A :class:`Problem` from its parts, validated."""
    if not (isinstance(modulus, (int, np.integer)) and modulus >= 2):
        raise ValueError(f"modulus must be an int >= 2, got {modulus!r}.")
    if not 0 <= start < modulus:
        raise ValueError(f"start={start} must lie in [0, {modulus}).")
    if not ops:
        raise ValueError("ops: a problem needs at least one operation.")
    clean = []
    for op, k in ops:
        if op not in OPS:
            raise ValueError(f"ops: unknown operation {op!r}; expected one of {OPS}.")
        if int(k) < 0:
            raise ValueError(f"ops: operand {k} must be >= 0.")
        clean.append((op, int(k)))
    return Problem(int(start), tuple(clean), int(modulus))


def split_of(prompt: str) -> str:
    """``"test"`` if the SHA-256 of ``prompt`` lies in the first ``TEST_FRACTION`` of the range, else ``"train"``."""
    h = int.from_bytes(hashlib.sha256(prompt.encode()).digest()[:8], "big")
    return "test" if h < TEST_FRACTION * 2.0**64 else "train"


def _draw(rng: np.random.Generator, d: Difficulty) -> Problem:
    m = d.modulus
    start = int(rng.integers(0, m))
    ops = []
    for _ in range(d.num_steps):
        op = OPS[int(rng.integers(0, 3))]
        k = int(rng.integers(2, d.max_multiplier + 1)) if op == "*" else int(rng.integers(1, m))
        ops.append((op, k))
    return Problem(start, tuple(ops), m)


def _seed_of(seed) -> int:
    """An int seed from an int or a ``jax.random`` key (typed or raw uint32)."""
    if isinstance(seed, (int, np.integer)):
        return int(seed)
    import jax

    data = seed
    if hasattr(seed, "dtype") and jax.dtypes.issubdtype(seed.dtype, jax.dtypes.prng_key):
        data = jax.random.key_data(seed)
    arr = np.asarray(data, dtype=np.uint64).ravel()
    return int(sum(int(v) << (32 * i) for i, v in enumerate(arr)))


def generate(n: int, difficulty="hard", split: str = "test", seed=0, unique: bool = True) -> list[Problem]:
    """``n`` problems of ``difficulty`` from ``split`` (``"train"``, ``"test"`` or ``"all"``).

    Deterministic in ``seed`` (an int or a ``jax.random`` key). With ``unique`` the problems
    are distinct. Raises ``ValueError`` if the split cannot supply ``n`` distinct problems.
    """
    d = _difficulty(difficulty)
    if split not in ("train", "test", "all"):
        raise ValueError(f"split={split!r}: expected 'train', 'test' or 'all'.")
    rng = np.random.default_rng(_seed_of(seed))
    out, seen, tries = [], set(), 0
    max_tries = 1000 * n + 10000
    while len(out) < n:
        tries += 1
        if tries > max_tries:
            raise ValueError(f"generate: could not find {n} distinct {split} problems of {d} "
                             f"(found {len(out)}); the problem space is too small.")
        p = _draw(rng, d)
        if split != "all" and p.split != split:
            continue
        if unique:
            if p.prompt in seen:
                continue
            seen.add(p.prompt)
        out.append(p)
    return out


def sample(key, difficulty="hard", split: str = "test") -> Problem:
    """One problem (``tasks.arithmetic.sample(key, difficulty="hard")``), deterministic in ``key``."""
    return generate(1, difficulty, split=split, seed=key)[0]


def training_mixture(max_steps: int = 7, moduli: Iterable[int] = (23, 97), max_multiplier: int = 9) -> list[Difficulty]:
    """The difficulties the bundled LM is trained on: every ``1..max_steps`` with every modulus."""
    return [Difficulty(s, m, max_multiplier) for m in moduli for s in range(1, max_steps + 1)]


# --------------------------------------------------------------------------- solutions
def solution_steps(problem: Problem) -> list[str]:
    """The reference reasoning lines (without newlines), then the answer line."""
    lines, x = [], problem.start
    for op, k in problem.ops:
        raw = _apply(x, op, k)
        value = raw % problem.modulus
        lines.append(f"{x}{op}{k}={raw}={value}")
        x = value
    lines.append(f"{ANSWER_PREFIX}{x}")
    return lines


def solution_text(problem: Problem) -> str:
    """The reference solution: the steps joined by newlines (no trailing newline)."""
    return "\n".join(solution_steps(problem))


_ANSWER_RE = re.compile(r"^answer:\s*(-?\d{1,12})\s*$")
_STEP_RE = re.compile(r"^(-?\d{1,12})([+*-])(\d{1,12})=(-?\d{1,12})=(-?\d{1,12})$")


def extract_answer(text) -> int | None:
    """The integer on the *last* non-empty line if it reads ``answer: N``, else :data:`NO_ANSWER`.

    Never raises: any input that is not a well-formed answer (``None``, bytes that do not
    decode, garbage, a missing or non-numeric answer) gives ``NO_ANSWER``.
    """
    try:
        if isinstance(text, bytes):
            text = text.decode("utf-8", errors="replace")
        if not isinstance(text, str):
            return NO_ANSWER
        lines = [ln.strip() for ln in text.split("\n") if ln.strip()]
        if not lines:
            return NO_ANSWER
        m = _ANSWER_RE.match(lines[-1])
        return int(m.group(1)) if m else NO_ANSWER
    except Exception:  # pragma: no cover - defensive: the checker must never crash
        return NO_ANSWER


def answer_fn(tokenizer):
    """``fn(token_ids) -> int | None``: the answer of a generation given as token ids (decoded with
    ``tokenizer``, special tokens dropped), for :mod:`ppl.scaling`'s ``answer_fn``. Never raises."""

    def fn(token_ids):
        try:
            text = tokenizer.decode([int(i) for i in token_ids], skip_special_tokens=True)
        except Exception:  # pragma: no cover - defensive
            return NO_ANSWER
        return extract_answer(text)

    return fn


def check(problem: Problem, text) -> bool:
    """Whether ``text`` (the generated solution, without the prompt) ends with the right answer."""
    a = extract_answer(text)
    return a is not NO_ANSWER and a == problem.answer


def parse_step(line) -> tuple[int, str, int, int, int] | None:
    """``(x, op, k, raw, value)`` of a step line ``x<op>k=raw=value``, or ``None`` if malformed."""
    try:
        m = _STEP_RE.match(line.strip())
        if not m:
            return None
        return int(m.group(1)), m.group(2), int(m.group(3)), int(m.group(4)), int(m.group(5))
    except Exception:  # pragma: no cover
        return None


def step_correctness(problem: Problem, text) -> list[bool]:
    """Per complete line of ``text``: is the solution still exactly right up to this line?

    Line ``i < num_steps`` is right iff it equals the reference step ``i`` (same previous value,
    operation, operand, raw result and residue) and every earlier line is right; the line after
    the last step must be the right answer line. Lines past the answer are wrong. A last line without
    a trailing newline is compared as it stands (an unfinished step is wrong). This is the oracle
    process reward: a prefix is correct iff its last entry is ``True`` (or it is empty).
    Never raises; malformed input gives ``[]`` or ``False`` entries.
    """
    try:
        if isinstance(text, bytes):
            text = text.decode("utf-8", errors="replace")
        if not isinstance(text, str):
            return []
        ref = solution_steps(problem)
        lines = text.split("\n")
        out, ok = [], True
        for i, line in enumerate(lines):
            if i == len(lines) - 1 and line == "":
                break  # text ended with a newline: no unfinished line
            ok = ok and i < len(ref) and line.strip() == ref[i]
            out.append(ok)
        return out
    except Exception:  # pragma: no cover
        return []
