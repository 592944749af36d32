r"""The SMC loop: one compiled ``lax.while_loop`` over time, particles lifted with ``vmap``.

For a Feynman–Kac model (:class:`~ppl.core.feynman_kac.FeynmanKac`) and :math:`N` particles,
:func:`run_smc` runs the generic particle filter (Chopin & Papaspiliopoulos 2020, alg. 10.1):

1. :math:`x_0^n \sim M_0` (or :math:`q_0`), :math:`\log w_0^n = \log G_0(x_0^n)` (+ correction).
2. For :math:`t = 1, \dots, T-1`:

   a. with normalised weights :math:`W_{t-1}^n`, compute
      :math:`\mathrm{ESS} = 1 / \sum_n (W_{t-1}^n)^2`; if :math:`\mathrm{ESS} < \kappa N`
      (``ess_threshold`` :math:`=\kappa`; :math:`\kappa \ge 1` resamples at every step,
      :math:`\kappa = 0` never), draw ancestors :math:`A^n` with the resampling scheme and set
      :math:`W_{t-1}^n = 1/N`; otherwise :math:`A^n = n`;
   b. move :math:`x_t^n \sim M_t(x_{t-1}^{A^n}, \cdot)` (or :math:`q_t`) and reweight
      :math:`\log w_t^n = \log W_{t-1}^n + \log G_t^n` (+ correction).

3. The log-evidence estimate is

   .. math::

       \log \hat Z_T = \sum_{t=0}^{T-1} \log \sum_{n=1}^N W_{t-1}^n G_t^n,
       \qquad W_{-1}^n = 1/N,

   which is unbiased for :math:`Z_T` on the natural scale (:math:`\mathbb{E}\,\hat Z_T = Z_T`)
   for every unbiased resampling scheme.

A particle whose ``done`` flag is set is not moved; its incremental weight is 0 (it keeps its
weight), or with ``finished=ppl.smc.base.absorbing`` its final potential again at every later
step. The loop stops after :math:`T` steps or as soon as every particle is done (the factors of
the steps not run are then applied in closed form; ``finished`` must satisfy
:math:`f(f(g)) = f(g)`, as :func:`~ppl.smc.base.factor_one` and :func:`~ppl.smc.base.absorbing`
do; with :func:`~ppl.smc.base.reweighed` every one of the :math:`T` steps is run). If at some step every weight is zero
(all log-weights :math:`-\infty`) or a potential is NaN or :math:`+\infty`, the loop stops
there and :func:`run_smc` raises :class:`~ppl.core.errors.SMCError` naming the step. NaN in the
data is an error before any compute (a numpyro density would silently read it as impossible).

Compiled code is cached per model structure and static options: running the same model on new
data of the same shape, or with a new key, does not recompile.
"""

from __future__ import annotations

import functools
import math
from typing import Any, NamedTuple, Optional, Union

import jax
import jax.numpy as jnp

from ppl.core.cache import LRUCache
from ppl.core.checks import check_fraction, check_no_nan
from ppl.core.errors import SMCError
from ppl.core.feynman_kac import FeynmanKac
from ppl.core.protocols import FeynmanKacModel
from ppl.smc import base
from ppl.smc import resampling as rs

__all__ = ["run_smc", "SMCResult", "genealogy", "trajectory", "trajectories"]

