r"""Twisted SMC on the bundled hard split: bootstrap filter, PRM as twist, learned twist.

The target of all three filters is :math:`\sigma(x) \propto q(x)\,\varphi(x)`, with :math:`q` the
bundled program's sampler and :math:`\varphi = 1` for a right final answer, :math:`\varepsilon`
otherwise (the task's checker; ``--epsilon``, the learned twist's training value by default). They
differ only in the twist :math:`\psi_t` that steers resampling (multinomial, every step):

* ``bootstrap``: none (:math:`\varphi` at the end only: ``ppl.lm.twisted(None, phi, T)``, i.e. ``when_finished``);
* ``prm``: the bundled PRM's score, ``ppl.lm.twisted(prm, phi, T)``;
* ``learned``: the bundled twist trained by CTL (``ppl train twist``), the same way.

Per problem and number of particles :math:`N`: ``--runs`` SMC runs (lower bound) and as many
conditional SMC runs on exact target samples (upper bound; drawn once per problem by rejection
from :math:`q`, shared by the three filters), through ``ppl.smc.bounds.log_z_runs`` in one compiled
function per filter and :math:`N`. Reported per filter and :math:`N`, over the problems:

* ``gap``: the mean of upper minus lower bound per problem (an estimate of the symmetrised KL
  between the filter's and the target's extended laws; smaller is better), with a bootstrap
  interval over problems;
* ``var_log_z``: the mean over problems of the variance of :math:`\log\hat Z` across runs;
* ``accuracy``: the mean over problems of the weight the filter's final particles put on right
  answers (the probability that a particle drawn from its output is right), averaged over runs.

Paired comparisons on the same problems (learned vs bootstrap, learned vs PRM, PRM vs
bootstrap): the mean difference with a paired bootstrap interval and the Wilcoxon signed-rank
p-value. Prints one JSON line (``ok``: the bounds are consistent, every mean gap
:math:`\ge -2` standard errors, and every filter's gap is smaller at the larger :math:`N`) and
writes ``--out``.

    python benchmarks/twist_study.py                       # 64 problems, N = 16 and 64
    python benchmarks/twist_study.py --problems 4 --num-particles 8 --runs 2   # smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import jax
import numpy as np

METHODS = ("bootstrap", "prm", "learned")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--problems", type=int, default=64)
    ap.add_argument("--num-particles", type=int, nargs="+", default=[16, 64])
    ap.add_argument("--runs", type=int, default=4, help="SMC runs and conditional SMC runs per problem")
    ap.add_argument("--epsilon", type=float, default=None, help="phi of a wrong answer (default: the twist's)")
    ap.add_argument("--twist", default=None, help="twist folder (default: the bundled twist)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="docs/results/twist-study.json")
    args = ap.parse_args(argv)
    if args.problems < 2 or args.runs < 2 or min(args.num_particles) < 2:
        ap.error("--problems, --runs and --num-particles must be >= 2")

    from ppl_models import bundled
    from ppl_models.rewards.prm import load_prm

    t0 = time.time()
    load0 = os.getloadavg()[0]
    prm = bundled.load_prm()
    twist_dir = Path(args.twist) if args.twist else bundled.TWIST_DIR
    twist = load_prm(twist_dir, lm=prm.lm)
    if args.epsilon is None:
        card = twist_dir / "metrics.json"
        args.epsilon = json.loads(card.read_text())["train_config"]["epsilon"] if card.is_file() else 0.01
    from ppl_models.scale.bounds import BoundsRunner, checker_final, paired, per_problem, summarize_filter

    s = bundled.setup(args.problems, difficulty="hard", split="test", seed=args.seed, prm="oracle")
    program = s.program
    oracle0 = s.reward_for(s.problems[0])
    twists = {"bootstrap": None, "prm": prm, "learned": twist}
    final = checker_final(oracle0, args.epsilon)
    key = jax.random.key(args.seed)
    runners = {n: BoundsRunner(program, twists, final, oracle0, n, args.runs) for n in args.num_particles}
    first = runners[args.num_particles[0]]
    datas, rps, refs = [], [], []
    for i, (problem, prompt) in enumerate(zip(s.problems, s.prompts)):
        data = program.with_prompt(prompt).data
        rp = s.reward_for(problem).params
        refs.append(first.references(data, rp, jax.random.fold_in(key, i)))
        datas.append(data)
        rps.append(rp)
    ref_s = time.time() - t0
    print(f"references: {ref_s:.0f} s", file=sys.stderr)
    rng = np.random.default_rng(args.seed)
    results, rows = {}, {}
    for n in args.num_particles:
        for method in METHODS:
            t1 = time.time()
            rows[method, n] = [runners[n].run(method, datas[i], rps[i], rps[i], refs[i],
                                              jax.random.fold_in(key, 10_000 + i)) for i in range(args.problems)]
            results[f"{method}@{n}"] = {**summarize_filter(rows[method, n], rng), "seconds": round(time.time() - t1, 1)}
            print(f"N={n} {method}: {results[f'{method}@{n}']}", file=sys.stderr)
    comparisons = {f"{a}-{b}@{n}": paired(rows[a, n], rows[b, n], rng) for n in args.num_particles
                   for a, b in (("learned", "bootstrap"), ("learned", "prm"), ("prm", "bootstrap"))}
    per = {(m, n): {"gap": per_problem(r, "gap").tolist(), "var_log_z": per_problem(r, "var_log_z").tolist(),
                    "accuracy": per_problem(r, "accuracy").tolist(),
                    "lower": [float(np.mean(x["lower"])) for x in r], "upper": [float(np.mean(x["upper"])) for x in r]}
           for (m, n), r in rows.items()}
    missed = []
    for name, r in results.items():
        if r["gap"] < -2 * r["gap_se"]:
            missed.append(f"{name}: mean gap {r['gap']:.3f} below -2 SE")
    ns = sorted(args.num_particles)
    for m in METHODS:
        for lo_n, hi_n in zip(ns, ns[1:]):
            if not results[f"{m}@{hi_n}"]["gap"] < results[f"{m}@{lo_n}"]["gap"]:
                missed.append(f"{m}: gap not smaller at N={hi_n} than at N={lo_n}")
    out = {"ok": not missed, "missed_targets": missed, "problems": args.problems, "runs": args.runs,
           "epsilon": args.epsilon, "num_particles": args.num_particles,
           "results": results, "paired": comparisons, "per_problem": {f"{m}@{n}": r for (m, n), r in per.items()},
           "seconds": round(time.time() - t0, 1), "reference_seconds": round(ref_s, 1),
           "load_average": [round(load0, 2), round(os.getloadavg()[0], 2)]}
    if args.out:
        path = Path(args.out)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(out, indent=1))
        tmp.replace(path)
    line = {k: out[k] for k in ("ok", "missed_targets", "problems", "runs", "seconds")}
    line.update({name: {k: round(r[k], 4) for k in ("gap", "var_log_z", "accuracy")} for name, r in results.items()})
    print(json.dumps(line))
    return 0 if out["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
