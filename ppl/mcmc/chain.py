r"""The MCMC loop and the moves the scaling methods share.

:func:`run_chain` iterates a kernel ``kernel(key, state, i) -> (state, info)`` for :math:`I`
iterations in one ``lax.scan`` (one key per iteration, ``jax.random.split(key, I)``) and stacks
the infos: particle Gibbs and parallel tempering (a conditional SMC sweep per iteration, plus a
swap move) and power sampling (a Metropolis–Hastings step per iteration) are kernels for it.

:func:`swap_neighbours` is parallel tempering's exchange move: chains :math:`k = 1, \dots, M`
at inverse temperatures :math:`\beta_1 < \dots < \beta_M`, targets
:math:`\pi_k(x) \propto q(x) \exp(\beta_k \Phi(x))`; neighbours :math:`(k, k+1)`, in turn, swap
their states with probability :math:`\min(1, \exp[(\Phi(x') - \Phi(x))(\beta_k - \beta_{k+1})])`
(:func:`swap_log_ratio`; :math:`q` cancels).
"""

from __future__ import annotations

import math

from typing import Any, Callable

import jax
import jax.numpy as jnp

__all__ = ["run_chain", "accept_given", "mh_accept", "swap_log_ratio", "swap_neighbours", "check_temperatures"]


def run_chain(kernel: Callable, state: Any, key: jax.Array, num_iterations: int):
    """``(final_state, infos)``: ``num_iterations`` iterations of ``kernel(key, state, i) ->
    (state, info)``, the infos stacked along a leading axis."""
    n = int(num_iterations)
    return jax.lax.scan(lambda s, xs: kernel(xs[0], s, xs[1]), state, (jax.random.split(key, n), jnp.arange(n)))


def accept_given(u: jax.Array, log_ratio: jax.Array) -> tuple[jax.Array, jax.Array]:
    r"""``(accept, prob)`` of a Metropolis–Hastings move given its uniform ``u``:
    ``log u < log_ratio``, and :math:`\min(1, e^{\log a})`; a NaN ratio is a rejection."""
    log_ratio = jnp.where(jnp.isnan(log_ratio), -jnp.inf, log_ratio)
    return jnp.log(u) < log_ratio, jnp.exp(jnp.minimum(log_ratio, 0.0))


def mh_accept(key: jax.Array, log_ratio: jax.Array) -> jax.Array:
    r"""Metropolis–Hastings acceptance: ``log U < log_ratio`` with :math:`U \sim \mathcal U(0, 1)`
    of the shape of ``log_ratio`` (accepted with probability :math:`\min(1, e^{\log a})`)."""
    return accept_given(jax.random.uniform(key, jnp.shape(log_ratio)), log_ratio)[0]


def swap_log_ratio(phi_k, phi_k1, temperature_k, temperature_k1):
    r"""Log acceptance ratio of swapping the states of chains :math:`k` and :math:`k+1`.

    With :math:`\pi_k(x) \propto q(x) \exp(\Phi(x) / T_k)`, chain :math:`k` holding :math:`x`
    (``phi_k`` :math:`= \Phi(x)`) and chain :math:`k+1` holding :math:`x'`
    (``phi_k1`` :math:`= \Phi(x')`),

    .. math::

        \log \frac{\pi_k(x')\,\pi_{k+1}(x)}{\pi_k(x)\,\pi_{k+1}(x')}
        = (\Phi(x') - \Phi(x)) \Big(\frac{1}{T_k} - \frac{1}{T_{k+1}}\Big).
    """
    return (phi_k1 - phi_k) * (1.0 / temperature_k - 1.0 / temperature_k1)


def swap_neighbours(key: jax.Array, phi: jax.Array, inv_temps: jax.Array):
    r"""Parallel tempering's swap move over ``M`` chains with potentials ``phi [M]`` at inverse
    temperatures ``inv_temps [M]``: pairs :math:`(k, k+1)` for :math:`k = 1, \dots, M-1` in turn.

    Returns ``(perm [M], accepted [M-1], prob [M-1])``: chain :math:`k` takes the state of chain
    ``perm[k]``; whether each swap was accepted and its acceptance probability.
    """
    m = phi.shape[0]
    log_u = jnp.log(jax.random.uniform(key, (m - 1,)))

    def swap(k, carry):
        perm, acc, prob = carry
        a, b = perm[k], perm[k + 1]
        log_r = swap_log_ratio(phi[a], phi[b], 1.0 / inv_temps[k], 1.0 / inv_temps[k + 1])
        ok = log_u[k] < log_r
        perm = perm.at[k].set(jnp.where(ok, b, a)).at[k + 1].set(jnp.where(ok, a, b))
        return perm, acc.at[k].set(ok.astype(jnp.float32)), prob.at[k].set(jnp.minimum(1.0, jnp.exp(log_r)))

    zeros = jnp.zeros((m - 1,), jnp.float32)
    return jax.lax.fori_loop(0, m - 1, swap, (jnp.arange(m), zeros, zeros))


def check_temperatures(temperatures) -> tuple:
    r"""Parallel tempering's ladder :math:`T_1 > \dots > T_M > 0` (hottest first, at least two), as a
    tuple of floats; else a ValueError naming ``temperatures``."""
    try:
        temps = tuple(float(t) for t in temperatures)
    except (TypeError, ValueError):
        raise ValueError(f"temperatures: expected a sequence of positive numbers, got {temperatures!r}") from None
    if len(temps) < 2 or not all(t > 0 and math.isfinite(t) for t in temps) or any(
            a <= b for a, b in zip(temps, temps[1:])):
        raise ValueError(f"temperatures: expected at least two positive numbers in strictly decreasing order "
                         f"(hottest first, coldest last), got {temperatures!r}")
    return temps
