r"""Many independent problems through one compiled function, data-parallel over a device mesh.

A benchmark's problems are independent inference problems: the same method, budget and options
on different prompts. A run on one problem is a :class:`ProblemCall`:

1. the cache key and builder of one compiled function ``core(data, params, key, *options)`` for
   *one* problem, its traced arguments (for an LM method ``program.data``: LM weights, padded
   prompt, prompt length; ``reward.params``; the key; shared traced options such as
   :math:`\tau`);
2. ``finish``, the host-side post-processing of the core's outputs (for a method of
   :mod:`ppl.scaling`: answers with ``answer_fn``, the exact compute counters, diagnostics).

Calling it runs the core once (a method's ordinary call). :func:`run_problems` runs calls that
share their cache key (the same static structure) with one compiled function. With a mesh of :math:`D` devices
(one axis; :func:`~ppl.smc.sharding.device_mesh`) and :math:`b` = ``problems_per_device``:

* Problems are run :math:`Db` at a time. In each call, the leaves of ``data`` and of
  ``params`` that are *the same object* for every problem (the LM weights, a learned
  PRM's weights) are passed once and replicated on every device; the other leaves (the prompt,
  its length, an oracle's reference solution) and the keys are stacked along a leading problem
  axis and placed with ``NamedSharding(mesh, P(axis))``: device :math:`d` holds problems
  :math:`[db, (d+1)b)` of the call. The last call is padded to :math:`Db` problems by repeating
  its last problem; the padding's results are dropped.
* Each device runs the core on its own problems under ``jax.shard_map``. With :math:`b = 1` that
  is the core itself, the very program of a one-prompt call, so every problem's result is bit
  for bit what the method returns when called on that problem alone. With :math:`b > 1` it is
  ``jax.vmap`` of the core over the device's :math:`b` problems: the same arithmetic, but the
  batched matrix products may round differently in the last bits (a rare flipped sample or
  resampling choice), and the vmapped loop runs until the device's slowest problem
  has finished, carrying (selecting) every problem's state, KV cache included, at each
  iteration. It may pay off on an accelerator that one problem's particles do not fill (not
  measured here); on CPU it is slower (below).
* Everything a problem's run creates — particles, KV caches, weights, resampling — lives
  inside its device's computation, so the particle state is sharded with its problem, and the
  devices never communicate (each one's loops stop when its own problems are done).
* Outputs stay where they were computed; each problem's rows are read from the device shard
  that holds them and finished on the host as in a one-prompt call.

Without a mesh, :math:`b = 1` calls the method once per problem and :math:`b > 1` runs the
vmapped core on the default device, :math:`b` problems at a time.

**Measured** on the project's 2-core CPU machines, ``ppl scale --quick`` (16 problems, six
methods, budgets 1, 4, 16; the rollout pool, beam search, DVTS and the particle filter batched):
one by one 49 s; ``--devices 2`` 49 s; ``--devices 8`` 57 s (eight fake devices sharing two
cores: partitioning overhead, not speed-up); ``--devices 1 --problems-per-device 16`` 80 s (the
vmapped loops carry all 16 problems' KV caches until the slowest finishes). The four tables were
identical.

**Several processes** (``jax.distributed.initialize``): ``prompt_mesh()`` spans every process's
devices (``jax.devices()``); every process must call :func:`batched` with the same arguments.
Inputs are built with ``jax.make_array_from_callback`` (each process fills its own devices'
shards) and outputs that are not fully addressable are gathered with
``jax.experimental.multihost_utils.process_allgather`` before the host-side finishing step, so
every process gets every problem's result (KV caches included: gathering them is the cost of
this simple scheme). Only the single-process case is tested.
"""

from __future__ import annotations

import dataclasses
import weakref
from typing import Any, Callable, Hashable, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from ppl.core.cache import cached_jit
from ppl.core.checks import check_int
from ppl.smc.sharding import check_mesh

__all__ = ["ProblemCall", "prepare_problems", "run_problems"]


@dataclasses.dataclass(frozen=True, eq=False)
class ProblemCall:
    """A validated, ready-to-run computation on one problem.

    Attributes
    ----------
    name
        What runs (a method's name), for messages.
    cache_key, build
        ``cached_jit(cache_key, build)`` is the compiled core ``core(data, params, key,
        *options)``; calls with equal ``cache_key`` share it.
    data, params, key
        The problem's traced arguments (for a scaling method: ``program.data``, the reward's
        ``params`` or ``None``, and the ``jax.random`` key).
    options
        Traced arguments equal for every problem of a batch (e.g. :math:`\\tau`).
    finish
        ``finish(outputs) -> result``: the host-side post-processing of the core's outputs.
    """

    name: str
    cache_key: Hashable
    build: Callable[[], Callable]
    data: Any
    params: Any
    key: Any
    options: tuple
    finish: Callable[[Any], Any]

    def __call__(self):
        """Run the call on its own (one problem)."""
        fn = cached_jit(self.cache_key, self.build)
        return self.finish(fn(self.data, self.params, self.key, *self.options))


