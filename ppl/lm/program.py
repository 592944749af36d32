r"""LM programs: an LM as the transition of a Feynman–Kac model, potentials as its weights.

:class:`LMProgram` is the Feynman–Kac model

.. math::

    x_0 = \text{prompt}, \qquad
    x_t \sim q(\cdot \mid x_{t-1}) \ \text{(one reasoning step)}, \qquad
    \log w_t = \log G_t(x_{t-1}, x_t) + \big[\log p(x_t \mid x_{t-1}) - \log q(x_t \mid x_{t-1})\big],

where :math:`p` is the LM, :math:`q` the proposal that actually draws the tokens (the LM after
temperature / top-k / top-p; :math:`q = p` by default) and the bracket is there when
``correct_proposal=True`` (the default), so that the target is :math:`p(x) \prod_t G_t / Z`
when :math:`q` reaches every sequence :math:`p` does (a temperature). Top-k / top-p give
:math:`q = 0` to tokens :math:`p` allows: the target is then :math:`p \prod_t G_t` restricted to
what :math:`q` can reach (renormalised), and the program warns. With
``correct_proposal=False`` the proposal itself is the transition and the target is
:math:`q(x) \prod_t G_t / Z`.

Every particle set decodes in one batched LM call per token; resampling gathers the whole
state (token buffer and KV cache) along the particle axis. With an LM that reads a shared
prefix (``lm.apply_with_prefix``), the prompt's first :math:`F` keys and values are computed
once per prompt and stored once, in the program's data, and each particle's cache holds only
the positions after them (``shared_prefix``). The program's data — the LM's weights, the
padded prompt and its shared cache — are traced, so a new prompt of similar length or new
weights do not recompile.

The same model can be written as a numpyro step program with :class:`LMStep`, a distribution
over the next state::

    def step(state, data):
        new = numpyro.sample("step", ppl.lm.LMStep(lm, state, config))
        numpyro.factor("g", potential(state, new))
        return new

    fk = ppl.from_step_program(step, init=ppl.lm.prompt_state(lm, prompt, max_length),
                               num_steps=max_steps, done=lambda s: s.done)
"""

from __future__ import annotations

from typing import Callable, Optional

import jax
import jax.numpy as jnp
import numpyro.distributions as numpyro_dist

from ppl.core.checks import check_int
from ppl.core.trees import broadcast
from ppl.lm.potentials import MemoryPotential, Potential, _as_potential
from ppl.lm.sampling import StepConfig, sample_step, score_step
from ppl.lm.state import (LMState, check_lm, pad_prompt, padded_width, prefill, prompt_prefix, shares_prefix,
                          takes_pad)

__all__ = ["LMProgram", "LMStep", "RestrictedSupportWarning", "prompt_state", "check_program"]


class RestrictedSupportWarning(UserWarning):
    """A p/q-corrected program whose proposal (top-k / top-p) cannot reach the LM's whole support."""


def _one(state):
    return jax.tree_util.tree_map(lambda a: a[None], state)


def _unone(state):
    return jax.tree_util.tree_map(lambda a: a[0], state)


def _extends(prev: LMState, x: LMState):
    """Whether ``x`` is ``prev`` followed by one step (or ``prev`` itself if ``prev`` is done):
    the transition density is zero otherwise (ancestor sampling must not join a state to a
    parent with another prefix)."""
    idx = jnp.arange(x.tokens.shape[-1])
    same_prefix = jnp.all(jnp.where(idx < prev.length, x.tokens == prev.tokens, True))
    one_step = (x.step_start == prev.length) & (x.num_steps == prev.num_steps + 1) & (x.length > prev.length)
    unchanged = prev.done & (x.length == prev.length) & (x.num_steps == prev.num_steps)
    return same_prefix & jnp.where(prev.done, unchanged, one_step)


