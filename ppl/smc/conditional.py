r"""Conditional SMC and particle Gibbs (Andrieu, Doucet & Holenstein 2010).

Conditional SMC (CSMC) runs a particle filter in which slot 0 is pinned to a *reference*
trajectory :math:`x^*_{0:T-1}`; the other :math:`N-1` particles are propagated as usual, and
they may resample the reference as an ancestor. Drawing one trajectory from the final particle
system (index :math:`k \sim W_{T-1}`, traced back through the genealogy) defines a Markov kernel
on whole trajectories that leaves the Feynman–Kac target

.. math::

    \mathbb{Q}_{T-1}(x_{0:T-1}) \propto M_0(x_0) G_0(x_0) \prod_{t \ge 1} M_t(x_t \mid x_{t-1})
    G_t(x_{t-1}, x_t)

invariant, for any :math:`N \ge 2`. Iterating it is *particle Gibbs*.

With **ancestor sampling** (Lindsten, Jordan & Schön 2014) the reference's ancestor at step
:math:`t` is not fixed to the reference's own past but drawn as

.. math::

    P(A_t^0 = i) \propto W_{t-1}^i \, M_t(x^*_t \mid x^i_{t-1}) \, G_t(x^i_{t-1}, x^*_t),

which breaks the path degeneracy of the reference and makes the kernel mix much faster when
:math:`N` is small relative to :math:`T`. It needs the model's transition density
(:meth:`~ppl.core.feynman_kac.FeynmanKac.log_density`).

CSMC resamples multinomially at every step (the conditional version of the other schemes is
more involved and buys little here). A sweep is :func:`ppl.smc.base.init` and
:func:`ppl.smc.base.step` in a ``lax.scan``: the selection draws i.i.d. ancestors and sets slot
0's, and the ``adjust`` hook pins the reference in slot 0 with its incremental weight. A finished (``done``) particle has a point-mass
transition: it can only be the ancestor of a reference state equal to itself.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from ppl.core.errors import SMCError
from ppl.core.feynman_kac import FeynmanKac
from ppl.core.protocols import FeynmanKacModel
from ppl.smc import resampling as rs
from ppl.core.checks import check_no_nan
from ppl.smc import base
from ppl.smc.loop import SMCResult, _is_key_batch, _raise_failure
from ppl.smc.loop import run_smc, trajectory

__all__ = ["conditional_smc", "particle_gibbs", "ParticleGibbsResult"]


def _set_slot0(tree, value):
    return jax.tree_util.tree_map(lambda leaf, v: leaf.at[0].set(v), tree, value)


def _tree_equal(a, b):
    eq = [jnp.all(x == y) for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b))]
    return jnp.all(jnp.stack(eq)) if eq else jnp.asarray(True)


def _build_csmc(fk: FeynmanKac, num_particles: int, ancestor_sampling: bool):
    """One CSMC sweep followed by the draw of a new reference: ``(data, key, ref) -> ...``."""
    T = int(fk.num_steps)
    N = int(num_particles)
    done_v = fk.done_batch
    dens_v = jax.vmap(fk.log_density, in_axes=(0, None, None, None))

    def sweep(data, key, ref):
        ref_at = lambda t: jax.tree_util.tree_map(lambda leaf: leaf[t], ref)  # noqa: E731
        k0, k_final, key = jax.random.split(key, 3)
        data_0 = fk.data_at(data, 0)

        def pin_reference(t, data_t):
            """Slot 0 holds the reference, weighted by the potential it would have received."""
            ref_t = ref_at(t)

            def adjust(parents, x, inc):
                parent = None if parents is None else jax.tree_util.tree_map(lambda leaf: leaf[0], parents)
                return _set_slot0(x, ref_t), inc.at[0].set(fk.log_weight(parent, ref_t, t, data_t))

            return adjust

        state, lz0 = base.init(fk, N, k0, data_0, adjust=pin_reference(0, data_0))
        failure0, log_w0, x_init, ess0 = state.failure, state.log_weights, state.particles, state.ess

        def body(carry, t):
            state, key, failure = carry
            key, k_res, k_anc, k_move = jax.random.split(key, 4)
            x, log_w_norm = state.particles, state.log_weights
            data_t = fk.data_at(data, t)
            ref_t = ref_at(t)
            if ancestor_sampling:
                la = log_w_norm + dens_v(x, ref_t, t, data_t)
                same = jax.vmap(lambda xi: _tree_equal(xi, ref_t))(x)
                la = jnp.where(done_v(x), jnp.where(same, log_w_norm, -jnp.inf), la)
                la = jnp.where(jnp.isnan(la), -jnp.inf, la)
                a0 = jax.random.categorical(k_anc, la).astype(jnp.int32)
            else:
                a0 = jnp.asarray(0, jnp.int32)

            def selection(k, log_w, n):
                # i.i.d. draws in random order: slot 0 is overwritten, so the draws must not be
                # sorted (sorted draws would drop the smallest one and bias the other slots).
                return rs._iid_draws(k, rs._normalise(log_w), n).astype(jnp.int32).at[0].set(a0)

            state, info = base.step(fk, state, t, k_res, k_move, data_t, selection=selection, stable=False,
                                    ess_threshold=1.0, adjust=pin_reference(t, data_t))
            failure = jnp.where(failure == 0, info.failure, failure)
            out = (state.particles, state.log_weights, info.ancestors, info.log_evidence_increment,
                   info.ess, info.failure)
            return (state, key, failure), out

        (state, _, failure), (hx, hw, anc, lz, ess, fails) = jax.lax.scan(
            body, (state, key, failure0), jnp.arange(1, T))
        x, log_w = state.particles, state.log_weights
        cat = lambda first, rest: jnp.concatenate([first[None], rest])  # noqa: E731
        history = jax.tree_util.tree_map(cat, x_init, hx)
        all_fail = jnp.concatenate([failure0[None], fails])
        fail_step = jnp.argmax(all_fail != 0).astype(jnp.int32)
        res = SMCResult(
            particles=x,
            log_weights=log_w,
            log_evidence=lz0 + jnp.sum(lz),
            ess=jnp.concatenate([ess0[None], ess]),
            log_evidence_increments=jnp.concatenate([lz0[None], lz]),
            resampled=jnp.concatenate([jnp.zeros((1,), bool), jnp.ones((T - 1,), bool)]),
            ancestors=jnp.concatenate([jnp.arange(N, dtype=jnp.int32)[None], anc]),
            num_steps=jnp.asarray(T, jnp.int32),
            history=history,
            history_log_weights=jnp.concatenate([log_w0[None], hw]),
        )
        k = jax.random.categorical(k_final, res.log_weights).astype(jnp.int32)
        new_ref = trajectory(res, k)
        return new_ref, res, failure, fail_step

    return sweep


_CACHE: "OrderedDict[tuple, Any]" = OrderedDict()


def _cached(kind, fk, build):
    key = (kind, fk.static_key())
    fn = _CACHE.get(key)
    if fn is None:
        fn = _CACHE[key] = build()
        if len(_CACHE) > 32:
            _CACHE.popitem(last=False)
    return fn


def _check_reference(fk, reference):
    """The reference, checked, and stored as the model's particles are (``fk.canonical``)."""
    T = int(fk.num_steps)
    for leaf in jax.tree_util.tree_leaves(reference):
        if jnp.ndim(leaf) == 0 or jnp.shape(leaf)[0] != T:
            raise ValueError(
                f"reference: every leaf needs a leading time axis of length T={T}, got shape "
                f"{jnp.shape(leaf)}; use ppl.trajectory(result, i) of a keep_history run")
    canonical = getattr(fk, "canonical", None)
    return reference if canonical is None else canonical(reference)


