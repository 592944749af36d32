r"""The SMC kernel: ``init`` and ``step`` over NamedTuple states.

In the shape of blackjax's ``smc/base.py``: a filter is ``state = init(...)`` followed by
``state, info = step(state, ...)`` for :math:`t = 1, 2, \dots`, and :func:`ppl.run_smc` is the
loop over :func:`step` (one ``lax.while_loop`` under ``jit``) that records each
:class:`StepInfo`. One step of the generic particle filter (Chopin & Papaspiliopoulos 2020,
alg. 10.1), with normalised weights :math:`W_{t-1}` and :math:`\mathrm{ESS}_{t-1}` in the state:

1. **select**: if :math:`\mathrm{ESS}_{t-1} < \kappa N` (``ess_threshold`` :math:`= \kappa`;
   :math:`\kappa \ge 1` every step, :math:`\kappa = 0` never), draw ancestors
   :math:`A^{1:N}` with ``selection`` — an unbiased resampling scheme, or a deterministic one
   such as :func:`~ppl.smc.resampling.top_k` (beam search) or a
   :class:`~ppl.smc.resampling.Selection` that reads the particles (the top scored unfinished
   ones, the best of each subtree) — gather the particle set and set
   :math:`W_{t-1} = 1/N`; otherwise :math:`A^n = n`;
2. **move**: :math:`x_t^n \sim M_t(x_{t-1}^{A^n}, \cdot)` (or the proposal) for the whole set,
   :meth:`~ppl.core.feynman_kac.FeynmanKac.step_batch`;
3. **finished particles**: a particle whose ``done`` flag was set keeps its state, and its
   incremental weight is ``finished(last, inc)`` of the last one it received and of the one the
   model gives it now: :func:`factor_one` (:math:`\log G = 0`, the particle keeps its weight;
   the default), :func:`absorbing` (its final potential repeated at every later step, the target
   of Puri et al.'s particle filter) or :func:`reweighed` (the model's own potential of the
   unmoved particle, e.g. under a per-step temperature);
4. **reweight**: :math:`\log w_t^n = \log W_{t-1}^n + \log G_t^n`, normalise, and report the
   log-evidence increment :math:`\log \sum_n W_{t-1}^n G_t^n`, the ESS and a failure code
   (NaN or :math:`+\infty` potentials, every weight zero);
5. **collect**: a :class:`Collector`, if given, folds what the step did (parents after
   selection, children, which parents were finished) into ``state.aux``: compute counters
   (tokens, reward calls), a pool of finished beams, diagnostics.

Every choice is a value or a function passed in, never a string inside a private loop. The
``pin`` hook (``pin(tree, role) -> tree``) is called on every array with a particle axis right
after it is made; :mod:`ppl.smc.sharding` uses it to place them on a device mesh.
"""

from __future__ import annotations

import math
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
from jax.scipy.special import logsumexp

from ppl.core.trees import select_rows
from ppl.smc import resampling as rs

__all__ = ["SMCState", "StepInfo", "Collector", "init", "step", "reweight", "factor_one", "absorbing", "OK",
           "NAN", "ALL_ZERO", "INF"]

#: Failure codes: none, a NaN potential, every weight zero, a :math:`+\infty` potential.
OK, NAN, ALL_ZERO, INF = 0, 1, 2, 3

Pin = Callable[[Any, str], Any]


def _no_pin(tree, role):
    return tree


class SMCState(NamedTuple):
    """The particle system between steps.

    Attributes
    ----------
    particles
        States, a pytree with leaves ``[N, ...]``.
    log_weights
        ``[N]`` normalised log-weights (``logsumexp == 0``).
    ess
        Their effective sample size :math:`1 / \\sum_n W_n^2`.
    failure
        The failure code of the last reweighting (:data:`OK` when none).
    increments
        ``[N]`` the last incremental log-weight each particle received (it travels with the
        particle through resampling); what the ``finished`` hook reads.
    aux
        What a :class:`Collector` accumulates (``None`` without one).
    """

    particles: Any
    log_weights: jax.Array
    ess: jax.Array
    failure: jax.Array
    increments: jax.Array
    aux: Any = None


class Collector(NamedTuple):
    """An auxiliary accumulator carried through the filter in ``SMCState.aux``.

    ``init(particles) -> aux`` after the first particles are drawn; ``update(aux, parents,
    children, done) -> aux`` after each step, with the parents after selection, the moved
    particles and ``done [N]``, which parents were finished (not moved). Compute counters,
    diagnostics and pools of finished particles are collectors; they never change the particles.
    """

    init: Callable[[Any], Any]
    update: Callable[[Any, Any, Any, jax.Array], Any]


