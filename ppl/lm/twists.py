r"""Learning twists by contrastive twist learning (CTL; Zhao, Brekelmans, Makhzani & Grosse 2024).

A twisted filter for the target :math:`\sigma(x) \propto q(x)\,\varphi(x)` (:func:`ppl.lm.twisted`)
targets, after step :math:`t`, the intermediate distribution

.. math::

    \pi_t^\theta(x_{1:t}) \propto q(x_{1:t})\, \psi_t^\theta(x_{1:t}),

and is best when :math:`\pi_t^\theta` is the target's own marginal :math:`\sigma(x_{1:t})`, i.e.
when :math:`\psi_t \propto \mathbb{E}_q[\varphi \mid x_{1:t}]`. CTL fits :math:`\theta` by
minimising :math:`\sum_t \mathrm{KL}(\sigma(x_{1:t}) \,\|\, \pi_t^\theta)`, whose gradient is

.. math::

    \nabla_\theta \mathcal{L} = \sum_t \Big( -\mathbb{E}_{\sigma}\big[\nabla_\theta \log\psi_t^\theta(x_{1:t})\big]
        + \mathbb{E}_{\pi_t^\theta}\big[\nabla_\theta \log\psi_t^\theta(x_{1:t})\big] \Big).

The first expectation uses exact target samples (positives: :func:`ppl.smc.exact_references`),
the second the twisted filter's own particles without resampling (negatives), self-normalised by
their importance weights :math:`w_t^k \propto \pi_t^\theta / q`: the engine's per-step weights of
a run with ``ess_threshold=0``. A finished prefix has :math:`\psi = \varphi` (no parameters), so it
only enters the normalisation. :func:`ctl_loss` is the surrogate whose gradient is the estimate;
:func:`train_twist` runs it with optax.

``log_psi(params, state) -> log psi`` is one particle's twist (a table in the tests; a flax head
reading the LM state's features for a real model).
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ppl.core.checks import check_int, check_positive
from ppl.lm.potentials import twisted
from ppl.smc import resampling as rs
from ppl.smc.loop import build_filter, trajectories

__all__ = ["TwistTraining", "ctl_loss", "ctl_surrogate", "pool_log_weights", "train_twist"]


def _open(states, max_steps: int) -> jax.Array:
    return ~states.done & (states.num_steps < max_steps)


def ctl_surrogate(pos_log_psi, pos_open, neg_log_psi, neg_open, neg_log_weights, pos_weights=None) -> jax.Array:
    r"""The CTL surrogate from twist values (its gradient is the estimate of the module docstring;
    its value is not a KL).

    ``pos_log_psi``, ``pos_open``: :math:`\log\psi_t` of the positives' prefixes and whether each
    is open (not finished, fewer than ``max_steps`` steps), ``[R, T]``; ``pos_weights`` ``[R]``
    (default uniform) weighs the positives (e.g. a 0/1 acceptance mask; normalised here).
    ``neg_log_psi``, ``neg_open``, ``neg_log_weights``: the same for the negatives, ``[M, T]``,
    with their log-weights normalised over :math:`M` at each step (treated as constants).
    """
    r = pos_log_psi.shape[0]
    pw = jnp.full((r,), 1.0 / r) if pos_weights is None else pos_weights / jnp.maximum(jnp.sum(pos_weights), 1e-12)
    pos = jnp.sum(pw[:, None] * jnp.where(pos_open, pos_log_psi, 0.0))
    w = jax.lax.stop_gradient(jnp.exp(neg_log_weights))
    neg = jnp.sum(jnp.where(neg_open, w * neg_log_psi, 0.0))
    return neg - pos


def pool_log_weights(log_psi, is_open, log_phi) -> jax.Array:
    r"""``[M, T]``: the normalised log-weights after each step of a twisted filter *without
    resampling* whose ``M`` particles are the given draws of the sampler :math:`q`: a particle
    whose prefix is open at step :math:`t` weighs :math:`\psi_t(x_{1:t})`, a finished one its
    :math:`\varphi(x)` (``log_psi``, ``is_open`` ``[M, T]``; ``log_phi`` ``[M]``). So negatives
    can be re-weighted for new parameters without re-running the filter."""
    v = jnp.where(is_open, log_psi, log_phi[:, None])
    return jax.nn.log_softmax(v, axis=0)


def ctl_loss(log_psi: Callable, params, positives, negatives, negative_log_weights, max_steps: int) -> jax.Array:
    r""":func:`ctl_surrogate` of particle states.

    ``positives``: exact target trajectories, leaves ``[R, T, ...]``; ``negatives``: the twisted
    filter's trajectories without resampling, ``[M, T, ...]``, with ``negative_log_weights``
    ``[T, M]`` their normalised log-weights after each step (treated as constants). Open prefixes
    (not finished, fewer than ``max_steps`` steps) contribute.
    """
    lp = jax.vmap(jax.vmap(lambda s: log_psi(params, s)))  # [K, T]
    return ctl_surrogate(lp(positives), _open(positives, max_steps), lp(negatives), _open(negatives, max_steps),
                         negative_log_weights.T)


class TwistTraining(NamedTuple):
    """What :func:`train_twist` returns: the fitted ``params`` and the surrogate per iteration."""

    params: object
    losses: np.ndarray


def train_twist(program, log_psi: Callable, params, final, references, *, key: jax.Array, num_iterations: int = 200,
                num_negatives: int = 256, batch_size: int | None = None, learning_rate: float = 0.05,
                optimizer=None) -> TwistTraining:
    r"""Fit a twist by CTL (see the module docstring) with optax.

    Parameters
    ----------
    program
        An :class:`~ppl.lm.LMProgram` without potential: the sampler :math:`q` and the horizon.
    log_psi
        ``log_psi(params, state) -> log psi`` for one particle; ``params`` a pytree of arrays.
    params
        The initial parameters.
    final
        The target's final potential :math:`\log\varphi` (a :class:`~ppl.lm.Potential` or
        ``(prev, state) -> log phi``), as in :func:`ppl.lm.twisted`.
    references
        Exact target trajectories (leaves ``[R, T, ...]``, e.g. from
        :func:`ppl.smc.exact_references` of ``program.with_potential(when_finished(final))``).
    key
        A ``jax.random.key``.
    num_iterations, num_negatives, batch_size, learning_rate, optimizer
        Adam (``optimizer``: any optax transformation instead) for ``num_iterations`` steps; each
        draws ``num_negatives`` fresh negatives from the twisted filter and ``batch_size``
        positives (default all ``R``).
    """
    n_iter = check_int("num_iterations", num_iterations, 1)
    m = check_int("num_negatives", num_negatives, 1)
    r = int(jax.tree_util.tree_leaves(references)[0].shape[0])
    b = r if batch_size is None else min(check_int("batch_size", batch_size, 1), r)
    opt = optax.adam(check_positive("learning_rate", learning_rate)) if optimizer is None else optimizer
    T = int(program.num_steps)

    @jax.jit
    def update(params, opt_state, data, key):
        k_neg, k_pos = jax.random.split(key)
        model = program.with_potential(twisted(lambda s: log_psi(params, s), final, T), correct_proposal=False)
        res, _, _ = build_filter(model, m, rs.systematic, 0.0, keep_history=True)(data, k_neg)
        negatives = jax.lax.stop_gradient(trajectories(res))
        pick = jax.random.choice(k_pos, r, (b,), replace=False)
        positives = jax.tree_util.tree_map(lambda a: a[pick], references)
        loss, grads = jax.value_and_grad(ctl_loss, argnums=1)(log_psi, params, positives, negatives,
                                                              res.history_log_weights, T)
        updates, opt_state = opt.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    opt_state, losses = opt.init(params), []
    for k in jax.random.split(key, n_iter):
        params, opt_state, loss = update(params, opt_state, program.data, k)
        losses.append(float(loss))
    return TwistTraining(params, np.asarray(losses))
