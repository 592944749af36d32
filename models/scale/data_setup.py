r"""``ppl scale --data FILE``: your Hugging Face LM and reward model on a JSON-lines math benchmark.

:func:`setup` returns what the job needs, as :func:`ppl_models.bundled.setup` does for the bundled
task:

* the LM (:func:`ppl_models.lm.load_pretrained`, in ``dtype``) and its ``tokenizer.json``;
* the problems (:func:`ppl_models.tasks.benchmarks.load_jsonl`), each prompt the problem with the
  instruction to reason step by step and box the answer, rendered by the checkpoint's chat template
  (:mod:`ppl_models.lm.chat`; ``"none"``: the plain text) and tokenized;
* one :class:`ppl.lm.LMProgram` whose padded prompt width :math:`W` fits every prompt, left-padded
  (``padding="left"``: every prompt ends at slot :math:`W - 1`, so all share one compiled program
  and the LM stores each prompt's keys and values once, not per particle); a step ends at the
  ``step_delimiter`` token (``"\n\n"`` by default), at most ``max_new_tokens`` tokens in all;
* the reward (:func:`ppl_models.rewards.checkpoint.load_reward`, read at the end of each step; a
  ``classifier`` reads its separator there, ``<extra_0>`` for Qwen2.5-Math-PRM: ``prm_separator``);
* ``answer_fn``: the final answer of a generation (the last ``\boxed{}``, else ``####``), and
  ``is_right``: its equivalence with the reference by ``math-verify``.

:func:`memory_estimate` is what N particles need, printed (and checked against the device) before
any compute.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple, Optional

import numpy as np

__all__ = ["setup", "DataProblem", "memory_estimate", "INSTRUCTION"]

#: Qwen2.5-Math-PRM's step separator, read after each step when the reward's tokenizer has it.
AUTO_SEPARATOR = "<extra_0>"

#: Appended to each problem (the Qwen2.5-Math evaluation's instruction).
INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."


class DataProblem(NamedTuple):
    """A benchmark problem as the job reads it: ``prompt`` (the problem's text), reference
    ``answer`` and ``id``."""

    prompt: str
    answer: str
    id: str


def _prompt_text(problem: str, template) -> str:
    from ppl_models.lm.chat import render_chat

    content = f"{problem}\n{INSTRUCTION}"
    if template is None:
        return content + "\n"
    return render_chat(template, [{"role": "user", "content": content}], add_generation_prompt=True)


def _template(cfg, folder: Path):
    from ppl_models.lm.chat import ChatTemplate, load_chat_template

    if cfg.chat_template == "none":
        return None
    if cfg.chat_template == "auto":
        return load_chat_template(folder)
    path = Path(cfg.chat_template)
    if not path.is_file():
        raise ValueError(f"chat_template: {path} is not a file (give 'auto', 'none' or a jinja file)")
    found = load_chat_template(folder)
    return ChatTemplate(path.read_text(encoding="utf-8"), found.special_tokens if found else {})


def setup(cfg):
    """The job's setup for ``cfg.data`` (see the module docstring): a
    :class:`ppl_models.bundled.Setup`."""
    import jax.numpy as jnp

    import ppl
    from ppl_models.lm import load_pretrained
    from ppl_models.rewards.checkpoint import load_reward
    from ppl_models.tasks.benchmarks import load_jsonl
    from ppl_models.tasks.grading import extract_answer, grade

    dtype = jnp.bfloat16 if cfg.dtype == "bfloat16" else jnp.float32
    folder = Path(os.fspath(cfg.checkpoint))
    rows = load_jsonl(cfg.data, format=cfg.data_format, limit=cfg.num_problems)
    if len(rows) < cfg.num_problems:
        raise ValueError(f"num_problems: {cfg.data} has {len(rows)} problems, fewer than {cfg.num_problems}")
    lm = load_pretrained(folder, dtype=dtype)
    tok = lm.tokenizer
    if tok is None:
        raise ValueError(f"checkpoint: {folder} has no tokenizer.json; the prompts and answers need it")
    template = _template(cfg, folder)
    prompts = []
    for r in rows:
        text = _prompt_text(r.problem, template)
        ids = tok.encode(text, add_special_tokens=template is None).ids
        prompts.append(np.asarray(ids, np.int32))
    delim = tok.encode(cfg.step_delimiter, add_special_tokens=False).ids
    if len(delim) != 1:
        raise ValueError(f"step_delimiter: {cfg.step_delimiter!r} is {len(delim)} tokens {delim} of the checkpoint's "
                         "tokenizer; give a string that is one token")
    new_tokens = cfg.max_new_tokens or cfg.max_steps * cfg.max_step_tokens
    width = ppl.lm.state.padded_width(max(len(p) for p in prompts))
    # built on the longest prompt and left-padded: every prompt ends at slot width - 1, so all share one
    # compiled program and a shared prefix of width - 1 slots (no particle carries its prompt's cache)
    longest = max(prompts, key=len)
    program = ppl.lm.LMProgram(lm, longest, None, max_steps=cfg.max_steps, step_delimiter=delim[0],
                               max_step_tokens=cfg.max_step_tokens, max_length=width + new_tokens + 1,
                               temperature=cfg.temperature, padding="left")
    separator = _separator(cfg)
    reward = load_reward(cfg.prm_checkpoint, cfg.prm_type, good=cfg.judge_tokens[0], bad=cfg.judge_tokens[1],
                         dtype=dtype, separator=separator, step_ends=(delim[0], *lm.eos_token_ids))
    if reward.body.vocab_size < lm.vocab_size:
        raise ValueError(f"prm_checkpoint: its vocabulary ({reward.body.vocab_size}) is smaller than the LM's "
                         f"({lm.vocab_size}); the reward must read the LM's tokens")
    eos = set(lm.eos_token_ids)

    def answer_fn(ids) -> Optional[str]:
        text = tok.decode([int(t) for t in ids if int(t) not in eos])
        found = extract_answer(text)
        return None if found is None else " ".join(found.split())

    def is_right(answer, problem) -> bool:
        return answer is not None and grade(answer, problem.answer)

    from ppl_models.bundled import Setup

    problems = [DataProblem(r.problem, r.answer, r.id) for r in rows]
    return Setup(lm, tok, program, problems, prompts, lambda problem: reward, answer_fn, is_right)


def _separator(cfg) -> Optional[str]:
    """The classifier's step separator (``prm_separator``): ``auto`` is ``<extra_0>`` when the
    reward's tokenizer has it as one token (Qwen2.5-Math-PRM's convention), else none."""
    if cfg.prm_type != "classifier" or cfg.prm_separator == "none":
        return None
    if cfg.prm_separator != "auto":
        return cfg.prm_separator
    from tokenizers import Tokenizer

    path = Path(os.fspath(cfg.prm_checkpoint)) / "tokenizer.json"
    found = Tokenizer.from_file(str(path)).token_to_id(AUTO_SEPARATOR) if path.is_file() else None
    return None if found is None else AUTO_SEPARATOR


def _device_bytes() -> tuple[int, str]:
    import jax

    dev = jax.devices()[0]
    stats = dev.memory_stats() if hasattr(dev, "memory_stats") else None
    if stats and stats.get("bytes_limit"):
        return int(stats["bytes_limit"]), f"{dev.platform} device memory"
    return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")), "host memory"


def memory_estimate(s, num_particles: int) -> dict:
    r"""Bytes that ``num_particles`` particles need: the LM's and the reward's weights, the prompt's
    shared cache (:math:`F` slots, once), and per particle the LM's KV cache of the other
    :math:`T - F` slots (:math:`2 L H_{kv} D_h` values per slot) and the reward body's of all
    :math:`T` (it reads incrementally). ``fits`` compares the total with the device's memory (host
    memory on CPU)."""
    import jax

    def weights(params):
        return int(sum(np.prod(a.shape) * a.dtype.itemsize for a in jax.tree_util.tree_leaves(params)))

    def cache(lm, length):
        c = lm.config
        return 2 * c.num_layers * c.num_kv_heads * c.head_dim * length * np.dtype(lm.dtype).itemsize

    reward = s.reward_for(s.problems[0])
    length, shared = s.program.max_length, s.program.shared_prefix
    lm_w, rm_w, prompt = weights(s.lm.params), weights(reward.params), cache(s.lm, shared)
    per = cache(s.lm, length - shared) + cache(reward.body, length)
    total = lm_w + rm_w + prompt + num_particles * per
    have, where = _device_bytes()
    return {"lm_weights": lm_w, "reward_weights": rm_w, "prompt_cache": prompt, "cache_per_particle": per,
            "num_particles": int(num_particles), "total": int(total), "available": have, "where": where,
            "fits": total <= 0.9 * have}