# ------------------------------------------------------------------------------- placement
_REPLICATED: dict = {}


def _put(host: np.ndarray, sharding: NamedSharding) -> jax.Array:
    if jax.process_count() == 1:
        return jax.device_put(host, sharding)
    return jax.make_array_from_callback(host.shape, sharding, lambda idx: host[idx])


def _replicated(leaf, sharding: NamedSharding):
    """``leaf`` on every device of ``sharding``. The copy is kept while ``leaf`` lives, so the
    LM's and the PRM's weights move to the devices once, not at every call."""
    if isinstance(leaf, jax.Array) and leaf.sharding == sharding:
        return leaf
    key = (id(leaf), sharding)
    hit = _REPLICATED.get(key)
    if hit is not None and hit[0]() is leaf:
        return hit[1]
    out = _put(np.asarray(leaf), sharding) if jax.process_count() > 1 else jax.device_put(leaf, sharding)
    try:
        ref = weakref.ref(leaf, lambda _, key=key: _REPLICATED.pop(key, None))
    except TypeError:  # numpy scalars and the like: cheap to copy, not cached
        return out
    _REPLICATED[key] = (ref, out)
    return out


def _split_keys(keys):
    """``(data, impl)``: stacked raw key data and the PRNG implementation (``None`` for raw keys)."""
    first = jnp.asarray(keys[0])
    if jax.dtypes.issubdtype(first.dtype, jax.dtypes.prng_key):
        impl = jax.random.key_impl(first)
        return np.stack([np.asarray(jax.random.key_data(k)) for k in keys]), impl
    return np.stack([np.asarray(k) for k in keys]), None


def _leaves(trees, what):
    flat = [jax.tree_util.tree_flatten(t) for t in trees]
    treedef = flat[0][1]
    for i, (_, td) in enumerate(flat[1:], 1):
        if td != treedef:
            raise ValueError(f"{what}: problem {i} has another structure than problem 0 ({td} vs {treedef})")
    cols = list(zip(*(f[0] for f in flat))) if flat[0][0] else []
    shared = tuple(all(x is col[0] for x in col) for col in cols)
    for j, (col, sh) in enumerate(zip(cols, shared)):
        if not sh and len({np.shape(x) for x in col}) > 1:
            raise ValueError(f"{what}: leaf {j} differs in shape between problems "
                             f"({sorted({np.shape(x) for x in col})}); pad prompts to one width")
    return cols, shared, treedef


# ------------------------------------------------------------------------------- the batch
def _local_fn(core, treedefs, shared, impl, b: int, num_options: int):
    """The per-device program: the core on one problem (``b = 1``) or vmapped over ``b``."""
    data_def, rp_def = treedefs
    data_shared, rp_shared = shared

    def one(data_leaves, rp_leaves, key, *options):
        if impl is not None:
            key = jax.random.wrap_key_data(key, impl=impl)
        if b == 1:
            def unstack(leaves, sh):
                return [x if s else x[0] for x, s in zip(leaves, sh)]

            data = jax.tree_util.tree_unflatten(data_def, unstack(data_leaves, data_shared))
            rp = jax.tree_util.tree_unflatten(rp_def, unstack(rp_leaves, rp_shared))
            out = core(data, rp, key[0], *options)
            return jax.tree_util.tree_map(lambda a: a[None], out)

        def per_problem(data_leaves, rp_leaves, key, *options):
            return core(jax.tree_util.tree_unflatten(data_def, data_leaves),
                        jax.tree_util.tree_unflatten(rp_def, rp_leaves), key, *options)

        axes = ([None if s else 0 for s in data_shared], [None if s else 0 for s in rp_shared], 0)
        return jax.vmap(per_problem, in_axes=axes + (None,) * num_options)(data_leaves, rp_leaves, key, *options)

    return one


def _build_batched(core, treedefs, shared, impl, b, num_options, mesh, axis):
    one = _local_fn(core, treedefs, shared, impl, b, num_options)
    if mesh is None:
        return one
    spec = lambda sh: [P() if s else P(axis) for s in sh]  # noqa: E731
    in_specs = (spec(shared[0]), spec(shared[1]), P(axis)) + (P(),) * num_options
    return jax.shard_map(one, mesh=mesh, in_specs=in_specs, out_specs=P(axis), check_vma=False)


def _rows(out, n: int):
    """Per problem ``i < n``: the pytree of its rows of the stacked outputs ``out``."""
    leaves, treedef = jax.tree_util.tree_flatten(out)
    if not all(getattr(x, "is_fully_addressable", True) for x in leaves):
        from jax.experimental import multihost_utils

        leaves = [np.asarray(x) for x in multihost_utils.process_allgather(leaves, tiled=True)]
    per_leaf = []
    for x in leaves:
        if isinstance(x, jax.Array) and len(x.sharding.device_set) > 1:
            # Read each problem from the device shard that holds it (no gather, no copy).
            by_row = {}
            for shard in x.addressable_shards:
                start = shard.index[0].start or 0 if shard.index else 0
                data = shard.data
                for j in range(data.shape[0]):
                    by_row.setdefault(start + j, (data, j))
            per_leaf.append([by_row[i][0][by_row[i][1]] for i in range(n)])
        else:
            per_leaf.append([x[i] for i in range(n)])
    return [jax.tree_util.tree_unflatten(treedef, [col[i] for col in per_leaf]) for i in range(n)]


