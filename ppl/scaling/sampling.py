r"""Independent rollouts and the selection rules built on them: best-of-N, weighted best-of-N,
self-consistency and weighted majority voting.

All four are inference on the Feynman–Kac model with the potential only at the end: draw
:math:`x^{(n)} \sim q(x \mid c)`, :math:`n = 1, \dots, N`, from the program's sampler, score each
finished generation once, :math:`r_n = r(c, x^{(n)}) \in [0, 1]`, and weigh the answers
:math:`a_n`: best-of-N takes :math:`\arg\max_n r_n`, weighted best-of-N
:math:`\arg\max_a \sum_n r_n \mathbb{1}[a_n = a]`, self-consistency the unweighted vote, weighted
majority the vote with :math:`W_n \propto (r_n / (1 - r_n))^{1/\tau}`. One pool of
:math:`N_{\max}` rollouts (:func:`rollouts`) serves every budget :math:`k \le N_{\max}`
(``best_of_n_from(pool, k)``, ...): the first :math:`k` rollouts are :math:`k` independent ones,
and :meth:`Rollouts.compute` charges what they cost. Derivations: ``docs/scaling-methods.md``.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np

from ppl.core.checks import check_int, check_key, check_positive, check_reward, reward_key
from ppl.lm.compute import Compute, path_log_probs
from ppl.lm.program import check_program
from ppl.lm.state import prefix_tokens
from ppl.scaling.aggregate import SELECT_RULES, check_select
from ppl.scaling.method import method
from ppl.scaling.result import ScalingResult, finish
from ppl.smc import resampling as rs
from ppl.smc.batch import ProblemCall
from ppl.smc.loop import build_filter

__all__ = ["Rollouts", "best_of_n", "best_of_n_from", "rollouts", "self_consistency", "self_consistency_from",
           "weighted_best_of_n", "weighted_best_of_n_from", "weighted_majority", "weighted_majority_from"]


@dataclasses.dataclass(frozen=True, eq=False)
class Rollouts:
    """:math:`N` independent whole generations from a program's sampler, with what they cost.

    Built by :func:`rollouts`; may also be built by hand (tests, generations from elsewhere).
    Host-side per-rollout arrays are numpy; ``particles`` stays on the device.

    Attributes
    ----------
    particles
        The finished generations, an :class:`~ppl.lm.LMState` with leaves ``[N, ...]``.
    scores
        ``[N]`` the reward's final score :math:`r_n \\in [0, 1]` of each generation (NaN when
        sampled without a reward).
    log_p
        ``[N]`` :math:`\\sum_j \\log p(s_j \\mid s_{<j})`: the generation's log-probability under
        the LM itself (not the tempered/truncated sampler).
    log_q
        ``[N]`` the same under the sampler :math:`q` that drew the tokens.
    num_tokens
        ``[N]`` generated tokens (the end-of-sequence token included if emitted); the mean
        token log-probability is ``log_p / num_tokens`` (:attr:`mean_token_log_p`).
    generated_tokens
        ``[N]`` tokens sampled for each rollout (equal to ``num_tokens`` here).
    prm_forward_tokens
        ``[N]`` tokens the reward model read per rollout (the final prefix, prompt included; 0 if none).
    prompt_length
        The true prompt length (counted once, for the shared prefill).
    lm, reward
        The LM and reward model, for FLOP estimates (``None`` allowed).
    """

    particles: Any
    scores: np.ndarray
    log_p: np.ndarray
    log_q: np.ndarray
    num_tokens: np.ndarray
    generated_tokens: np.ndarray
    prm_forward_tokens: np.ndarray
    prompt_length: int
    lm: Any = dataclasses.field(default=None, repr=False, compare=False)
    reward: Any = dataclasses.field(default=None, repr=False, compare=False)

    _ARRAYS = ("scores", "log_p", "log_q", "num_tokens", "generated_tokens", "prm_forward_tokens")

    def __post_init__(self):
        n = int(np.shape(self.scores)[0]) if np.ndim(self.scores) else -1
        for name in self._ARRAYS:
            arr = np.asarray(getattr(self, name))
            if arr.shape != (n,) or n < 1:
                raise ValueError(f"Rollouts.{name}: expected shape ({max(n, 1)},) like scores, got {arr.shape}")
            object.__setattr__(self, name, arr)
        lead = {np.shape(leaf)[0] for leaf in jax.tree_util.tree_leaves(self.particles)}
        if lead != {n}:
            raise ValueError(f"Rollouts.particles: every leaf needs a leading axis of {n} rollouts, "
                             f"got {sorted(lead)}")

    @property
    def n(self) -> int:
        """The number of rollouts."""
        return int(self.scores.shape[0])

    def __len__(self) -> int:
        return self.n

    @property
    def has_reward(self) -> bool:
        """Whether the rollouts were scored (not all scores NaN)."""
        return bool(np.any(~np.isnan(self.scores)))

    @property
    def mean_token_log_p(self) -> np.ndarray:
        """``[N]`` :math:`\\frac{1}{|s|}\\log p(s)`: the mean token log-probability (minus the log
        perplexity) of each generation; 0 for an empty one."""
        return self.log_p / np.maximum(self.num_tokens, 1)

    def _k(self, k: Optional[int]) -> int:
        if k is None:
            return self.n
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= int(k) <= self.n:
            raise ValueError(f"k: expected an integer in [1, {self.n}] (the number of rollouts), got {k!r}")
        return int(k)

    def take(self, k: Optional[int] = None) -> "Rollouts":
        """The first ``k`` rollouts (all if ``None``)."""
        k = self._k(k)
        return self if k == self.n else dataclasses.replace(
            self, particles=jax.tree_util.tree_map(lambda a: a[:k], self.particles),
            **{name: getattr(self, name)[:k] for name in self._ARRAYS})

    def compute(self, k: Optional[int] = None, *, with_reward: bool = True) -> Compute:
        """The exact compute of the first ``k`` rollouts: the prompt's prefill once, every
        generated token once, one reward call per scored rollout (none with
        ``with_reward=False``, for selection rules that do not read the scores)."""
        k = self._k(k)
        gen = int(np.sum(self.generated_tokens[:k], dtype=np.int64))
        scored = int(np.sum(~np.isnan(self.scores[:k]))) if with_reward else 0
        prm_tok = int(np.sum(self.prm_forward_tokens[:k], dtype=np.int64)) if with_reward else 0
        return Compute.count(generated_tokens=gen, lm_forward_tokens=int(self.prompt_length) + gen,
                             prm_calls=scored, prm_forward_tokens=prm_tok,
                             lm=self.lm, reward=self.reward if with_reward else None)


# ------------------------------------------------------------------------------------ sampling
def _build_rollouts(program, n: int, reward):
    model = program.with_potential(None, correct_proposal=False)
    log_score = None if reward is None else jax.vmap(reward.log_score, in_axes=(None, 0))

    def run(data, reward_params, key):
        res, _, _ = build_filter(model, n, rs.systematic, 0.0, collect=path_log_probs)(data, key)
        state, (log_p, log_q) = res.particles, res.aux
        generated = (state.length - state.prompt_length).astype(jnp.int32)
        if log_score is None:
            log_r = jnp.full((n,), jnp.nan, jnp.float32)
            prm_tokens = jnp.zeros((n,), jnp.int32)
        else:
            log_r = log_score(reward_params, state).astype(jnp.float32)
            prm_tokens = prefix_tokens(state).astype(jnp.int32)
        return state, log_r, log_p, log_q, generated, prm_tokens

    return run


def _rollouts(program, n: int, key: jax.Array, reward, finish=None, name: str = "rollouts") -> ProblemCall:
    """The :class:`~ppl.smc.batch.ProblemCall` of :func:`rollouts` (``finish``, if given,
    post-processes the :class:`Rollouts`: the selection methods)."""
    check_program(program, name)
    n = check_int("n", n, 1)
    check_key(key)
    check_reward(reward, False, name, program)
    cache_key = ("rollouts", program.static_key(), reward_key(reward), n)
    prompt_length = int(np.asarray(program.data["prompt_length"]))

    def to_rollouts(out) -> Rollouts:
        state, log_r, log_p, log_q, gen, prm_tok = out
        log_r = np.asarray(log_r, np.float64)
        if reward is not None and np.isnan(log_r).any():
            bad = np.flatnonzero(np.isnan(log_r)).tolist()
            raise FloatingPointError(f"reward: log_score returned NaN for rollouts {bad[:8]} (of {n})")
        gen = np.asarray(gen, np.int64)
        pool = Rollouts(particles=state, scores=np.exp(log_r), log_p=np.asarray(log_p, np.float64),
                        log_q=np.asarray(log_q, np.float64), num_tokens=gen, generated_tokens=gen.copy(),
                        prm_forward_tokens=np.asarray(prm_tok, np.int64), prompt_length=prompt_length,
                        lm=program.lm, reward=reward)
        return pool if finish is None else finish(pool)

    return ProblemCall(name, cache_key, lambda: _build_rollouts(program, n, reward), program.data,
                       None if reward is None else reward.params, key, (), to_rollouts)


@method(uses_reward=False)
def rollouts(program, n: int, *, key: jax.Array, reward=None):
    r"""Draw ``n`` independent whole generations from the program's sampler and score each once.

    The engine's filter (:func:`ppl.smc.loop.build_filter`) without selection and without
    potential runs the rollouts together (each step one batched :func:`~ppl.lm.sample_step`),
    until every rollout has finished (end of sequence, full buffer) or ``program.num_steps``
    steps were generated; the :data:`~ppl.lm.compute.path_log_probs` collector sums each rollout's
    :math:`\log p` and :math:`\log q`. Then one reward call per rollout on its final state,
    :math:`r_n = \exp(\texttt{reward.log\_score}(\theta, x^{(n)}))`.

    Parameters
    ----------
    program
        A :class:`~ppl.lm.LMProgram` without a potential: the LM, the prompt and the sampler.
    n
        :math:`N`, the number of rollouts.
    key
        A ``jax.random.key``.
    reward
        Optional reward model (``params`` and ``log_score(params, state) -> log r`` for one
        particle); without one, ``scores`` are NaN.

    Returns
    -------
    Rollouts
    """
    return _rollouts(program, n, key, reward)


# ----------------------------------------------------------------------------------- selection
def _pool(rollouts_: Rollouts, k: Optional[int], method: str, needs_reward: bool, select: str,
          answer_fn) -> Rollouts:
    check_select(select, SELECT_RULES, answer_fn)
    if not isinstance(rollouts_, Rollouts):
        raise TypeError(f"rollouts: expected a ppl.scaling.Rollouts (from ppl.scaling.rollouts), got "
                        f"{type(rollouts_).__name__}")
    pool = rollouts_.take(k)
    if needs_reward and not pool.has_reward:
        raise ValueError(f"reward: {method} needs reward scores; these rollouts were drawn without a reward "
                         "(pass reward= to ppl.scaling.rollouts)")
    return pool


def _finish(method: str, pool: Rollouts, log_weights, select: str, answer_fn, diagnostics=None,
            with_reward: bool = True) -> ScalingResult:
    diag = {"log_p": pool.log_p, "num_tokens": pool.num_tokens}
    diag.update(diagnostics or {})
    return finish(method, pool.particles, log_weights, scores=pool.scores, answer_fn=answer_fn, select=select,
                  compute=pool.compute(with_reward=with_reward), budget=pool.n, diagnostics=diag)


def _log_scores(scores: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore"):
        return np.log(np.clip(np.nan_to_num(scores, nan=0.0), 0.0, 1.0))


def best_of_n_from(rollouts: Rollouts, k: Optional[int] = None, *, answer_fn: Optional[Callable] = None,
                   select: str = "argmax") -> ScalingResult:
    r"""Best-of-N on the first ``k`` rollouts: the answer of the highest-scored generation.

    ``log_weights`` are :math:`\log r_n` (the importance weights for the target
    :math:`q(x)\,r(x)`), so ``answer_posterior`` is that of weighted best-of-N; ``select``
    (default ``"argmax"`` on the scores) picks the answer. Generations without an answer are
    never selected while one has an answer.
    """
    pool = _pool(rollouts, k, "best_of_n", True, select, answer_fn)
    return _finish("best_of_n", pool, _log_scores(pool.scores), select, answer_fn)


def weighted_best_of_n_from(rollouts: Rollouts, k: Optional[int] = None, *, answer_fn: Optional[Callable] = None,
                            select: str = "vote") -> ScalingResult:
    r"""Weighted best-of-N on the first ``k`` rollouts (Snell et al. 2024): each distinct answer is
    scored by the sum of its generations' scores, :math:`S(a) = \sum_n r_n \mathbb{1}[a_n = a]`,
    and the largest wins (``answer_posterior`` is :math:`S` normalised). If every score is 0 the
    weights fall back to uniform (a plain majority vote)."""
    pool = _pool(rollouts, k, "weighted_best_of_n", True, select, answer_fn)
    return _finish("weighted_best_of_n", pool, _log_scores(pool.scores), select, answer_fn)


def self_consistency_from(rollouts: Rollouts, k: Optional[int] = None, *, answer_fn: Optional[Callable] = None,
                          select: str = "vote") -> ScalingResult:
    r"""Self-consistency on the first ``k`` rollouts (Wang et al. 2023): the unweighted majority
    vote :math:`\arg\max_a \sum_n \mathbb{1}[a_n = a]` (ties: the answer seen first). Needs no
    reward; scores, if any, are carried along (and pick the representative generation) and are not
    charged as compute unless ``select="argmax"`` reads them."""
    pool = _pool(rollouts, k, "self_consistency", False, select, answer_fn)
    return _finish("self_consistency", pool, np.zeros(pool.n), select, answer_fn,
                   with_reward=select == "argmax")


def weighted_majority_from(rollouts: Rollouts, k: Optional[int] = None, *, answer_fn: Optional[Callable] = None,
                           tau: float = 1.0, eps: float = 1e-6, select: str = "vote") -> ScalingResult:
    r"""Weighted majority vote on the first ``k`` rollouts with the weights of the one-step target
    of Puri et al. (2025):

    .. math::

        \log W_n = \frac{1}{\tau}\big(\log r_n - \log(1 - r_n)\big) + \text{const},
        \qquad r_n \leftarrow \min(\max(r_n, \varepsilon), 1 - \varepsilon).

    :math:`\tau \to \infty` gives self-consistency; :math:`\tau \to 0` best-of-N.
    """
    _check_tau_eps(tau, eps)
    pool = _pool(rollouts, k, "weighted_majority", True, select, answer_fn)
    r = np.clip(np.nan_to_num(pool.scores, nan=eps), eps, 1.0 - eps)
    log_w = (np.log(r) - np.log1p(-r)) / float(tau)
    return _finish("weighted_majority", pool, log_w, select, answer_fn, {"tau": float(tau)})


def _check_tau_eps(tau, eps) -> None:
    check_positive("tau", tau)
    if isinstance(eps, bool) or not (isinstance(eps, (int, float, np.floating)) and 0.0 < float(eps) < 0.5):
        raise ValueError(f"eps: expected a number in (0, 0.5), got {eps!r}")


def _then(select_from, name: str, needs_reward: bool, program, n, key, reward, answer_fn, select, **options):
    """``n`` rollouts on ``program``, then ``select_from`` on the pool (validated first)."""
    if needs_reward and reward is None:
        raise ValueError(f"reward: {name} needs a reward model (params and log_score(params, state)); "
                         "self_consistency needs none")
    check_select(select, SELECT_RULES, answer_fn)
    return _rollouts(program, n, key, reward, name=name, finish=lambda pool: select_from(
        pool, answer_fn=answer_fn, select=select, **options))


def _n(budget: int, settings):
    return (budget,), {}


@method(budget=_n, from_pool=lambda pool, k, answer_fn, s: best_of_n_from(pool, k, answer_fn=answer_fn))
def best_of_n(program, n: int, *, key: jax.Array, reward, answer_fn: Optional[Callable] = None,
              select: str = "argmax"):
    """Best-of-N: ``n`` :func:`rollouts`, then :func:`best_of_n_from`."""
    return _then(best_of_n_from, "best_of_n", True, program, n, key, reward, answer_fn, select)


@method(budget=_n, from_pool=lambda pool, k, answer_fn, s: weighted_best_of_n_from(pool, k, answer_fn=answer_fn))
def weighted_best_of_n(program, n: int, *, key: jax.Array, reward, answer_fn: Optional[Callable] = None,
                       select: str = "vote"):
    """Weighted best-of-N: ``n`` :func:`rollouts`, then :func:`weighted_best_of_n_from`."""
    return _then(weighted_best_of_n_from, "weighted_best_of_n", True, program, n, key, reward, answer_fn, select)


@method(uses_reward=False, budget=_n, aliases=("majority_vote",),
        from_pool=lambda pool, k, answer_fn, s: self_consistency_from(pool, k, answer_fn=answer_fn))
def self_consistency(program, n: int, *, key: jax.Array, reward=None, answer_fn: Optional[Callable] = None,
                     select: str = "vote"):
    """Self-consistency: ``n`` :func:`rollouts`, then :func:`self_consistency_from` (a reward, if
    given, only scores the generations; the vote ignores it)."""
    return _then(self_consistency_from, "self_consistency", False, program, n, key, reward, answer_fn, select)


@method(budget=_n, from_pool=lambda pool, k, answer_fn, s: weighted_majority_from(pool, k, answer_fn=answer_fn,
                                                                                tau=s.get("tau", 1.0)))
def weighted_majority(program, n: int, *, key: jax.Array, reward, answer_fn: Optional[Callable] = None,
                      tau: float = 1.0, eps: float = 1e-6, select: str = "vote"):
    """Weighted majority vote: ``n`` :func:`rollouts`, then :func:`weighted_majority_from`."""
    _check_tau_eps(tau, eps)
    return _then(weighted_majority_from, "weighted_majority", True, program, n, key, reward, answer_fn, select,
                 tau=tau, eps=eps)