def _check_n(num_particles):
    if isinstance(num_particles, bool) or int(num_particles) != num_particles or num_particles < 2:
        raise ValueError(f"num_particles: conditional SMC needs an integer >= 2, got {num_particles!r}")


def conditional_smc(fk: FeynmanKac, num_particles: int, reference, *, key: jax.Array,
                    ancestor_sampling: bool = False):
    r"""One conditional SMC sweep given a reference trajectory; returns ``(new_reference, result)``.

    Parameters
    ----------
    fk
        The Feynman–Kac model.
    num_particles
        :math:`N \ge 2`, the reference included (it occupies slot 0).
    reference
        A trajectory :math:`x^*_{0:T-1}`: a state pytree whose leaves have a leading axis ``T``
        (e.g. ``ppl.trajectory(run_smc(..., keep_history=True), i)``).
    key
        A ``jax.random.key``.
    ancestor_sampling
        Resample the reference's ancestors (PGAS) instead of keeping its own past.

    Returns
    -------
    (new_reference, SMCResult)
        A trajectory drawn from the conditional particle system (an MCMC step that leaves the
        smoothing distribution invariant) and the sweep's particle system (with history).
    """
    _check_n(num_particles)
    if not isinstance(fk, FeynmanKacModel):
        raise TypeError(f"fk: expected a Feynman–Kac model (see ppl.core.protocols.FeynmanKacModel), got "
                        f"{type(fk).__name__}")
    reference = _check_reference(fk, reference)
    if fk.time_indexed:  # an LM program's "data" are its weights and prompt
        check_no_nan(fk.data, "data", time_axis=True)
    fn = _cached(("csmc", int(num_particles), bool(ancestor_sampling)), fk,
                 lambda: jax.jit(_build_csmc(fk, num_particles, ancestor_sampling)))
    new_ref, res, failure, step = fn(fk.data, key, reference)
    _raise_failure(failure, step, what="conditional SMC")
    return new_ref, res


