"""LM programs: LM states with a KV cache as particles, step sampling, potentials.

See :mod:`ppl.lm.state` for the small protocol an LM must follow (``ppl`` never imports a
particular LM; ``ppl_models.lm`` provides transformers that follow it).
"""

from ppl.lm import potentials
from ppl.lm.potentials import Potential, constraint, on_prefix, product, twist, twisted, when_finished
from ppl.lm.program import LMProgram, LMStep, prompt_state
from ppl.lm.sampling import StepConfig, process_logits, sample_step, score_step
from ppl.lm.state import LMState, generated, pad_prompt, prefill, step_tokens, text_of

__all__ = [
    "LMProgram",
    "LMState",
    "LMStep",
    "Potential",
    "StepConfig",
    "constraint",
    "generated",
    "on_prefix",
    "pad_prompt",
    "potentials",
    "prefill",
    "process_logits",
    "product",
    "prompt_state",
    "sample_step",
    "score_step",
    "step_tokens",
    "text_of",
    "twist",
    "twisted",
    "when_finished",
]
