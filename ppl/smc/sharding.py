r"""The particle axis of an SMC run sharded over a device mesh.

Write :math:`N` for the number of particles and :math:`D` for the number of devices along the
mesh axis that holds them (``axis_name``, ``"particles"`` by default). Device :math:`d` holds the
particle slots :math:`n \in [d N/D, (d+1) N/D)`. Two resampling modes, the second with an
optional exchange between islands:

**global** (:func:`run_smc_sharded` with ``mode="global"``).
The same filter as :func:`ppl.run_smc`, compiled with the particle state pinned to the mesh
(``NamedSharding`` + ``with_sharding_constraint`` inside the loop). Moving particles and
computing their potentials are local. The :math:`N` incremental log-weights are all-gathered
at every step and kept *replicated*, so every device normalises them, computes the ESS, and
draws the ancestors :math:`A^n` over *all* :math:`N` particles with exactly the reductions
one device would use; when the filter resamples, every particle whose ancestor lives on
another device is moved there (GSPMD's partitioned gather). The estimator is the usual one,

.. math::

    \log \hat Z = \sum_{t=0}^{T-1} \log \sum_{n=1}^{N} W_{t-1}^n G_t^n ,

and the result — particles, weights, ancestors, :math:`\log \hat Z` — equals
:func:`ppl.run_smc` on one device for the same key (bit for bit on CPU). Two facts make
that so. (i) Random draws do not depend on the sharding: the per-particle keys come from
``jax.random.split(key, N)``, whose values are the same however XLA partitions it — with
``jax_threefry_partitionable=True`` (the default since jax 0.5) each device generates its own
slice without communication; with ``False`` the values are still equal, but the compiled
program adds all-gathers and collective-permutes of random bits. The flag changes the bits
themselves, so compare runs made under the same setting. (ii) Reductions over a *sharded*
weight vector (``logsumexp``, the resampling ``cumsum``) sum in another order and can differ
in the last bit, which is enough to flip one ancestor at a CDF boundary and send the runs
apart; replicating the :math:`N` weights (a few bytes per particle) avoids it.

**island** (``mode="island"``, built from :func:`run_islands` and :func:`combine_islands`).
Each device runs a filter on :math:`N/D` particles with its own key (island :math:`d` uses
``jax.random.split(key, D)[d]``) and resamples locally. Without exchange
(``exchange_every=None``) the islands are independent and communicate nothing inside the
loop. Every island's :math:`\hat Z_d` is unbiased, so their average is too:

.. math::

    \log \hat Z = \operatorname{logsumexp}_d \big(\log \hat Z_d\big) - \log D,
    \qquad \mathbb{E}\,\hat Z = Z .

The combined particle approximation weights island :math:`d`'s normalised weights by
:math:`\hat Z_d / \sum_{d'} \hat Z_{d'}`:

.. math::

    \log W^{d,n} = \log W_d^n + \log \hat Z_d - \operatorname{logsumexp}_{d'} \log \hat Z_{d'} .

The per-step fields are combined the same way at every step :math:`t` (with the running
estimates :math:`\hat Z_{d,t}`); the combined ESS is
:math:`1 / \sum_d \pi_{d,t}^2 / \mathrm{ESS}_{d,t}` with
:math:`\pi_{d,t} = \hat Z_{d,t} / \sum_{d'} \hat Z_{d',t}`.

**island exchange** (``exchange_every=k``: island-level resampling, the *island particle model*
of Vergé, Dubarry, Del Moral & Moulines 2015, "On parallel implementation of sequential Monte
Carlo methods: the island particle model", Statistics and Computing 25).
Independent islands degenerate as the horizon grows: the :math:`\hat Z_d` spread over
orders of magnitude, one island ends up carrying all the weight, and the :math:`N`
particles are worth :math:`N/D`. Treat each island as one *particle of islands* with weight
:math:`\hat Z_d` and resample the islands every :math:`k` steps. At the start of step
:math:`t \in \{k, 2k, \dots\}`, with :math:`s` the previous exchange step (:math:`s = 0`
at first, where every island starts from :math:`\hat Z_{d,-1} = 1`):

1. island weights: the evidence increment since the last exchange,
   :math:`V_d = \hat Z_{d,t-1} / \hat Z_{d,s-1}` (:math:`D` scalars, all-gathered);
2. island ancestors :math:`B_{1:D}` drawn from :math:`V_d / \sum_{d'} V_{d'}` with the
   ``resampling`` scheme and a key shared by all devices, so all agree;
3. island :math:`d` takes the particles and normalised weights of island :math:`B_d` (an
   all-gather of the island states, then a local index);
4. every island's running estimate restarts at the common value

   .. math::

       \log \hat Z_{d,t-1} \leftarrow \log \hat L_t
       = \log \hat L_s + \log \frac1D \sum_{d=1}^{D} V_d,
       \qquad \log \hat L_0 = 0 .

Since every island starts a period from the same :math:`\hat L_s`,
:math:`\hat Z_{d,t-1} = \hat L_s V_d`, so :math:`V_d \propto \hat Z_{d,t-1}` and
:math:`\log \hat L_t = \operatorname{logsumexp}_d \log \hat Z_{d,t-1} - \log D`: neither
needs more than the :math:`D` running estimates. The final estimate is the one above,
:math:`\log \hat Z = \operatorname{logsumexp}_d \log \hat Z_d - \log D
= \log \hat L_{\text{last}} + \log \frac1D \sum_d V_d^{\text{last}}`: the product of
the per-period averages. That is the standard SMC estimator of an interacting particle system
whose particles are whole islands and whose potentials are the :math:`V_d` (the island particle
model is such a system), so the usual unbiasedness argument applies:
:math:`\mathbb E\, \hat Z = Z` for any unbiased resampling scheme of the islands (the tests
check it against the Kalman evidence of a linear-Gaussian model). The reset is recorded in
``log_evidence_increments[t]``, so the combined running estimate, the weights
:math:`\pi_{d,t}` and the ESS of :func:`combine_islands` are unchanged in form (right after
an exchange :math:`\pi_{d,t} = 1/D`). The cost is :math:`D` scalars plus one move of the
island states per exchange, against none for independent islands and :math:`N` weights per
step plus particle moves per resampling in global mode.

Trade-off: global mode is the statistically best filter for :math:`N` particles (identical to
one device) but pays an all-gather of :math:`N` weights at every step and particle moves at every
resampling step (see :func:`communication_per_resampling`); island mode communicates nothing
until the end but its estimates have the variance of :math:`D` independent filters of :math:`N/D` particles each, which is larger (often much larger
when :math:`N/D` is small compared with the horizon :math:`T`). Island exchange sits in between:
:math:`D` scalars and an occasional move of whole islands buy back much of that variance.
"""