class ParticleGibbsResult(NamedTuple):
    """The output of :func:`particle_gibbs`.

    Attributes
    ----------
    trajectories
        The chain of reference trajectories: leaves ``[num_iterations, T, ...]`` (``[C, ...]``
        in front for ``C`` chains from a batch of keys).
    log_evidence
        ``[num_iterations]`` the conditional sweeps' :math:`\\log \\hat Z` (a diagnostic: CSMC
        estimates are biased upwards, cf. Zhao et al. 2024 for their use as upper bounds).
    """

    trajectories: Any
    log_evidence: jax.Array


def particle_gibbs(fk: FeynmanKac, num_particles: int, num_iterations: int, *, key: jax.Array,
                   ancestor_sampling: bool = False, init_reference=None) -> ParticleGibbsResult:
    r"""Particle Gibbs: iterate conditional SMC, keeping each drawn trajectory.

    Parameters
    ----------
    fk
        The Feynman–Kac model.
    num_particles
        :math:`N \ge 2` per sweep.
    num_iterations
        Number of CSMC sweeps (the chain's length; discard a burn-in yourself).
    key
        A ``jax.random.key``, or a 1-d batch of keys for independent chains (vmapped).
    ancestor_sampling
        Particle Gibbs with ancestor sampling (PGAS).
    init_reference
        The first reference trajectory; by default one trajectory drawn by final weight from a
        plain SMC run (systematic resampling, every step) with the same number of particles.

    Returns
    -------
    ParticleGibbsResult
    """
    _check_n(num_particles)
    if not isinstance(fk, FeynmanKacModel):
        raise TypeError(f"fk: expected a Feynman–Kac model (see ppl.core.protocols.FeynmanKacModel), got "
                        f"{type(fk).__name__}")
    if isinstance(num_iterations, bool) or int(num_iterations) != num_iterations or num_iterations < 1:
        raise ValueError(f"num_iterations: expected a positive integer, got {num_iterations!r}")
    if init_reference is not None:
        init_reference = _check_reference(fk, init_reference)
    if fk.time_indexed:  # an LM program's "data" are its weights and prompt
        check_no_nan(fk.data, "data", time_axis=True)
    batched = _is_key_batch(key)
    sweep = _build_csmc(fk, num_particles, ancestor_sampling)

    def chain(data, key, ref):
        def it(carry, k):
            ref, failure, fail_step = carry
            new_ref, res, f, s = sweep(data, k, ref)
            fail_step = jnp.where(failure == 0, s, fail_step)
            failure = jnp.where(failure == 0, f, failure)
            return (new_ref, failure, fail_step), (new_ref, res.log_evidence)

        init = (ref, jnp.asarray(0, jnp.int32), jnp.asarray(0, jnp.int32))
        (_, failure, step), (trajs, lz) = jax.lax.scan(it, init, jax.random.split(key, int(num_iterations)))
        return trajs, lz, failure, step

    fn = _cached(("pg", int(num_particles), int(num_iterations), bool(ancestor_sampling), batched), fk,
                 lambda: jax.jit(jax.vmap(chain, in_axes=(None, 0, 0)) if batched else chain))

    if init_reference is None:
        k_init, key = (jax.vmap(jax.random.split, out_axes=1)(key) if batched else jax.random.split(key))
        try:
            smc = run_smc(fk, num_particles, key=k_init, resampling="systematic", ess_threshold=1.0,
                          keep_history=True)
        except SMCError as err:
            raise SMCError(f"particle_gibbs: the SMC run that draws the first reference failed ({err}); "
                           "pass init_reference, e.g. a trajectory from a run with more particles",
                           step=err.step) from err
        pick = lambda r, k: trajectory(r, jax.random.categorical(k, r.log_weights))  # noqa: E731
        k_pick = jax.vmap(lambda k: jax.random.fold_in(k, 1))(k_init) if batched else jax.random.fold_in(k_init, 1)
        init_reference = jax.vmap(pick)(smc, k_pick) if batched else pick(smc, k_pick)
    elif batched:
        n_chains = key.shape[0]
        init_reference = jax.tree_util.tree_map(
            lambda leaf: jnp.broadcast_to(leaf, (n_chains,) + jnp.shape(leaf)), init_reference)
    trajs, lz, failure, step = fn(fk.data, key, init_reference)
    _raise_failure(failure, step, what="particle Gibbs")
    return ParticleGibbsResult(trajectories=trajs, log_evidence=lz)
