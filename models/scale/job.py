r"""Methods × budgets on the bundled task: the computation behind ``ppl scale``.

For every test problem, every method and every budget :math:`B` (in the reference's unit, full
rollouts), the job runs the method of :mod:`ppl.scaling` on the program "the LM writes one
reasoning step per line" and checks the chosen answer with the task's exact checker. Accuracy is
the fraction of problems solved, with a 95% Wilson interval over problems; compute is the mean
per problem of the tokens generated, LM forward tokens, PRM calls and FLOPs.

How a budget :math:`B` is spent:

========================  ==================================================================
best_of_n, weighted_best_of_n, majority_vote, weighted_majority, rpc
                          :math:`B` independent rollouts. The rollouts of a problem are drawn
                          once (:math:`\max B` of them) and budget :math:`B` uses the first
                          :math:`B` (nested subsets: exact, and much cheaper than fresh draws)
particle_filter           :math:`B` particles
beam_search, dvts         :math:`B` beams of width :math:`M = \min(\text{beam\_width}, B)`
particle_gibbs            :math:`B / I` particles × :math:`I` iterations (``pg_iterations``)
power_sampling            :math:`B / (1 + S/2)` chains (rounded) × :math:`S` = ``power_steps``
                          Metropolis–Hastings steps (an MH step regenerates a suffix: about half
                          a rollout on average)
========================  ==================================================================

A method is skipped at budgets it cannot use (e.g. particle Gibbs with fewer than 2 particles).
Keys are derived from the seed, the problem's index and the method, so results are deterministic
for a given seed.

**Data parallelism** (``devices`` :math:`D \ge 1`). Problems run :math:`D \cdot b` at a time
(:math:`b` = ``problems_per_device``) with :func:`ppl.scaling.batched` over a 1-d mesh of the
first :math:`D` devices (axis ``"prompts"``): each call of the rollout pool, and of
``particle_filter``, ``beam_search`` and ``dvts`` at one budget, is one compiled program in which
device :math:`d` runs its own problems — particles and KV caches included — with no
communication. ``particle_gibbs``, ``parallel_tempering`` and ``power_sampling`` still run per
problem (on the default device). Keys do not depend on the batching, and with :math:`b = 1`
each device runs exactly the one-problem program, so the table equals the one of
``devices=0`` (problems one by one) bit for bit; :math:`b > 1` vmaps the method over a device's
problems, which can round differently in the last bits (see :mod:`ppl.smc.batch`).
``seconds`` then split each call's wall time equally among its problems.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time
from typing import Callable, Optional

import jax
import numpy as np

from ppl import scaling
from ppl_models.outputs import jsonable
from ppl_models.scale.config import (  # noqa: F401  (re-exported)
    DEFAULT_METHODS, METHODS, PF_SELECTS, PF_WEIGHTINGS, PRM_KINDS, QUICK_METHODS, ScaleConfig,
)

__all__ = ["METHODS", "DEFAULT_METHODS", "QUICK_METHODS", "ScaleConfig", "ScaleResults", "run_scale", "wilson",
           "complete_problems", "expected_cells", "results_from_records"]

#: Methods that select among independent rollouts (one shared pool per problem), and the others,
#: which run once per budget.
POOL_METHODS = tuple(m for m in METHODS if scaling.spec(m).from_pool is not None)
RUN_METHODS = tuple(m for m in METHODS if m not in POOL_METHODS)


@dataclasses.dataclass
class MethodCurve:
    """Per-budget outcomes of one method (lists aligned with ``budgets``)."""

    budgets: list
    correct: list  # number of problems solved
    generated_tokens: list  # mean per problem
    lm_forward_tokens: list
    prm_calls: list
    flops: list
    seconds: list  # wall time summed over problems


@dataclasses.dataclass
class ScaleResults:
    """The job's outcome: a :class:`MethodCurve` per method, plus coverage of the rollout pool."""

    config: ScaleConfig
    num_problems: int
    methods: dict
    coverage: dict  # {"budgets": [...], "correct": [...]}: some rollout among the first B is right
    tokens_per_rollout: float
    seconds: float
    #: Per problem: the fraction of its rollout pool that is right (a pass@1 estimate, i.e. how
    #: easy the problem is for the LM), and per method and budget whether it was solved.
    pool_success: list = dataclasses.field(default_factory=list)
    solved: dict = dataclasses.field(default_factory=dict)  # {method: {budget: [0/1 per problem]}}
    #: Per problem: the AUC of the reward's final scores of its rollout pool, right against wrong
    #: rollouts (``None`` where the pool is all right or all wrong): how well the reward ranks
    #: answers *within* a problem, which is what selecting among samples needs.
    reward_auc: list = dataclasses.field(default_factory=list)
    #: With ``config.bounds_particles``: per filter, the log Z bounds' summary over the problems
    #: (:func:`ppl_models.scale.bounds.summarize_filter`) and each problem's runs (``rows``).
    bounds: dict = dataclasses.field(default_factory=dict)

    @classmethod
    def from_json(cls, obj: dict) -> "ScaleResults":
        """Rebuild from :meth:`to_json`'s output (to re-print the table or re-draw the plot)."""
        try:
            conf = dict(obj["config"])
            for k in ("methods", "budgets", "judge_tokens"):
                if k in conf:
                    conf[k] = tuple(conf[k])
            cfg = ScaleConfig(**conf)
            n = int(obj["num_problems"])
            methods = {}
            for name, m in obj["methods"].items():
                methods[name] = MethodCurve(list(m["budgets"]), [int(c) for c in m["correct"]], list(m["tokens"]),
                                            list(m["lm_forward_tokens"]), list(m["prm_calls"]), list(m["flops"]),
                                            list(m["seconds"]))
            cov = obj["coverage"]
            coverage = {"budgets": list(cov["budgets"]), "correct": [int(round(a * n)) for a in cov["accuracy"]]}
            probs = obj.get("problems", {})
            solved = {m: {int(b): v for b, v in d.items()} for m, d in probs.get("solved", {}).items()}
            return cls(cfg, n, methods, coverage, float(obj["tokens_per_rollout"]), float(obj["seconds"]),
                       list(probs.get("pool_success", [])), solved, list(probs.get("reward_auc", [])),
                       dict(obj.get("bounds", {})))
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"not a `ppl scale` JSON file ({type(e).__name__}: {e})") from None

    def accuracy(self, name: str) -> np.ndarray:
        return np.asarray(self.methods[name].correct, float) / self.num_problems

    def to_json(self) -> dict:
        """``{"methods": {name: {"budgets", "accuracy", "ci_low", "ci_high", "tokens", ...}}, ...}``."""
        out = {}
        n = self.num_problems
        for name, c in self.methods.items():
            lo, hi = zip(*(wilson(k, n) for k in c.correct)) if c.budgets else ((), ())
            out[name] = {"budgets": list(c.budgets), "accuracy": [k / n for k in c.correct],
                         "ci_low": list(lo), "ci_high": list(hi), "tokens": list(c.generated_tokens),
                         "lm_forward_tokens": list(c.lm_forward_tokens), "prm_calls": list(c.prm_calls),
                         "flops": list(c.flops), "seconds": list(c.seconds), "correct": list(c.correct)}
        cov = self.coverage
        lo, hi = zip(*(wilson(k, n) for k in cov["correct"])) if cov["budgets"] else ((), ())
        return {"methods": out,
                "coverage": {"budgets": list(cov["budgets"]), "accuracy": [k / n for k in cov["correct"]],
                             "ci_low": list(lo), "ci_high": list(hi)},
                "num_problems": n, "tokens_per_rollout": self.tokens_per_rollout,
                "problems": {"pool_success": list(self.pool_success), "reward_auc": list(self.reward_auc),
                             "solved": {m: {str(b): v for b, v in d.items()} for m, d in self.solved.items()}},
                "config": self.config.to_json(), "bounds": self.bounds,
                "seconds": self.seconds}


