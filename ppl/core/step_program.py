r"""Numpyro-style step programs: one step of one particle, turned into a Feynman–Kac model.

A step program is an ordinary Python function ``step(x_prev, data_t)`` that calls
``numpyro.sample`` and ``numpyro.factor`` and returns the new state. numpyro's effect handlers
split it into the pieces of a Feynman–Kac model:

* latent ``numpyro.sample`` sites (no ``obs``) are the transition :math:`M_t`;
* observed sample sites (``obs=...``) and ``numpyro.factor`` sites are the log-potential
  :math:`\log G_t` — their log-densities are summed (with plate scales);
* the return value is the new state :math:`x_t`.

The initial state :math:`x_{-1}` is drawn from ``init`` (a distribution, or a fixed pytree),
and step 0 runs the program once on it, so :math:`M_0` is "draw from ``init``, then step".

Keys: the step's key is used exactly as a Feynman–Kac transition would use it — the first latent
site of a step draws with the step's key itself, site number ``k > 0`` with
``jax.random.fold_in(key, k)``. Consequently a one-site step program and the equivalent
:class:`~ppl.core.feynman_kac.FeynmanKac` whose transition is that site's distribution, built with
``batched_randomness=False``, produce identical particles for the same key. (A step program
always draws with one key per particle; a plain ``FeynmanKac`` by default draws the whole
particle set with one key per step.) When ``init`` is a distribution, step 0 splits its key in
two: the first half draws :math:`x_{-1}`, the second runs the program.

The particles of such a model are :class:`ProgramState` pytrees: the program's return value and
the values of its latent sites (kept so that conditional SMC and ancestor sampling can re-score a
transition). A site that the program returns as it is (``x = numpyro.sample("x", ...); return x``,
the usual form, and the form of an LM step program whose site is the whole LM state) is stored
once: resampling gathers it, KV cache included, once.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
from numpyro import handlers
from numpyro.primitives import Messenger

from ppl.core.cache import structural_key
from ppl.core.feynman_kac import FeynmanKac, PointMass, _is_distribution

__all__ = ["AsValue", "from_step_program", "ProgramState", "StepProgramModel"]


INIT_SITE = "_init"


class AsValue(NamedTuple):
    """In :attr:`ProgramState.stored_sites`, a latent site whose value is the state's ``value``
    itself (the program returned that site): a pytree with no leaves, so it is stored once."""


class _ProgramFields(NamedTuple):
    value: Any
    stored_sites: dict


class ProgramState(_ProgramFields):
    """A particle of a step program: its return ``value`` and its latent ``sites``.

    ``ProgramState(value, sites)`` stores the sites as given. The particles of a
    :class:`StepProgramModel` store the site that the program returns as :class:`AsValue` in
    ``stored_sites`` (no second copy to carry and gather); :attr:`sites` reads every site's
    value either way. When ``init`` is random, ``sites["_init"]`` holds the particle's initial
    draw :math:`x_{-1}` (carried along so that step 0 can be re-scored).
    """

    __slots__ = ()

    @property
    def sites(self) -> dict:
        """Every latent site's value (the returned site read from ``value``)."""
        return {k: self.value if isinstance(v, AsValue) else v for k, v in self.stored_sites.items()}


class _StepKeys(Messenger):
    """Give latent site ``k`` the key ``key`` (k = 0) or ``fold_in(key, k)`` (k > 0)."""

    def __init__(self, fn, key):
        self.key = key
        self.count = 0
        super().__init__(fn)

    def process_message(self, msg):
        if msg["type"] not in ("sample", "prng_key"):
            return
        if msg["type"] == "sample" and (msg["value"] is not None or msg["kwargs"].get("rng_key") is not None):
            return
        key = self.key if self.count == 0 else jax.random.fold_in(self.key, self.count)
        self.count += 1
        if msg["type"] == "prng_key":
            msg["value"] = key
        else:
            msg["kwargs"]["rng_key"] = key


def _site_log_prob(site) -> jax.Array:
    lp = jnp.sum(site["fn"].log_prob(site["value"]))
    if site.get("scale") is not None:
        lp = site["scale"] * lp
    return lp


