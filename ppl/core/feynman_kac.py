r"""Feynman–Kac models: the one object every inference algorithm of ``ppl`` runs on.

A Feynman–Kac model over states :math:`x_0, \dots, x_{T-1}` (arbitrary pytrees) is

* an initial distribution :math:`M_0(\mathrm{d}x_0)`,
* Markov transitions :math:`M_t(x_{t-1}, \mathrm{d}x_t)` for :math:`t \ge 1`,
* log-potentials :math:`\log G_0(x_0)` and :math:`\log G_t(x_{t-1}, x_t)`,

and it defines the sequence of targets

.. math::

    \mathbb{Q}_t(\mathrm{d}x_{0:t}) = \frac{1}{Z_t}\, M_0(\mathrm{d}x_0) G_0(x_0)
        \prod_{s=1}^{t} M_s(x_{s-1}, \mathrm{d}x_s)\, G_s(x_{s-1}, x_s),

with normalising constants :math:`Z_t` (the evidence, for a state-space model with
:math:`G_t = p(y_t \mid x_t)`).

Optionally the particles are moved by a *proposal* :math:`q_t` other than :math:`M_t` (a guided
filter); the incremental log-weight then carries the correction

.. math::

    \log w_t = \log G_t(x_{t-1}, x_t) + \log M_t(x_t \mid x_{t-1}) - \log q_t(x_t \mid x_{t-1}),

so that the target is unchanged. A per-particle ``done`` flag marks finished particles
(for instance a generation that emitted end-of-sequence): a done particle is not moved any more
and its incremental log-weight is zero, so it keeps its weight.

The engine only uses a few methods of a model — :meth:`FeynmanKac.init_step`,
:meth:`FeynmanKac.step`, :meth:`FeynmanKac.is_done` and, for conditional SMC,
:meth:`FeynmanKac.log_weight` and :meth:`FeynmanKac.log_density` — each written for *one*
particle and lifted with ``jax.vmap`` by :meth:`FeynmanKac.init_batch`,
:meth:`FeynmanKac.step_batch` and :meth:`FeynmanKac.done_batch`. A model whose natural form is
batched (a language model decoding every particle at once) overrides those three instead. Models written as numpyro step programs
(:func:`ppl.from_step_program`) provide the same three methods.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp
from numpyro.distributions import Distribution as _NumpyroDistribution
from numpyro.distributions.batch_util import promote_batch_shape as _promote_batch_shape

from ppl.core.cache import structural_key
from ppl.core.small_dots import small_dots

__all__ = ["FeynmanKac", "PointMass", "num_steps_of", "data_at"]


@jax.tree_util.register_pytree_node_class
class PointMass:
    """A point mass on an arbitrary pytree: ``sample`` returns it, ``log_prob`` is 0.

    Useful as the initial distribution of a model whose first state is fixed (a prompt). A
    pytree (its value is the child), so two point masses on equal values share compiled code.
    """

    def __init__(self, value: Any):
        self.value = value

    def tree_flatten(self):
        return (self.value,), None

    @classmethod
    def tree_unflatten(cls, aux, children):
        return cls(children[0])

    def sample(self, key, sample_shape=()):
        del key
        if sample_shape:
            return jax.tree_util.tree_map(
                lambda v: jnp.broadcast_to(v, tuple(sample_shape) + jnp.shape(v)), self.value
            )
        return self.value

    def log_prob(self, value):
        del value
        return jnp.zeros(())


def _is_distribution(obj) -> bool:
    return hasattr(obj, "sample") and hasattr(obj, "log_prob")


def num_steps_of(data) -> int:
    """The common leading-axis length of the leaves of ``data``; a clear error if they differ."""
    leaves = jax.tree_util.tree_leaves(data)
    if not leaves:
        raise ValueError("data: the data pytree has no array leaves; pass num_steps instead")
    lengths = {int(jnp.shape(leaf)[0]) if jnp.ndim(leaf) else -1 for leaf in leaves}
    if -1 in lengths:
        hint = ""
        if isinstance(data, (list, tuple)) and all(jnp.ndim(leaf) == 0 for leaf in leaves):
            hint = (f"; data is a Python {type(data).__name__} of numbers, which is a pytree of "
                    "scalars: pass an array, e.g. data=jnp.asarray(ys)")
        raise ValueError("data: every leaf needs a leading time axis (data_t = data[t]); found a "
                         f"scalar{hint}")
    if len(lengths) != 1:
        raise ValueError(f"data: leaves have different leading (time) lengths {sorted(lengths)}")
    T = lengths.pop()
    if T == 0:
        raise ValueError("data: the leading time axis has length 0; a model needs at least one step")
    return T


def data_at(data, t):
    """``data_t``: the slice of every leaf at time ``t`` (``None`` when there is no data)."""
    if data is None:
        return None
    return jax.tree_util.tree_map(lambda leaf: leaf[t], data)


def _sum_log_prob(d, x) -> jax.Array:
    """``log_prob`` summed to a scalar (a Normal with batch shape acts as independent coordinates)."""
    return jnp.sum(d.log_prob(x))


@dataclasses.dataclass(frozen=True, eq=False)
class FeynmanKac:
    r"""A Feynman–Kac model :math:`(M_0, G_0, M_t, G_t)` with an optional proposal and done flag.

    Parameters
    ----------
    init
        :math:`M_0`: a distribution (anything with ``.sample(key)`` and ``.log_prob(x)``, such as
        a numpyro distribution or :class:`PointMass`) or a callable ``data_0 -> distribution``.
    transition
        :math:`M_t`: a callable ``(x_prev, t, data_t) -> distribution`` of :math:`x_t`.
    log_potential
        :math:`\log G_t`: a callable ``(x_prev, x, t, data_t) -> scalar``; ``x_prev`` is ``None``
        at ``t = 0``. Return ``-inf`` for a hard constraint.
    data
        A pytree whose leaves have a leading time axis of length :math:`T`; step ``t`` receives
        ``data_t = data[t]``. Data are traced: running the same model on new data of the same
        shape does not recompile.
    num_steps
        :math:`T` when there is no data.
    proposal
        Optional :math:`q_t`: a callable ``(x_prev, t, data_t) -> distribution`` (``x_prev`` is
        ``None`` at ``t = 0``). The weights get the correction :math:`M_t / q_t`.
    done
        Optional callable ``x -> bool``: finished particles are not moved and keep their weight.
    batched_randomness
        Draw the whole particle set with one key per step, from the one-particle distribution
        lifted to a batched numpyro distribution (default; what a hand-written vectorised
        filter does). ``False`` gives every particle its own key (``jax.random.split``), the
        draws a step program makes, at about twice the cost of the random bits. Either way the
        model and its target are the same; only the stream of random numbers differs.

    Examples
    --------
    A linear-Gaussian state-space model, bootstrap filter::

        fk = ppl.FeynmanKac(
            init=dist.Normal(0.0, 1.0),
            transition=lambda x, t, y: dist.Normal(0.9 * x, 1.0),
            log_potential=lambda x_prev, x, t, y: dist.Normal(x, 0.5).log_prob(y),
            data=ys,
        )
    """

    init: Any
    transition: Callable
    log_potential: Callable
    data: Any = None
    num_steps: Optional[int] = None
    proposal: Optional[Callable] = None
    done: Optional[Callable] = None
    batched_randomness: bool = True

    #: Whether ``data`` has a leading time axis (``data_t = data[t]``). Models whose data are
    #: constant over time (an LM program's weights and prompt) set this to ``False``.
    time_indexed = True
    #: Whether :meth:`step_batch` already leaves finished particles unchanged, so the engine can
    #: skip its per-particle select over the whole state (which copies a KV cache).
    freezes_done = False

    def __post_init__(self):
        if not (_is_distribution(self.init) or callable(self.init)):
            raise TypeError(
                "init: expected a distribution (with .sample and .log_prob) or a callable "
                f"data_0 -> distribution, got {type(self.init).__name__}"
            )
        for name in ("transition", "log_potential"):
            if not callable(getattr(self, name)):
                raise TypeError(f"{name}: expected a callable, got {type(getattr(self, name)).__name__}")
        for name in ("proposal", "done"):
            value = getattr(self, name)
            if value is not None and not callable(value):
                raise TypeError(f"{name}: expected a callable or None, got {type(value).__name__}")
        if not self.time_indexed:
            _check_horizon(None, self.num_steps)
            return
        _check_horizon(self.data, self.num_steps)
        if self.data is not None and self.num_steps is None:
            object.__setattr__(self, "num_steps", num_steps_of(self.data))

    # ----------------------------------------------------------------- static structure
    def static_key(self) -> tuple:
        """Everything but the data: models with equal keys share compiled code.

        The pieces are compared by :func:`ppl.core.cache.structural_key`: a model rebuilt from
        an equal distribution (``dist.Normal(0, 1)`` again) or the same ``lambda`` code with
        equal captured values does not recompile.
        """
        parts = (self.init, self.transition, self.log_potential, self.proposal, self.done)
        return (type(self), tuple(structural_key(p) for p in parts), self.num_steps,
                self.data is None, self.batched_randomness)

    def data_at(self, data, t):
        """``data_t``, what step ``t`` receives: ``data[t]`` (the whole ``data`` if not time-indexed)."""
        return data_at(data, t) if self.time_indexed else data

    def with_data(self, data) -> "FeynmanKac":
        """The same model on other data (same shapes: no recompilation)."""
        return dataclasses.replace(self, data=data, num_steps=None if data is not None else self.num_steps)

    # ----------------------------------------------------------------- per-particle protocol
    def _init_dist(self, data_0):
        return self.init if _is_distribution(self.init) else self.init(data_0)

    def init_step(self, key: jax.Array, data_0) -> tuple[Any, jax.Array]:
        r"""Draw :math:`x_0` and its log-weight :math:`\log G_0(x_0)` (+ proposal correction)."""
        m0 = self._init_dist(data_0)
        if self.proposal is None:
            x = m0.sample(key)
            log_w = self.log_potential(None, x, 0, data_0)
        else:
            q0 = self.proposal(None, 0, data_0)
            x = q0.sample(key)
            log_w = (self.log_potential(None, x, 0, data_0) + _sum_log_prob(m0, x)
                     - _sum_log_prob(q0, x))
        return x, jnp.asarray(log_w, dtype=jnp.result_type(float))

    def step(self, key: jax.Array, x_prev, t, data_t) -> tuple[Any, jax.Array]:
        r"""Move one particle from :math:`x_{t-1}` and return :math:`(x_t, \log w_t)`."""
        m = self.transition(x_prev, t, data_t)
        if self.proposal is None:
            x = m.sample(key)
            log_w = self.log_potential(x_prev, x, t, data_t)
        else:
            q = self.proposal(x_prev, t, data_t)
            x = q.sample(key)
            log_w = self.log_potential(x_prev, x, t, data_t) + _sum_log_prob(m, x) - _sum_log_prob(q, x)
        return x, jnp.asarray(log_w, dtype=jnp.result_type(float))

    def log_weight(self, x_prev, x, t, data_t) -> jax.Array:
        r"""The incremental log-weight :meth:`step` would give to a *given* :math:`x_t`.

        ``x_prev`` is ``None`` at ``t = 0``. Used by conditional SMC for the reference particle.
        """
        log_w = self.log_potential(x_prev, x, t, data_t)
        if self.proposal is not None:
            m = self._init_dist(data_t) if x_prev is None else self.transition(x_prev, t, data_t)
            log_w = log_w + _sum_log_prob(m, x) - _sum_log_prob(self.proposal(x_prev, t, data_t), x)
        return jnp.asarray(log_w, dtype=jnp.result_type(float))

    def log_density(self, x_prev, x, t, data_t) -> jax.Array:
        r""":math:`\log M_t(x_t \mid x_{t-1}) + \log G_t(x_{t-1}, x_t)`, used by ancestor sampling."""
        m = self.transition(x_prev, t, data_t)
        return _sum_log_prob(m, x) + self.log_potential(x_prev, x, t, data_t)

    def is_done(self, x) -> jax.Array:
        """Whether a particle has finished (always ``False`` without a ``done`` callable)."""
        if self.done is None:
            return jnp.zeros((), dtype=bool)
        return jnp.asarray(self.done(x), dtype=bool)

    # ----------------------------------------------------------------- the particle system
    # The engine calls these three on the whole particle set. A model whose natural form is
    # batched (an LM decoding all particles at once) overrides them.
    #
    # With ``batched_randomness`` (the default) the particle set draws with *one* key per step:
    # the one-particle distribution is lifted with ``vmap`` into one batched numpyro
    # distribution (``numpyro.distributions.batch_util.promote_batch_shape``) and sampled once,
    # which is what a hand-written vectorised filter does, instead of splitting the key into
    # N keys and drawing N times. The log-weights are the one-particle :meth:`log_weight` lifted
    # with ``vmap``. A distribution that is not a numpyro distribution, or whose lifted form
    # does not have the shape ``[N] + one particle's``, falls back to one key per particle. On
    # CPU every lifted computation runs through :func:`ppl.core.small_dots.small_dots`.
    def init_batch(self, key: jax.Array, num_particles: int, data_0) -> tuple[Any, jax.Array]:
        """:meth:`init_step` for ``num_particles`` particles: states ``[N, ...]``, log-weights ``[N]``."""
        if self.batched_randomness:
            q0 = self._init_dist(data_0) if self.proposal is None else self.proposal(None, 0, data_0)
            if isinstance(q0, _NumpyroDistribution):
                x = _fast(lambda k: q0.sample(k, (num_particles,)))(key)
                log_w = jax.vmap(_fast(lambda x: self.log_weight(None, x, 0, data_0)))(x)
                return x, log_w
        return jax.vmap(_fast(self.init_step), in_axes=(0, None))(jax.random.split(key, num_particles), data_0)

    def step_batch(self, key: jax.Array, x, t, data_t) -> tuple[Any, jax.Array]:
        """:meth:`step` for every particle of ``x`` (leaves ``[N, ...]``)."""
        n = jax.tree_util.tree_leaves(x)[0].shape[0]
        if self.batched_randomness:
            move = self.transition if self.proposal is None else self.proposal
            batched = _lift(move, x, t, data_t, n)
            if batched is not None:
                x_new = _fast(batched.sample)(key)
                log_w = jax.vmap(_fast(self.log_weight), in_axes=(0, 0, None, None))(x, x_new, t, data_t)
                return x_new, log_w
        return jax.vmap(_fast(self.step), in_axes=(0, 0, None, None))(jax.random.split(key, n), x, t, data_t)

    def done_batch(self, x) -> jax.Array:
        """:meth:`is_done` for every particle: ``bool[N]``."""
        return jax.vmap(self.is_done)(x)


def _fast(fn):
    """``fn`` as the engine lifts it: on CPU with tiny matrix products as multiply-and-sum
    (:func:`ppl.core.small_dots.small_dots`; the same values), elsewhere unchanged."""
    return small_dots(fn) if jax.default_backend() == "cpu" else fn


def _lift(move, x, t, data_t, n):
    """``move(x_prev, t, data_t)`` for every particle as one numpyro distribution of batch ``[n]``.

    ``None`` when ``move`` does not return a numpyro distribution, or when the lifted
    distribution's draws would not have the shape ``[n] + one particle's draw``.
    """
    one = move(jax.tree_util.tree_map(lambda leaf: leaf[0], x), t, data_t)  # traced only for its type
    if not isinstance(one, _NumpyroDistribution):
        return None
    try:
        lifted = _promote_batch_shape(jax.vmap(_fast(move), in_axes=(0, None, None))(x, t, data_t))
    except Exception:  # a distribution numpyro cannot lift: one key per particle
        return None
    if tuple(lifted.shape()) != (n,) + tuple(one.shape()):
        return None
    return lifted


def _check_horizon(data, num_steps):
    if data is None and num_steps is None:
        raise ValueError("num_steps: give the number of steps T, or data with a leading time axis")
    if num_steps is not None:
        if int(num_steps) != num_steps or int(num_steps) < 1:
            raise ValueError(f"num_steps: expected a positive integer, got {num_steps!r}")
        if data is not None and num_steps_of(data) != num_steps:
            raise ValueError(
                f"num_steps={num_steps} disagrees with the data's leading axis ({num_steps_of(data)})"
            )
