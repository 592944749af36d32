r"""A noisier reward model: a base reward with deterministic logit noise, for robustness studies.

Puri et al. (2025) argue that sampling (particle filtering) is more robust to reward errors than
search (beam search, best-of-N), which over-optimises an imperfect reward. To measure that on the
bundled task, :class:`NoisyReward` corrupts a reward model's score of every prefix as

.. math::

    \operatorname{logit} \tilde r(x_{1:t}) = \operatorname{logit} \operatorname{clip}(r(x_{1:t}),
    \varepsilon, 1 - \varepsilon) + \sigma \, z(x_{1:t}), \qquad z(x_{1:t}) \sim \mathcal N(0, 1),

where :math:`z` is a *deterministic* function of the prefix's tokens (a hash of the token ids
seeds a normal draw), so that the same prefix always gets the same noisy score, as a real
imperfect reward model would give it. :math:`\sigma = 0` gives back the clipped base reward.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from ppl_models.rewards.base import PrefixScore

__all__ = ["NoisyReward"]


class NoisyReward(PrefixScore):
    """``base`` (any reward with ``params`` and ``log_score(params, state)``) with logit noise.

    Args:
      base: the reward model to corrupt (a PRM, the oracle, ...).
      sigma: standard deviation of the noise on the logit scale (>= 0).
      seed: which noise function (an integer).
      epsilon: scores are clipped to ``[epsilon, 1 - epsilon]`` before the noise is added.
    """

    def __init__(self, base, sigma: float, seed: int = 0, epsilon: float = 1e-4):
        if not hasattr(base, "log_score") or not hasattr(base, "params"):
            raise TypeError("NoisyReward: base must have params and log_score(params, state).")
        if not np.isfinite(sigma) or sigma < 0:
            raise ValueError(f"NoisyReward: sigma must be a finite number >= 0, got {sigma!r}.")
        if not 0.0 < epsilon < 0.5:
            raise ValueError(f"NoisyReward: epsilon must lie in (0, 0.5), got {epsilon!r}.")
        self.base = base
        self.sigma = float(sigma)
        self.seed = int(seed)
        self.epsilon = float(epsilon)
        self.params = {"base": base.params}
        self.flops_per_token = getattr(base, "flops_per_token", 0.0)
        self.left_padding = bool(getattr(base, "left_padding", False))

    def static_key(self):
        base_key = self.base.static_key() if hasattr(self.base, "static_key") else self.base
        return ("NoisyReward", base_key, self.sigma, self.seed, self.epsilon)

    def with_base(self, base) -> "NoisyReward":
        """The same noise around another base reward (e.g. the oracle of another problem)."""
        return NoisyReward(base, self.sigma, self.seed, self.epsilon)

    def noise(self, state) -> jax.Array:
        """:math:`z(x_{1:t})`: a standard normal determined by the prefix's token ids."""
        tokens = state.tokens.astype(jnp.uint32)
        idx = jnp.arange(tokens.shape[0], dtype=jnp.uint32)
        # Position-dependent odd multipliers (a fixed function of the index), wrap-around uint32.
        mult = (idx * jnp.uint32(2654435761) + jnp.uint32(0x9E3779B9)) | jnp.uint32(1)
        mixed = jnp.where(idx < state.length.astype(jnp.uint32), (tokens + jnp.uint32(1)) * mult, jnp.uint32(0))
        h = jnp.sum(mixed, dtype=jnp.uint32) ^ (state.length.astype(jnp.uint32) * jnp.uint32(0x85EBCA6B))
        return jax.random.normal(jax.random.fold_in(jax.random.key(self.seed), h))

    def log_score(self, params, state) -> jax.Array:
        """:math:`\\log \\tilde r` of one particle's prefix."""
        return self._noisy(self.base.log_score(params["base"], state), state)

    def log_prefix_score(self, state) -> jax.Array:
        return self.log_score(self.params, state)

    def _noisy(self, log_r, state):
        r = jnp.clip(jnp.exp(log_r), self.epsilon, 1.0 - self.epsilon)
        return jax.nn.log_sigmoid(jnp.log(r) - jnp.log1p(-r) + self.sigma * self.noise(state))

    # Incremental scoring (ppl.core.protocols.IncrementalReward) when the base reward has it: the
    # base reads only the new tokens; the noise is a cheap hash of the prefix's token ids.
    @property
    def init_state(self):
        if not callable(getattr(self.base, "init_state", None)):
            return None
        return lambda params, prompt_state: self.base.init_state(params["base"], prompt_state)

    @property
    def extend(self):
        if not callable(getattr(self.base, "extend", None)):
            return None

        def extend(params, rstate, state):
            log_r, rstate, read = self.base.extend(params["base"], rstate, state)
            return self._noisy(log_r, state), rstate, read

        return extend
