r"""``PosteriorResult``: the one result type of the static-model samplers.

Every static-model algorithm (:func:`ppl.nuts`, :func:`ppl.tempered_smc`, dispatched by
:func:`ppl.infer`) returns a :class:`PosteriorResult`, so switching algorithms is one argument.
Samples are laid out ``[chains, draws, ...]`` as in ArviZ. A weighted sample
:math:`\{(\theta_{c,n}, W_{c,n})\}` estimates posterior expectations per chain by
:math:`\sum_n W_{c,n} f(\theta_{c,n})`; for MCMC the weights are uniform and ``log_weights`` is
``None``.
"""

from __future__ import annotations

from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp

__all__ = ["PosteriorResult"]


class PosteriorResult(NamedTuple):
    """Posterior samples of a static model.

    Attributes:
        samples: dict site name -> array ``[chains, draws, ...]`` of constrained values
            (tempered SMC: one chain whose draws are the particles).
        log_weights: ``[chains, draws]`` normalised per chain (logsumexp over draws = 0), or
            ``None`` for MCMC (uniform weights).
        log_evidence: ``[chains]`` estimates of :math:`\\log p(y)`, or ``None``.
        diagnostics: dict of arrays (tempered SMC: ``temperatures``, ``ess``,
            ``acceptance_rate``, ``num_steps``, ...; NUTS: ``diverging``, ``accept_prob``,
            ``num_steps``, ``step_size``, ``energy``, ``potential_energy``).
        method: ``"nuts"`` or ``"tempered_smc"``.
    """

    samples: dict
    log_weights: Optional[jax.Array]
    log_evidence: Optional[jax.Array]
    diagnostics: dict
    method: str

    @property
    def num_chains(self) -> int:
        return next(iter(self.samples.values())).shape[0]

    @property
    def num_draws(self) -> int:
        return next(iter(self.samples.values())).shape[1]

    def weights(self) -> jax.Array:
        """Normalised weights ``[chains, draws]`` (uniform when ``log_weights`` is ``None``)."""
        if self.log_weights is None:
            return jnp.full((self.num_chains, self.num_draws), 1.0 / self.num_draws)
        return jnp.exp(self.log_weights)

    def mean(self, site: str) -> jax.Array:
        """Weighted posterior mean of ``site`` pooled over chains (chains weighted equally)."""
        x = self.samples[site]
        w = self.weights() / self.num_chains
        w = w.reshape(w.shape + (1,) * (x.ndim - 2))
        return jnp.sum(w * x, axis=(0, 1))

    def var(self, site: str) -> jax.Array:
        """Weighted posterior variance of ``site`` pooled over chains (elementwise)."""
        x = self.samples[site]
        w = self.weights() / self.num_chains
        w = w.reshape(w.shape + (1,) * (x.ndim - 2))
        m = jnp.sum(w * x, axis=(0, 1))
        return jnp.sum(w * (x - m) ** 2, axis=(0, 1))

    def __repr__(self) -> str:
        sites = ", ".join(f"{k}: {tuple(v.shape)}" for k, v in self.samples.items())
        lz = None if self.log_evidence is None else [round(float(x), 3) for x in self.log_evidence]
        return (
            f"PosteriorResult(method={self.method!r}, chains={self.num_chains}, "
            f"draws={self.num_draws}, samples={{{sites}}}, log_evidence={lz})"
        )
