"""What ``ppl scale`` runs: :class:`ScaleConfig` and the names of its choices.

A light module (no JAX at import): ``ppl scale --help`` reads it.
"""

from __future__ import annotations

import dataclasses
from typing import Optional

import numpy as np

__all__ = ["METHODS", "DEFAULT_METHODS", "QUICK_METHODS", "PRM_KINDS", "PF_WEIGHTINGS", "PF_SELECTS", "PF_RESAMPLINGS", "PRM_TYPES",
           "DATA_FORMATS", "DTYPES", "ScaleConfig"]

#: The methods ``ppl scale`` offers, each a :class:`ppl.scaling.MethodSpec` (by name or alias); the
#: order fixes each method's key (``fold_in(key, 1 + index)``).
METHODS = ("best_of_n", "weighted_best_of_n", "majority_vote", "weighted_majority", "rpc", "particle_filter",
           "beam_search", "dvts", "particle_gibbs", "parallel_tempering", "power_sampling", "a_star")
DEFAULT_METHODS = ("best_of_n", "weighted_best_of_n", "majority_vote", "beam_search", "dvts", "particle_filter")
QUICK_METHODS = DEFAULT_METHODS
#: ``noisy`` is the learned PRM with logit noise, ``noisy-oracle`` the exact oracle with logit noise
#: (an informative but imperfect verifier); both use ``prm_noise`` as the noise scale.
PRM_KINDS = ("learned", "oracle", "noisy", "noisy-oracle")
#: Particle-filter options of :func:`ppl.scaling.particle_filter` that ``ppl scale`` exposes (the
#: values of ``ppl.lm.potentials.WEIGHTINGS`` and ``ppl.scaling.particle_filter.SELECTS``, written
#: here so that ``ppl scale --help`` imports no JAX; a test checks that they agree).
PF_WEIGHTINGS, PF_SELECTS = ("softmax", "ratio", "odds_ratio"), ("argmax", "vote")
#: Particle-filter resampling: a scheme of ``ppl.smc.resampling``, or ``"entropic"`` (its_hub's
#: entropic annealing: systematic resampling from weights flattened by the ESS rule, with the
#: importance correction kept; ``ppl.scaling.particle_filter.resampling_of``).
PF_RESAMPLINGS = ("multinomial", "systematic", "entropic")
#: With ``--data``: the reward-model conventions of ``ppl_models.rewards.checkpoint.REWARD_KINDS``,
#: the data formats of ``ppl_models.tasks.benchmarks`` and the compute dtypes.
PRM_TYPES, DATA_FORMATS, DTYPES = ("classifier", "lm-judge", "outcome"), ("auto", "math", "gsm8k", "aime"), \
    ("float32", "bfloat16")


