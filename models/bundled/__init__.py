"""Weights shipped inside the package: the tiny LM, a verifier LM and the process reward model.

:func:`load_lm` loads ``models/bundled/lm`` (Hugging Face–format ``config.json``,
``model.safetensors``, ``tokenizer.json``; see its ``MODEL_CARD.md``) — no training and no
network. :func:`load_verifier` loads ``models/bundled/verifier``, the same LM trained further
(it knows the arithmetic better than the generator); :func:`load_prm` loads
``models/bundled/prm``, which reads the verifier's token features. :func:`lm_card_metrics`,
:func:`verifier_card_metrics` and :func:`prm_card_metrics` return the metrics measured when the
weights were made. :func:`setup` builds what the job and the examples run on: the LM, the
task's problems and prompts, the LM program and the reward of each problem.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Callable, Optional

__all__ = ["BUNDLED_DIR", "LM_DIR", "VERIFIER_DIR", "PRM_DIR", "load_lm", "lm_card_metrics", "load_verifier",
           "verifier_card_metrics", "load_prm", "prm_card_metrics", "TWIST_DIR", "load_twist", "Setup", "setup"]

BUNDLED_DIR = Path(__file__).resolve().parent
LM_DIR = BUNDLED_DIR / "lm"
VERIFIER_DIR = BUNDLED_DIR / "verifier"
PRM_DIR = BUNDLED_DIR / "prm"
TWIST_DIR = BUNDLED_DIR / "twist"


def _load_checkpoint(folder: Path, what: str, how: str, dtype=None):
    from ppl_models.lm import load_pretrained

    if not (folder / "model.safetensors").is_file():
        raise FileNotFoundError(
            f"{what}: the bundled weights are missing from {folder}; reinstall the package or "
            f"recreate them with `{how}`.")
    kw = {} if dtype is None else {"dtype": dtype}
    return load_pretrained(folder, **kw)


def load_lm(dtype=None):
    """The bundled tiny LM as a :class:`ppl_models.lm.LanguageModel` (with its tokenizer)."""
    return _load_checkpoint(LM_DIR, "load_lm", "ppl train lm", dtype)


def lm_card_metrics() -> dict:
    """The metrics of the bundled LM's model card (``lm/metrics.json``)."""
    with open(LM_DIR / "metrics.json") as fh:
        return json.load(fh)


def load_verifier(dtype=None):
    """The bundled verifier LM: the tiny LM trained 1000 steps further with an annealed rate
    (see ``verifier/MODEL_CARD.md``); the bundled PRM reads its token features."""
    return _load_checkpoint(VERIFIER_DIR, "load_verifier", "ppl train lm --init-from ...", dtype)


def verifier_card_metrics() -> dict:
    """The metrics of the verifier LM's model card (``verifier/metrics.json``)."""
    with open(VERIFIER_DIR / "metrics.json") as fh:
        return json.load(fh)


def load_prm():
    """The bundled process reward model as a :class:`ppl_models.rewards.ProcessRewardModel`."""
    from ppl_models.rewards.prm import load_prm as _load

    if not (PRM_DIR / "prm.safetensors").is_file():
        raise FileNotFoundError(
            f"load_prm: the bundled PRM weights are missing from {PRM_DIR}; reinstall the package or "
            "recreate them with `ppl train prm`.")
    return _load(PRM_DIR, lm=load_verifier())  # the PRM reads the verifier LM's token features


def load_twist():
    """The bundled learned twist (hard split; ``ppl train twist``) as a
    :class:`ppl_models.rewards.ProcessRewardModel`: use it as ``ppl.lm.twisted(twist, final,
    max_steps)``. It reads the verifier LM's token features, as the PRM does."""
    from ppl_models.rewards.prm import load_prm as _load

    if not (TWIST_DIR / "prm.safetensors").is_file():
        raise FileNotFoundError(
            f"load_twist: the bundled twist weights are missing from {TWIST_DIR}; reinstall the package or "
            "recreate them with `ppl train twist`.")
    return _load(TWIST_DIR, lm=load_verifier())


def prm_card_metrics() -> dict:
    """The metrics of the bundled PRM's model card (``prm/metrics.json``)."""
    with open(PRM_DIR / "metrics.json") as fh:
        return json.load(fh)