class SMCResult(NamedTuple):
    """The output of :func:`run_smc` (every field gains a leading axis for a batch of keys).

    Attributes
    ----------
    particles
        Final states, a pytree with leaves ``[N, ...]``.
    log_weights
        ``[N]`` normalised final log-weights (``logsumexp == 0``).
    log_evidence
        :math:`\\log \\hat Z` (scalar).
    ess
        ``[T]`` effective sample size after reweighting at each step (NaN for steps not run).
    log_evidence_increments
        ``[T]`` the terms of :math:`\\log \\hat Z`.
    resampled
        ``[T]`` whether the particles were resampled at the start of step ``t``.
    ancestors
        ``[T, N]`` ancestor indices: slot ``n`` at step ``t`` descends from slot
        ``ancestors[t, n]`` at step ``t - 1`` (identity when not resampled; row 0 is identity).
    num_steps
        The number of steps run (fewer than ``T`` when every particle finished early).
    history
        With ``keep_history=True``, the states at every step, leaves ``[T, N, ...]`` (steps not
        run repeat the final states); else ``None``.
    history_log_weights
        With ``keep_history=True``, ``[T, N]`` normalised log-weights after each step.
    aux
        What the filter's :class:`~ppl.smc.base.Collector` accumulated (``None`` without one).
    """

    particles: Any
    log_weights: jax.Array
    log_evidence: jax.Array
    ess: jax.Array
    log_evidence_increments: jax.Array
    resampled: jax.Array
    ancestors: jax.Array
    num_steps: jax.Array
    history: Any = None
    history_log_weights: Optional[jax.Array] = None
    aux: Any = None