@dataclasses.dataclass(frozen=True)
class ScaleConfig:
    """What ``ppl scale`` runs (every field is a command-line option)."""

    methods: tuple = DEFAULT_METHODS
    budgets: tuple = (1, 2, 4, 8, 16, 32, 64)
    num_problems: int = 32
    difficulty: str = "hard"
    seed: int = 0
    prm: str = "learned"
    prm_noise: float = 1.0
    temperature: float = 0.8
    tau: float = 1.0
    #: Particle filter: ``"softmax"`` (log-odds / tau, the reference) or ``"ratio"`` weights.
    pf_weighting: str = "softmax"
    #: Particle filter: the answer of the best-scored particle, or the weighted vote.
    pf_select: str = "argmax"
    #: Particle filter: the resampling scheme (``"entropic"``: annealed, see ``PF_RESAMPLINGS``).
    pf_resampling: str = "multinomial"
    beam_width: int = 4
    pg_iterations: int = 4
    power_steps: int = 4
    power_alpha: float = 4.0
    max_steps: int = 8
    max_step_tokens: int = 24
    checkpoint: Optional[str] = None
    prm_checkpoint: Optional[str] = None
    #: the LM whose token features a ``prm_checkpoint`` reads (default: the bundled verifier LM,
    #: what ``ppl train prm`` uses by default)
    prm_features_lm: Optional[str] = None
    #: 0: problems one by one on the default device; D >= 1: data-parallel over the first D devices.
    devices: int = 0
    #: With ``devices >= 1``: problems per device in one compiled call (> 1: vmapped).
    problems_per_device: int = 1
    #: A JSON-lines file of math problems (MATH, GSM8K, AIME): run your own model on it instead of
    #: the bundled task (needs a Hugging Face ``checkpoint`` and reward ``prm_checkpoint``).
    data: Optional[str] = None
    data_format: str = "auto"
    #: the reward checkpoint's convention (``ppl_models.rewards.checkpoint``)
    prm_type: str = "classifier"
    #: an ``lm-judge`` reward's good and bad tokens
    judge_tokens: tuple = ("+", "-")
    #: the token a ``classifier`` reward reads after each step in place of the step delimiter and
    #: end-of-sequence: ``"auto"`` (``<extra_0>``, Qwen2.5-Math-PRM's, if its tokenizer has it),
    #: ``"none"`` (read at the delimiter itself) or a token of the reward's tokenizer
    prm_separator: str = "auto"
    #: ``"auto"`` (the checkpoint's chat template, if any), ``"none"`` or a jinja file
    chat_template: str = "auto"
    #: what ends a reasoning step (one token of the checkpoint's tokenizer)
    step_delimiter: str = "\n\n"
    dtype: str = "float32"
    #: tokens generated at most per problem (default ``max_steps * max_step_tokens``)
    max_new_tokens: Optional[int] = None
    #: N > 0: per problem, the two-sided log Z bounds of the twisted filters for the reward's
    #: final-score target, with N particles (:mod:`ppl_models.scale.bounds`); 0: none
    bounds_particles: int = 0
    #: SMC and conditional SMC runs per problem and filter for the bounds
    bounds_runs: int = 4

    def to_json(self) -> dict:
        """The configuration as a JSON object (tuples as lists)."""
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(self).items()}

    def validate(self) -> "ScaleConfig":
        bad = [m for m in self.methods if m not in METHODS]
        if not self.methods or bad:
            raise ValueError(f"methods: unknown {bad}; choose from {', '.join(METHODS)}")
        if not self.budgets or any(int(b) != b or b < 1 for b in self.budgets):
            raise ValueError(f"budgets: expected positive integers, got {list(self.budgets)}")
        if len(set(self.budgets)) != len(self.budgets):
            raise ValueError(f"budgets: repeated budget in {list(self.budgets)}")
        if self.num_problems < 1:
            raise ValueError(f"num_problems: expected a positive integer, got {self.num_problems}")
        if self.prm not in PRM_KINDS:
            raise ValueError(f"prm: expected one of {PRM_KINDS}, got {self.prm!r}")
        if self.data is not None:
            if not self.checkpoint or not self.prm_checkpoint:
                raise ValueError("data: running on a data file needs checkpoint (your LM) and prm_checkpoint (your "
                                 "reward model), Hugging Face folders")
            for name, choices in (("prm_type", PRM_TYPES), ("data_format", DATA_FORMATS), ("dtype", DTYPES)):
                if getattr(self, name) not in choices:
                    raise ValueError(f"{name}: expected one of {choices}, got {getattr(self, name)!r}")
            if not self.step_delimiter:
                raise ValueError("step_delimiter: expected a non-empty string")
            if not self.prm_separator:
                raise ValueError("prm_separator: expected 'auto', 'none' or a token")
            if self.max_new_tokens is not None and (isinstance(self.max_new_tokens, bool) or int(self.max_new_tokens) < 1):
                raise ValueError(f"max_new_tokens: expected a positive integer, got {self.max_new_tokens!r}")
            if self.bounds_particles:
                raise ValueError("bounds_particles: the log Z bounds run on the bundled task only")
        elif self.prm_checkpoint and self.prm not in ("learned", "noisy"):
            raise ValueError(f"prm_checkpoint: only read with prm 'learned' or 'noisy', not {self.prm!r}")
        if self.prm_features_lm and not self.prm_checkpoint:
            raise ValueError("prm_features_lm: only read with prm_checkpoint (the bundled PRM reads the bundled "
                             "verifier LM)")
        if self.pf_weighting not in PF_WEIGHTINGS:
            raise ValueError(f"pf_weighting: expected one of {PF_WEIGHTINGS}, got {self.pf_weighting!r}")
        if self.pf_select not in PF_SELECTS:
            raise ValueError(f"pf_select: expected one of {PF_SELECTS}, got {self.pf_select!r}")
        if self.pf_resampling not in PF_RESAMPLINGS:
            raise ValueError(f"pf_resampling: expected one of {PF_RESAMPLINGS}, got {self.pf_resampling!r}")
        if not self.prm_noise >= 0:
            raise ValueError(f"prm_noise: expected a number >= 0, got {self.prm_noise}")
        for name in ("temperature", "tau", "power_alpha"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name}: expected a positive number, got {getattr(self, name)}")
        for name in ("beam_width", "pg_iterations", "power_steps", "max_steps", "max_step_tokens"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name}: expected a positive integer, got {getattr(self, name)}")
        for name, low in (("devices", 0), ("problems_per_device", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
                raise ValueError(f"{name}: expected an integer >= {low}, got {value!r}")
        for name, low in (("bounds_particles", 0), ("bounds_runs", 2)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
                raise ValueError(f"{name}: expected an integer >= {low}, got {value!r}")
        if self.bounds_particles == 1:
            raise ValueError("bounds_particles: conditional SMC needs at least 2 particles (0 turns the bounds off)")
        if self.devices == 0 and self.problems_per_device != 1:
            raise ValueError(f"problems_per_device: {self.problems_per_device} needs devices >= 1 (with devices=0 "
                             "problems run one by one)")
        if self.devices > 0:
            import jax

        if self.devices > 0 and self.devices > jax.device_count():
            raise ValueError(f"devices: asked for {self.devices}, but jax sees {jax.device_count()} device(s) "
                             f"({jax.default_backend()}); use at most {jax.device_count()}, or on CPU set XLA_FLAGS="
                             f"--xla_force_host_platform_device_count={self.devices} before the program starts")
        from ppl_models.tasks.arithmetic import DIFFICULTIES

        if self.difficulty not in DIFFICULTIES:
            raise ValueError(f"difficulty: expected one of {list(DIFFICULTIES)}, got {self.difficulty!r}")
        return dataclasses.replace(self, budgets=tuple(sorted(int(b) for b in self.budgets)),
                                   methods=tuple(dict.fromkeys(self.methods)))
