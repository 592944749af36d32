r"""Resampling schemes: from normalised weights to ancestor indices.

Every scheme has the signature ``scheme(key, log_weights, num_samples) -> ancestors`` where
``log_weights`` is a ``[N]`` array of (possibly unnormalised) log-weights and ``ancestors`` is an
``int32[num_samples]`` array of indices into the particle set. Resampling a particle set is then
one gather along the particle axis of the whole state pytree (:func:`gather`).

Write :math:`W_i = w_i / \sum_j w_j` for the normalised weights and :math:`O_i` for the number
of offspring of particle :math:`i`. The *unbiased* schemes satisfy
:math:`\mathbb{E}[O_i] = N W_i`, which is what makes the SMC estimate of the normalising
constant unbiased. They differ in the variance of :math:`O_i` (Chopin & Papaspiliopoulos 2020,
ch. 9):

============  ==================================================================  ===========
scheme        how                                                                 variance
============  ==================================================================  ===========
multinomial   :math:`N` i.i.d. draws from :math:`W` (sorted uniforms, inverse CDF)  largest
residual      :math:`\lfloor N W_i \rfloor` copies, the rest multinomial on the      smaller
              residuals
stratified    one uniform in each stratum :math:`[(n-1)/N, n/N)`                    smaller
systematic    one uniform :math:`U`, points :math:`(n - 1 + U)/N`                   smallest in
                                                                                  practice
killing       particle :math:`n` survives with probability :math:`W_n / \max_j W_j`,  small
              otherwise it is replaced by a multinomial draw
============  ==================================================================  ===========

:func:`annealed` wraps a scheme: it resamples from flattened weights :math:`W^{1/T}` (with a
temperature that may follow the weights' ESS or entropy) and keeps the importance correction, so
it stays unbiased.

:func:`top_k` is different: a *deterministic* selection of the ``k`` heaviest particles, each
copied ``num_samples / k`` times. It is what beam search does. It is **not** unbiased: the
weights after it are not a valid importance-sampling correction, and log-evidence estimates
computed with it are meaningless.
"""

from __future__ import annotations

import math
from typing import Any, Callable, NamedTuple, Union

import jax
import jax.numpy as jnp

__all__ = [
    "multinomial",
    "stratified",
    "systematic",
    "residual",
    "killing",
    "top_k",
    "Selection",
    "Annealed",
    "annealed",
    "ConstantTemperature",
    "ESSTemperature",
    "EntropyTemperature",
    "get_scheme",
    "gather",
    "gather_changed",
    "stable_order",
    "SCHEMES",
    "ResamplingFn",
]

ResamplingFn = Callable[[jax.Array, jax.Array, int], jax.Array]


def _normalise(log_weights: jax.Array) -> jax.Array:
    log_weights = jnp.asarray(log_weights)
    return jnp.exp(log_weights - jax.scipy.special.logsumexp(log_weights))


def _inverse_cdf(uniforms: jax.Array, weights: jax.Array) -> jax.Array:
    r"""Indices ``a_n`` with ``C_{a_n - 1} <= u_n C_{N-1} < C_{a_n}`` for the cumulative weights ``C``.

    Never returns a slot of weight zero, whatever the round-off:

    * the search is over the cumulative sum *as computed*, scaled by its own total
      :math:`C_{N-1}` (in float32 it can end at 0.99999982 rather than 1, and a point past it
      would otherwise fall on the last slot, dead or not);
    * a zero-weight slot gets the running maximum of the live slots before it, so no point can
      land on it even if a parallel prefix sum is not exactly monotone;
    * a point at or past the total (a uniform that rounded up to 1) goes to the last slot with
      positive weight.

    ``uniforms`` lie in :math:`[0, 1]` and need not be sorted.
    """
    weights = jnp.asarray(weights)
    live = weights > 0
    cdf = jax.lax.cummax(jnp.where(live, jnp.cumsum(weights), 0.0), axis=0)
    idx = jnp.searchsorted(cdf, uniforms * cdf[-1], side="right")
    last_live = weights.shape[0] - 1 - jnp.argmax(live[::-1])
    return jnp.minimum(idx, last_live).astype(jnp.int32)