def factor_one(last: jax.Array, inc=None) -> jax.Array:
    r"""Finished particles get a factor 1 (:math:`\log G = 0`): they keep their weight."""
    return jnp.zeros_like(last)


def absorbing(last: jax.Array, inc=None) -> jax.Array:
    """Finished particles get their final potential again at every later step (absorbing)."""
    return last


def reweighed(last: jax.Array, inc: jax.Array) -> jax.Array:
    """Finished particles get what the model's potential gives them at this step (``inc``, from
    ``step_batch``, which leaves them in place): for a potential that weighs a finished particle
    itself, e.g. its final score under a per-step temperature. The loop then runs every step
    (no closed form for the steps after all particles finished)."""
    return inc


class StepInfo(NamedTuple):
    """What one step reports: ``ancestors [N]`` (the identity when not resampled),
    ``resampled``, the ``log_evidence_increment``, the ``ess`` after reweighting and the
    ``failure`` code."""

    ancestors: jax.Array
    resampled: jax.Array
    log_evidence_increment: jax.Array
    ess: jax.Array
    failure: jax.Array


def reweight(log_w_prev, inc):
    """Add incremental log-weights to normalised ones, with two reductions in all.

    Returns the normalised new log-weights, the log-evidence increment
    ``log sum_n W_prev^n G^n``, the ESS and a failure code: :data:`NAN` for a NaN potential of a
    live particle, :data:`INF` for a :math:`+\\infty` one, :data:`ALL_ZERO` when every weight is
    zero.
    """
    nan = jnp.isnan(inc)
    log_w = log_w_prev + jnp.where(nan, -jnp.inf, inc)
    lz_inc = logsumexp(log_w)
    log_w = log_w - lz_inc
    ess = jnp.exp(-logsumexp(2.0 * log_w))
    live = log_w_prev > -jnp.inf
    bad_nan = jnp.any(nan & live)
    bad_inf = jnp.any((inc == jnp.inf) & live)
    failure = jnp.where(bad_nan, NAN, jnp.where(bad_inf, INF, jnp.where(
        lz_inc == -jnp.inf, ALL_ZERO, OK))).astype(jnp.int32)
    return log_w, lz_inc, ess, failure


def check_increments(inc, n, t, data_t):
    """At trace time: the model gave one scalar log-weight per particle (else name the shapes)."""
    shape = tuple(jnp.shape(inc))
    if shape != (n,):
        data_shapes = jax.tree_util.tree_map(jnp.shape, data_t)
        raise ValueError(
            f"log_potential: expected one scalar log-weight per particle, got shape {shape[1:]} per "
            f"particle at step {t} (data_t shapes: {data_shapes}); a potential must return a "
            "scalar: sum over observation coordinates, or give the data the shape the model reads")


Adjust = Callable[[Any, Any, jax.Array], "tuple[Any, jax.Array]"]


def init(fk, num_particles: int, key: jax.Array, data_0, *, pin: Pin = _no_pin,
         adjust: Adjust | None = None, collect: Collector | None = None):
    r"""Draw :math:`x_0^{1:N}` and weight them by :math:`G_0`: ``(SMCState, log_evidence_increment)``.

    ``data_0`` is what step 0 receives (``fk.data_at(data, 0)``). ``adjust(None, x, inc) -> (x,
    inc)``, if given, may replace particles and their incremental log-weights before the
    reweighting (conditional SMC pins its reference there). ``collect`` starts ``state.aux``.
    """
    n = int(num_particles)
    x, inc = fk.init_batch(key, n, data_0)
    check_increments(inc, n, 0, data_0)
    x, inc = pin(x, "state"), pin(inc, "weights")
    if adjust is not None:
        x, inc = adjust(None, x, inc)
    log_w, lz_inc, ess, failure = reweight(jnp.full((n,), -math.log(n)), inc)
    aux = None if collect is None else collect.init(x)
    return SMCState(x, log_w, ess, failure, inc, aux), lz_inc


def _select(selection, key, state: SMCState, done, n, t):
    r"""``(ancestors, correction)``: ``correction [N]`` is the log-weight each offspring of a
    particle carries (``None``: uniform, :math:`-\log N`)."""
    if isinstance(selection, rs.Selection):
        return selection(state.particles, done, state.log_weights), None
    if isinstance(selection, rs.Annealed):
        return selection.draw(key, state.log_weights, n, t)
    return selection(key, state.log_weights, n), None