class LMProgram:
    """A Feynman–Kac model whose transition is "generate one reasoning step with the LM".

    It implements :class:`ppl.core.protocols.FeynmanKacModel` (what the engine calls); its data
    are the LM's weights and the padded prompt.

    Parameters
    ----------
    lm
        An LM following the protocol of :mod:`ppl.lm.state`.
    prompt
        1-d token ids.
    potential
        ``(prev, state) -> log G`` for one particle (see :mod:`ppl.lm.potentials`), or ``None``.
    max_steps
        :math:`T`: the number of reasoning steps at most.
    step_delimiter
        Token id or ids that end a step (e.g. a newline); ``()`` for steps of ``max_step_tokens``.
    max_step_tokens
        Tokens per step at most.
    max_length
        Token buffer length (prompt + generation); default: padded prompt + ``max_steps *
        max_step_tokens`` (+1).
    temperature, top_k, top_p
        The proposal :math:`q`.
    correct_proposal
        Weight by :math:`p/q` so that the target uses the LM itself.
    frozen
        Optional ``frozen(x) -> bool[N]`` on a particle set: particles held in place at the next
        step besides the finished ones (DVTS's stopped subtrees). They are not extended nor
        re-weighted, and count as finished for the filter (:meth:`done_batch`).
    shared_prefix
        :math:`F`: how many leading prompt positions have their keys and values stored once for
        all particles (at most the prompt's length minus one; ``0``: every particle carries the
        whole cache). Default: the prompt's length minus one rounded down to a multiple of 16
        when the LM has ``apply_with_prefix``, else 0. :meth:`with_prompt` keeps it for every
        prompt longer than it (so they share one compiled program) and lowers it for a shorter
        one. Pass the shortest prompt's length minus one to run many prompts in one batch.
    padding
        ``"right"`` (default): the prompt fills the buffer's first slots and the generation
        follows it. ``"left"``: the prompt is left-padded to the padded width :math:`W` and the LM
        masks the padding (it must take ``pad=``, see :mod:`ppl.lm.state`), so every prompt that
        fits :math:`W` ends at slot :math:`W - 1` and the generation starts at slot :math:`W`:
        prompts of different lengths share one compiled program *and* a shared prefix of
        :math:`W - 1` slots (the default then), so no particle carries any of its prompt's cache.
        A reward that runs a network over the token buffer must read the padding too (its
        ``left_padding`` attribute; see :func:`ppl.core.checks.check_reward`).

    A potential with memory (:class:`~ppl.lm.potentials.MemoryPotential`, e.g.
    :func:`~ppl.lm.potentials.from_reward`) keeps it in ``state.memory``.
    """

    time_indexed = False
    freezes_done = True  # sample_step does not move finished particles

    def __init__(self, lm, prompt, potential: Optional[Callable] = None, *, max_steps: int,
                 step_delimiter=(), max_step_tokens: int = 32, max_length: Optional[int] = None,
                 temperature: float = 1.0, top_k: Optional[int] = None, top_p: Optional[float] = None,
                 correct_proposal: bool = True, frozen: Optional[Callable] = None,
                 shared_prefix: Optional[int] = None, padding: str = "right"):
        check_lm(lm)
        if padding not in ("right", "left"):
            raise ValueError(f"padding: expected 'right' or 'left', got {padding!r}")
        if padding == "left" and not takes_pad(lm):
            raise ValueError(f"padding='left': {type(lm).__name__}.apply takes no pad= (the attention mask of left "
                             "padding; see ppl.lm.state); use padding='right'")
        self.padding = padding
        cfg = StepConfig(delimiter=step_delimiter, max_step_tokens=max_step_tokens,
                         temperature=temperature, top_k=top_k, top_p=top_p)
        if max_length is None:  # the generation starts after the prompt (left-padded: after its padded width)
            start = padded_width(len(prompt)) if padding == "left" else len(prompt)
            max_length = start + int(max_steps) * cfg.max_step_tokens + 1
        padded, length = pad_prompt(prompt, max_length=max_length, vocab_size=lm.vocab_size, left=padding == "left")
        if frozen is not None and not callable(frozen):
            raise TypeError(f"frozen: expected a callable x -> bool[N] or None, got {type(frozen).__name__}")
        self.lm, self.config, self.max_length = lm, cfg, int(max_length)
        self.num_steps = check_int("max_steps", max_steps, 1)
        self.potential = None if potential is None else self._checked(_as_potential(potential))
        self.correct_proposal, self.frozen = bool(correct_proposal), frozen
        self._warn_restricted()
        self.shared_prefix = self._shared(shared_prefix, padded.shape[0] if padding == "left" else len(prompt))
        self.data = self._data(lm.params, padded, length)

    def _shared(self, shared, prompt_len: int) -> int:
        """The checked number of shared prompt slots (see ``shared_prefix``); ``prompt_len``: the
        slot where the generation starts."""
        if shared is None:
            if not shares_prefix(self.lm):
                return 0
            return prompt_len - 1 if self.padding == "left" else (prompt_len - 1) // 16 * 16
        f = check_int("shared_prefix", shared, 0)
        if f > prompt_len - 1:
            raise ValueError(f"shared_prefix={f}: at most the prompt's length minus one ({prompt_len - 1}) positions can "
                             "be shared (the last prompt token is fed at the first step)")
        if f and not shares_prefix(self.lm):
            raise ValueError(f"shared_prefix={f}: {type(self.lm).__name__} has no apply_with_prefix, so it cannot read a "
                             "shared prompt cache; pass shared_prefix=0")
        return f

    def _data(self, params, padded, length) -> dict:
        data = {"params": params, "prompt": padded, "prompt_length": length}
        if self.padding == "left":
            data["pad"] = jnp.asarray(padded.shape[0] - length, jnp.int32)
        if self.shared_prefix:
            data["prefix"] = prompt_prefix(self.lm, params, padded, self.shared_prefix, data.get("pad"))
        return data

    def _warn_restricted(self) -> None:
        cfg = self.config
        if self.potential is not None and self.correct_proposal and (
                cfg.top_k is not None or (cfg.top_p is not None and cfg.top_p < 1.0)):
            import warnings

            warnings.warn("LMProgram: with top_k/top_p the proposal cannot draw every sequence the LM can, so the "
                          "p/q correction targets the LM restricted to what the proposal reaches (renormalised), "
                          "not the LM itself; pass correct_proposal=False to target the proposal, or use a "
                          "temperature only", RestrictedSupportWarning, stacklevel=3)

    def _checked(self, potential):
        """``potential``, if every :func:`~ppl.lm.potentials.when_finished` in it has this
        program's horizon (another ``max_steps`` would silently skip the final potential)."""
        other = sorted(h for h in getattr(potential, "horizons", ()) if h != self.num_steps)
        if other:
            raise ValueError(f"potential: when_finished(..., max_steps={other[0]}) in {potential.name} does not match "
                             f"the program's max_steps={self.num_steps}; pass max_steps={self.num_steps}")
        return potential

    def static_key(self) -> tuple:
        return (type(self), self.lm, self.config, self.potential, self.max_length, self.correct_proposal,
                self.frozen, self.num_steps, self.data["prompt"].shape, self.shared_prefix, self.padding)

    def data_at(self, data, t):
        """What step ``t`` receives: the whole data (the LM's weights and the prompt)."""
        return data

    def _replace(self, **fields) -> "LMProgram":
        new = object.__new__(LMProgram)
        new.__dict__.update(self.__dict__)
        new.__dict__.update(fields)
        return new

    def with_prompt(self, prompt) -> "LMProgram":
        """The same program on another prompt (no recompilation if it fits the padded width and,
        right-padded, is longer than the shared prefix; a shorter one lowers ``shared_prefix``).
        Left-padded, every prompt that fits the width keeps the shared prefix."""
        left = self.padding == "left"
        padded, length = pad_prompt(prompt, max_length=self.max_length, vocab_size=self.lm.vocab_size,
                                    width=self.data["prompt"].shape[0], left=left)
        end = padded.shape[0] if left else len(prompt)
        new = self._replace(shared_prefix=self.shared_prefix if end - 1 >= self.shared_prefix else (end - 1) // 16 * 16)
        return new._replace(data=new._data(self.data["params"], padded, length))

    def with_potential(self, potential: Optional[Callable], *, frozen: Optional[Callable] = None,
                       correct_proposal: Optional[bool] = None) -> "LMProgram":
        """The same program (same data) with another potential, ``frozen`` rule and, if given,
        ``correct_proposal``. The scaling methods build their models this way, with
        ``correct_proposal=False``: they target the sampler :math:`q` times the reward's
        potentials, as the reference implementations do."""
        pot = None if potential is None else self._checked(_as_potential(potential))
        fields = {"potential": pot, "frozen": frozen}
        if correct_proposal is not None:
            fields["correct_proposal"] = bool(correct_proposal)
        new = self._replace(**fields)
        new._warn_restricted()
        return new

    def remember(self, trajectory: LMState, data=None) -> LMState:
        r"""``trajectory`` (one particle's states, leaves ``[T, ...]``) with each state's
        ``memory`` recomputed by this program's potential along the path: :math:`m_{-1}` the
        prompt's, :math:`m_t` = ``potential.update(x_{t-1}, x_t)``'s. A trajectory drawn under
        another potential (an exact target sample from the bootstrap program, say) can then be a
        conditional-SMC reference of this one. Unchanged without a
        :class:`~ppl.lm.potentials.MemoryPotential`. ``data``: default ``self.data``."""
        if not isinstance(self.potential, MemoryPotential):
            return trajectory
        data = self.data if data is None else data

        def body(prev, x):
            _, memory = self.potential.update(prev, x._replace(memory=prev.memory))
            x = x._replace(memory=memory)
            return x, x

        return jax.lax.scan(body, self.prompt_state(data), trajectory)[1]

    # --------------------------------------------------------------------------------------
    def prompt_state(self, data) -> LMState:
        """The prompt's state (one particle): :math:`x_{-1}`, with the potential's initial memory."""
        state = prefill(self.lm, data["params"], data["prompt"], data["prompt_length"], self.max_length,
                        data.get("prefix"), self.shared_prefix, data.get("pad"))
        if isinstance(self.potential, MemoryPotential):
            state = state._replace(memory=self.potential.initial(state))
        return state

    def _weigh(self, prev, new, log_p, log_q):
        """``(new, log_w)``: the log-weights of the moved set, and the potential's memory stored."""
        log_w = jnp.zeros_like(log_p)
        if isinstance(self.potential, MemoryPotential):
            log_g, memory = jax.vmap(self.potential.update)(prev, new)
            new, log_w = new._replace(memory=memory), log_w + log_g
        elif self.potential is not None:
            log_w = log_w + jax.vmap(self.potential)(prev, new)
        if self.correct_proposal and not self.config.is_exact:
            log_w = log_w + log_p - log_q
        return new, log_w

    def init_batch(self, key, num_particles, data):
        prev = broadcast(self.prompt_state(data), num_particles)
        new, log_p, log_q = sample_step(self.lm, data["params"], key, prev, self.config, data.get("prefix"))
        return self._weigh(prev, new, log_p, log_q)

    def step_batch(self, key, x, t, data):
        if self.frozen is None:
            new, log_p, log_q = sample_step(self.lm, data["params"], key, x, self.config, data.get("prefix"))
            return self._weigh(x, new, log_p, log_q)
        hold = self.done_batch(x)
        held = x._replace(done=hold)
        new, log_p, log_q = sample_step(self.lm, data["params"], key, held, self.config, data.get("prefix"))
        new, log_w = self._weigh(held, new, log_p, log_q)
        return new._replace(done=jnp.where(hold, x.done, new.done)), log_w

    def done_batch(self, x):
        """Finished particles (and, with a ``frozen`` rule, the held ones)."""
        return x.done if self.frozen is None else x.done | self.frozen(x)

    # One-particle forms (conditional SMC and ancestor sampling re-score given steps).
    def init_step(self, key, data):
        x, log_w = self.init_batch(key, 1, data)
        return _unone(x), log_w[0]

    def step(self, key, x_prev, t, data):
        x, log_w = self.step_batch(key, _one(x_prev), t, data)
        return _unone(x), log_w[0]

    def is_done(self, x):
        return x.done

    def _score(self, x_prev, x, data):
        prev = self.prompt_state(data) if x_prev is None else x_prev
        log_p, log_q = score_step(self.lm, data["params"], _one(prev), _one(x), self.config, data.get("prefix"))
        return prev, log_p[0], log_q[0]

    def log_weight(self, x_prev, x, t, data):
        prev, log_p, log_q = self._score(x_prev, x, data)
        return self._weigh(_one(prev), _one(x), log_p[None], log_q[None])[1][0]

    def log_density(self, x_prev, x, t, data):
        prev, log_p, _ = self._score(x_prev, x, data)
        pot = self.potential(prev, x) if self.potential is not None else 0.0
        return jnp.where(_extends(prev, x), log_p + pot, -jnp.inf)


def prompt_state(lm, prompt, max_length: int, params=None) -> LMState:
    """The state of one particle that has read ``prompt`` (the ``init`` of a step program)."""
    check_lm(lm)
    padded, length = pad_prompt(prompt, max_length=max_length, vocab_size=lm.vocab_size)
    return prefill(lm, lm.params if params is None else params, padded, length, int(max_length))


class LMStep(numpyro_dist.Distribution):
    """The distribution of the next state of one particle: one reasoning step drawn from ``q``.

    ``sample(key)`` generates a step (see :func:`ppl.lm.sampling.sample_step`); ``log_prob(new)``
    is :math:`\\log q` of the step that leads to ``new``, recomputed teacher-forced. The drawn
    state also carries ``step_log_p`` and ``step_log_q``, so a step program targeting the LM
    itself under a tempered proposal adds ``numpyro.factor("p_over_q", new.step_log_p -
    new.step_log_q)``. Usable with ``numpyro.sample`` inside :func:`ppl.from_step_program`.
    """

    arg_constraints: dict = {}
    support = numpyro_dist.constraints.real  # values are LMState pytrees; never validated
    has_enumerate_support = False
    pytree_data_fields = ()

    def __init__(self, lm, state: LMState, config: StepConfig = StepConfig(), params=None):
        self.lm = lm
        self.state = state
        self.config = config
        self.params = lm.params if params is None else params
        super().__init__(batch_shape=(), event_shape=(), validate_args=False)

    def sample(self, key, sample_shape=()):
        if sample_shape:
            raise ValueError("LMStep: sample_shape is not supported; vmap over particles instead")
        new, _, _ = sample_step(self.lm, self.params, key, _one(self.state), self.config)
        return _unone(new)

    def log_prob(self, value: LMState):
        _, log_q = score_step(self.lm, self.params, _one(self.state), _one(value), self.config)
        return log_q[0]


__all__ += ["Potential"]


def check_program(program, name: str) -> None:
    """``program`` must be an :class:`~ppl.lm.LMProgram` without a potential (methods build their own)."""
    if not isinstance(program, LMProgram):
        raise TypeError(f"program: {name} expects a ppl.lm.LMProgram, got {type(program).__name__}")
    if program.potential is not None:
        raise ValueError(f"program: {name} builds its own target from the reward and needs a program without a "
                         f"potential (got {program.potential!r}); construct the LMProgram with potential=None and "
                         "pass the reward model as reward=")