def build_filter(fk, num_particles: int, scheme, ess_threshold: float, keep_history: bool = False,
                 constrain=None, interact=None, finished=base.factor_one, collect=None, adjust=None):
    r"""The uncompiled filter ``run(data, key) -> (SMCResult, failure, step)``: the one SMC loop.

    ``fk`` is any model with the batched Feynman–Kac protocol (``init_batch``, ``step_batch``,
    ``done_batch``, ``data_at``, ``num_steps``, ``freezes_done``): a
    :class:`~ppl.core.feynman_kac.FeynmanKac` or an :class:`~ppl.lm.LMProgram`. ``scheme`` is a
    resampling scheme or a :class:`~ppl.smc.resampling.Selection`; ``finished`` and ``collect``
    are the hooks of :func:`ppl.smc.base.step`, and ``adjust(t, parents, x, inc)`` its ``adjust``
    hook at step ``t`` (``parents=None`` at step 0; conditional SMC pins a reference there). The
    methods of :mod:`ppl.scaling` call it inside their own compiled functions.

    ``run(data, key, particles)`` continues given particles instead of drawing new ones: they
    start equally weighted, ``collect.init(particles)`` starts the collector, and each of the
    :math:`T` iterations is a step (power sampling regenerates a suffix this way).

    **Keys.** Every step :math:`t \ge 0` splits the running key: ``key, k_select, k_move =
    split(key, 3)``, or ``key, k_move = split(key)`` when the step draws no selection key (a
    deterministic selection, or ``ess_threshold=0``); step 0 (the initial draw) selects nothing
    and uses ``k_move``.

    ``constrain``, if given, is called as ``constrain(tree, role)`` on every pytree whose leaves
    have a leading particle axis, right after it is created, with ``role`` one of ``"state"``
    (particles), ``"weights"`` (incremental log-weights ``[N]``) or ``"ancestors"``;
    :mod:`ppl.smc.sharding` uses it to place them on a device mesh with
    ``with_sharding_constraint``. It must return ``tree`` unchanged in value.

    ``interact``, if given, is a pair ``(agree, between)`` that lets several filters running
    side by side (the islands of :mod:`ppl.smc.sharding`, one per device) exchange particles:

    * ``agree(failure, all_done) -> (failure, all_done)`` combines the stopping conditions of
      all the filters (e.g. with ``lax.pmax`` / ``lax.pmin`` over a mesh axis), so that they run
      the same number of steps (required when ``between`` uses collectives);
    * ``between(t, x, log_w, ess_prev, log_z) -> (x, log_w, ess_prev, log_z_adjust,
      ancestor_offset)`` is called at the start of every step :math:`t \ge 1`, before the
      resampling decision, with the particles, their normalised log-weights, their ESS and the
      running :math:`\log \hat Z_{t-1}`. It may replace the particles and weights (and their
      ESS, which drives the resampling decision); ``log_z_adjust`` is added to the
      log-evidence increment of step :math:`t` and ``ancestor_offset`` to the ancestors row
      :math:`t` (the ancestors then index another filter's slots).

    Without ``interact`` the compiled program is exactly the single-filter one.
    """
    pin = constrain if constrain is not None else base._no_pin
    T = int(fk.num_steps)
    N = int(num_particles)
    keyed = base.uses_key(scheme, ess_threshold)

    def keys(key):
        if keyed:
            return jax.random.split(key, 3)
        key, k_move = jax.random.split(key)
        return key, k_move, k_move

    def run(data, key, particles=None):
        if particles is None:
            key, _, k0 = keys(key)
            state, lz0 = base.init(fk, N, k0, fk.data_at(data, 0), pin=pin, collect=collect,
                                   adjust=None if adjust is None else functools.partial(adjust, 0))
            t0 = 1
        else:  # continue given particles (equally weighted): every one of the T iterations is a step
            zeros = jnp.zeros((N,), jnp.float32)
            state = base.SMCState(particles, zeros - math.log(N), jnp.asarray(float(N), jnp.float32),
                                  jnp.asarray(base.OK, jnp.int32), zeros,
                                  None if collect is None else collect.init(particles))
            lz0, t0 = jnp.zeros(()), 0
        ess = jnp.full((T,), jnp.nan).at[0].set(state.ess)
        lz_incs = jnp.zeros((T,)).at[0].set(lz0)
        resampled = jnp.zeros((T,), dtype=bool)
        ancestors = jnp.broadcast_to(jnp.arange(N, dtype=jnp.int32), (T, N))
        if keep_history:
            hist = jax.tree_util.tree_map(lambda l: jnp.zeros((T,) + l.shape, l.dtype).at[0].set(l),
                                          state.particles)
            hist_w = jnp.zeros((T, N)).at[0].set(state.log_weights)
        else:
            hist, hist_w = None, None

        def cond(c):
            t, _, state, *_ = c
            failure, all_done = state.failure, jnp.all(fk.done_batch(state.particles))
            if interact is not None:
                failure, all_done = interact[0](failure, all_done)
            if finished is base.reweighed:  # the model weighs finished particles: run every step
                all_done = jnp.asarray(False)
            return (t < T) & (failure == base.OK) & ~all_done

        def body(c):
            t, key, state, ess, lz_incs, resampled, ancestors, hist, hist_w = c
            key, k_res, k_move = keys(key)
            if interact is not None:
                x, log_w, ess_prev, lz_adjust, anc_offset = interact[1](
                    t, state.particles, state.log_weights, state.ess, jnp.sum(lz_incs))
                state = state._replace(particles=x, log_weights=log_w, ess=ess_prev)
            state, info = base.step(fk, state, t, k_res, k_move, fk.data_at(data, t), selection=scheme,
                                    ess_threshold=ess_threshold, finished=finished, pin=pin,
                                    collect=collect, adjust=None if adjust is None else functools.partial(adjust, t))
            lz_inc, anc = info.log_evidence_increment, info.ancestors
            if interact is not None:
                lz_inc, anc = lz_inc + lz_adjust, anc + anc_offset
            ess = ess.at[t].set(info.ess)
            lz_incs = lz_incs.at[t].set(lz_inc)
            resampled = resampled.at[t].set(info.resampled)
            ancestors = ancestors.at[t].set(anc)
            if keep_history:
                hist = jax.tree_util.tree_map(lambda h, l: h.at[t].set(l), hist, state.particles)
                hist_w = hist_w.at[t].set(state.log_weights)
            return (t + 1, key, state, ess, lz_incs, resampled, ancestors, hist, hist_w)

        carry = (jnp.asarray(t0, jnp.int32), key, state, ess, lz_incs, resampled, ancestors, hist, hist_w)
        t, _, state, ess, lz_incs, resampled, ancestors, hist, hist_w = jax.lax.while_loop(cond, body, carry)
        if finished is not base.factor_one and finished is not base.reweighed:
            # Every particle finished at step t - 1 < T - 1: the T - t steps not run would each
            # multiply a particle's weight by exp(finished(last)), in closed form.
            remaining = (T - t).astype(state.increments.dtype)
            done = fk.done_batch(state.particles)
            extra = jnp.where(done, remaining * finished(state.increments, state.increments), 0.0)
            log_w, lz_extra, _, _ = base.reweight(state.log_weights, extra)
            stopped_early = (t < T) & (state.failure == base.OK)
            state = state._replace(log_weights=jnp.where(stopped_early, log_w, state.log_weights))
            lz_incs = jnp.where(stopped_early, lz_incs.at[jnp.minimum(t, T - 1)].set(lz_extra), lz_incs)
        x, log_w = state.particles, state.log_weights
        if keep_history:
            tail = jnp.arange(T) >= t
            hist = jax.tree_util.tree_map(
                lambda h, l: jnp.where(tail.reshape((T,) + (1,) * l.ndim), l[None], h), hist, x)
            hist_w = jnp.where(tail[:, None], log_w[None], hist_w)
        res = SMCResult(
            particles=x,
            log_weights=log_w,
            log_evidence=jnp.sum(lz_incs),
            ess=ess,
            log_evidence_increments=lz_incs,
            resampled=resampled,
            ancestors=ancestors,
            num_steps=t,
            history=hist,
            history_log_weights=hist_w,
            aux=state.aux,
        )
        # The step at which a failure occurred is the last one run.
        return res, state.failure, t - 1

    return run