def _sorted_uniforms(key: jax.Array, n: int) -> jax.Array:
    """``n`` sorted i.i.d. uniforms in O(n) by normalised cumulative exponential spacings."""
    e = jax.random.exponential(key, (n + 1,))
    c = jnp.cumsum(e)
    return c[:-1] / c[-1]


def _iid_draws(key: jax.Array, weights: jax.Array, n: int) -> jax.Array:
    """``n`` i.i.d. draws from ``weights`` in *random* order (slot ``j`` independent of ``j``)."""
    return _inverse_cdf(jax.random.uniform(key, (n,)), weights)


def multinomial(key: jax.Array, log_weights: jax.Array, num_samples: int) -> jax.Array:
    r"""Multinomial resampling: ``num_samples`` i.i.d. draws from :math:`W`.

    Uses sorted uniforms (cumulative sums of exponentials) and one ``searchsorted``, so it is
    O(N) rather than O(N log N).
    """
    return _inverse_cdf(_sorted_uniforms(key, num_samples), _normalise(log_weights))


def stratified(key: jax.Array, log_weights: jax.Array, num_samples: int) -> jax.Array:
    r"""Stratified resampling: :math:`u_n = (n + U_n) / N` with independent :math:`U_n`."""
    u = (jnp.arange(num_samples) + jax.random.uniform(key, (num_samples,))) / num_samples
    return _inverse_cdf(u, _normalise(log_weights))


def systematic(key: jax.Array, log_weights: jax.Array, num_samples: int) -> jax.Array:
    r"""Systematic resampling: :math:`u_n = (n + U) / N` with a single :math:`U`."""
    u = (jnp.arange(num_samples) + jax.random.uniform(key, ())) / num_samples
    return _inverse_cdf(u, _normalise(log_weights))


def residual(key: jax.Array, log_weights: jax.Array, num_samples: int) -> jax.Array:
    r"""Residual resampling.

    Particle :math:`i` first gets :math:`\lfloor N W_i \rfloor` deterministic copies; the
    :math:`R = N - \sum_i \lfloor N W_i \rfloor` remaining slots are filled by multinomial
    draws from the residual weights :math:`N W_i - \lfloor N W_i \rfloor`.
    """
    w = _normalise(log_weights)
    scaled = num_samples * w
    counts = jnp.floor(scaled).astype(jnp.int32)
    residual_w = scaled - counts
    slots = jnp.arange(num_samples)
    # Slot n < sum(counts) is the particle whose cumulative count first exceeds n.
    det = jnp.searchsorted(jnp.cumsum(counts), slots, side="right").astype(jnp.int32)
    det = jnp.clip(det, 0, w.shape[0] - 1)
    total = residual_w.sum()
    log_res = jnp.where(residual_w > 0, jnp.log(residual_w), -jnp.inf)
    # When every N W_i is an integer the residual is empty and ``rand`` is never used.
    log_res = jnp.where(total > 0, log_res, jnp.log(w))
    # Slots past the deterministic ones take i.i.d. draws that do not depend on the slot index.
    rand = _iid_draws(key, _normalise(log_res), num_samples)
    return jnp.where(slots < counts.sum(), det, rand)


