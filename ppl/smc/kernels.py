r"""Rejuvenation MCMC kernels on flat vectors, for SMC samplers (tempering) and beyond.

Each kernel leaves a target density :math:`\pi(x) \propto \exp \ell(x)` on :math:`\mathbb{R}^d`
invariant. It is written for **one** particle and lifted over the population with
:func:`jax.vmap`; its tuning parameters are computed *from the population* (the particle cloud
is a free, up-to-date picture of the current target), which is what makes these kernels
adaptive inside SMC without breaking the invariance of each move.

The log-density function returns a pair ``(log_density, aux)``: ``aux`` is any pytree the
caller wants carried along with the position (for tempering: the log-prior and the
log-likelihood separately, so that re-weighting needs no extra evaluation). The API mirrors
blackjax / optax:

.. code-block:: python

    state = kernel.init(position, logdensity_fn)                # one particle
    state, info = kernel.step(key, state, logdensity_fn, params)  # one MH move
    params = kernel.params_from_particles(positions, ...)      # population -> tuning

Kernels
-------
:class:`RWMH`
    Gaussian random-walk Metropolis–Hastings. Proposal :math:`x' = x + L\varepsilon`,
    :math:`\varepsilon \sim \mathcal N(0, I_d)`, accepted with probability
    :math:`\min\{1, \pi(x')/\pi(x)\}` (the proposal is symmetric). ``L`` is the population
    standard deviation (diagonal) or the Cholesky factor of the population covariance (full),
    times the optimal-scaling constant :math:`2.38/\sqrt d` (Roberts, Gelman & Gilks 1997).
:class:`HMC`
    Hamiltonian Monte Carlo with a fixed number :math:`L` of leapfrog steps of size
    :math:`\epsilon` and the inverse mass matrix :math:`M^{-1} = \hat\Sigma`, the population
    covariance (full up to ``max_full_dim`` coordinates, else its diagonal). The dynamics then
    run in coordinates where the target is roughly isotropic, so one step size fits every
    direction, correlated ones included. The step size is adapted after every sweep over the
    population from the sweep's mean acceptance, by a bounded multiplicative rule
    (:meth:`HMC.adapt`), and carried over to the next SMC step.

Every kernel also has ``step_batch(key, states, logdensity_fn, params)``, which moves the whole
population with *one* key (one draw of all the noise, then the per-particle move lifted with
``vmap``), the form SMC samplers use.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

from ppl.core.trees import select_rows
from ppl.mcmc.chain import accept_given

__all__ = [
    "RWMH",
    "HMC",
    "RWMHState",
    "RWMHParams",
    "HMCState",
    "HMCParams",
    "KernelInfo",
    "adapt_step_size",
    "get_kernel",
    "KERNELS",
]

#: ``logdensity_fn(x) -> (log_density, aux)`` for one particle ``x`` of shape ``[d]``.
LogDensityFn = Callable[[jax.Array], "tuple[jax.Array, Any]"]


class KernelInfo(NamedTuple):
    """What one MH move reports.

    acceptance_rate: :math:`\\min(1, \\exp(\\log r))`, the MH acceptance probability of the move
        (0 when the proposal's log-density is NaN).
    is_accepted: whether the proposal was accepted.
    """

    acceptance_rate: jax.Array
    is_accepted: jax.Array



def _noise(key, shape, dtype):
    """Gaussian noise of ``shape`` and one acceptance uniform per leading row (or a scalar)."""
    k_eps, k_u = jax.random.split(key)
    return (jax.random.normal(k_eps, shape, dtype),
            jax.random.uniform(k_u, shape[:-1], dtype))



# ------------------------------------------------------------------------------------------
# Random-walk Metropolis–Hastings
# ------------------------------------------------------------------------------------------


class RWMHState(NamedTuple):
    """One particle: position ``[d]``, its log-density and the density function's ``aux``."""

    position: jax.Array
    logdensity: jax.Array
    aux: Any


class RWMHParams(NamedTuple):
    r"""Proposal scale: ``scale`` is ``[d]`` (diagonal, :math:`L = \mathrm{diag}(s)`) or ``[d, d]``
    (a lower-triangular :math:`L`); the proposal is :math:`x + L \varepsilon`."""

    scale: jax.Array


@dataclasses.dataclass(frozen=True)
class RWMH:
    r"""Gaussian random-walk Metropolis–Hastings.

    Args:
        covariance: ``"diag"`` — proposal std :math:`2.38/\sqrt d \cdot \hat\sigma_j` per
            coordinate from the population standard deviations; ``"full"`` —
            :math:`L = 2.38/\sqrt d \cdot \mathrm{chol}(\hat\Sigma)` from the population covariance
            (better for correlated targets, :math:`O(d^2)` per move).
        scale_factor: multiplier on :math:`2.38/\sqrt d`; ``None`` means 1.
    """

    covariance: str = "diag"
    scale_factor: float | None = None

    name = "rwmh"

    def __post_init__(self):
        if self.covariance not in ("diag", "full"):
            raise ValueError(f"RWMH: covariance must be 'diag' or 'full', got {self.covariance!r}")

    @staticmethod
    def init(position: jax.Array, logdensity_fn: LogDensityFn) -> RWMHState:
        logdensity, aux = logdensity_fn(position)
        return RWMHState(position, logdensity, aux)

    @staticmethod
    def step(
        key: jax.Array, state: RWMHState, logdensity_fn: LogDensityFn, params: RWMHParams
    ) -> tuple[RWMHState, KernelInfo]:
        r"""One move: :math:`x' = x + L\varepsilon`, accepted with probability
        :math:`\min(1, e^{\ell(x') - \ell(x)})`."""
        eps, u = _noise(key, state.position.shape, state.position.dtype)
        return RWMH.move(state, eps, u, logdensity_fn, params)

    @staticmethod
    def move(state: RWMHState, eps, u, logdensity_fn: LogDensityFn, params: RWMHParams):
        """The move given its noise: ``eps ~ N(0, I_d)`` and the acceptance uniform ``u``."""
        if params.scale.ndim == 1:
            delta = params.scale * eps
        else:
            delta = params.scale @ eps
        proposal = RWMH.init(state.position + delta, logdensity_fn)
        accept, prob = accept_given(u, proposal.logdensity - state.logdensity)
        return select_rows(accept, proposal, state), KernelInfo(prob, accept)

    def step_batch(self, key, states: RWMHState, logdensity_fn: LogDensityFn, params: RWMHParams):
        """:meth:`step` for every particle of ``states`` (leaves ``[N, ...]``), with one key."""
        eps, u = _noise(key, states.position.shape, states.position.dtype)
        return jax.vmap(RWMH.move, in_axes=(0, 0, 0, None, None))(states, eps, u, logdensity_fn, params)

    @staticmethod
    def adapt(params: RWMHParams, acceptance_rate) -> RWMHParams:
        """No adaptation between sweeps: the scale is re-tuned from the population each SMC step."""
        del acceptance_rate
        return params

    def params_from_particles(self, positions: jax.Array, **_: Any) -> RWMHParams:
        r"""Proposal scale from an (equally weighted) population ``positions [N, d]``.

        Extra keyword arguments (``previous_params``, ``acceptance_rate``) are accepted for a
        common interface with :class:`HMC` and ignored: the random walk is re-tuned from
        scratch at every SMC step."""
        n, d = positions.shape
        factor = 2.38 / jnp.sqrt(d) * (1.0 if self.scale_factor is None else self.scale_factor)
        if self.covariance == "diag":
            std = jnp.std(positions, axis=0)
            # A coordinate the population has collapsed on still needs a non-zero move.
            std = jnp.maximum(std, 1e-6 * (1.0 + jnp.mean(std)))
            return RWMHParams(factor * std)
        cov = jnp.cov(positions, rowvar=False).reshape(d, d)
        jitter = 1e-8 * (1.0 + jnp.trace(cov) / d)
        chol = jnp.linalg.cholesky(cov + jitter * jnp.eye(d, dtype=cov.dtype))
        # A failed Cholesky (NaN) falls back to the diagonal.
        diag = jnp.diag(jnp.sqrt(jnp.maximum(jnp.diag(cov), jitter)))
        chol = jnp.where(jnp.all(jnp.isfinite(chol)), chol, diag)
        return RWMHParams(factor * chol)

    def initial_params(self, positions: jax.Array) -> RWMHParams:
        return self.params_from_particles(positions)


# ------------------------------------------------------------------------------------------
# Hamiltonian Monte Carlo
# ------------------------------------------------------------------------------------------


class HMCState(NamedTuple):
    """One particle: position ``[d]``, log-density, its gradient ``[d]`` and ``aux``."""

    position: jax.Array
    logdensity: jax.Array
    grad: jax.Array
    aux: Any


class HMCParams(NamedTuple):
    r"""``step_size`` :math:`\epsilon` (scalar) and the inverse mass: ``inverse_mass [d]``, a
    diagonal :math:`M^{-1}`, or ``[d, d]``, a lower-triangular :math:`L` with
    :math:`M^{-1} = L L^\top`."""

    step_size: jax.Array
    inverse_mass: jax.Array


def adapt_step_size(step_size, acceptance_rate, target, rate=1.0, max_factor=1.25):
    r"""Step-size update from a mean acceptance rate :math:`\bar a`:

    .. math:: \epsilon' = \epsilon \cdot \mathrm{clip}\big(\exp(\kappa(\bar a - a^*)),
              1/c, c\big)

    with :math:`\kappa` = ``rate``, :math:`a^*` = ``target`` and :math:`c` = ``max_factor``.
    Too many rejections shrink the step, too few grow it, by at most a factor :math:`c` per
    update. A NaN rate leaves the step unchanged.
    """
    factor = jnp.clip(jnp.exp(rate * (acceptance_rate - target)), 1.0 / max_factor, max_factor)
    return jnp.where(jnp.isnan(acceptance_rate), step_size, step_size * factor)


@dataclasses.dataclass(frozen=True)
class HMC:
    r"""Hamiltonian Monte Carlo with a population mass matrix and a fixed number of leapfrog steps.

    Hamiltonian :math:`H(x, p) = -\ell(x) + \tfrac12 p^\top M^{-1} p`, momentum
    :math:`p \sim \mathcal N(0, M)`. Leapfrog, :math:`L` times:

    .. math::
        p \leftarrow p + \tfrac{\epsilon}{2}\nabla\ell(x),\quad
        x \leftarrow x + \epsilon M^{-1} p,\quad
        p \leftarrow p + \tfrac{\epsilon}{2}\nabla\ell(x),

    accepted with probability :math:`\min\{1, \exp(H(x, p) - H(x', p'))\}`; a proposal with a NaN
    or infinite energy is rejected (a divergence).

    **Tuning from the population.** :math:`M^{-1} = \hat\Sigma`, the particles' covariance: with
    :math:`\hat\Sigma = L L^\top` the move is HMC with identity mass on :math:`L^{-1}x`, where
    the target is roughly isotropic. A diagonal :math:`M^{-1}` on a correlated target makes the
    stable step size that of the narrowest direction, so the acceptance falls off a cliff when
    :math:`\epsilon` overshoots it; the full matrix removes that. The step size is adapted
    after every sweep by :func:`adapt_step_size` (at most ``max_step_change`` per sweep),
    so a temperature's first sweeps correct the step inherited from the previous one.

    Args:
        num_integration_steps: leapfrog steps per move (static).
        target_acceptance: :math:`a^*` for :func:`adapt_step_size`.
        initial_step_size: :math:`\epsilon` at the first SMC step, in units of the mass-matrix
            scaled coordinates; ``None`` means :math:`d^{-1/4}`.
        mass: ``"auto"`` (full covariance up to ``max_full_dim`` coordinates, else diagonal),
            ``"full"`` or ``"diag"``.
        max_full_dim: the largest dimension for which ``"auto"`` uses the full covariance
            (:math:`O(d^2)` per leapfrog step, :math:`O(d^3)` per SMC step).
        max_step_change: the bound :math:`c > 1` on the step-size factor per sweep.
    """

    num_integration_steps: int = 5
    target_acceptance: float = 0.65
    initial_step_size: float | None = None
    mass: str = "auto"
    max_full_dim: int = 64
    max_step_change: float = 1.25

    name = "hmc"

    def __post_init__(self):
        if int(self.num_integration_steps) < 1:
            raise ValueError(
                f"HMC: num_integration_steps must be >= 1, got {self.num_integration_steps}"
            )
        if not 0.0 < float(self.target_acceptance) < 1.0:
            raise ValueError(
                f"HMC: target_acceptance must be in (0, 1), got {self.target_acceptance}"
            )
        if self.initial_step_size is not None and not float(self.initial_step_size) > 0:
            raise ValueError(f"HMC: initial_step_size must be > 0, got {self.initial_step_size}")
        if self.mass not in ("auto", "full", "diag"):
            raise ValueError(f"HMC: mass must be 'auto', 'full' or 'diag', got {self.mass!r}")
        if not float(self.max_step_change) > 1.0:
            raise ValueError(f"HMC: max_step_change must be > 1, got {self.max_step_change}")

    @staticmethod
    def init(position: jax.Array, logdensity_fn: LogDensityFn) -> HMCState:
        (logdensity, aux), grad = jax.value_and_grad(logdensity_fn, has_aux=True)(position)
        return HMCState(position, logdensity, grad, aux)

    def step(
        self, key: jax.Array, state: HMCState, logdensity_fn: LogDensityFn, params: HMCParams
    ) -> tuple[HMCState, KernelInfo]:
        """One HMC move (momentum refresh, ``num_integration_steps`` leapfrog steps, MH test)."""
        z, u = _noise(key, state.position.shape, state.position.dtype)
        return self.move(state, z, u, logdensity_fn, params)

    def move(self, state: HMCState, z, u, logdensity_fn: LogDensityFn, params: HMCParams):
        r"""The move given its noise: ``z ~ N(0, I_d)`` (momentum :math:`p = L^{-\top} z`, or
        :math:`z / \sqrt{m^{-1}}` for a diagonal mass) and the acceptance uniform ``u``."""
        eps, inv_mass = params.step_size, params.inverse_mass
        if inv_mass.ndim == 1:
            p0 = z / jnp.sqrt(inv_mass)
            velocity = lambda p: inv_mass * p  # noqa: E731
            kinetic = lambda p: 0.5 * jnp.sum(inv_mass * p**2)  # noqa: E731
        else:
            p0 = jax.scipy.linalg.solve_triangular(inv_mass.T, z, lower=False)
            velocity = lambda p: inv_mass @ (inv_mass.T @ p)  # noqa: E731
            kinetic = lambda p: 0.5 * jnp.sum((inv_mass.T @ p) ** 2)  # noqa: E731

        def leapfrog(_, carry):
            s, p = carry
            p = p + 0.5 * eps * s.grad
            x = s.position + eps * velocity(p)
            s = HMC.init(x, logdensity_fn)
            p = p + 0.5 * eps * s.grad
            return s, p

        new, p1 = jax.lax.fori_loop(0, int(self.num_integration_steps), leapfrog, (state, p0))
        log_ratio = (new.logdensity - kinetic(p1)) - (state.logdensity - kinetic(p0))
        log_ratio = jnp.where(jnp.isfinite(log_ratio), log_ratio, -jnp.inf)
        accept, prob = accept_given(u, log_ratio)
        return select_rows(accept, new, state), KernelInfo(prob, accept)

    def step_batch(self, key, states: HMCState, logdensity_fn: LogDensityFn, params: HMCParams):
        """:meth:`step` for every particle of ``states`` (leaves ``[N, ...]``), with one key."""
        z, u = _noise(key, states.position.shape, states.position.dtype)
        return jax.vmap(self.move, in_axes=(0, 0, 0, None, None))(states, z, u, logdensity_fn, params)

    def adapt(self, params: HMCParams, acceptance_rate) -> HMCParams:
        """The step size after a sweep whose mean acceptance was ``acceptance_rate``."""
        return params._replace(step_size=adapt_step_size(
            params.step_size, acceptance_rate, self.target_acceptance,
            max_factor=self.max_step_change).astype(params.step_size.dtype))

    def params_from_particles(
        self, positions: jax.Array, previous_params: HMCParams | None = None, acceptance_rate=None
    ) -> HMCParams:
        r"""The inverse mass from the population ``positions [N, d]``: the Cholesky factor of
        its covariance (``mass="full"``, or ``"auto"`` with :math:`d \le` ``max_full_dim``) or its
        variances. The step size is carried over from ``previous_params`` (it is adapted after
        every sweep, :meth:`adapt`), or the initial one. ``acceptance_rate`` is accepted for a
        common interface and not used."""
        del acceptance_rate
        n, d = positions.shape
        var = jnp.var(positions, axis=0)
        var = jnp.maximum(var, 1e-12 * (1.0 + jnp.mean(var)))
        full = self.mass == "full" or (self.mass == "auto" and d <= int(self.max_full_dim))
        if full:
            cov = jnp.cov(positions, rowvar=False).reshape(d, d)
            jitter = 1e-6 * (1.0 + jnp.trace(cov) / d)
            chol = jnp.linalg.cholesky(cov + jitter * jnp.eye(d, dtype=cov.dtype))
            inverse_mass = jnp.where(jnp.all(jnp.isfinite(chol)), chol, jnp.diag(jnp.sqrt(var)))
        else:
            inverse_mass = var
        if previous_params is None:
            step_size = self._initial_step_size(d, positions.dtype)
        else:
            step_size = previous_params.step_size
        return HMCParams(jnp.asarray(step_size, positions.dtype), inverse_mass)

    def _initial_step_size(self, d, dtype):
        if self.initial_step_size is not None:
            return jnp.asarray(self.initial_step_size, dtype)
        return jnp.asarray(d ** -0.25, dtype)

    def initial_params(self, positions: jax.Array) -> HMCParams:
        return self.params_from_particles(positions)


KERNELS = {"rwmh": RWMH, "hmc": HMC}


def get_kernel(kernel) -> RWMH | HMC:
    """``"rwmh"`` / ``"rwmh_full"`` / ``"hmc"`` or a configured :class:`RWMH` / :class:`HMC`."""
    if isinstance(kernel, (RWMH, HMC)):
        return kernel
    if kernel == "rwmh":
        return RWMH()
    if kernel == "rwmh_full":
        return RWMH(covariance="full")
    if kernel == "hmc":
        return HMC()
    raise ValueError(
        f"kernel={kernel!r} is not a known rejuvenation kernel; use 'rwmh', 'rwmh_full', 'hmc', "
        "or an instance of ppl.smc.kernels.RWMH(...) / ppl.smc.kernels.HMC(...)"
    )