_CACHE = LRUCache(64)


def _compiled(fk: FeynmanKac, num_particles, scheme, ess_threshold, keep_history, batched,
              finished=base.factor_one):
    cache_key = (fk.static_key(), num_particles, scheme, ess_threshold, keep_history, batched, finished)

    def make():
        run = build_filter(fk, num_particles, scheme, ess_threshold, keep_history, finished=finished)
        if batched:
            run = jax.vmap(run, in_axes=(None, 0))
        return jax.jit(run)

    return _CACHE.get(cache_key, make)


def _is_key_batch(key) -> bool:
    key = jnp.asarray(key) if not isinstance(key, jax.Array) else key
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        if key.ndim > 1:
            raise ValueError(f"key: expected one key or a 1-d batch of keys, got shape {key.shape}")
        return key.ndim == 1
    if key.dtype != jnp.uint32 or key.ndim not in (1, 2):
        raise TypeError("key: expected a jax.random.key(...) (or a batch of them)")
    return key.ndim == 2


def _validate(fk, num_particles, ess_threshold, keep_history):
    if not isinstance(fk, FeynmanKacModel):
        raise TypeError(f"fk: expected a Feynman–Kac model (ppl.FeynmanKac, ppl.from_step_program, ppl.lm.LMProgram: "
                        f"see ppl.core.protocols.FeynmanKacModel), got {type(fk).__name__}")
    if isinstance(num_particles, bool) or int(num_particles) != num_particles or num_particles < 1:
        raise ValueError(f"num_particles: expected a positive integer, got {num_particles!r}")
    check_fraction("ess_threshold", ess_threshold)
    if not isinstance(keep_history, bool):
        raise TypeError(f"keep_history: expected a bool, got {type(keep_history).__name__}")


def _raise_failure(failure, step, what="SMC"):
    """Raise :class:`SMCError` for the first failed run (no-op under tracing)."""
    if isinstance(failure, jax.core.Tracer):
        return
    failure = jnp.atleast_1d(failure)
    step = jnp.atleast_1d(step)
    bad = [i for i, f in enumerate(failure.tolist()) if f != base.OK]
    if not bad:
        return
    i = bad[0]
    run = f" (run {i} of the batch)" if failure.shape[0] > 1 else ""
    s = int(step[i])
    if int(failure[i]) == base.NAN:
        raise SMCError(f"{what}: a log-potential was NaN at step {s}{run}; check the model's "
                       "log_potential / observation densities for invalid values", step=s)
    if int(failure[i]) == base.INF:
        raise SMCError(f"{what}: a log-potential was +inf at step {s}{run}, so the weights cannot be "
                       "normalised; a log-potential must be finite, or -inf for a hard constraint",
                       step=s)
    raise SMCError(f"{what}: every particle weight became zero (log-weight -inf) at step {s}{run}; "
                   "the potentials rule out every particle — relax a hard constraint, use more "
                   "particles or a better proposal", step=s)