from __future__ import annotations

import math
from typing import Optional, Union

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import logsumexp
from jax.sharding import AxisType, Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from ppl.core.cache import LRUCache
from ppl.core.feynman_kac import FeynmanKac
from ppl.smc import loop
from ppl.smc import resampling as rs
from ppl.smc.loop import SMCResult

__all__ = [
    "MODES",
    "device_mesh",
    "particle_mesh",
    "run_smc_sharded",
    "run_islands",
    "combine_islands",
    "communication_per_resampling",
]

MODES = ("global", "island")
DEFAULT_AXIS = "particles"


def device_mesh(devices=None, axis_name: str = DEFAULT_AXIS) -> Mesh:
    """A 1-d mesh with axis ``axis_name`` (``Auto`` axis type) over ``devices``: ``None`` for every
    device (``jax.devices()``; across hosts, after ``jax.distributed.initialize``, every process's
    devices, so the same call builds the global mesh), an integer :math:`D` for the first
    :math:`D` of them, or a sequence of devices."""
    if devices is None:
        devices = jax.devices()
    elif isinstance(devices, (int, np.integer)) and not isinstance(devices, bool):
        count = jax.device_count()
        if not 1 <= int(devices) <= count:
            raise ValueError(f"devices: expected an integer in [1, {count}] (jax.device_count() = {count}), got "
                             f"{int(devices)}; on CPU, fake devices need XLA_FLAGS="
                             f"--xla_force_host_platform_device_count={int(devices)} set before jax starts")
        devices = jax.devices()[: int(devices)]
    devices = list(devices)
    if not devices:
        raise ValueError("devices: expected at least one device")
    return Mesh(np.asarray(devices), (axis_name,), axis_types=(AxisType.Auto,))


