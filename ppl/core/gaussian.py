r"""A multivariate normal for particle systems: numpyro's, with its Cholesky factors computed once.

:class:`Gaussian` is a drop-in subclass of ``numpyro.distributions.MultivariateNormal`` (same
arguments, same support, same pytree, so it works wherever numpyro's does). It differs in how
it computes, not in what: with :math:`\Sigma = L L^\top`,

.. math::

    x = \mu + L\varepsilon, \qquad
    \log p(x) = -\tfrac12 \lVert L^{-1}(x - \mu) \rVert^2 - \sum_i \log L_{ii}
                - \tfrac d2 \log 2\pi,

with :math:`L^{-1}` formed once (a triangular solve against the identity) instead of a
triangular solve per evaluation, and, for :math:`d \le 16`, the products :math:`L\varepsilon`
and :math:`L^{-1}(x - \mu)` written as broadcast multiply-and-sum rather than matrix products.

Why: in a particle filter the density is evaluated for :math:`N` particles at once, under
``vmap``. A covariance that does not depend on the particle is then factored once per step, but
numpyro's per-particle ``solve_triangular`` and ``matmul`` become batched linear-algebra calls
that XLA on CPU runs far below memory speed for tiny matrices: on the 2-core benchmark machine a
3-d log-density of 4,096 particles took 65 µs with ``MultivariateNormal`` and 3.5 µs in this
form (``benchmarks/smc_engine.py``, ``lgssm3``). For large :math:`d` both use the same BLAS-style
products and agree in speed.

The engine samples every lifted ``MultivariateNormal`` this way on its own (the batched draw of
a :class:`~ppl.core.feynman_kac.FeynmanKac` transition); writing ``ppl.Gaussian`` in a
*potential* (an observation density) gives the same gain there.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from numpyro.distributions import MultivariateNormal
from numpyro.distributions.util import lazy_property, validate_sample

__all__ = ["Gaussian"]

#: Up to this dimension, matrix-vector products are written as broadcast multiply-and-sum.
SMALL_DIM = 16


def _matvec(A: jax.Array, v: jax.Array) -> jax.Array:
    """``A @ v`` over trailing axes (``A [..., d, d]``, ``v [..., d]``), batch dims broadcast."""
    if A.shape[-1] <= SMALL_DIM:
        return jnp.sum(A * v[..., None, :], axis=-1)
    return jnp.einsum("...ij,...j->...i", A, v)


class Gaussian(MultivariateNormal):
    r"""``MultivariateNormal(loc, covariance_matrix | precision_matrix | scale_tril)``, evaluated
    with :math:`L^{-1}` formed once and, for :math:`d \le 16`, elementwise products (see the module
    docstring). Draws and densities equal numpyro's to float round-off."""

    @lazy_property
    def inverse_scale_tril(self) -> jax.Array:
        r""":math:`L^{-1}` (lower triangular)."""
        eye = jnp.broadcast_to(jnp.eye(self.scale_tril.shape[-1], dtype=self.scale_tril.dtype),
                               self.scale_tril.shape)
        return jax.scipy.linalg.solve_triangular(self.scale_tril, eye, lower=True)

    def sample(self, key, sample_shape=()):
        eps = jax.random.normal(key, tuple(sample_shape) + self.batch_shape + self.event_shape)
        return self.loc + _matvec(self.scale_tril, eps)

    @validate_sample
    def log_prob(self, value):
        z = _matvec(self.inverse_scale_tril, value - self.loc)
        d = self.scale_tril.shape[-1]
        half_log_det = jnp.sum(jnp.log(jnp.diagonal(self.scale_tril, axis1=-2, axis2=-1)), -1)
        return -0.5 * jnp.sum(z * z, -1) - half_log_det - 0.5 * d * math.log(2 * math.pi)