def run_smc(fk: FeynmanKac, num_particles: int, *, key: jax.Array,
            resampling: Union[str, rs.ResamplingFn] = "systematic", ess_threshold: float = 0.5,
            keep_history: bool = False, finished=base.factor_one) -> SMCResult:
    r"""Run a particle filter on a Feynman–Kac model.

    Parameters
    ----------
    fk
        The model (:class:`~ppl.core.feynman_kac.FeynmanKac` or
        :func:`~ppl.core.step_program.from_step_program`).
    num_particles
        :math:`N`.
    key
        A ``jax.random.key``; a 1-d batch of keys runs that many independent filters (vmapped in
        one compiled call) and gives every result field a leading batch axis.
    resampling
        A scheme name (``"systematic"``, ``"stratified"``, ``"multinomial"``, ``"residual"``,
        ``"killing"``), :func:`ppl.smc.resampling.top_k` (beam search; not unbiased), or a callable
        ``(key, log_weights, n) -> indices``.
    ess_threshold
        Resample when :math:`\mathrm{ESS} < \kappa N`; ``1.0`` resamples at every step, ``0.0``
        never (sequential importance sampling).
    keep_history
        Also return the particles and weights at every step (memory :math:`T \times N`).
    finished
        What a finished (``done``) particle's incremental weight is, from the last one it
        received and the model's at this step: :func:`ppl.smc.base.factor_one` (0: it keeps its
        weight; the default), :func:`ppl.smc.base.absorbing` (its final potential again at every
        later step) or :func:`ppl.smc.base.reweighed` (the model's potential of the unmoved
        particle).

    Returns
    -------
    SMCResult

    Raises
    ------
    SMCError
        If every weight becomes zero or a potential is NaN; the message names the step.
    """
    _validate(fk, num_particles, ess_threshold, keep_history)
    if fk.time_indexed:  # an LM program's "data" are its weights and prompt
        check_no_nan(fk.data, "data", time_axis=True)
    scheme = rs.get_scheme(resampling)
    batched = _is_key_batch(key)
    if not callable(finished):
        raise TypeError(f"finished: expected a callable such as ppl.smc.base.absorbing, got "
                        f"{type(finished).__name__}")
    fn = _compiled(fk, int(num_particles), scheme, float(ess_threshold), keep_history, batched, finished)
    res, failure, step = fn(fk.data, key)
    _raise_failure(failure, step)
    return res


# ------------------------------------------------------------------------------------------
# Genealogy


def genealogy(ancestors: jax.Array, index: jax.Array) -> jax.Array:
    """Slot indices ``[T]`` of the ancestral line ending in final slot ``index``.

    ``b[T-1] = index`` and ``b[t-1] = ancestors[t, b[t]]``.
    """

    def back(b, anc_t):
        return anc_t[b], b

    _, line = jax.lax.scan(back, jnp.asarray(index, jnp.int32), ancestors, reverse=True)
    return line


def trajectory(result: SMCResult, index) -> Any:
    """The full path :math:`x_{0:T-1}` (leaves ``[T, ...]``) of final particle ``index``.

    Needs a result computed with ``keep_history=True``.
    """
    if result.history is None:
        raise ValueError("result: trajectories need run_smc(..., keep_history=True)")
    line = genealogy(result.ancestors, index)
    T = result.ancestors.shape[0]
    return jax.tree_util.tree_map(lambda h: h[jnp.arange(T), line], result.history)


def trajectories(result: SMCResult) -> Any:
    """The paths of every final particle: leaves ``[N, T, ...]``."""
    n = result.log_weights.shape[-1]
    return jax.vmap(lambda i: trajectory(result, i))(jnp.arange(n))