def particle_mesh(devices=None, axis_name: str = DEFAULT_AXIS) -> Mesh:
    """:func:`device_mesh` with axis ``"particles"`` (the default of :func:`run_smc_sharded`)."""
    return device_mesh(devices, axis_name)


def auto_axes(mesh: Mesh) -> Mesh:
    """``mesh`` with every axis of type ``Auto`` (``with_sharding_constraint`` and plain indexing
    need them; jax 0.10 makes ``Explicit`` axes by default)."""
    if all(t == AxisType.Auto for t in mesh.axis_types):
        return mesh
    return Mesh(mesh.devices, mesh.axis_names, axis_types=(AxisType.Auto,) * len(mesh.axis_names))


def check_mesh(mesh, axis_name, default_axis=None) -> tuple[Mesh, str, int]:
    """``(mesh with Auto axes, axis_name, size of that axis)``; ``axis_name=None`` takes the
    mesh's only axis, else ``default_axis`` if the mesh has it. Errors name ``mesh`` or
    ``axis_name``."""
    if not isinstance(mesh, Mesh):
        raise TypeError(f"mesh: expected a jax.sharding.Mesh, got {type(mesh).__name__}")
    if axis_name is None:
        if len(mesh.axis_names) == 1:
            axis_name = mesh.axis_names[0]
        elif default_axis in mesh.axis_names:
            axis_name = default_axis
        else:
            raise ValueError(f"axis_name: the mesh has axes {mesh.axis_names}; name the one to use")
    if axis_name not in mesh.axis_names:
        raise ValueError(f"axis_name: {axis_name!r} is not an axis of the mesh {mesh.axis_names}")
    mesh = auto_axes(mesh)
    return mesh, axis_name, int(mesh.shape[axis_name])


def _check_divisible(num_particles, size, axis_name):
    if num_particles % size:
        raise ValueError(f"num_particles: {num_particles} is not divisible by the {size} devices of "
                         f"mesh axis {axis_name!r}; use a multiple of {size}")


_CACHE = LRUCache(32)


def _cached(cache_key, make):
    return _CACHE.get(cache_key, make)


def _global_fn(fk, n, scheme, ess_threshold, keep_history, batched, mesh, axis_name):
    # Particle states and ancestors are split over the axis; the [N] weights are replicated, so
    # every device reweights and resamples with the same reductions as one device would.
    shardings = {"state": NamedSharding(mesh, P(axis_name)), "ancestors": NamedSharding(mesh, P(axis_name)),
                 "weights": NamedSharding(mesh, P())}

    def constrain(tree, role):
        s = shardings[role]
        return jax.tree_util.tree_map(
            lambda leaf: jax.lax.with_sharding_constraint(leaf, s) if jnp.ndim(leaf) else leaf, tree)

    def make():
        run = loop.build_filter(fk, n, scheme, ess_threshold, keep_history, constrain=constrain)
        if batched:
            run = jax.vmap(run, in_axes=(None, 0))
        return jax.jit(run)

    key = ("global", fk.static_key(), n, scheme, ess_threshold, keep_history, batched, mesh, axis_name)
    return _cached(key, make)


