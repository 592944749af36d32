r"""The oracle process reward model: exact step checking, for controlled experiments.

For an arithmetic chain the reference chain of thought is unique, so a prefix that ends at a
step boundary is *correct* iff it equals the reference solution's prefix
(:func:`ppl_models.tasks.arithmetic.step_correctness`). The oracle scores a prefix

.. math::

    r(x_{1:t}) = \begin{cases} 1 & \text{every step so far is right} \\
                               \varepsilon & \text{otherwise} \end{cases}

(:math:`\varepsilon = 0` by default: a hard constraint). Inside an LM program it compares the
particle's token buffer with the reference token ids, in JAX, so it jits and vmaps like any
potential; on the host, :meth:`OraclePRM.step_scores` uses the text checker.
"""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np

from ppl_models.tasks import arithmetic
from ppl_models.tasks.tokenizer import EOS, encode
from ppl_models.rewards.base import PrefixScore

__all__ = ["OraclePRM"]


class OraclePRM(PrefixScore):
    """Exact PRM for one :class:`~ppl_models.tasks.arithmetic.Problem`.

    Args:
      problem: the problem whose reference solution defines correctness.
      tokenizer: the LM's tokenizer (to compare token buffers in programs).
      epsilon: score of a wrong prefix (``0``: log-score ``-inf``).
    """

    left_padding = True  # reads the generation from state.prompt_length on: padding-agnostic

    def __init__(self, problem: arithmetic.Problem, tokenizer=None, epsilon: float = 0.0, width: int = 256):
        if not 0.0 <= epsilon < 1.0:
            raise ValueError(f"OraclePRM: epsilon must lie in [0, 1), got {epsilon}.")
        self.problem = problem
        self.tokenizer = tokenizer
        self.epsilon = float(epsilon)
        self.width = int(width)
        self._log_eps = -math.inf if epsilon == 0.0 else math.log(epsilon)
        self.params = None
        if tokenizer is not None:
            self.reference_ids = np.asarray(encode(tokenizer, problem.solution) + [tokenizer.token_to_id(EOS)], np.int32)
            if self.reference_ids.shape[0] > self.width:
                raise ValueError(f"OraclePRM: the reference solution has {self.reference_ids.shape[0]} tokens, "
                                 f"more than width={self.width}.")
            ref = np.zeros((self.width,), np.int32)
            ref[: self.reference_ids.shape[0]] = self.reference_ids
            # Traced data for ppl.scaling: a new problem of the same width does not recompile.
            self.params = {"reference": ref, "length": np.int32(self.reference_ids.shape[0])}

    def with_problem(self, problem: arithmetic.Problem) -> "OraclePRM":
        """The oracle of another problem (same tokenizer, epsilon and width)."""
        return OraclePRM(problem, self.tokenizer, self.epsilon, self.width)

    # The reward protocol of ppl.scaling: params, log_score(params, state), static_key().
    def static_key(self):
        return ("OraclePRM", id(self.tokenizer), self.epsilon, self.width)

    #: The oracle costs no model compute.
    flops_per_token = 0.0

    # ----------------------------------------------------------------- host side
    def step_scores(self, solution: str) -> np.ndarray:
        """1 or ``epsilon`` per complete line of ``solution`` (never raises)."""
        ok = arithmetic.step_correctness(self.problem, solution)
        return np.where(np.asarray(ok, bool), 1.0, self.epsilon) if ok else np.zeros((0,))

    def final_score(self, solution: str) -> float:
        """1 if the final answer is right, else ``epsilon`` (the outcome oracle: the checker)."""
        return 1.0 if arithmetic.check(self.problem, solution) else self.epsilon

    # ----------------------------------------------------------------- in programs
    def log_prefix_score(self, state):
        """``0`` if the particle's generated tokens are a prefix of the reference, else ``log epsilon``."""
        if self.tokenizer is None:
            raise ValueError("OraclePRM: pass the tokenizer to score token buffers.")
        return self.log_score(self.params, state)

    def log_score(self, params, state):
        """:meth:`log_prefix_score` with the reference as traced data ``params``."""
        if params is None:
            raise ValueError("OraclePRM: pass the tokenizer to score token buffers.")
        ref = jnp.asarray(params["reference"])
        n_ref = jnp.asarray(params["length"])
        buf = state.tokens
        idx = jnp.arange(buf.shape[0])
        gen_len = state.length - state.prompt_length
        rel = idx - state.prompt_length
        in_gen = (rel >= 0) & (idx < state.length)
        ref_tok = jnp.take(ref, jnp.clip(rel, 0, ref.shape[0] - 1))
        match = jnp.all(jnp.where(in_gen, (buf == ref_tok) & (rel < n_ref), True)) & (gen_len <= n_ref)
        return jnp.where(match, 0.0, self._log_eps)