def killing(key: jax.Array, log_weights: jax.Array, num_samples: int) -> jax.Array:
    r"""Killing resampling (Del Moral 2004; Chopin & Papaspiliopoulos 2020, sec. 9.6).

    Particle :math:`n` keeps its slot with probability :math:`W_n / \max_j W_j`; otherwise the
    slot is refilled by a draw from :math:`W`. The expected offspring count is
    :math:`W_i/W_{\max} + W_i (N - 1/W_{\max}) = N W_i`. Requires ``num_samples`` equal to the
    number of particles.
    """
    n = log_weights.shape[0]
    if num_samples != n:
        raise ValueError(
            f"killing resampling needs num_samples == number of particles ({n}), got {num_samples}"
        )
    k_keep, k_draw = jax.random.split(key)
    log_w = log_weights - jax.scipy.special.logsumexp(log_weights)
    log_survive = log_w - jnp.max(log_w)
    keep = jnp.log(jax.random.uniform(k_keep, (n,))) < log_survive
    # Refills must not depend on the slot (sorted draws would correlate with survival).
    draws = _iid_draws(k_draw, jnp.exp(log_w), n)
    return jnp.where(keep, jnp.arange(n, dtype=jnp.int32), draws)


def top_k(k: int) -> ResamplingFn:
    """Deterministic selection of the ``k`` heaviest particles (beam search). **Not unbiased.**

    Returns a scheme: ``scheme(key, log_weights, num_samples)`` returns the indices of the ``k``
    largest log-weights (largest first), each repeated ``num_samples // k`` times consecutively,
    so that particle slots ``[j * m, (j + 1) * m)`` with ``m = num_samples // k`` descend from the
    ``j``-th best particle — "keep the top N/M, expand each M ways". ``key`` is ignored.
    ``num_samples`` must be a multiple of ``k``.
    """
    if int(k) < 1:
        raise ValueError(f"top_k: k must be a positive integer, got {k}")
    k = int(k)

    def scheme(key: jax.Array, log_weights: jax.Array, num_samples: int) -> jax.Array:
        del key
        if num_samples % k:
            raise ValueError(f"top_k({k}): num_samples={num_samples} is not a multiple of k")
        if k > log_weights.shape[0]:
            raise ValueError(f"top_k({k}): only {log_weights.shape[0]} particles to choose from")
        _, idx = jax.lax.top_k(log_weights, k)
        return jnp.repeat(idx.astype(jnp.int32), num_samples // k)

    scheme.__name__ = f"top_k({k})"
    scheme.unbiased = False  # type: ignore[attr-defined]
    return scheme


class Selection(NamedTuple):
    """A deterministic selection that reads the particles, not only their weights.

    ``Selection(fn, *args)(particles, done, log_weights)`` calls ``fn(particles, done,
    log_weights, *args) -> int32[N]`` ancestors; ``done [N]`` marks the finished particles.
    Search methods select this way: beam search keeps the top scored *unfinished* prefixes,
    DVTS the best of each subtree (:mod:`ppl.scaling.search`). A selection draws no key, and,
    like :func:`top_k`, is **not** unbiased. ``fn`` and ``args`` must be hashable: they are part
    of the compiled program's cache key.
    """

    fn: Callable
    args: tuple = ()

    def __call__(self, particles: Any, done: jax.Array, log_weights: jax.Array) -> jax.Array:
        return self.fn(particles, done, log_weights, *self.args)


class Annealed(NamedTuple):
    r"""Resampling from flattened weights, with the importance correction kept (a kernel option).

    At a resampling step with normalised weights :math:`W`, a temperature
    :math:`T = \texttt{temperature}(\log W, t) \ge 1` flattens the resampling distribution,
    :math:`\beta \propto W^{1/T}`; ``scheme`` draws the ancestors :math:`A^n` from
    :math:`\beta`, and each offspring carries the weight

    .. math::

        \tilde w^n = \frac{W_{A^n}}{N \beta_{A^n}} \propto W_{A^n}^{1 - 1/T},

    so that :math:`\mathbb{E}[\sum_n \tilde w^n \varphi(X^{A^n})] = \sum_i W_i \varphi(X^i)`:
    the SMC target and the unbiasedness of :math:`\hat Z` are unchanged (resampling from any
    distribution that covers :math:`W`, Chopin & Papaspiliopoulos 2020, ch. 9), while fewer
    particles die when the weights have collapsed. :math:`T = 1` is plain ``scheme``. This is
    its_hub's *entropic annealing* of the particle filter's resampling, except that its_hub
    drops the correction (resets the weights to uniform), which changes the target by a
    weight-dependent factor; here the temperature only trades variance. The temperature may
    depend on the whole weight vector (:class:`ESSTemperature`, :class:`EntropyTemperature`),
    which is why it is a kernel option and not a per-particle potential.
    """

    scheme: ResamplingFn
    temperature: Callable[[jax.Array, jax.Array], jax.Array]

    def draw(self, key: jax.Array, log_weights: jax.Array, n: int, t) -> tuple[jax.Array, jax.Array]:
        r"""``(ancestors int32[n], correction [N])``: draws from :math:`\beta` and
        :math:`\log(W_i / (N \beta_i))` per particle (gather it with the ancestors)."""
        log_w = log_weights - jax.scipy.special.logsumexp(log_weights)
        temp = jnp.maximum(jnp.asarray(self.temperature(log_w, t), log_w.dtype), 1.0)
        log_beta = log_w / temp
        log_beta = log_beta - jax.scipy.special.logsumexp(log_beta)
        live = log_w > -jnp.inf
        return self.scheme(key, log_beta, n), jnp.where(live, log_w - log_beta, -jnp.inf) - jnp.log(n)


def annealed(scheme: Union[str, ResamplingFn], temperature) -> Annealed:
    r""":class:`Annealed` resampling with ``scheme`` (a name or a scheme) and ``temperature``: a
    rule ``(log_w [N], t) -> T`` (:class:`ESSTemperature`, :class:`EntropyTemperature`) or a
    number :math:`\ge 1`."""
    if not callable(temperature):
        t0 = float(temperature)
        if not t0 >= 1.0:
            raise ValueError(f"temperature: expected a number >= 1 or a rule (log_w, t) -> T, got {temperature!r}")
        temperature = ConstantTemperature(t0)
    return Annealed(get_scheme(scheme), temperature)


def _collapsed_early(rule, log_w, t):
    """``(ess / N, progress t / num_steps, gate)``: the gate is open while the weights have
    collapsed (ESS / N below ``rule.threshold``) early in the run (progress below ``rule.early_phase``)."""
    r = jnp.exp(-jax.scipy.special.logsumexp(2.0 * log_w)) / log_w.shape[0]
    p = jnp.asarray(t, jnp.float32) / float(rule.num_steps)
    return r, p, (r < rule.threshold) & (p < rule.early_phase)


class ConstantTemperature(NamedTuple):
    """:math:`T` at every resampling step."""

    value: float

    def __call__(self, log_w, t):
        return jnp.asarray(self.value, log_w.dtype)


class ESSTemperature(NamedTuple):
    r"""its_hub's ESS rule: while the weights have collapsed,
    :math:`r = \mathrm{ESS}/N <` ``threshold``, early in the run, :math:`p = t /`
    ``num_steps`` :math:`<` ``early_phase``, :math:`T = \max(1, (1 - p) / r)`; else 1."""

    num_steps: int
    threshold: float = 0.5
    early_phase: float = 0.5

    def __call__(self, log_w, t):
        r, p, gate = _collapsed_early(self, log_w, t)
        return jnp.where(gate, jnp.maximum(1.0, (1.0 - p) / r), 1.0)


class EntropyTemperature(NamedTuple):
    r"""its_hub's entropy rule, gated like :class:`ESSTemperature`: with the normalised entropy
    :math:`H = -\sum_i W_i \log W_i / \log N`, :math:`T = \max(1, 1 / (H + (1 - H) p))`."""

    num_steps: int
    threshold: float = 0.5
    early_phase: float = 0.5

    def __call__(self, log_w, t):
        _, p, gate = _collapsed_early(self, log_w, t)
        w = jnp.exp(log_w)
        h = -jnp.sum(jnp.where(w > 0, w * log_w, 0.0)) / math.log(max(log_w.shape[0], 2))
        return jnp.where(gate, jnp.maximum(1.0, 1.0 / jnp.maximum(h + (1.0 - h) * p, 1e-6)), 1.0)


SCHEMES: dict[str, ResamplingFn] = {
    "multinomial": multinomial,
    "stratified": stratified,
    "systematic": systematic,
    "residual": residual,
    "killing": killing,
}


def get_scheme(resampling: Union[str, ResamplingFn], where: str | None = None) -> ResamplingFn:
    """Look up a scheme by name, or pass a callable ``(key, log_weights, num_samples)`` (or an
    :class:`Annealed` rule, unless ``where`` names a caller that resamples to uniform weights)
    through."""
    if isinstance(resampling, Annealed):
        if where is not None:
            raise ValueError(f"resampling: {where} resamples to uniform weights; annealed resampling is an option of "
                             "the SMC filter (ppl.run_smc, the global sharded filter, the scaling methods)")
        return resampling
    if callable(resampling):
        return resampling
    try:
        return SCHEMES[resampling]
    except KeyError:
        raise ValueError(
            f"resampling={resampling!r} is not a known scheme; use one of {sorted(SCHEMES)} "
            "or ppl.smc.resampling.top_k(k), or pass a callable (key, log_weights, n) -> indices"
        ) from None


def gather(tree, indices: jax.Array):
    """Resample a particle set: one gather along the leading (particle) axis of every leaf."""
    return jax.tree_util.tree_map(lambda leaf: jnp.take(leaf, indices, axis=0), tree)


def stable_order(ancestors: jax.Array) -> jax.Array:
    r"""The same ancestors, permuted so that every particle with offspring keeps its slot.

    Murray, Lee & Jacob (2016): after resampling, particle :math:`i` with :math:`O_i \ge 1`
    offspring stays in slot :math:`i`, and its :math:`O_i - 1` extra copies fill, in order, the
    slots of the particles with none. The multiset of ancestors is unchanged, so the particle
    system has the same law (particles are exchangeable and the moves' keys do not depend on
    the ancestors); only the rows of dead particles need writing (:func:`gather_changed`).
    Returns ``int32[N]`` with ``out[i] == i`` for every surviving ``i``; needs ``N`` ancestors
    of ``N`` particles.
    """
    n = ancestors.shape[0]
    offspring = jnp.bincount(ancestors, length=n)
    extra = jnp.repeat(jnp.arange(n, dtype=jnp.int32), jnp.maximum(offspring - 1, 0), total_repeat_length=n)
    free = jnp.nonzero(offspring == 0, size=n, fill_value=n)[0]  # dead slots in order; n pads
    return jnp.arange(n, dtype=jnp.int32).at[free].set(extra, mode="drop")


def gather_changed(tree, ancestors: jax.Array):
    """:func:`gather` for ancestors in :func:`stable_order`: writes only the rows whose ancestor
    is another slot, one row at a time in a ``lax.while_loop`` (in place when the buffers are
    not used elsewhere, e.g. a loop carry or a donated argument), instead of copying every row
    of every leaf. A row's source is a surviving particle, never itself overwritten, so the
    order of the copies does not matter. Equal to ``gather(tree, ancestors)`` for such
    ancestors."""
    n = ancestors.shape[0]
    changed = ancestors != jnp.arange(n, dtype=ancestors.dtype)
    dst = jnp.nonzero(changed, size=n, fill_value=0)[0]
    count = jnp.sum(changed)

    def body(carry):
        k, leaves = carry
        i = dst[k]
        j = ancestors[i]
        leaves = [jax.lax.dynamic_update_index_in_dim(leaf, jax.lax.dynamic_index_in_dim(leaf, j, 0), i, 0)
                  for leaf in leaves]
        return k + 1, leaves

    leaves, treedef = jax.tree_util.tree_flatten(tree)
    _, leaves = jax.lax.while_loop(lambda c: c[0] < count, body, (jnp.zeros((), count.dtype), leaves))
    return jax.tree_util.tree_unflatten(treedef, leaves)