def _same_answer(answer, problem) -> bool:
    """The bundled task's answers are integers: right when equal."""
    return answer is not None and answer == problem.answer


@dataclasses.dataclass
class Setup:
    """What :func:`setup` returns: the LM and its tokenizer, the program (on the first prompt;
    ``program.with_prompt(p)`` for the others), the problems and their encoded prompts, the
    reward of each problem (``reward_for(problem)``), the task's ``answer_fn`` and ``is_right(answer,
    problem)``."""

    lm: object
    tokenizer: object
    program: object
    problems: list
    prompts: list
    reward_for: Callable
    answer_fn: Callable
    is_right: Callable = None

    def __post_init__(self):
        if self.is_right is None:
            self.is_right = _same_answer


def setup(num_problems: int, *, difficulty: str = "hard", split: str = "test", seed: int = 0, max_steps: int = 8,
          max_step_tokens: int = 24, temperature: float = 0.8, prm: str = "learned", prm_noise: float = 1.0,
          checkpoint: Optional[str] = None, prm_checkpoint: Optional[str] = None,
          prm_features_lm: Optional[str] = None) -> Setup:
    """The bundled arithmetic task on the bundled (or a given) LM, ready for the scaling methods.

    ``num_problems`` problems of ``difficulty`` from ``split``; one :class:`ppl.lm.LMProgram`
    whose padded prompt width fits every prompt (steps end at a newline, at most
    ``max_step_tokens`` tokens, ``max_steps`` steps, sampler at ``temperature``). ``prm``:
    ``"learned"`` (the bundled PRM, or ``prm_checkpoint`` reading ``prm_features_lm``'s features),
    ``"noisy"`` (it, with logit noise ``prm_noise``), ``"oracle"`` (the exact step checker of each
    problem) or ``"noisy-oracle"``. ``checkpoint``: a Hugging Face–format LM folder instead of the
    bundled LM (it needs its ``tokenizer.json``).
    """
    import numpy as np

    import ppl
    from ppl_models.lm import load_pretrained
    from ppl_models.rewards import NoisyReward, OraclePRM
    from ppl_models.rewards.prm import load_prm as load_prm_from
    from ppl_models.tasks import arithmetic
    from ppl_models.tasks.tokenizer import encode, newline_id

    lm = load_pretrained(checkpoint) if checkpoint else load_lm()
    tok = lm.tokenizer
    if tok is None:
        raise ValueError(f"checkpoint: {checkpoint} has no tokenizer.json; the task needs the tokenizer to write "
                         "prompts and read answers.")
    problems = arithmetic.generate(num_problems, difficulty, split, seed=seed)
    prompts = [np.asarray(encode(tok, p.prompt), np.int32) for p in problems]
    width = max(len(p) for p in prompts)
    max_length = ppl.lm.state.padded_width(width) + max_steps * max_step_tokens + 1
    # The prompts' first min-length-minus-one positions are cached once per prompt and shared by its
    # particles; every prompt has at least that many, so all share one compiled program.
    program = ppl.lm.LMProgram(lm, prompts[0], None, max_steps=max_steps, step_delimiter=newline_id(tok),
                               max_step_tokens=max_step_tokens, max_length=max_length, temperature=temperature,
                               shared_prefix=min(len(p) for p in prompts) - 1)
    if prm in ("oracle", "noisy-oracle"):
        base = OraclePRM(problems[0], tok, epsilon=1e-4, width=max_length)
        reward_for = base.with_problem
        if prm == "noisy-oracle":
            noisy = NoisyReward(base, prm_noise, seed=seed)
            reward_for = lambda problem: noisy.with_base(base.with_problem(problem))  # noqa: E731
    elif prm in ("learned", "noisy"):
        if prm_checkpoint:
            features_lm = load_pretrained(prm_features_lm) if prm_features_lm else load_verifier()
            learned = load_prm_from(prm_checkpoint, lm=features_lm)
        else:
            learned = load_prm()
        reward = NoisyReward(learned, prm_noise, seed=seed) if prm == "noisy" else learned
        reward_for = lambda problem: reward  # noqa: E731
    else:
        raise ValueError(f"prm: expected 'learned', 'noisy', 'oracle' or 'noisy-oracle', got {prm!r}")
    return Setup(lm, tok, program, problems, prompts, reward_for, arithmetic.answer_fn(tok))
