r"""Two-sided bounds on :math:`\log Z`: SMC from below, conditional SMC from exact samples above.

For a Feynman–Kac model with final target :math:`\sigma(x) = \gamma(x) / Z`, let :math:`Q` be the
law of everything a particle filter with :math:`N` particles draws (particles and ancestors) and
:math:`\hat Z` its estimate of :math:`Z`. Because :math:`\mathbb{E}_Q[\hat Z] = Z`, the density
:math:`P(\omega) = Q(\omega)\, \hat Z(\omega) / Z` is a distribution on the same space, and

.. math::

    \log Z - \mathbb{E}_Q[\log \hat Z] = \mathrm{KL}(Q \,\|\, P) \ge 0, \qquad
    \mathbb{E}_P[\log \hat Z] - \log Z = \mathrm{KL}(P \,\|\, Q) \ge 0 .

Drawing from :math:`P` is running *conditional* SMC with a reference trajectory drawn exactly
from :math:`\sigma` (Andrieu, Doucet & Holenstein 2010): so independent SMC runs bound
:math:`\log Z` from below, and conditional SMC runs on exact target samples bound it from above
(bidirectional Monte Carlo, Grosse, Ghahramani & Adams 2015; for language models, Zhao,
Brekelmans, Makhzani & Grosse 2024, "Probabilistic inference in language models via twisted
SMC", Sec. 5). Their **gap**

.. math::

    \mathbb{E}_P[\log \hat Z] - \mathbb{E}_Q[\log \hat Z] = \mathrm{KL}(Q \,\|\, P) + \mathrm{KL}(P \,\|\, Q)

is a symmetrised KL divergence between the filter's and the target's extended laws: zero for
exact inference, and measurable without knowing :math:`Z`. A better proposal or twist, or more
particles, shrink it.

Both sides resample multinomially at every step (what conditional SMC does), so they bound the
same estimator. :func:`exact_references` draws the exact samples by rejection from the model's
own importance sampler when the weights have a known bound (e.g. a 0/1 correctness potential:
bound 1, the accepted runs are the correct ones).
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ppl.core.checks import check_int
from ppl.smc import conditional
from ppl.smc import resampling as rs
from ppl.smc.loop import build_filter, run_smc, trajectories

__all__ = ["LogEvidenceBounds", "exact_references", "log_evidence_bounds", "log_z_runs", "rejection_sample",
           "summarize"]


class LogEvidenceBounds(NamedTuple):
    """What :func:`log_evidence_bounds` returns (floats; ``*_runs`` numpy arrays).

    Attributes
    ----------
    lower, upper
        Means of :math:`\\log \\hat Z` over the SMC runs and over the conditional SMC runs:
        :math:`\\mathbb{E}[\\text{lower}] \\le \\log Z \\le \\mathbb{E}[\\text{upper}]`.
    gap
        ``upper - lower``: an estimate of :math:`\\mathrm{KL}(Q\\|P) + \\mathrm{KL}(P\\|Q)`.
    lower_se, upper_se, gap_se
        Monte Carlo standard errors of the three.
    lower_runs, upper_runs
        :math:`\\log \\hat Z` of every run.
    num_particles
        :math:`N`.
    """

    lower: float
    upper: float
    gap: float
    lower_se: float
    upper_se: float
    gap_se: float
    lower_runs: np.ndarray
    upper_runs: np.ndarray
    num_particles: int


def _mean_se(x: np.ndarray) -> tuple[float, float]:
    return float(np.mean(x)), (float(np.std(x, ddof=1) / math.sqrt(len(x))) if len(x) > 1 else float("nan"))


def _num_references(references, num_steps: int) -> int:
    leaves = jax.tree_util.tree_leaves(references)
    if not leaves or any(jnp.ndim(a) < 2 or jnp.shape(a)[1] != num_steps for a in leaves):
        raise ValueError(f"references: expected trajectories with leaves [R, T={num_steps}, ...] (e.g. "
                         f"exact_references(...)), got shapes {sorted({jnp.shape(a) for a in leaves})}")
    r = {int(jnp.shape(a)[0]) for a in leaves}
    if len(r) != 1:
        raise ValueError(f"references: leaves disagree on the number of trajectories: {sorted(r)}")
    return r.pop()


def log_z_runs(fk, num_particles: int, data, references, key: jax.Array, num_runs: int, reduce=None):
    r"""The runs behind :func:`log_evidence_bounds`, traceable (for use inside ``jit``/``vmap``,
    e.g. over many prompts with one compiled function): ``(lower, upper)``, the
    :math:`\log \hat Z` of ``num_runs`` SMC runs (multinomial resampling at every step) and of
    one conditional SMC run on each of the ``R`` references. ``data`` is the model's data
    (``fk.data``, or another prompt's of the same shape). An :class:`~ppl.lm.LMProgram` with a
    potential that keeps a memory recomputes the references' memories along their paths
    (:meth:`~ppl.lm.LMProgram.remember`), so exact samples drawn under another potential serve.
    With ``reduce(result) -> pytree``, a third output holds it for every lower-bound run's
    :class:`~ppl.smc.SMCResult` (e.g. the weight of the final particles that are right)."""
    n = int(num_particles)
    k_low, k_up = jax.random.split(key)
    run = build_filter(fk, n, rs.multinomial, 1.0)

    def low_run(k):
        res = run(data, k)[0]
        return res.log_evidence, (() if reduce is None else reduce(res))

    lower, extra = jax.vmap(low_run)(jax.random.split(k_low, int(num_runs)))
    remember = getattr(fk, "remember", None)
    refs = references if remember is None else jax.vmap(lambda ref: remember(ref, data))(references)
    sweep = conditional._build_csmc(fk, n, False)
    r = int(jax.tree_util.tree_leaves(references)[0].shape[0])
    upper = jax.vmap(lambda k, ref: sweep(data, k, ref)[1].log_evidence)(jax.random.split(k_up, r), refs)
    return (lower, upper) if reduce is None else (lower, upper, extra)


def log_evidence_bounds(fk, num_particles: int, references, *, key: jax.Array,
                        num_runs: int | None = None) -> LogEvidenceBounds:
    r"""Lower and upper bounds on :math:`\log Z` of ``fk`` and their gap (see the module docstring).

    Parameters
    ----------
    fk
        A Feynman–Kac model (e.g. an :class:`ppl.lm.LMProgram`) whose final target is the
        distribution ``references`` are drawn from.
    num_particles
        :math:`N \ge 2` on both sides (the reference counts as one of the conditional run's).
    references
        ``R`` trajectories drawn *exactly* from the target, leaves ``[R, T, ...]``
        (:func:`exact_references`); one conditional SMC run each. For an LM program they may come
        from another program with the same LM, prompt and final target (e.g. the bootstrap
        filter's): each state's potential memory is recomputed.
    key
        A ``jax.random.key``.
    num_runs
        SMC runs for the lower bound (default ``R``).
    """
    conditional._check_n(num_particles)
    n = int(num_particles)
    r = _num_references(references, int(fk.num_steps))
    runs = r if num_runs is None else check_int("num_runs", num_runs, 1)
    refs = jax.vmap(lambda ref: conditional._check_reference(fk, ref))(references) \
        if getattr(fk, "canonical", None) is not None else references

    def build():  # one compiled function per model, N and number of runs, reused by later calls
        return jax.jit(lambda d, k, ref: log_z_runs(fk, n, d, ref, k, runs))

    low, up = conditional._cached(("log_z_runs", n, runs), fk, build)(fk.data, key, refs)
    lower_runs, upper_runs = np.asarray(low, np.float64), np.asarray(up, np.float64)
    if not (np.all(np.isfinite(lower_runs)) and np.all(np.isfinite(upper_runs))):
        raise ValueError("log_evidence_bounds: a run's log Z estimate is not finite (a reference outside the "
                         "target's support, or potentials that rule out every particle)")
    return summarize(lower_runs, upper_runs, n)


def summarize(lower_runs, upper_runs, num_particles: int) -> LogEvidenceBounds:
    """:class:`LogEvidenceBounds` of given runs (means, standard errors, gap)."""
    lower_runs, upper_runs = np.asarray(lower_runs, np.float64), np.asarray(upper_runs, np.float64)
    lo, lo_se = _mean_se(lower_runs)
    hi, hi_se = _mean_se(upper_runs)
    return LogEvidenceBounds(lo, hi, hi - lo, lo_se, hi_se, math.hypot(lo_se, hi_se), lower_runs, upper_runs,
                             int(num_particles))


def exact_references(fk, num: int, *, key: jax.Array, log_bound: float = 0.0, batch_size: int = 256,
                     max_rounds: int = 100) -> Any:
    r"""``num`` trajectories drawn exactly from the final target of ``fk``, by rejection.

    Runs the model's own importance sampler (:func:`~ppl.smc.run_smc` with no resampling, batches
    of ``batch_size``): particle :math:`i` is drawn from the proposal with weight :math:`w_i =
    \gamma(x_i) / q(x_i)`, and is accepted with probability :math:`w_i / e^{\text{log\_bound}}`,
    which makes the accepted trajectories exact draws from :math:`\sigma`. ``log_bound`` must
    bound every :math:`\log w_i` (0 for a 0/1 potential such as a correctness check, with the
    LM as proposal); a weight above it is an error. Returns leaves ``[num, T, ...]`` (the
    ``references`` of :func:`log_evidence_bounds`).
    """
    num = check_int("num", num, 1)
    batch_size = check_int("batch_size", batch_size, 1)
    max_rounds = check_int("max_rounds", max_rounds, 1)
    if not math.isfinite(float(log_bound)):
        raise ValueError(f"log_bound: expected a finite number, got {log_bound!r}")

    def draw(k):
        res = run_smc(fk, batch_size, key=k, ess_threshold=0.0, keep_history=True)
        return trajectories(res), res.log_weights + res.log_evidence + math.log(batch_size)

    return rejection_sample(draw, num, key=key, log_bound=log_bound, max_rounds=max_rounds)


def rejection_sample(draw, num: int, *, key: jax.Array, log_bound: float = 0.0, max_rounds: int = 100) -> Any:
    r"""``num`` exact draws by rejection: ``draw(key) -> (trajectories, log_w)`` gives a batch of
    proposals (leaves ``[B, ...]``) and their log importance weights :math:`\log w_i =
    \log\gamma(x_i)/q(x_i)`; each is accepted with probability :math:`w_i / e^{\text{log\_bound}}`,
    in rounds until ``num`` are accepted (the first ``num``, leaves ``[num, ...]``). A weight above
    the bound is an error (the draws would not be exact). :func:`exact_references` is this with the
    model's own importance sampler; a compiled ``draw`` over many prompts serves a benchmark."""
    num = check_int("num", num, 1)
    max_rounds = check_int("max_rounds", max_rounds, 1)
    bound = float(log_bound)
    found, total, drawn = [], 0, 0
    for _ in range(max_rounds):
        key, k_run, k_acc = jax.random.split(key, 3)
        traj, log_w = draw(k_run)
        log_w = np.asarray(log_w, np.float64)
        drawn += log_w.shape[0]
        if np.max(log_w) > bound + 1e-4:
            raise ValueError(f"log_bound={log_bound}: a weight has log {np.max(log_w):.4g} above it, so rejection "
                             "sampling would not be exact; pass a larger bound")
        u = np.log(np.asarray(jax.random.uniform(k_acc, log_w.shape)))
        idx = np.flatnonzero(u < log_w - bound)[: num - total]
        if len(idx):
            found.append(jax.tree_util.tree_map(lambda a: a[jnp.asarray(idx)], traj))
            total += len(idx)
        if total >= num:
            return jax.tree_util.tree_map(lambda *a: jnp.concatenate(a), *found)
    raise RuntimeError(f"rejection_sample: {total} of {num} accepted in {drawn} draws ({max_rounds} rounds); the "
                       "target has little mass under the proposal; raise max_rounds or the batch size, or tighten "
                       "log_bound")