def _island_fn(fk, n_local, scheme, ess_threshold, keep_history, batched, mesh, axis_name):
    def make():
        run = jax.vmap(loop.build_filter(fk, n_local, scheme, ess_threshold, keep_history), in_axes=(None, 0))
        if batched:  # keys [B, D]: local block [B, 1]
            run = jax.vmap(run, in_axes=(None, 0))
        key_spec = P(None, axis_name) if batched else P(axis_name)
        # Island outputs carry the island axis (local size 1) first, after any batch axis.
        local = jax.shard_map(run, mesh=mesh, in_specs=(P(), key_spec), out_specs=key_spec,
                              check_vma=False)
        return jax.jit(local)

    key = ("island", fk.static_key(), n_local, scheme, ess_threshold, keep_history, batched, mesh,
           axis_name)
    return _cached(key, make)


def _exchange_hooks(key, every, scheme, axis_name, num_islands, n_local):
    """The ``(agree, between)`` pair of :func:`ppl.smc.loop.build_filter` for island exchange.

    Runs inside ``shard_map`` (one island per device along ``axis_name``); ``key`` is the same on
    every device, so every island draws the same island ancestors.
    """
    log_d = math.log(num_islands)

    def agree(failure, all_done):
        # Every island must run the same number of steps: the exchange uses collectives.
        failure = jax.lax.pmax(failure, axis_name)
        all_done = jax.lax.pmin(all_done.astype(jnp.int32), axis_name) > 0
        return failure, all_done

    def exchange(t, x, log_w, ess_prev, log_z):
        log_z_all = jax.lax.all_gather(log_z, axis_name)  # [D] running log Z-hat_d
        lse = logsumexp(log_z_all)
        src = scheme(jax.random.fold_in(key, t), log_z_all - lse, num_islands).astype(jnp.int32)
        d = jax.lax.axis_index(axis_name)
        b = src[d]
        x_all, log_w_all, ess_all = jax.lax.all_gather((x, log_w, ess_prev), axis_name)
        x = jax.tree_util.tree_map(lambda leaf: leaf[b], x_all)
        # Every island restarts from the common estimate log mean_d V_d + previous common value.
        return x, log_w_all[b], ess_all[b], (lse - log_d) - log_z, (b - d) * n_local

    def stay(t, x, log_w, ess_prev, log_z):
        return x, log_w, ess_prev, jnp.zeros_like(log_z), jnp.zeros((), jnp.int32)

    def between(t, x, log_w, ess_prev, log_z):
        return jax.lax.cond(t % every == 0, exchange, stay, t, x, log_w, ess_prev, log_z)

    return agree, between


def _island_exchange_fn(fk, n_local, scheme, ess_threshold, keep_history, batched, mesh, axis_name,
                        every):
    size = int(mesh.shape[axis_name])

    def make():
        def one(data, island_keys, exchange_key):  # island_keys: the local block [1]
            hooks = _exchange_hooks(exchange_key, every, scheme, axis_name, size, n_local)
            out = loop.build_filter(fk, n_local, scheme, ess_threshold, keep_history,
                              interact=hooks)(data, island_keys[0])
            return jax.tree_util.tree_map(lambda leaf: leaf[None], out)

        run = jax.vmap(one, in_axes=(None, 0, 0)) if batched else one
        key_spec = P(None, axis_name) if batched else P(axis_name)
        local = jax.shard_map(run, mesh=mesh, in_specs=(P(), key_spec, P()), out_specs=key_spec,
                              check_vma=False)
        return jax.jit(local)

    key = ("island_exchange", fk.static_key(), n_local, scheme, ess_threshold, keep_history, batched,
           mesh, axis_name, every)
    return _cached(key, make)


