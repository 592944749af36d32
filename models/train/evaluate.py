r"""Evaluation of an LM on the arithmetic task: batched sampling, exact checking, pass@k.

Solutions are sampled with plain ancestral sampling from the LM (temperature 1, no
truncation, no potential): every prompt is prefilled once (:func:`ppl.lm.prefill`), its state is
repeated ``num_samples`` times, and :func:`ppl.lm.sample_step` with no step delimiter generates
whole solutions up to the end-of-sequence token in one compiled loop — the same sampler an
:class:`ppl.lm.LMProgram` with ``ess_threshold=0`` and no potential runs, one step at a time.

pass@k is the unbiased estimator of Chen et al. (2021): with :math:`n` samples of which
:math:`c` are correct, :math:`\mathrm{pass@}k = 1 - \binom{n-c}{k} / \binom{n}{k}`, averaged
over problems.
"""

from __future__ import annotations

import math
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from ppl_models.tasks import arithmetic
from ppl_models.tasks.tokenizer import decode, encode

__all__ = ["pass_at_k", "sample_solutions", "evaluate", "evaluate_difficulties"]


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from ``n`` samples with ``c`` correct (``k <= n``)."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"pass_at_k: need 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}.")
    if n - c < k:
        return 1.0
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


_SAMPLERS: dict = {}


def _sampler(lm, num_samples: int, prompt_width: int, max_length: int, temperature: float = 1.0):
    """A jitted ``(params, prompts[B, P], lengths[B], key) -> (tokens[B*n, L], length[B*n])``."""
    cache_key = (id(lm), num_samples, prompt_width, max_length, float(temperature))
    if cache_key in _SAMPLERS and _SAMPLERS[cache_key][0] is lm:
        return _SAMPLERS[cache_key][1]
    from ppl.lm import StepConfig, prefill, sample_step

    cfg = StepConfig(delimiter=(), max_step_tokens=max_length, temperature=float(temperature))

    def run(params, prompts, lengths, key):
        states = jax.vmap(lambda p, n: prefill(lm, params, p, n, max_length))(prompts, lengths)
        states = jax.tree.map(lambda a: jnp.repeat(a, num_samples, axis=0), states)
        new, _, _ = sample_step(lm, params, key, states, cfg)
        return new.tokens, new.length

    fn = jax.jit(run)
    _SAMPLERS[cache_key] = (lm, fn)
    return fn


def sample_solutions(lm, problems: Sequence[arithmetic.Problem], num_samples: int, key,
                     max_new_tokens: int = 128, batch_prompts: int = 8, prompt_width: int | None = None,
                     temperature: float = 1.0) -> list[list[str]]:
    """``num_samples`` sampled solutions (text after the prompt) for each problem, drawn at
    ``temperature`` (logits divided by it; 1 is the LM's own distribution).

    Prompts are processed ``batch_prompts`` at a time (``batch_prompts * num_samples`` rows per
    compiled call); the last chunk is padded with repeats so every call has the same shape.
    ``problems`` need only a ``prompt`` attribute; ``prompt_width`` fixes the padded prompt
    width (default: the longest prompt rounded up to 16), so calls of different prompt lengths
    share one compiled sampler.
    """
    tok = lm.tokenizer
    if tok is None:
        raise ValueError("sample_solutions: the LM has no tokenizer (lm.tokenizer is None).")
    enc = [encode(tok, p.prompt) for p in problems]
    width = -(-max(len(e) for e in enc) // 16) * 16
    if prompt_width is not None:
        if prompt_width < width:
            raise ValueError(f"sample_solutions: prompt_width={prompt_width} is shorter than the longest prompt ({width}).")
        width = int(prompt_width)
    max_length = width + int(max_new_tokens)
    if not temperature > 0:
        raise ValueError(f"sample_solutions: temperature must be > 0, got {temperature!r}.")
    fn = _sampler(lm, int(num_samples), width, max_length, temperature)
    out: list[list[str]] = []
    for start in range(0, len(problems), batch_prompts):
        chunk = enc[start:start + batch_prompts]
        real = len(chunk)
        chunk = chunk + [chunk[-1]] * (batch_prompts - real)
        prompts = np.zeros((batch_prompts, width), np.int32)
        lengths = np.array([len(e) for e in chunk], np.int32)
        for r, e in enumerate(chunk):
            prompts[r, :len(e)] = e
        key, sub = jax.random.split(key)
        tokens, length = fn(lm.params, jnp.asarray(prompts), jnp.asarray(lengths), sub)
        tokens, length = np.asarray(tokens), np.asarray(length)
        for r in range(real):
            row_texts = []
            for s in range(num_samples):
                i = r * num_samples + s
                row_texts.append(decode(tok, tokens[i, lengths[r]:length[i]]))
            out.append(row_texts)
    return out


def evaluate(lm, problems: Sequence[arithmetic.Problem], num_samples: int, key, ks: Sequence[int] = (1, 8, 64),
             max_new_tokens: int = 128, batch_prompts: int = 8) -> dict:
    """pass@k (for each ``k <= num_samples``) and answer statistics of ``lm`` on ``problems``."""
    texts = sample_solutions(lm, problems, num_samples, key, max_new_tokens, batch_prompts)
    correct = np.array([[arithmetic.check(p, t) for t in row] for p, row in zip(problems, texts)])
    no_answer = np.array([[arithmetic.extract_answer(t) is arithmetic.NO_ANSWER for t in row] for row in texts])
    counts = correct.sum(axis=1)
    res = {"num_problems": len(problems), "num_samples": int(num_samples)}
    for k in ks:
        if k <= num_samples:
            res[f"pass@{k}"] = float(np.mean([pass_at_k(num_samples, int(c), k) for c in counts]))
    res["no_answer_rate"] = float(no_answer.mean())
    # majority vote over the samples' answers (self-consistency), for reference
    maj = []
    for p, row in zip(problems, texts):
        answers = [a for a in (arithmetic.extract_answer(t) for t in row) if a is not arithmetic.NO_ANSWER]
        if answers:
            vals, cnt = np.unique(answers, return_counts=True)
            maj.append(int(vals[np.argmax(cnt)]) == p.answer)
        else:
            maj.append(False)
    res["majority_vote"] = float(np.mean(maj))
    return res


def evaluate_difficulties(lm, difficulties: Sequence[str] = ("easy", "medium", "hard", "expert"), num_problems: int = 64,
                          num_samples: int = 64, seed: int = 1234, ks: Sequence[int] = (1, 8, 64),
                          progress: bool = False) -> dict:
    """:func:`evaluate` on ``num_problems`` test problems of each difficulty (problem seed ``seed``)."""
    out = {}
    key = jax.random.key(seed)
    for name in difficulties:
        key, sub = jax.random.split(key)
        problems = arithmetic.generate(num_problems, name, split="test", seed=seed)
        out[name] = evaluate(lm, problems, num_samples, sub, ks=ks)
        if progress:
            print(f"  eval {name}: " + ", ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}"
                                               for k, v in out[name].items()), flush=True)
    return out
