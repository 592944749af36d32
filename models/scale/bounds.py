r"""Two-sided :math:`\log Z` bounds of twisted filters on the bundled task's problems.

For a problem, the target is :math:`\sigma(x) \propto q(x)\,\varphi(x)`: :math:`q` the program's
sampler and :math:`\varphi \le 1` a final potential (the checker's :math:`1/\varepsilon`, or a
reward model's final score). A **filter** is a twist :math:`\psi_t` that steers resampling
(``None``: the bootstrap filter, :math:`\varphi` at the end only; a reward model: its score of the
prefix, :func:`ppl.lm.twisted`); all are exact for :math:`\sigma`. :class:`BoundsRunner` runs, per
problem, ``runs`` SMC runs and ``runs`` conditional SMC runs on exact samples of :math:`\sigma`
(drawn once per problem by rejection from :math:`q`, shared by the filters) through
:func:`ppl.smc.bounds.log_z_runs`, one compiled function per filter, for every problem of the same
padded width. See ``docs/smc.md`` ("Two-sided bounds") for the math.
"""

from __future__ import annotations

import math
from typing import Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["BoundsRunner", "checker_final", "reward_final", "summarize_filter", "per_problem", "paired"]


def _is_reward(x) -> bool:
    return callable(getattr(x, "log_score", None))


def checker_final(oracle, epsilon: float) -> Callable:
    r"""``final(params) -> phi(prev, state)``: :math:`\log\varphi = 0` for a finished particle
    whose solution is the oracle's reference (a right answer), :math:`\log\varepsilon` otherwise."""
    log_eps = math.log(epsilon)

    def final(params):
        def phi(prev, state):
            return jnp.where(state.done & (oracle.log_score(params, state) == 0.0), 0.0, log_eps)
        return phi

    return final


def reward_final(reward) -> Callable:
    r"""``final(params) -> phi(prev, state)``: :math:`\log\varphi` the reward's log-score of the
    final prefix (at most 0: the particle filter's ``"ratio"`` target)."""
    def final(params):
        return lambda prev, state: jnp.minimum(reward.log_score(params, state).astype(jnp.float32), 0.0)
    return final


class BoundsRunner:
    r"""Bounds of several filters on problems that share ``program``'s compiled shape.

    ``twists``: ``{name: None | reward}`` (``None``: the bootstrap filter); ``final``: a
    ``final(params) -> phi`` (:func:`checker_final`) or a reward model, whose score of the
    finished prefix is :math:`\log\varphi` (read incrementally from the particle's memory, once
    when it is also the twist); ``right``: an oracle whose ``log_score(params, state) == 0`` marks
    a right solution (for the accuracy).
    """

    def __init__(self, program, twists: dict, final: Callable, right, num_particles: int, runs: int,
                 reference_batch: int = 64):
        from ppl.core.checks import check_int

        self.program, self.twists, self.final, self.right = program, dict(twists), final, right
        self.n = check_int("num_particles", num_particles, 2)
        self.runs = check_int("runs", runs, 2)
        self._cores: dict = {}
        self._draw = self._reference_sampler(check_int("reference_batch", reference_batch, 1))

    def _phi(self, params):
        """``(prev, state) -> log phi`` of a finished particle (for the rejection sampler)."""
        return reward_final(self.final)(params) if _is_reward(self.final) else self.final(params)

    def _model(self, twist, params, tparams):
        import ppl

        T = int(self.program.num_steps)
        if not _is_reward(self.final):
            pot = ppl.lm.twisted(twist, self.final(params), T, params=tparams)
        elif twist is self.final:  # one reward, read once: twist and final score
            pot = ppl.lm.twisted(twist, twist, T, params=params, final_params=params)
        else:
            pot = ppl.lm.twisted(twist, self.final, T, params=tparams, final_params=params)
        return self.program.with_potential(pot, correct_proposal=False)

    def _reference_sampler(self, batch: int):
        from ppl.smc import resampling as rs
        from ppl.smc.loop import build_filter, trajectories

        run = build_filter(self.program, batch, rs.systematic, 0.0, keep_history=True)

        def draw(data, params, key):
            res = run(data, key)[0]
            phi = self._phi(params)
            return trajectories(res), jax.vmap(lambda s: phi(s, s))(res.particles)

        return jax.jit(draw)

    def references(self, data, params, key, max_rounds: int = 64):
        """``runs`` exact draws from :math:`q\\varphi` by rejection (accept with probability
        :math:`\\varphi \\le 1`; :func:`ppl.smc.bounds.rejection_sample`), leaves ``[runs, T, ...]``."""
        from ppl.smc.bounds import rejection_sample

        return rejection_sample(lambda k: self._draw(data, params, k), self.runs, key=key, max_rounds=max_rounds)

    def _core(self, name: str):
        if name not in self._cores:
            from ppl.smc.bounds import log_z_runs

            twist = self.twists[name]

            def core(data, params, oparams, tparams, key, refs):
                model = self._model(twist, params, tparams)

                def right(res):
                    ok = jax.vmap(lambda s: s.done & (self.right.log_score(oparams, s) == 0.0))(res.particles)
                    return jnp.sum(jnp.where(ok, jnp.exp(res.log_weights), 0.0))

                return log_z_runs(model, self.n, data, refs, key, self.runs, reduce=right)

            self._cores[name] = jax.jit(core)
        return self._cores[name]

    def run(self, name: str, data, params, oparams, refs, key, tparams=None) -> dict:
        """One filter on one problem: ``{"lower": [...], "upper": [...], "right": [...]}`` (the
        :math:`\\log\\hat Z` of each SMC and conditional SMC run, and the weight each SMC run's
        final particles put on right solutions). ``tparams``: the twist's parameters for this
        problem (default the twist's own)."""
        twist = self.twists[name]
        if tparams is None:
            tparams = () if twist is None else twist.params
        low, up, right = self._core(name)(data, params, oparams, tparams, key, refs)
        return {"lower": np.asarray(low, np.float64).tolist(), "upper": np.asarray(up, np.float64).tolist(),
                "right": np.asarray(right, np.float64).tolist()}