def _check_exchange_every(exchange_every):
    if exchange_every is None:
        return None
    if (isinstance(exchange_every, bool) or not isinstance(exchange_every, (int, np.integer))
            or exchange_every < 1):
        raise ValueError("exchange_every: expected a positive integer (exchange islands every that "
                         f"many steps) or None (never), got {exchange_every!r}")
    return int(exchange_every)


def _host(x):
    """``x`` readable on this process: across hosts, a sharded array is gathered (a collective:
    every process calls it, as every process runs the same program)."""
    if isinstance(x, jax.Array) and not isinstance(x, jax.core.Tracer) and not x.is_fully_addressable:
        from jax.experimental import multihost_utils

        return jnp.asarray(multihost_utils.process_allgather(x, tiled=True))
    return x


def _validate(fk, num_particles, ess_threshold, keep_history, mode, exchange_every=None):
    loop._validate(fk, num_particles, ess_threshold, keep_history)
    if mode not in MODES:
        raise ValueError(f"mode: expected one of {MODES}, got {mode!r}")
    exchange_every = _check_exchange_every(exchange_every)
    if exchange_every is not None and mode != "island":
        raise ValueError(f"exchange_every: only island mode exchanges islands (mode={mode!r}); "
                         "use mode='island' or leave exchange_every=None")
    return exchange_every


def run_islands(fk: FeynmanKac, num_particles: int, *, key: jax.Array, mesh: Optional[Mesh] = None,
                axis_name: Optional[str] = None, resampling: Union[str, rs.ResamplingFn] = "systematic",
                ess_threshold: float = 0.5, keep_history: bool = False,
                exchange_every: Optional[int] = None) -> SMCResult:
    r"""Run :math:`D` filters of :math:`N/D` particles, one per device (``shard_map``).

    Island :math:`d` uses key ``jax.random.split(key, D)[d]``. Without exchange
    (``exchange_every=None``) the islands are independent and the result equals
    ``ppl.run_smc(fk, N // D, key=jax.random.split(key, D))`` computed on one device.

    With ``exchange_every=k`` the islands are resampled at the start of every step
    :math:`t \equiv 0 \pmod k` (see the module docstring): every device draws the island
    ancestors :math:`B_{1:D}` with the same key, ``jax.random.fold_in(jax.random.split(key,
    D + 1)[D], t)``, from the normalised running estimates :math:`\hat Z_{d,t-1}` with the
    ``resampling`` scheme; island :math:`d` takes the particles, normalised weights and ESS of
    island :math:`B_d`, and every island's running :math:`\log \hat Z` is reset to the common
    :math:`\operatorname{logsumexp}_{d'} \log \hat Z_{d',t-1} - \log D` (the reset is
    added to ``log_evidence_increments[t]``). All islands then run the same number of steps
    (until every particle of every island is done, or any island fails).

    Parameters
    ----------
    fk, resampling, ess_threshold, keep_history
        As in :func:`ppl.run_smc`.
    num_particles
        :math:`N`, the total over all islands; a multiple of the mesh axis size :math:`D`.
    key
        A ``jax.random.key`` or a 1-d batch of ``B`` keys (independent repetitions).
    mesh, axis_name
        The device mesh and its axis holding the islands (default: a 1-d mesh over
        ``jax.devices()``; the mesh's only axis).
    exchange_every
        ``None`` (default): independent islands. A positive integer :math:`k`: island-level
        resampling every :math:`k` steps (no exchange happens when :math:`k \ge T`).

    Returns
    -------
    SMCResult
        Per-island results: every field has a leading island axis ``[D, ...]`` (``[B, D, ...]``
        for a batch of keys); ``log_evidence[d]`` is :math:`\log \hat Z_d`. Combine them with
        :func:`combine_islands`. ``ancestors[d, t, k]`` is the ancestor's slot counted from
        island :math:`d`'s first slot, so :math:`d\,N/D` + ``ancestors`` is its global slot
        (without exchange it is a slot of island :math:`d`; at an exchange step it lies in island
        :math:`B_d`). ``resampled`` records the islands' own resampling decisions only.
    """
    exchange_every = _validate(fk, num_particles, ess_threshold, keep_history, "island", exchange_every)
    if mesh is None:
        mesh = particle_mesh(axis_name=axis_name or DEFAULT_AXIS)
    mesh, axis_name, size = check_mesh(mesh, axis_name)
    num_particles = int(num_particles)
    _check_divisible(num_particles, size, axis_name)
    scheme = rs.get_scheme(resampling, None if exchange_every is None else "the island exchange")
    batched = loop._is_key_batch(key)
    split = jax.vmap(lambda k: jax.random.split(k, size)) if batched else (lambda k: jax.random.split(k, size))
    keys = split(key)
    if exchange_every is None:
        fn = _island_fn(fk, num_particles // size, scheme, float(ess_threshold), keep_history, batched,
                        mesh, axis_name)
        res, failure, step = fn(fk.data, keys)
    else:
        # A key no island uses: split(key, D + 1)[D] (under the partitionable threefry,
        # split(key, D + 1)[:D] == split(key, D)).
        last = (lambda k: jax.random.split(k, size + 1)[size])
        exchange_key = jax.vmap(last)(key) if batched else last(key)
        fn = _island_exchange_fn(fk, num_particles // size, scheme, float(ess_threshold), keep_history,
                                 batched, mesh, axis_name, exchange_every)
        res, failure, step = fn(fk.data, keys, exchange_key)
    loop._raise_failure(jnp.ravel(_host(failure)), jnp.ravel(_host(step)), what="SMC (island mode)")
    return res