def _run_group(calls: list, treedefs, shared, mesh, axis, b: int):
    """One compiled call on ``calls`` (already padded to the group size); raw outputs per problem."""
    first = calls[0]
    data_cols = _leaves([c.data for c in calls], "programs")[0]
    rp_cols = _leaves([c.params for c in calls], "reward")[0]
    key_data, impl = _split_keys([c.key for c in calls])
    cache_key = ("batched", first.cache_key, treedefs, shared, impl, b, len(first.options), mesh, axis)
    fn = cached_jit(cache_key, lambda: _build_batched(first.build(), treedefs, shared, impl, b,
                                                      len(first.options), mesh, axis))
    if mesh is None:
        place = lambda col, s: col[0] if s else jnp.stack([jnp.asarray(x) for x in col])  # noqa: E731
        keys = jnp.asarray(key_data)
        options = first.options
    else:
        rep, split = NamedSharding(mesh, P()), NamedSharding(mesh, P(axis))
        place = lambda col, s: (_replicated(col[0], rep) if s  # noqa: E731
                                else _put(np.stack([np.asarray(x) for x in col]), split))
        keys = _put(key_data, split)
        options = tuple(_replicated(o, rep) for o in first.options)
    data = [place(col, s) for col, s in zip(data_cols, shared[0])]
    rp = [place(col, s) for col, s in zip(rp_cols, shared[1])]
    return _rows(fn(data, rp, keys, *options), len(calls))


def prepare_problems(prepare: Callable, programs: Sequence, args: tuple, options: dict, *, keys, reward,
                     where: str = "prepare_problems") -> list:
    """``[prepare(programs[i], *args, key=keys[i], reward=rewards[i], **options)]``: one
    :class:`ProblemCall` per program, ``keys`` one per program (a sequence or a key array with a
    leading axis), ``reward`` one for all or a sequence with one per program. An error while
    preparing problem ``i`` gets a note naming ``i`` (and ``where``)."""
    programs = list(programs)
    if not programs:
        raise ValueError("programs: expected at least one program")
    keys = list(keys) if not isinstance(keys, jax.Array) or keys.ndim > 0 else [keys]
    if len(keys) != len(programs):
        raise ValueError(f"keys: expected one key per program ({len(programs)}), got {len(keys)}")
    rewards = list(reward) if isinstance(reward, (list, tuple)) else [reward] * len(programs)
    if len(rewards) != len(programs):
        raise ValueError(f"reward: expected one reward per program ({len(programs)}), got {len(rewards)}")
    calls = []
    for i, (program, key, rew) in enumerate(zip(programs, keys, rewards)):
        try:
            calls.append(prepare(program, *args, key=key, reward=rew, **options))
        except Exception as e:
            e.add_note(f"(in {where}, problem {i})")
            raise
    return calls


def run_problems(calls: Sequence[ProblemCall], *, mesh: Optional[Mesh] = None, problems_per_device: int = 1,
                 axis_name: Optional[str] = None, default_axis: Optional[str] = None) -> list:
    """``[c() for c in calls]``, computed with one compiled function: data-parallel over ``mesh``
    (axis ``axis_name``, default the mesh's only axis, else ``default_axis``) and vmapped over
    ``problems_per_device`` problems per device (see the module doc). The calls must share their
    ``cache_key``. An error in problem ``i``'s ``finish`` gets a note naming ``i``."""
    calls = list(calls)
    if not calls:
        raise ValueError("calls: expected at least one problem")
    b = check_int("problems_per_device", problems_per_device, 1)
    mesh, axis_name, size = check_mesh(mesh, axis_name, default_axis) if mesh is not None else (None, None, 1)
    first = calls[0]
    for i, c in enumerate(calls[1:], 1):
        if c.cache_key != first.cache_key:
            raise ValueError(f"programs: problem {i} differs from problem 0 in its static structure (LM, sampler, "
                             "padded prompt width, reward's static_key, budget or options); batch only programs "
                             "built with program.with_prompt(...) and rewards of one kind")
    if mesh is None and b == 1:
        return [c() for c in calls]
    _, data_shared, data_def = _leaves([c.data for c in calls], "programs")
    _, rp_shared, rp_def = _leaves([c.params for c in calls], "reward")
    group = size * b
    results = []
    for start in range(0, len(calls), group):
        part = calls[start:start + group]
        padded = part + [part[-1]] * (group - len(part))
        outs = _run_group(padded, (data_def, rp_def), (data_shared, rp_shared), mesh, axis_name, b)
        for j, (c, out) in enumerate(zip(part, outs)):
            try:
                results.append(c.finish(out))
            except Exception as e:
                e.add_note(f"(in problem {start + j} of the batch)")
                raise
    return results
