r"""Potentials for LM programs, and how they compose.

A potential is a function of one particle's transition, ``fn(prev, state) -> log G`` (a scalar),
where ``prev`` and ``state`` are :class:`~ppl.lm.state.LMState` before and after a reasoning
step (``prev`` is the prompt's state at the first step). It is written for one particle and
lifted with ``vmap``. The target of an LM program with potentials :math:`G_t` is

.. math::

    \pi(x) \propto p_{\mathrm{LM}}(x) \prod_t G_t(x_{1:t-1}, x_{1:t}).

Combinators (each returns a :class:`Potential`, and ``a * b`` multiplies two of them — adds their
logs):

* :func:`on_prefix` — :math:`G_t = \exp f(x_{1:t})`, a score of the prefix at every step (a reward
  model read as a log-potential);
* :func:`twist` — :math:`G_t = \psi(x_{1:t}) / \psi(x_{1:t-1})`: intermediate targets
  :math:`p(x_{1:t})\psi(x_{1:t})` whose product telescopes, so the final target only has the
  last :math:`\psi` (twisted SMC: a look-ahead that does not change the final target when the last
  twist is the true final potential);
* :func:`constraint` — :math:`G_t \in \{1, 0\}`: a hard constraint on the prefix (log 0 =
  :math:`-\infty`);
* :func:`when_finished` — apply a potential once, at the step where the particle finishes
  (end-of-sequence, or the program's last step): outcome rewards and final-answer constraints.
"""

from __future__ import annotations

from typing import Callable

import jax.numpy as jnp

from ppl.lm.state import LMState

__all__ = ["Potential", "on_prefix", "twist", "constraint", "when_finished", "product", "from_score"]


class Potential:
    """A log-potential ``(prev, state) -> log G`` for one particle; ``a * b`` adds the logs."""

    def __init__(self, fn: Callable, name: str = "potential"):
        if not callable(fn):
            raise TypeError(f"potential: expected a callable (prev, state) -> log G, got {type(fn).__name__}")
        self.fn = fn
        self.name = name

    def __call__(self, prev: LMState, state: LMState):
        return jnp.asarray(self.fn(prev, state), jnp.float32)

    def __mul__(self, other: "Potential") -> "Potential":
        return product(self, other)

    def __repr__(self):
        return f"Potential({self.name})"


def _as_potential(p) -> Potential:
    return p if isinstance(p, Potential) else Potential(p, getattr(p, "__name__", "potential"))


def product(*potentials) -> Potential:
    r""":math:`\prod_i G^{(i)}_t`: the sum of the log-potentials."""
    ps = [_as_potential(p) for p in potentials]
    if not ps:
        raise ValueError("product: needs at least one potential")
    return Potential(lambda prev, state: sum(p(prev, state) for p in ps),
                     " * ".join(p.name for p in ps))


def on_prefix(score: Callable[[LMState], jnp.ndarray]) -> Potential:
    r""":math:`\log G_t = f(x_{1:t})`, with ``score(state) -> f`` a log-score of the prefix."""
    return Potential(lambda prev, state: score(state), f"on_prefix({getattr(score, '__name__', 'f')})")


def twist(log_psi: Callable[[LMState], jnp.ndarray]) -> Potential:
    r""":math:`\log G_t = \log\psi(x_{1:t}) - \log\psi(x_{1:t-1})`, with :math:`\psi` of the prompt = 1."""

    def fn(prev, state):
        at_prompt = prev.num_steps == 0
        return log_psi(state) - jnp.where(at_prompt, 0.0, log_psi(prev))

    return Potential(fn, f"twist({getattr(log_psi, '__name__', 'psi')})")


def constraint(predicate: Callable[[LMState], jnp.ndarray]) -> Potential:
    r""":math:`G_t = 1` if ``predicate(state)`` else :math:`0` (log-potential 0 or :math:`-\infty`)."""
    return Potential(lambda prev, state: jnp.where(predicate(state), 0.0, -jnp.inf),
                     f"constraint({getattr(predicate, '__name__', 'pred')})")


def when_finished(potential, max_steps: int) -> Potential:
    r"""Apply ``potential`` only at the step where the particle finishes.

    A particle finishes when it emits end-of-sequence / fills its buffer (``state.done``) or
    completes step number ``max_steps`` (the program's last). Elsewhere :math:`\log G_t = 0`.
    """
    inner = _as_potential(potential)

    def fn(prev, state):
        finished = state.done | (state.num_steps >= max_steps)
        return jnp.where(finished, inner(prev, state), 0.0)

    return Potential(fn, f"when_finished({inner.name})")


def from_score(score: Callable[[LMState], jnp.ndarray], kind: str = "prefix",
               max_steps: int | None = None) -> Potential:
    r"""A potential from a prefix score :math:`\log r(x_{1:t})` (a reward model's, one particle):

    * ``"prefix"`` — :func:`on_prefix`: :math:`\log G_t = \log r(x_{1:t})`;
    * ``"twist"`` — :func:`twist`: :math:`\log G_t = \log r(x_{1:t}) - \log r(x_{1:t-1})`;
    * ``"last"`` — the score of the finished prefix only, :func:`when_finished` of
      :func:`on_prefix` (needs the program's ``max_steps``).
    """
    if kind == "prefix":
        return on_prefix(score)
    if kind == "twist":
        return twist(score)
    if kind == "last":
        if max_steps is None:
            raise ValueError("step_potential(kind='last') needs max_steps (the program's max_steps).")
        return when_finished(on_prefix(score), int(max_steps))
    raise ValueError(f"step_potential: kind={kind!r}; expected 'prefix', 'twist' or 'last'.")