def _combine_one(res: SMCResult) -> SMCResult:
    D, n = res.log_weights.shape
    T = res.ess.shape[-1]
    log_d = math.log(D)
    log_z_d = res.log_evidence  # [D]
    log_z = logsumexp(log_z_d) - log_d
    log_w = (res.log_weights + (log_z_d - logsumexp(log_z_d))[:, None]).reshape(D * n)
    cum = jnp.cumsum(res.log_evidence_increments, axis=1)  # [D, T] running log Z-hat_{d,t}
    log_z_t = logsumexp(cum, axis=0) - log_d  # [T]
    incs = jnp.diff(log_z_t, prepend=0.0)
    log_pi = cum - logsumexp(cum, axis=0)  # [D, T]
    ess = 1.0 / jnp.sum(jnp.exp(2.0 * log_pi) / res.ess, axis=0)
    offsets = (jnp.arange(D, dtype=jnp.int32) * n)[:, None, None]
    ancestors = jnp.transpose(res.ancestors + offsets, (1, 0, 2)).reshape(T, D * n)

    def flat(leaf):  # [D, n, ...] -> [D * n, ...]
        return leaf.reshape((D * n,) + leaf.shape[2:])

    def flat_t(leaf):  # [D, T, n, ...] -> [T, D * n, ...]
        return jnp.swapaxes(leaf, 0, 1).reshape((T, D * n) + leaf.shape[3:])

    hist, hist_w = None, None
    if res.history is not None:
        hist = jax.tree_util.tree_map(flat_t, res.history)
        hist_w = flat_t(res.history_log_weights + log_pi[:, :, None])
    return SMCResult(
        particles=jax.tree_util.tree_map(flat, res.particles),
        log_weights=log_w,
        log_evidence=log_z,
        ess=ess,
        log_evidence_increments=incs,
        resampled=jnp.any(res.resampled, axis=0),
        ancestors=ancestors,
        num_steps=jnp.max(res.num_steps),
        history=hist,
        history_log_weights=hist_w,
    )