class StepProgramModel(FeynmanKac):
    """A :class:`FeynmanKac` model whose pieces come from a numpyro step program."""

    def __init__(self, step: Callable, init: Any, data=None, num_steps: Optional[int] = None,
                 done: Optional[Callable] = None):
        if not callable(step):
            raise TypeError(f"step: expected a callable step program, got {type(step).__name__}")
        super().__init__(init=init if callable(init) or _is_distribution(init) else PointMass(init),
                         transition=step, log_potential=step, data=data, num_steps=num_steps,
                         proposal=None, done=done, batched_randomness=False)
        try:
            params = inspect.signature(step).parameters
        except (TypeError, ValueError):  # builtins, C callables
            params = {}
        object.__setattr__(self, "_takes_t", "t" in params)

    @property
    def program(self) -> Callable:
        return self.transition

    def static_key(self) -> tuple:
        return (type(self), structural_key(self.init), structural_key(self.transition),
                structural_key(self.done), self.num_steps, self.data is None)

    def with_data(self, data) -> "StepProgramModel":
        return StepProgramModel(self.program, self.init, data=data,
                                num_steps=None if data is not None else self.num_steps, done=self.done)

    # --------------------------------------------------------------------------------------
    def _call(self, x_prev, t, data_t):
        if self._takes_t:
            return self.program(x_prev, data_t, t=t)
        return self.program(x_prev, data_t)

    def _trace(self, fn, x_prev, t, data_t):
        tr = handlers.trace(fn).get_trace(x_prev, t, data_t)
        sites = {name: s["value"] for name, s in tr.items()
                 if s["type"] == "sample" and not s["is_observed"]}
        log_m = sum((_site_log_prob(s) for s in tr.values()
                     if s["type"] == "sample" and not s["is_observed"]), jnp.zeros(()))
        log_g = sum((_site_log_prob(s) for s in tr.values()
                     if s["type"] == "sample" and s["is_observed"]), jnp.zeros(()))
        return sites, log_m, log_g

    def _run(self, key, x_prev, t, data_t):
        out = {}

        def wrapped(x_prev, t, data_t):
            out["value"] = self._call(x_prev, t, data_t)

        sites, _, log_g = self._trace(_StepKeys(wrapped, key), x_prev, t, data_t)
        value = out["value"]
        return value, {k: AsValue() if v is value else v for k, v in sites.items()}, log_g

    def _score(self, x_prev_value, x, t, data_t):
        sites = {k: v for k, v in x.sites.items() if k != INIT_SITE}
        fn = handlers.substitute(lambda xp, t, d: self._call(xp, t, d), data=sites)
        _, log_m, log_g = self._trace(fn, x_prev_value, t, data_t)
        return log_m, log_g

    def _prev_value(self, x_prev, x):
        """x_{t-1}'s value; at t = 0 (``x_prev is None``) the initial draw x_{-1}."""
        if x_prev is not None:
            return x_prev.value
        if isinstance(self.init, PointMass):
            return self.init.value
        return x.stored_sites[INIT_SITE]

    def init_step(self, key, data_0):
        if isinstance(self.init, PointMass):
            value, sites, log_w = self._run(key, self.init.value, 0, data_0)
        else:
            k_init, key = jax.random.split(key)
            init = self.init if _is_distribution(self.init) else self.init(data_0)
            x_init = init.sample(k_init)
            value, sites, log_w = self._run(key, x_init, 0, data_0)
            sites = {**sites, INIT_SITE: x_init}
        return ProgramState(value, sites), jnp.asarray(log_w, dtype=jnp.result_type(float))

    def step(self, key, x_prev, t, data_t):
        value, sites, log_w = self._run(key, x_prev.value, t, data_t)
        if INIT_SITE in x_prev.stored_sites:
            sites = {**sites, INIT_SITE: x_prev.stored_sites[INIT_SITE]}
        return ProgramState(value, sites), jnp.asarray(log_w, dtype=jnp.result_type(float))

    def log_weight(self, x_prev, x, t, data_t):
        _, log_g = self._score(self._prev_value(x_prev, x), x, t, data_t)
        return jnp.asarray(log_g, dtype=jnp.result_type(float))

    def log_density(self, x_prev, x, t, data_t):
        log_m, log_g = self._score(self._prev_value(x_prev, x), x, t, data_t)
        return log_m + log_g

    def canonical(self, x):
        """``x`` (a user-built :class:`ProgramState`, e.g. a particle Gibbs reference) stored as
        this model's particles are: the site that the program returns marked :class:`AsValue`."""
        if not isinstance(x, ProgramState):
            return x
        shape = jax.eval_shape(lambda: self.init_step(jax.random.key(0), self.data_at(self.data, 0))[0])
        returned = {k for k, v in shape.stored_sites.items() if isinstance(v, AsValue)}
        return ProgramState(x.value, {k: AsValue() if k in returned else v for k, v in x.stored_sites.items()})

    def is_done(self, x):
        if self.done is None:
            return jnp.zeros((), dtype=bool)
        return jnp.asarray(self.done(x.value), dtype=bool)


def from_step_program(step: Callable, init: Any, data=None, num_steps: Optional[int] = None,
                      done: Optional[Callable] = None) -> StepProgramModel:
    r"""Turn a numpyro step program into a Feynman–Kac model.

    Parameters
    ----------
    step
        ``step(x_prev, data_t)`` (or ``step(x_prev, data_t, t=...)`` if it has a parameter named
        ``t``): a numpyro program for one step of one particle that returns the new state.
        Latent sample sites form :math:`M_t`; observed sites and ``numpyro.factor`` form
        :math:`\log G_t`. ``data_t`` is ``None`` when the model has no data.
    init
        The distribution of :math:`x_{-1}` (a numpyro distribution, or a callable
        ``data_0 -> distribution``), or a fixed pytree.
    data, num_steps, done
        As for :class:`~ppl.core.feynman_kac.FeynmanKac`; ``done`` receives the program's return
        value.

    Examples
    --------
    ::

        def step(x_prev, y):
            x = numpyro.sample("x", dist.Normal(0.9 * x_prev, 1.0))
            numpyro.sample("y", dist.Normal(x, 0.5), obs=y)
            return x

        fk = ppl.from_step_program(step, init=dist.Normal(0.0, 1.0), data=ys)
        res = ppl.run_smc(fk, 1024, key=jax.random.key(0))
        res.particles.value  # final states
    """
    return StepProgramModel(step, init, data=data, num_steps=num_steps, done=done)