def summarize_filter(rows: list, rng: Optional[np.random.Generator] = None) -> dict:
    """Over problems (``rows``: :meth:`BoundsRunner.run` outputs): the mean ``gap`` (upper minus
    lower bound per problem), its standard error and 95% bootstrap interval, the mean
    ``var_log_z`` (variance of the SMC runs' :math:`\\log\\hat Z`) and ``accuracy`` (mean weight
    on right solutions)."""
    rng = np.random.default_rng(0) if rng is None else rng
    g = per_problem(rows, "gap")
    boots = g[rng.integers(0, len(g), (4000, len(g)))].mean(axis=1)
    return {"gap": float(g.mean()), "gap_se": float(g.std(ddof=1) / math.sqrt(len(g))) if len(g) > 1 else float("nan"),
            "gap_ci95": [float(np.percentile(boots, 2.5)), float(np.percentile(boots, 97.5))],
            "var_log_z": float(per_problem(rows, "var_log_z").mean()),
            "accuracy": float(per_problem(rows, "accuracy").mean())}


def per_problem(rows: list, what: str) -> np.ndarray:
    """``gap``, ``var_log_z`` or ``accuracy`` of each problem."""
    if what == "gap":
        return np.array([np.mean(r["upper"]) - np.mean(r["lower"]) for r in rows])
    if what == "var_log_z":
        return np.array([np.var(r["lower"], ddof=1) for r in rows])
    return np.array([np.mean(r["right"]) for r in rows])


def paired(a_rows: list, b_rows: list, rng: Optional[np.random.Generator] = None, reps: int = 4000) -> dict:
    """Filter a against filter b on the same problems, for ``gap``, ``var_log_z`` and
    ``accuracy``: the mean difference (a - b), its 95% paired-bootstrap interval and the
    Wilcoxon signed-rank p-value."""
    from scipy.stats import wilcoxon

    rng = np.random.default_rng(0) if rng is None else rng
    out = {}
    for what in ("gap", "var_log_z", "accuracy"):
        d = per_problem(a_rows, what) - per_problem(b_rows, what)
        boots = d[rng.integers(0, len(d), (reps, len(d)))].mean(axis=1)
        p = float(wilcoxon(d).pvalue) if len(d) > 1 and np.any(d != 0) else 1.0
        out[what] = {"mean_difference": float(d.mean()),
                     "ci95": [float(np.percentile(boots, 2.5)), float(np.percentile(boots, 97.5))], "wilcoxon_p": p}
    return out