def combine_islands(islands: SMCResult) -> SMCResult:
    r"""Combine per-island results (:func:`run_islands`) into one :class:`~ppl.smc.loop.SMCResult`.

    With :math:`D` islands of :math:`n` particles: ``particles`` and ``log_weights`` ``[D n]``
    (island :math:`d` in slots :math:`[d n, (d+1) n)`), normalised log-weights
    :math:`\log W_d^k + \log \hat Z_d - \operatorname{logsumexp}_{d'} \log \hat Z_{d'}`,
    ``log_evidence`` :math:`\operatorname{logsumexp}_d \log \hat Z_d - \log D`, the increments of
    the running combined estimate, the combined ESS, ``resampled`` when any island resampled,
    ``ancestors`` as global slot indices (so :func:`ppl.smc.genealogy` works) and ``num_steps``
    the largest over islands. A batch (leading axis before the island axis) is combined run by run.
    """
    if islands.log_weights.ndim == 3:
        return _combine_batch(islands)
    if islands.log_weights.ndim != 2:
        raise ValueError("islands: expected run_islands output with log_weights [D, n] or [B, D, n], "
                         f"got shape {islands.log_weights.shape}")
    return _combine_single(islands)


_combine_single = jax.jit(_combine_one)
_combine_batch = jax.jit(jax.vmap(_combine_one))


def run_smc_sharded(fk: FeynmanKac, num_particles: int, *, key: jax.Array, mesh: Optional[Mesh] = None,
                    mode: str = "global", axis_name: Optional[str] = None,
                    resampling: Union[str, rs.ResamplingFn] = "systematic", ess_threshold: float = 0.5,
                    keep_history: bool = False, exchange_every: Optional[int] = None) -> SMCResult:
    r"""Run a particle filter with the particle axis sharded over a device mesh.

    Parameters
    ----------
    fk, resampling, ess_threshold, keep_history
        As in :func:`ppl.run_smc`.
    num_particles
        :math:`N`; a multiple of the number of devices :math:`D` along ``axis_name``.
    key
        A ``jax.random.key``, or a 1-d batch of keys (every field gains a leading batch axis).
    mesh
        A ``jax.sharding.Mesh`` (default :func:`particle_mesh`: every device on one axis). Other
        mesh axes, if any, replicate the particles. Explicit axis types are rebuilt as ``Auto``.
    mode
        ``"global"``: ancestors drawn over all :math:`N` particles, identical to
        :func:`ppl.run_smc` for the same key. ``"island"``: :math:`D` independent filters of
        :math:`N/D` particles, combined by :func:`combine_islands`; ``log_evidence`` is
        :math:`\operatorname{logsumexp}_d \log \hat Z_d - \log D`.
    axis_name
        The mesh axis holding the particles (default: the mesh's only axis).
    exchange_every
        Island mode only: resample the islands by their evidence every ``exchange_every`` steps
        (island particle model; see :func:`run_islands`). ``None``: independent islands.

    Returns
    -------
    SMCResult
        With global slot indices; in global mode its arrays stay sharded over the mesh.

    Raises
    ------
    ValueError
        If ``num_particles`` is not divisible by the mesh axis size, ``mode`` / ``axis_name``
        is unknown, or ``exchange_every`` is not a positive integer (or is given in global mode).
    SMCError
        If every weight becomes zero or a potential is NaN (in any island).

    Examples
    --------
    ::

        mesh = ppl.smc.sharding.particle_mesh()          # all devices, axis "particles"
        res = run_smc_sharded(fk, 8192, key=jax.random.key(0), mesh=mesh, mode="global")
    """
    exchange_every = _validate(fk, num_particles, ess_threshold, keep_history, mode, exchange_every)
    if mode == "island":
        return combine_islands(run_islands(fk, num_particles, key=key, mesh=mesh, axis_name=axis_name,
                                           resampling=resampling, ess_threshold=ess_threshold,
                                           keep_history=keep_history, exchange_every=exchange_every))
    if mesh is None:
        mesh = particle_mesh(axis_name=axis_name or DEFAULT_AXIS)
    mesh, axis_name, size = check_mesh(mesh, axis_name)
    num_particles = int(num_particles)
    _check_divisible(num_particles, size, axis_name)
    scheme = rs.get_scheme(resampling)
    batched = loop._is_key_batch(key)
    fn = _global_fn(fk, num_particles, scheme, float(ess_threshold), keep_history, batched, mesh, axis_name)
    res, failure, step = fn(fk.data, key)
    loop._raise_failure(_host(failure), _host(step), what="SMC (global mode)")
    return res