def wilson(k: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """The Wilson score interval (95% by default) for ``k`` successes in ``n`` trials."""
    if n <= 0:
        raise ValueError(f"wilson: n must be positive, got {n}")
    p = k / n
    den = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return max(0.0, centre - half), min(1.0, centre + half)


# ----------------------------------------------------------------------------------- setup
def _setup(cfg: ScaleConfig):
    if cfg.data is not None:
        from ppl_models.scale import data_setup

        return data_setup.setup(cfg)
    from ppl_models import bundled

    return bundled.setup(cfg.num_problems, difficulty=cfg.difficulty, seed=cfg.seed, max_steps=cfg.max_steps,
                         max_step_tokens=cfg.max_step_tokens, temperature=cfg.temperature, prm=cfg.prm,
                         prm_noise=cfg.prm_noise, checkpoint=cfg.checkpoint, prm_checkpoint=cfg.prm_checkpoint,
                         prm_features_lm=cfg.prm_features_lm)


# ----------------------------------------------------------------------------------- methods
def _settings(cfg: ScaleConfig) -> dict:
    """The job's settings under the names the methods' budget rules read (:class:`ppl.scaling.MethodSpec`)."""
    return {"tau": cfg.tau, "weighting": cfg.pf_weighting, "select": cfg.pf_select, "resampling": cfg.pf_resampling,
            "beam_width": cfg.beam_width,
            "iterations": cfg.pg_iterations, "mh_steps": cfg.power_steps, "alpha": cfg.power_alpha,
            "max_steps": cfg.max_steps}


def _run_method(name: str, cfg: ScaleConfig, programs, rewards, answer_fn, budget: int, keys, mesh=None):
    """One run of a non-pool method at one budget on each of ``programs`` (``None`` where the
    budget does not fit): batched over ``mesh`` where the method has a batched path."""
    spec = scaling.spec(name)
    call = spec.at(budget, _settings(cfg))
    if call is None:
        return None
    args, options = call
    if mesh is not None and spec.prepare is not None:
        return scaling.batched(spec.run, programs, *args, keys=keys, reward=list(rewards), answer_fn=answer_fn,
                               mesh=mesh, problems_per_device=cfg.problems_per_device, **options)
    return [spec.run(program, *args, key=key, answer_fn=answer_fn, **({"reward": reward} if spec.uses_reward else {}),
                     **options) for program, reward, key in zip(programs, rewards, keys)]


def _cell(i: int, m: str, b: int, res, problem, seconds: float, tokenizer, is_right) -> dict:
    """One problem × method × budget as a plain record (a line of ``samples.jsonl``)."""
    correct = bool(is_right(res.answer, problem))
    text = None
    if res.selected >= 0:
        ids = res.generations()[res.selected]
        text = tokenizer.decode(ids) if tokenizer is not None else ids
    score = float(res.scores[res.selected]) if res.selected >= 0 else float("nan")
    comp = res.compute
    return {"kind": "cell", "problem": i, "method": m, "budget": int(b), "correct": bool(correct),
            "answer": jsonable(res.answer), "reference": jsonable(problem.answer), "text": text,
            "score": score if math.isfinite(score) else None, "generated_tokens": int(comp.generated_tokens),
            "lm_forward_tokens": int(comp.lm_forward_tokens), "prm_calls": int(comp.prm_calls),
            "flops": float(comp.flops), "seconds": float(seconds)}


def expected_cells(cfg: ScaleConfig) -> set:
    """The ``(method, budget)`` cells of one problem: every budget a method can use."""
    from ppl import scaling

    settings = _settings(cfg)
    return {(m, b) for m in cfg.methods for b in cfg.budgets
            if m in POOL_METHODS or scaling.spec(m).at(b, settings) is not None}


def bounds_filters(cfg: ScaleConfig) -> tuple:
    """The filters whose log Z bounds the job reports (none without ``cfg.bounds_particles``):
    the bootstrap filter, the reward as twist and, on the bundled LM and PRM, the bundled
    learned twist."""
    if not cfg.bounds_particles:
        return ()
    bundled = cfg.checkpoint is None and cfg.prm_checkpoint is None
    return ("bootstrap", "reward") + (("learned",) if bundled else ())


def complete_problems(cfg: ScaleConfig, records) -> dict:
    """``{problem: its records}`` of the problems whose pool line, every expected cell and every
    bounds line are in ``records`` (a later line for the same cell replaces an earlier one)."""
    want = expected_cells(cfg) | {("bounds", f) for f in bounds_filters(cfg)}
    by_problem: dict = {}
    for r in records:
        if r.get("kind") in ("pool", "cell", "bounds"):
            key = {"pool": "pool", "cell": lambda: (r["method"], r["budget"]),
                   "bounds": lambda: ("bounds", r["filter"])}[r["kind"]]
            key = key if isinstance(key, str) else key()
            by_problem.setdefault(int(r["problem"]), {})[key] = r
    return {i: list(d.values()) for i, d in by_problem.items()
            if "pool" in d and want <= set(d) and 0 <= i < cfg.num_problems}


def results_from_records(cfg: ScaleConfig, records, seconds: float) -> ScaleResults:
    """:class:`ScaleResults` from the per-problem records of every problem (in any order): sums
    over problems taken in problem order, so a resumed run gives an uninterrupted run's numbers."""
    cfg = cfg.validate()
    n = cfg.num_problems
    pools = {int(r["problem"]): r for r in records if r["kind"] == "pool"}
    if sorted(pools) != list(range(n)):
        raise ValueError(f"records: expected the pool line of problems 0..{n - 1}, got {sorted(pools)}")
    cells = sorted((r for r in records if r["kind"] == "cell"), key=lambda r: r["problem"])
    sums = {m: {b: None for b in cfg.budgets} for m in cfg.methods}
    secs = {m: {b: 0.0 for b in cfg.budgets} for m in cfg.methods}
    solved = {m: {b: [] for b in cfg.budgets} for m in cfg.methods}
    for r in cells:
        m, b = r["method"], r["budget"]
        row = np.array([float(r["correct"]), r["generated_tokens"], r["lm_forward_tokens"], r["prm_calls"],
                        r["flops"]])
        sums[m][b] = row if sums[m][b] is None else sums[m][b] + row
        secs[m][b] += r["seconds"]
        solved[m][b].append(int(r["correct"]))
    curves = {}
    for m in cfg.methods:
        c = MethodCurve([], [], [], [], [], [], [])
        for b in cfg.budgets:
            row = sums[m][b]
            if row is None:
                continue
            c.budgets.append(b)
            c.correct.append(int(round(row[0])))
            c.generated_tokens.append(row[1] / n)
            c.lm_forward_tokens.append(row[2] / n)
            c.prm_calls.append(row[3] / n)
            c.flops.append(row[4] / n)
            c.seconds.append(secs[m][b])
        curves[m] = c
    order = [pools[i] for i in range(n)]
    coverage = {"budgets": list(cfg.budgets),
                "correct": [sum(p["covered"][j] for p in order) for j in range(len(cfg.budgets))]}
    solved = {m: {b: v for b, v in d.items() if len(v) == n} for m, d in solved.items()}
    bounds = {}
    for f in bounds_filters(cfg):
        from ppl_models.scale.bounds import summarize_filter

        rows = sorted((r for r in records if r["kind"] == "bounds" and r["filter"] == f), key=lambda r: r["problem"])
        if len(rows) == n:
            bounds[f] = {**summarize_filter(rows), "num_particles": cfg.bounds_particles, "runs": cfg.bounds_runs,
                         "rows": [{k: r[k] for k in ("lower", "upper", "right")} for r in rows]}
    return ScaleResults(cfg, n, curves, coverage, float(np.mean([p["tokens_per_rollout"] for p in order])),
                        seconds, [p["pool_success"] for p in order], solved, [p["reward_auc"] for p in order], bounds)


def _check_memory(s, num_particles: int, log=None) -> dict:
    """Print what ``num_particles`` particles need (weights, KV caches) and refuse, before any
    compute, when it exceeds 90% of the device's memory."""
    from ppl_models.scale.data_setup import memory_estimate

    est = memory_estimate(s, num_particles)
    gib = 2.0 ** 30
    line = (f"memory: LM weights {est['lm_weights'] / gib:.2f} GiB + reward weights {est['reward_weights'] / gib:.2f} "
            f"GiB + prompt cache {est['prompt_cache'] / 2**20:.1f} MiB + {num_particles} particles x "
            f"{est['cache_per_particle'] / 2**20:.1f} MiB of KV caches = "
            f"{est['total'] / gib:.2f} GiB of {est['available'] / gib:.1f} GiB {est['where']}")
    (log or (lambda m: print(m, file=sys.stderr)))(line)
    if not est["fits"]:
        raise ValueError(f"{line}: does not fit; lower the budgets, --max-new-tokens or use --dtype bfloat16")
    return est


def _bounds_runner(cfg: ScaleConfig, s, filters):
    """The :class:`~ppl_models.scale.bounds.BoundsRunner` of the job: target sampler x the reward's
    final score (read incrementally); twists: none, the reward, the bundled learned twist."""
    from ppl_models.rewards import OraclePRM
    from ppl_models.scale.bounds import BoundsRunner

    reward0 = s.reward_for(s.problems[0])
    twists = {"bootstrap": None, "reward": reward0}
    if "learned" in filters:
        from ppl_models import bundled

        twists["learned"] = bundled.load_twist()
    oracle = OraclePRM(s.problems[0], s.tokenizer, epsilon=1e-4, width=s.program.max_length)
    return BoundsRunner(s.program, twists, reward0, oracle, cfg.bounds_particles, cfg.bounds_runs)


def _bounds_records(runner, filters, i: int, program, problem, reward, key) -> list:
    """The ``"bounds"`` records of one problem: each filter's runs on the same exact samples."""
    data, params = program.data, reward.params
    oparams = runner.right.with_problem(problem).params
    refs = runner.references(data, params, jax.random.fold_in(key, 10_001))
    out = []
    for f in filters:
        tparams = params if f == "reward" else None
        runs = runner.run(f, data, params, oparams, refs, jax.random.fold_in(key, 10_002), tparams=tparams)
        out.append({"kind": "bounds", "problem": i, "filter": f, "num_particles": runner.n, **runs})
    return out


class _Progress:
    """A tqdm bar on a terminal; otherwise a plain line at most every 10% or 60 s, with an ETA
    from the rate after the first problem (which includes compilation)."""

    def __init__(self, total: int, enabled: bool):
        import sys

        self.total, self.done, self.bar, self.enabled = total, 0, None, enabled
        self.t0 = self.t_first = self.t_last = time.perf_counter()
        self.first_done = None
        if enabled and sys.stderr.isatty():
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, desc="ppl scale", unit="run", dynamic_ncols=True)

    def update(self, k: int, where: str = "") -> None:
        import sys

        self.done += k
        if self.bar is not None:
            self.bar.update(k)
            self.bar.set_postfix_str(where)
            return
        if not self.enabled:
            return
        now = time.perf_counter()
        if self.first_done is None:
            self.first_done, self.t_first = self.done, now
        step = max(1, self.total // 10)
        if self.done < self.total and now - self.t_last < 60 and self.done // step == (self.done - k) // step:
            return
        self.t_last = now
        eta = ""
        if self.done > self.first_done:
            rate = (self.done - self.first_done) / (now - self.t_first)
            eta = f", about {(self.total - self.done) / rate:.0f} s left"
        print(f"ppl scale: {self.done}/{self.total} runs, {now - self.t0:.0f} s{eta} {where}".rstrip(),
              file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def run_scale(cfg: ScaleConfig = ScaleConfig(), *, progress: bool = True,
              log: Optional[Callable[[str], None]] = None, done=(),
              on_problems: Optional[Callable[[list], None]] = None) -> ScaleResults:
    """Run ``cfg.methods`` × ``cfg.budgets`` on ``cfg.num_problems`` test problems.

    The computation yields plain records, one per problem (its rollout pool: coverage, pass@1,
    the reward's AUC) and one per problem × method × budget (:func:`results_from_records` sums
    them); ``on_problems(records)`` receives each finished batch of problems' records (``ppl
    scale`` streams them to ``samples.jsonl``), and ``done`` are the records of problems finished
    by an earlier run (:func:`complete_problems`), which are not run again.

    With ``cfg.devices = 0`` problems run one by one; with ``cfg.devices = D`` they run
    ``D * cfg.problems_per_device`` at a time, data-parallel over the first ``D`` devices (see
    the module doc). The progress bar advances by one problem-run, a whole batch at a time.
    """
    from ppl_models.train.prm import auc

    cfg = cfg.validate()
    t_start = time.perf_counter()
    records = [r for rs in complete_problems(cfg, done).values() for r in rs]
    finished = {int(r["problem"]) for r in records if r["kind"] == "pool"}
    todo = [i for i in range(cfg.num_problems) if i not in finished]
    s = _setup(cfg)
    if cfg.data is not None:
        _check_memory(s, max(cfg.budgets), log)
    tokenizer = getattr(s, "tokenizer", None)
    root = jax.random.key(cfg.seed)
    pool_methods = [m for m in cfg.methods if m in POOL_METHODS]
    run_methods = [m for m in cfg.methods if m in RUN_METHODS]
    max_b = max(cfg.budgets)
    mesh = scaling.prompt_mesh(cfg.devices) if cfg.devices else None
    group = cfg.devices * cfg.problems_per_device if cfg.devices else 1
    filters = bounds_filters(cfg)
    runner = _bounds_runner(cfg, s, filters) if filters else None
    bar = _Progress(len(todo) * (1 + len(cfg.budgets) * len(run_methods) + len(filters)), progress)
    try:
        for start in range(0, len(todo), group):
            idx = todo[start:start + group]
            problems = [s.problems[i] for i in idx]
            programs = [s.program.with_prompt(s.prompts[i]) for i in idx]
            rewards = [s.reward_for(p) for p in problems]
            keys = [jax.random.fold_in(root, i) for i in idx]
            where = (f"problem {idx[0] + 1}/{len(s.problems)}" if len(idx) == 1
                     else f"problems {idx[0] + 1}-{idx[-1] + 1}/{len(s.problems)}")
            new: list = []
            # One pool of rollouts per problem, shared by the selection methods and the coverage line.
            t0 = time.perf_counter()
            pool_keys = [jax.random.fold_in(k, 0) for k in keys]
            if mesh is None:
                pools = [scaling.rollouts(p, max_b, key=k, reward=r) for p, k, r in zip(programs, pool_keys, rewards)]
            else:
                pools = scaling.batched(scaling.rollouts, programs, max_b, keys=pool_keys, reward=rewards, mesh=mesh,
                                        problems_per_device=cfg.problems_per_device)
            t_pool = (time.perf_counter() - t0) / len(idx)
            for i, problem, pool in zip(idx, problems, pools):
                answers = [s.answer_fn(g) for g in scaling.generations(pool.particles)]
                right = np.array([bool(s.is_right(a, problem)) for a in answers])
                scores = np.asarray(pool.scores, np.float64)
                mixed = right.any() and not right.all() and not np.isnan(scores).any()
                new.append({"kind": "pool", "problem": i, "prompt": problem.prompt,
                            "tokens_per_rollout": float(np.mean(np.asarray(pool.generated_tokens))),
                            "pool_success": float(np.mean(right)),
                            "reward_auc": auc(scores, right) if mixed else None,
                            "covered": [int(right[:b].any()) for b in cfg.budgets]})
                for m in pool_methods:
                    for b in cfg.budgets:
                        t0 = time.perf_counter()
                        res = scaling.spec(m).from_pool(pool, b, s.answer_fn, _settings(cfg))
                        new.append(_cell(i, m, b, res, problem, time.perf_counter() - t0 + t_pool * b / max_b,
                                         tokenizer, s.is_right))
            bar.update(len(idx), where)
            for m in run_methods:
                mkeys = [jax.random.fold_in(k, 1 + METHODS.index(m)) for k in keys]
                for b in cfg.budgets:
                    t0 = time.perf_counter()
                    results = _run_method(m, cfg, programs, rewards, s.answer_fn, b,
                                          [jax.random.fold_in(k, b) for k in mkeys], mesh)
                    if results is not None:
                        seconds = (time.perf_counter() - t0) / len(idx)
                        new += [_cell(i, m, b, res, problem, seconds, tokenizer, s.is_right)
                                for i, problem, res in zip(idx, problems, results)]
                    bar.update(len(idx), f"{where} {m} B={b}")
            if runner is not None:
                for i, program, problem, reward, k in zip(idx, programs, problems, rewards, keys):
                    new += _bounds_records(runner, filters, i, program, problem, reward, k)
                    bar.update(len(filters), f"problem {i + 1} bounds")
            if on_problems is not None:
                on_problems(new)
            records += new
    finally:
        bar.close()
    return results_from_records(cfg, records, time.perf_counter() - t_start)
