"""Bundled synthetic reasoning tasks with exact checkers.

* :mod:`ppl_models.tasks.arithmetic` — modular arithmetic chains, one reasoning step per line,
  difficulty presets ``easy`` / ``medium`` / ``hard``, hash-based train/test splits,
  :func:`~ppl_models.tasks.arithmetic.check` and :func:`~ppl_models.tasks.arithmetic.extract_answer`.
* :mod:`ppl_models.tasks.tokenizer` — the character-level tokenizer (``tokenizers`` library).
* :mod:`ppl_models.tasks.benchmarks` — math benchmarks from local JSON-lines files (MATH/MATH500,
  GSM8K, AIME, or mapped fields) and a handful of problems shipped for tests and the docs.
* :mod:`ppl_models.tasks.grading` — final answers from ``\\boxed{}`` / ``####`` and equivalence
  grading with ``math-verify``.
"""

from . import arithmetic, benchmarks, grading, tokenizer
from .arithmetic import DIFFICULTIES, NO_ANSWER, Difficulty, Problem, check, extract_answer, generate, sample
from .tokenizer import build_tokenizer, load_tokenizer

__all__ = ["arithmetic", "benchmarks", "grading", "tokenizer", "Difficulty", "DIFFICULTIES", "Problem", "NO_ANSWER", "check",
           "extract_answer", "generate", "sample", "build_tokenizer", "load_tokenizer"]