def communication_per_resampling(result: SMCResult, num_devices: int, *, mode: str = "global") -> dict:
    r"""Estimated bytes exchanged between devices per resampling step of an (unbatched) run.

    Global mode, with :math:`D` devices, :math:`N` particles and :math:`b` bytes per particle:

    * ``weights_bytes`` :math:`= (D - 1) N \cdot 4`: the all-gather of the :math:`N` incremental
      log-weights (each device receives the :math:`N - N/D` it lacks). The weights are kept
      replicated, so this is paid at *every* step, not only when resampling.
    * ``particle_bytes``: the particles that must move, measured from ``result.ancestors`` at the
      steps that resampled: for every device, the distinct ancestors of its slots that live on
      another device, times :math:`b` — the minimum a point-to-point exchange needs.
    * ``allgather_particle_bytes`` :math:`= (D - 1) N b`: what XLA's partitioned gather moves
      today (the compiled program all-gathers the state before a local gather).

    Island mode: 0 per resampling step (islands resample locally; the :math:`D` values
    :math:`\log \hat Z_d` are gathered once at the end). With ``exchange_every=k`` add, every
    :math:`k` steps, an all-gather of :math:`D` log-evidence scalars and one of the island
    states, :math:`(D - 1) N b` bytes in all (the minimum is :math:`N b / D` per island that
    copies another).

    Returns
    -------
    dict
        ``weights_bytes``, ``particle_bytes`` (mean over resampling steps), ``total_bytes``
        (their sum), ``allgather_particle_bytes``, ``bytes_per_particle``,
        ``cross_device_fraction`` (fraction of slots whose ancestor is on another device, over
        resampling steps) and ``resampling_steps``.
    """
    if mode not in MODES:
        raise ValueError(f"mode: expected one of {MODES}, got {mode!r}")
    log_w = np.asarray(result.log_weights)
    if log_w.ndim != 1:
        raise ValueError(f"result: expected one run (log_weights [N]), got shape {log_w.shape}")
    n = log_w.shape[0]
    _check_divisible(n, int(num_devices), "particles")
    leaves = jax.tree_util.tree_leaves(result.particles)
    per_particle = int(sum(np.asarray(l).nbytes for l in leaves) // n)
    resampled = np.asarray(result.resampled)
    steps = int(resampled.sum())
    out = dict(bytes_per_particle=per_particle, resampling_steps=steps, weights_bytes=0.0,
               particle_bytes=0.0, total_bytes=0.0, allgather_particle_bytes=0.0,
               cross_device_fraction=0.0)
    if mode == "island" or steps == 0 or num_devices == 1:
        return out
    n_local = n // num_devices
    anc = np.asarray(result.ancestors)[resampled]  # [S, N]
    owner = anc // n_local
    slot_dev = np.arange(n) // n_local
    cross = owner != slot_dev[None]
    distinct = 0
    for s in range(anc.shape[0]):
        for d in range(num_devices):
            a = anc[s, d * n_local:(d + 1) * n_local]
            distinct += np.unique(a[a // n_local != d]).size
    weights = float((num_devices - 1) * n * log_w.dtype.itemsize)
    particles = distinct / anc.shape[0] * per_particle
    out.update(weights_bytes=weights, particle_bytes=particles, total_bytes=weights + particles,
               allgather_particle_bytes=float((num_devices - 1) * n * per_particle),
               cross_device_fraction=float(cross.mean()))
    return out
