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
  (end-of-sequence, or the program's last step): outcome rewards and final-answer constraints;
* :func:`from_reward` — a reward model as a potential with *memory*: the running aggregate of
  its prefix scores (last, minimum or product) rides in the particle (``state.memory``), and
  the weight is the aggregate's log-odds over :math:`\tau` (Puri et al.) or the ratio of
  successive aggregates (a twist whose product is the final aggregate);
* :func:`odds`, :func:`ratio`, :func:`odds_ratio` — the same as recipes that take the reward
  later (:class:`RewardPotential`), what the scaling methods accept as ``potential=``;
* :func:`lookahead` — a potential with memory read after :math:`k` greedy steps past the prefix
  (search-and-learn's ``lookahead``), which are not kept.

A potential with memory (:class:`MemoryPotential`) maps ``(prev, state)`` to ``(log G,
memory)``; the program stores the memory in the new state, so it is gathered with the particle
when resampling and nothing is recomputed.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

from ppl.lm.sampling import StepConfig, sample_step
from ppl.lm.state import LMState, prefix_tokens

__all__ = ["Potential", "MemoryPotential", "RewardMemory", "on_prefix", "twist", "twisted", "constraint", "when_finished",
           "product", "from_score", "from_reward", "tau_schedule", "lookahead", "Lookahead", "WithLogP", "with_log_p",
           "AGGREGATES", "WEIGHTINGS", "RewardPotential", "odds", "ratio", "odds_ratio",
           "check_potential"]


class Potential:
    """A log-potential ``(prev, state) -> log G`` for one particle; ``a * b`` adds the logs."""

    def __init__(self, fn: Callable, name: str = "potential", horizons=()):
        if not callable(fn):
            raise TypeError(f"potential: expected a callable (prev, state) -> log G, got {type(fn).__name__}")
        self.fn = fn
        self.name = name
        #: the ``max_steps`` of every :func:`when_finished` inside: a program checks them against its own
        self.horizons = frozenset(int(h) for h in horizons)

    def __call__(self, prev: LMState, state: LMState):
        return jnp.asarray(self.fn(prev, state), jnp.float32)

    def __mul__(self, other: "Potential") -> "Potential":
        return product(self, other)

    def __repr__(self):
        return f"Potential({self.name})"


class MemoryPotential(Potential):
    """A log-potential that keeps a memory in the particle.

    ``update(prev, state) -> (log G, memory)`` reads ``prev.memory`` (the parent's) and returns
    the new memory, which the program stores as ``state.memory``; ``memory0`` is the prompt's
    memory, or ``init(prompt_state) -> memory`` computes it from the prompt's state (once per
    prompt, before the particles are drawn: e.g. a reward model's cache of the prompt). Called as
    a plain potential it returns ``log G`` only.
    """

    def __init__(self, update: Callable, memory0=None, name: str = "potential", horizons=(),
                 init: Callable | None = None, incremental: bool = False):
        super().__init__(lambda prev, state: update(prev, state)[0], name, horizons)
        if memory0 is None and init is None:
            raise ValueError("MemoryPotential: give memory0 or init(prompt_state) -> memory")
        self.update = update
        self.memory0 = memory0
        self.init = init
        #: whether the memory holds state that has read the particle's tokens up to its length
        #: (an incremental reward's cache), so the memory must follow the particle's own prefix
        self.incremental = bool(incremental)

    def initial(self, prompt_state: LMState):
        """The memory of the prompt's state."""
        return self.memory0 if self.init is None else self.init(prompt_state)


def _as_potential(p) -> Potential:
    return p if isinstance(p, Potential) else Potential(p, getattr(p, "__name__", "potential"))


def product(*potentials) -> Potential:
    r""":math:`\prod_i G^{(i)}_t`: the sum of the log-potentials."""
    ps = [_as_potential(p) for p in potentials]
    if not ps:
        raise ValueError("product: needs at least one potential")
    name = " * ".join(p.name for p in ps)
    horizons = frozenset().union(*(p.horizons for p in ps))
    with_memory = [p for p in ps if isinstance(p, MemoryPotential)]
    if len(with_memory) > 1:
        raise ValueError(f"product: at most one potential may keep a memory, got {len(with_memory)} ({name})")
    if not with_memory:
        return Potential(lambda prev, state: sum(p(prev, state) for p in ps), name, horizons)
    mem, rest = with_memory[0], [p for p in ps if p is not with_memory[0]]

    def update(prev, state):
        log_g, memory = mem.update(prev, state)
        return log_g + sum(p(prev, state) for p in rest), memory

    return MemoryPotential(update, mem.memory0, name, horizons, init=mem.init, incremental=mem.incremental)


def on_prefix(score: Callable[[LMState], jnp.ndarray]) -> Potential:
    r""":math:`\log G_t = f(x_{1:t})`, with ``score(state) -> f`` a log-score of the prefix."""
    return Potential(lambda prev, state: score(state), f"on_prefix({getattr(score, '__name__', 'f')})")


def twist(log_psi: Callable[[LMState], jnp.ndarray]) -> Potential:
    r""":math:`\log G_t = \log\psi(x_{1:t}) - \log\psi(x_{1:t-1})`, with :math:`\psi` of the prompt = 1."""

    def fn(prev, state):
        at_prompt = prev.num_steps == 0
        return log_psi(state) - jnp.where(at_prompt, 0.0, log_psi(prev))

    return Potential(fn, f"twist({getattr(log_psi, '__name__', 'psi')})")


def _is_reward(x) -> bool:
    return callable(getattr(x, "log_score", None))


def twisted(log_psi, final, max_steps: int, params=None, final_params=None) -> Potential:
    r"""Twisted SMC's potential for the target :math:`p(x)\,\varphi(x)` (Zhao et al. 2024):

    .. math::

        \log G_t = \log\psi_t(x_{1:t}) - \log\psi_{t-1}(x_{1:t-1}), \qquad
        \psi(x) = \varphi(x) \text{ for a finished } x, \quad \psi(\text{prompt}) = 1,

    so the product over a path telescopes to :math:`\varphi(x)` whatever the twist
    :math:`\psi` is: the filter targets :math:`p\varphi / Z` exactly, and the twist only decides
    which prefixes survive resampling on the way. The optimal twist is
    :math:`\psi_t(x_{1:t}) = \mathbb{E}_p[\varphi(x) \mid x_{1:t}]`, the expected *future*
    potential; a learned head or a process reward model approximates it. ``log_psi(state)`` is
    one particle's :math:`\log\psi` of its prefix (``None``: no twist, :math:`\psi = 1`, the
    bootstrap filter), ``final`` the target's potential :math:`\log\varphi` (a
    :class:`Potential` or ``(prev, state) -> log phi``) and ``max_steps`` the program's horizon (a
    particle finishes at its end-of-sequence or at step ``max_steps``).

    Either may also be a **reward model** (an object with ``log_score(params, state)``, e.g. a
    PRM, a learned twist head or an outcome reward; ``params`` / ``final_params`` default to its
    own ``params`` and may be traced): its log-score of the prefix is then kept in the particle's
    memory (:class:`RewardMemory`), so that :math:`\psi_{t-1}` is not recomputed and
    :math:`\varphi` is the score of the finished prefix, read incrementally (only each step's new
    tokens) when the reward has ``init_state``/``extend``, as in :func:`from_reward`. The same
    reward as twist and final is read once.
    """
    horizon = int(max_steps)
    if log_psi is not None and not _is_reward(log_psi) and not _is_reward(final):
        fin = _as_potential(final)

        def fn(prev, state):
            finished = state.done | (state.num_steps >= horizon)
            now = jnp.where(finished, fin(prev, state), log_psi(state))
            return now - jnp.where(prev.num_steps == 0, 0.0, log_psi(prev))

        return Potential(fn, f"twisted({getattr(log_psi, '__name__', 'psi')}, {fin.name})", fin.horizons | {horizon})
    return _twisted_memory(log_psi, final, horizon, params, final_params)


def _twisted_memory(log_psi, final, horizon: int, params, final_params) -> Potential:
    """:func:`twisted` with reward models as twist and/or final potential (memory: a dict of
    :class:`RewardMemory`, ``"psi"`` and ``"final"``), or with no twist."""
    parts = {}
    if _is_reward(log_psi):
        parts["psi"] = from_reward(log_psi, params, aggregate="last", weighting="ratio")
    same = _is_reward(final) and final is log_psi and (final_params is None or final_params is params)
    if _is_reward(final) and not same:
        parts["final"] = from_reward(final, final_params, aggregate="last", weighting="ratio")
    fin = None if _is_reward(final) else _as_potential(final)
    names = tuple(parts)

    def name(x):
        return "none" if x is None else type(x).__name__ if _is_reward(x) else getattr(x, "__name__", "f")

    def psi_of(state, memory):
        if "psi" in parts:
            return memory["psi"].last
        return jnp.zeros((), jnp.float32) if log_psi is None else log_psi(state)

    def step(prev, state, memory):
        finished = state.done | (state.num_steps >= horizon)
        phi = memory["psi" if same else "final"].last if fin is None else fin(prev, state)
        now = jnp.where(finished, phi, psi_of(state, memory))
        before = jnp.where(prev.num_steps == 0, 0.0, psi_of(prev, prev.memory if names else None))
        return jnp.where(prev.done, 0.0, now - before)

    label = f"twisted({name(log_psi)}, {name(final)})"
    horizons = (fin.horizons if fin is not None else frozenset()) | {horizon}
    if not names:  # no reward: a memoryless potential (with no twist, when_finished(final))
        return Potential(lambda prev, state: step(prev, state, None), label, horizons)

    def update(prev, state):
        memory = {k: parts[k].update(prev._replace(memory=prev.memory[k]), state)[1] for k in names}
        return step(prev, state, memory), memory

    return MemoryPotential(update, None, label, horizons, init=lambda s: {k: parts[k].initial(s) for k in names},
                           incremental=any(parts[k].incremental for k in names))


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

    return Potential(fn, f"when_finished({inner.name})", inner.horizons | {int(max_steps)})


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


#: How :func:`from_reward` aggregates the prefix scores, and how it turns them into weights.
AGGREGATES = ("last", "min", "product", "model")
WEIGHTINGS = ("softmax", "ratio", "odds_ratio")


class RewardMemory(NamedTuple):
    r"""Running aggregates of a reward's log prefix scores :math:`\log r_s`, :math:`s \le t`:
    the last, the minimum and the sum (the log of the product); ``step``, the number of filter
    steps seen (finished or not: it indexes a per-step temperature); ``read``, the tokens the
    reward read at the last step (the whole prefix, or only the new tokens of an incremental
    reward); ``prompt_read``, the tokens an incremental reward read for the prompt (once per
    prompt, shared by the particles; 0 otherwise); ``reward``, an incremental reward's own state
    (``()`` otherwise)."""

    last: jax.Array
    low: jax.Array
    total: jax.Array
    step: jax.Array
    read: jax.Array
    prompt_read: jax.Array
    reward: Any = ()

    @property
    def incremental(self) -> bool:
        """Whether the reward carries its own state (static)."""
        return not (isinstance(self.reward, tuple) and len(self.reward) == 0)


def _aggregate(kind: str, m: RewardMemory):
    if kind in ("last", "model"):
        return m.last
    if kind == "min":
        return m.low
    return m.total


def log_odds(log_a, eps: float = 1e-6):
    r""":math:`\operatorname{logit}(a)` of a log-score, :math:`a` clipped to :math:`[\varepsilon, 1-\varepsilon]`."""
    a = jnp.clip(jnp.exp(log_a), eps, 1.0 - eps)
    return jnp.log(a) - jnp.log1p(-a)


def from_reward(reward, params=None, *, aggregate: str = "last", weighting: str = "softmax", tau=1.0,
                eps: float = 1e-6, incremental: bool | None = None) -> MemoryPotential:
    r"""A reward model as a potential (Puri et al. 2025), for one particle.

    After each step the reward scores the prefix, :math:`r_t = r(x_{1:t})` (``reward.log_score(
    params, state)``), and the aggregate :math:`a_t` of the scores so far is kept in the
    particle's memory (:class:`RewardMemory`): ``"last"`` (or ``"model"``) :math:`a_t = r_t`,
    ``"min"`` :math:`a_t = \min_{s \le t} r_s`, ``"product"`` :math:`a_t = \prod_{s \le t} r_s`.
    The log-potential is

    * ``weighting="softmax"``: :math:`\log G_t = \operatorname{logit}(a_t) / \tau_t`
      (:math:`a_t` clipped to :math:`[\varepsilon, 1 - \varepsilon]`), the resampling weight
      :math:`\mathrm{softmax}(\operatorname{logit}(a)/\tau)` of the reference implementation;
      with finished particles absorbing (:func:`ppl.smc.base.absorbing`) this is the particle
      filter's target :math:`q(x)\prod_{t \le T} G(a_{\min(t, K)})`. ``tau`` is a number or a
      schedule, one :math:`\tau_t` per filter step (``tau[min(t, len(tau) - 1)]`` at step
      :math:`t = 0, 1, \dots`; :func:`tau_schedule`); with a schedule a finished particle is
      weighted by its final score at the *current* step's :math:`\tau_t` — use
      :func:`ppl.smc.base.reweighed` — and the target is
      :math:`q(x)\prod_{t} \operatorname{odds}(a_{\min(t, K)})^{1/\tau_t}`;
    * ``weighting="ratio"``: :math:`\log G_t = \log a_t - \log a_{t-1}` (:math:`a_0 = 1`): the
      product telescopes to the final aggregate :math:`a_K` (give finished particles a factor
      one, :func:`ppl.smc.base.factor_one`);
    * ``weighting="odds_ratio"``: :math:`\log G_t = (\operatorname{logit}(a_t) -
      \operatorname{logit}(a_{t-1})) / \tau` (:math:`\operatorname{logit}(a_0) = 0`): the
      product telescopes to :math:`\operatorname{odds}(a_K)^{1/\tau}`, the softmax weighting's
      one-step target, reached through twisted intermediate targets (factor one when finished).

    The three are usually built as recipes that take the reward later: :func:`odds`,
    :func:`ratio`, :func:`odds_ratio` (:class:`RewardPotential`), which is what the scaling
    methods accept.

    A finished particle (``prev.done``) keeps its memory: it is not scored again.
    ``params`` may be traced (a method passes the reward's parameters as data); ``tau`` too.

    **Incremental rewards.** A reward with ``init_state`` and ``extend``
    (:class:`ppl.core.protocols.IncrementalReward`, e.g. the bundled PRM) keeps its own state in
    the memory (``RewardMemory.reward``: its KV cache and running features): the prompt is read
    once (``init_state``, by the program, before the particles are drawn) and each step reads
    only the step's new tokens (``extend``), so the reward's cost per step is proportional to
    the step, not the prefix. Its state is resampled with the particle in the same gather. The
    scores equal ``log_score``'s to float tolerance. ``incremental=None`` uses it when the reward
    has it; ``False`` scores the whole prefix at every step (``log_score``).
    """
    if aggregate not in AGGREGATES:
        raise ValueError(f"aggregate: expected one of {AGGREGATES}, got {aggregate!r}")
    if weighting not in WEIGHTINGS:
        raise ValueError(f"weighting: expected one of {WEIGHTINGS}, got {weighting!r}")
    if not callable(getattr(reward, "log_score", None)):
        raise TypeError(f"reward: expected an object with log_score(params, state), got {type(reward).__name__}")
    params = reward.params if params is None else params
    softmax = weighting == "softmax"
    can = callable(getattr(reward, "init_state", None)) and callable(getattr(reward, "extend", None))
    if incremental and not can:
        raise TypeError(f"from_reward(incremental=True): {type(reward).__name__} has no init_state/extend "
                        "(see ppl.core.protocols.IncrementalReward)")
    incremental = can if incremental is None else bool(incremental)

    def score(prev, state):
        if not incremental:
            return reward.log_score(params, state), (), prefix_tokens(state)
        return reward.extend(params, prev.memory.reward, state)

    def update(prev, state):
        live = ~prev.done
        log_r, rstate, read = score(prev, state)
        log_r = log_r.astype(jnp.float32)
        m = prev.memory
        prev_a = jnp.where(prev.num_steps > 0, _aggregate(aggregate, m), 0.0)
        tau_t = tau if jnp.ndim(tau) == 0 else tau[jnp.minimum(m.step, jnp.shape(tau)[0] - 1)]
        m = RewardMemory(jnp.where(live, log_r, m.last), jnp.where(live, jnp.minimum(m.low, log_r), m.low),
                         jnp.where(live, m.total + log_r, m.total), m.step + 1,
                         jnp.where(live, read, 0).astype(jnp.int32), m.prompt_read, rstate)
        a = _aggregate(aggregate, m)
        if softmax:
            return log_odds(a, eps) / tau_t, m
        if weighting == "ratio":
            return jnp.where(live, a - prev_a, 0.0), m
        before = jnp.where(prev.num_steps > 0, log_odds(prev_a, eps), 0.0)
        return jnp.where(live, (log_odds(a, eps) - before) / tau_t, 0.0), m

    zero, izero = jnp.zeros((), jnp.float32), jnp.zeros((), jnp.int32)

    def init(prompt_state):
        rstate, read = reward.init_state(params, prompt_state) if incremental else ((), izero)
        return RewardMemory(zero, jnp.full((), jnp.inf, jnp.float32), zero, izero, izero,
                            jnp.asarray(read, jnp.int32), rstate)

    return MemoryPotential(update, None, f"from_reward({aggregate}, {weighting}{', incremental' if incremental else ''})",
                           init=init, incremental=incremental)


class RewardPotential(NamedTuple):
    r"""A recipe for :func:`from_reward` that takes the reward model later: how a reward's prefix
    scores become a potential. Built with :func:`odds` (Puri et al.'s softmax of log-odds),
    :func:`ratio` (ratios of scores) or :func:`odds_ratio` (ratios of odds); calling it with a
    reward gives the potential, ``recipe(reward, params=None, tau=None, incremental=None)``
    (``params`` and ``tau`` may be traced: a scaling method passes them as data, so a new
    problem's reward or a new :math:`\tau` does not recompile). The scaling methods that weigh
    particles by a reward (:func:`ppl.scaling.particle_filter`, :func:`ppl.scaling.particle_gibbs`,
    :func:`ppl.scaling.parallel_tempering`) take one as ``potential=``: the same recipe is the
    same target in each of them.
    """

    weighting: str = "softmax"
    aggregate: str = "last"
    tau: Any = 1.0
    eps: float = 1e-6

    def __call__(self, reward, params=None, tau=None, incremental: bool | None = None) -> MemoryPotential:
        tau = self.tau if tau is None else tau
        tau = jnp.asarray(tau, jnp.float32) if isinstance(tau, tuple) else tau
        return from_reward(reward, params, aggregate=self.aggregate, weighting=self.weighting, tau=tau,
                           eps=self.eps, incremental=incremental)

    @property
    def schedule(self) -> bool:
        r"""Whether :math:`\tau` is a schedule (one per step) rather than one number."""
        return isinstance(self.tau, tuple)

    def static_key(self) -> tuple:
        r"""What compiled code depends on (:math:`\tau` is passed as data)."""
        return (self.weighting, self.aggregate, self.schedule, self.eps)

    @property
    def finished(self) -> Callable:
        """The finished rule of the SMC kernel that gives this recipe its stated target:
        :func:`~ppl.smc.base.absorbing` for :func:`odds` (:func:`~ppl.smc.base.reweighed` with a
        schedule), :func:`~ppl.smc.base.factor_one` for the ratios, whose products telescope."""
        from ppl.smc import base

        if self.weighting != "softmax":
            return base.factor_one
        return base.reweighed if self.schedule else base.absorbing


def _check_tau(tau):
    import numpy as np

    from ppl.core.checks import check_positive

    if isinstance(tau, (int, float, np.number)) or (hasattr(tau, "ndim") and np.ndim(tau) == 0):
        return check_positive("tau", tau)
    try:
        taus = np.asarray(tau, np.float64)
    except (TypeError, ValueError):
        taus = np.asarray([np.nan])
    if taus.ndim != 1 or taus.size == 0 or not np.all(np.isfinite(taus) & (taus > 0)):
        raise ValueError(f"tau: expected a positive number or a 1-d sequence of positive numbers, got {tau!r}")
    return tuple(taus.tolist())


def _check_recipe(aggregate: str, eps) -> float:
    if aggregate not in AGGREGATES:
        raise ValueError(f"aggregate: expected one of {AGGREGATES}, got {aggregate!r}")
    if isinstance(eps, bool) or not (isinstance(eps, (int, float)) and 0.0 < float(eps) < 0.5):
        raise ValueError(f"eps: expected a number in (0, 0.5), got {eps!r}")
    return float(eps)


def odds(tau=1.0, aggregate: str = "last", eps: float = 1e-6) -> RewardPotential:
    r"""Puri et al.'s potential: :math:`\log G_t = \operatorname{logit}(a_t) / \tau_t`, the prefix
    score's aggregate (``"last"``, ``"min"``, ``"product"``; :func:`from_reward`) as log-odds over
    a temperature, with finished particles absorbing: the target
    :math:`q(x)\prod_{t \le T}\operatorname{odds}(a_{\min(t, K)})^{1/\tau_t}`. ``tau`` is a
    number or a schedule (a sequence, one :math:`\tau_t` per step, the last repeating;
    :func:`tau_schedule`)."""
    return RewardPotential("softmax", aggregate, _check_tau(tau), _check_recipe(aggregate, eps))


def ratio(aggregate: str = "last") -> RewardPotential:
    r""":math:`\log G_t = \log a_t - \log a_{t-1}`: the product telescopes to the final aggregate,
    the target :math:`q(x)\,a_K(x)` (finished particles: factor one)."""
    return RewardPotential("ratio", aggregate, 1.0, _check_recipe(aggregate, 1e-6))


def odds_ratio(tau=1.0, aggregate: str = "last", eps: float = 1e-6) -> RewardPotential:
    r""":math:`\log G_t = (\operatorname{logit}(a_t) - \operatorname{logit}(a_{t-1}))/\tau`: the
    product telescopes to :math:`\operatorname{odds}(a_K)^{1/\tau}`, the target
    :math:`q(x)\operatorname{odds}(a_K(x))^{1/\tau}` (finished particles: factor one)."""
    tau = _check_tau(tau)
    if isinstance(tau, tuple):
        raise ValueError("tau: odds_ratio takes one temperature (its product telescopes only with a constant tau)")
    return RewardPotential("odds_ratio", aggregate, tau, _check_recipe(aggregate, eps))


class WithLogP(NamedTuple):
    """The memory of :func:`with_log_p`: the prefix's log-probability under the LM and the inner
    potential's memory."""

    log_p: jax.Array
    inner: object


def with_log_p(potential: MemoryPotential) -> MemoryPotential:
    r"""``potential``, with the prefix's log-probability under the LM,
    :math:`\log p(x_{1:t}) = \sum_{s \le t} \log p(\text{step}_s \mid x_{1:s-1})` (the states'
    ``step_log_p``), kept beside its memory (:class:`WithLogP`): A*'s path cost. A finished or
    held particle (``prev.done``) adds nothing."""

    def update(prev, state):
        log_g, inner = potential.update(prev._replace(memory=prev.memory.inner),
                                        state._replace(memory=prev.memory.inner))
        return log_g, WithLogP(prev.memory.log_p + jnp.where(prev.done, 0.0, state.step_log_p), inner)

    return MemoryPotential(update, None, f"with_log_p({potential.name})", potential.horizons,
                           init=lambda s: WithLogP(jnp.zeros((), jnp.float32), potential.initial(s)),
                           incremental=potential.incremental)


def tau_schedule(start: float, end: float, num_steps: int, kind: str = "geometric") -> jax.Array:
    r"""An annealing schedule of softmax temperatures for :func:`from_reward`: ``float32[T]``,
    :math:`\tau_t` from ``start`` (:math:`t = 0`) to ``end`` (:math:`t = T - 1`), ``"geometric"``
    (:math:`\tau_t = \tau_0 (\tau_{T-1}/\tau_0)^{t/(T-1)}`) or ``"linear"``. A decreasing
    schedule keeps early resampling mild, while prefix scores say little, and sharpens it as the
    chains near their end."""
    from ppl.core.checks import check_int, check_positive

    a, b = check_positive("start", start), check_positive("end", end)
    n = check_int("num_steps", num_steps, 1)
    frac = jnp.linspace(0.0, 1.0, n) if n > 1 else jnp.zeros((1,))
    if kind == "geometric":
        return (a * (b / a) ** frac).astype(jnp.float32)
    if kind == "linear":
        return (a + (b - a) * frac).astype(jnp.float32)
    raise ValueError(f"kind: expected 'geometric' or 'linear', got {kind!r}")


class Lookahead(NamedTuple):
    """The memory of :func:`lookahead`: the inner potential's memory, the tokens the last look-ahead
    generated and the length of the prefix it scored."""

    inner: object
    tokens: jax.Array
    length: jax.Array


def lookahead(potential: "MemoryPotential", lm, params, config: StepConfig, steps: int,
              max_steps: int, prefix=None) -> "MemoryPotential":
    r"""``potential`` scored on the prefix extended by ``steps`` greedy steps (for one particle).

    After each step, the particle's prefix :math:`x_{1:t}` is continued by :math:`k` = ``steps``
    greedy steps of the LM (``lm.apply`` with ``params``: the step ``config`` with top-1 sampling),
    :math:`\tilde x = x_{1:t+k}`, and ``potential`` is updated with :math:`\tilde x` instead of
    :math:`x_{1:t}`; the particle keeps :math:`x_{1:t}`, and the look-ahead tokens are dropped.
    This is search-and-learn's ``lookahead`` option of beam search and DVTS. As there, a particle
    that has finished, or has reached the program's last step (``max_steps``), is not extended.
    The memory (:class:`Lookahead`) records the tokens generated by the look-ahead and the
    length it scored, for exact compute counting (:func:`ppl.lm.compute.counter`).
    ``prefix``: the program's shared prompt cache (``data.get("prefix")`` of an
    :class:`~ppl.lm.LMProgram`), when the particles' caches start after it.
    """
    if potential.incremental and int(steps) > 0:
        raise ValueError("lookahead: the potential reads the look-ahead's tokens, which the particle does not keep, "
                         "so an incremental reward's state would run ahead of it; use from_reward(..., incremental=False)")
    greedy = StepConfig(delimiter=config.delimiter, max_step_tokens=config.max_step_tokens, temperature=1.0,
                        top_k=1)
    key = jax.random.key(0)  # top-1 sampling draws nothing (ties aside)

    def update(prev, state):
        x = jax.tree_util.tree_map(lambda a: a[None], state)
        x = x._replace(done=x.done | (x.num_steps >= max_steps))
        for _ in range(int(steps)):
            x, _, _ = sample_step(lm, params, key, x, greedy, prefix)
        ahead = jax.tree_util.tree_map(lambda a: a[0], x)
        ahead = ahead._replace(done=jnp.where(state.num_steps >= max_steps, state.done, ahead.done),
                               memory=state.memory.inner)
        log_g, inner = potential.update(prev._replace(memory=prev.memory.inner), ahead)
        return log_g, Lookahead(inner, (ahead.length - state.length).astype(jnp.int32), ahead.length.astype(jnp.int32))

    zero = jnp.zeros((), jnp.int32)
    return MemoryPotential(update, None, f"lookahead({potential.name}, {steps})",
                           init=lambda prompt: Lookahead(potential.initial(prompt), zero, zero))


def check_potential(potential) -> None:
    """``potential`` is a :class:`~ppl.lm.potentials.RewardPotential` (``odds()``, ``ratio()``, ...)."""
    if not isinstance(potential, RewardPotential):
        raise TypeError(f"potential: expected a reward-potential recipe (ppl.lm.potentials.odds(tau), ratio() or "
                        f"odds_ratio(tau)), got {potential!r}")
    if potential.weighting not in WEIGHTINGS or potential.aggregate not in AGGREGATES:
        raise ValueError(f"potential: weighting must be one of {WEIGHTINGS} and aggregate one of {AGGREGATES}, "
                         f"got {potential!r}")
    _check_tau(potential.tau)