def uses_key(selection, ess_threshold: float) -> bool:
    """Whether a step with this selection and threshold draws a selection key (a deterministic
    :class:`~ppl.smc.resampling.Selection`, or never selecting, needs none)."""
    return ess_threshold > 0.0 and not isinstance(selection, rs.Selection)


def step(fk, state: SMCState, t, key_select: jax.Array, key_move: jax.Array, data_t, *,
         selection: rs.ResamplingFn = rs.systematic, ess_threshold: float = 0.5,
         finished: Callable[[jax.Array, jax.Array], jax.Array] = factor_one,
         pin: Pin = _no_pin, adjust: Adjust | None = None,
         collect: Collector | None = None, stable: bool = True) -> tuple[SMCState, StepInfo]:
    r"""One step :math:`t \ge 1` of the particle filter (see the module docstring).

    ``selection`` is a scheme ``(key, log_weights, n) -> ancestors`` or a
    :class:`~ppl.smc.resampling.Selection` (``key_select`` unused); ``ess_threshold`` is
    static: :math:`\ge 1` selects at every step (no ``lax.cond``), :math:`\le 0` never;
    ``finished(last, inc)`` maps a finished particle's last incremental log-weight and the
    model's one at this step to this step's (:func:`factor_one`, :func:`absorbing` or
    :func:`reweighed`); ``adjust(parents, x_new, inc) -> (x_new, inc)``
    may replace moved particles and their incremental log-weights before the finished rule and
    the reweighting (conditional SMC pins its reference there); ``collect`` updates
    ``state.aux``. With ``stable`` (static; the default) the ancestors are put in
    :func:`~ppl.smc.resampling.stable_order`, so surviving particles keep their slots and the
    resampling writes only the rows of the particles that died
    (:func:`~ppl.smc.resampling.gather_changed`): for LM particles, the KV caches of the
    survivors are not copied. A :class:`~ppl.smc.resampling.Selection` (beam search, DVTS,
    whose slots can mean something) keeps its order and takes the plain gather; conditional SMC,
    whose selection fixes slot 0's ancestor, passes ``stable=False``.
    """
    n = state.log_weights.shape[0]
    log_n = math.log(n)

    def resample(args):
        (x, last), log_w = args
        done_prev = fk.done_batch(x) if isinstance(selection, rs.Selection) else None
        anc, correction = _select(selection, key_select, state._replace(particles=x, log_weights=log_w), done_prev,
                                  n, t)
        anc = anc.astype(jnp.int32)
        # a Selection's slots can mean something (DVTS: slot // M is the subtree): kept as given
        reorder = stable and anc.shape[0] == n and not isinstance(selection, rs.Selection)
        if reorder:
            anc = rs.stable_order(anc)
        anc = pin(anc, "ancestors")
        # row-by-row copies of a particle axis split over devices would move rows between them
        # one at a time: a sharded state takes one gather
        changed_only = reorder and pin is _no_pin
        x, last = (rs.gather_changed if changed_only else rs.gather)((x, last), anc)
        log_w_new = jnp.full((n,), -log_n) if correction is None else pin(correction[anc], "weights")
        return (pin(x, "state"), pin(last, "weights")), log_w_new, anc

    def keep(args):
        xs, log_w = args
        return xs, log_w, jnp.arange(n, dtype=jnp.int32)

    args = ((state.particles, state.increments), state.log_weights)
    if ess_threshold >= 1.0:
        do_res = jnp.asarray(True)
        (x, last), log_w_prev, anc = resample(args)
    elif ess_threshold <= 0.0:
        do_res = jnp.asarray(False)
        (x, last), log_w_prev, anc = keep(args)
    else:
        do_res = state.ess < ess_threshold * n
        (x, last), log_w_prev, anc = jax.lax.cond(do_res, resample, keep, args)

    x_new, inc = fk.step_batch(key_move, x, t, data_t)
    check_increments(inc, n, "t >= 1", data_t)
    x_new, inc = pin(x_new, "state"), pin(inc, "weights")
    if adjust is not None:
        x_new, inc = adjust(x, x_new, inc)
    done = fk.done_batch(x)
    if not fk.freezes_done:
        x_new = select_rows(done, x, x_new)
    inc = jnp.where(done, finished(last, inc), inc)
    log_w, lz_inc, ess, failure = reweight(log_w_prev, inc)
    aux = state.aux if collect is None else collect.update(state.aux, x, x_new, done)
    return SMCState(x_new, log_w, ess, failure, inc, aux), StepInfo(anc, do_res, lz_inc, ess, failure)
