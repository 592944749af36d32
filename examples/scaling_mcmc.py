"""Particle Gibbs, parallel tempering and power sampling on the bundled LM and PRM.

    python examples/scaling_mcmc.py [--problems 16] [--budget 8] [--difficulty hard] [--seed 0]

The MCMC methods of :mod:`ppl.scaling`, on test problems of the bundled arithmetic task (the LM
writes one reasoning step per line, sampler temperature 0.8):

* particle Gibbs — conditional SMC sweeps over whole solutions, PRM potentials
  (odds of the prefix score), :math:`N = B / I` particles × :math:`I` sweeps;
* parallel tempering — two particle Gibbs chains at temperatures 2 and 1 that swap references,
  :math:`N = B / (2I)` particles each; the answer comes from the cold chain;
* power sampling — Metropolis–Hastings chains targeting :math:`p(x)^\\alpha` (no reward),
  :math:`B / 2` chains × ``--power-steps`` MH steps, majority vote over the chains;
* and, as the baseline, self-consistency: majority vote over :math:`B` independent rollouts
  (power sampling with no MH step).

Each answer is checked with the task's exact checker; the table prints accuracies, the tokens
generated per problem and each method's mixing diagnostic.
"""

from __future__ import annotations

import argparse
import time

import jax
import numpy as np

from ppl import scaling


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", type=int, default=16)
    parser.add_argument("--budget", type=int, default=8, help="rollouts per problem and method")
    parser.add_argument("--iterations", type=int, default=2, help="particle Gibbs / PT sweeps")
    parser.add_argument("--power-steps", type=int, default=4, help="MH steps per power-sampling chain")
    parser.add_argument("--alpha", type=float, default=4.0)
    parser.add_argument("--difficulty", default="hard")
    parser.add_argument("--max-steps", type=int, default=8)
    parser.add_argument("--max-step-tokens", type=int, default=24)
    parser.add_argument("--temperature", type=float, default=0.8)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    B, I = args.budget, args.iterations
    if B // I < 2 or B // (2 * I) < 2 or B < 2:
        parser.error(f"--budget {B} is too small for {I} iterations (particle Gibbs and each PT chain need "
                     "at least 2 particles)")

    from ppl_models import bundled

    t_start = time.perf_counter()
    # One padded prompt width and buffer for all problems: one compiled program.
    task = bundled.setup(args.problems, difficulty=args.difficulty, seed=args.seed, max_steps=args.max_steps,
                         max_step_tokens=args.max_step_tokens, temperature=args.temperature)
    prm, answer_fn, problems, prompts, base = (task.reward_for(None), task.answer_fn, task.problems, task.prompts,
                                               task.program)

    methods = {
        "self-consistency": lambda prog, key: scaling.power_sampling(prog, B, 0, key=key, answer_fn=answer_fn),
        "particle Gibbs": lambda prog, key: scaling.particle_gibbs(prog, B // I, I, key=key, reward=prm,
                                                                   answer_fn=answer_fn),
        "parallel tempering": lambda prog, key: scaling.parallel_tempering(
            prog, B // (2 * I), I, temperatures=(2.0, 1.0), key=key, reward=prm, answer_fn=answer_fn),
        "power sampling": lambda prog, key: scaling.power_sampling(prog, max(B // 2, 1), args.power_steps, key=key,
                                                                   alpha=args.alpha, answer_fn=answer_fn),
    }
    diagnostic = {
        "self-consistency": ("-", lambda r: np.nan),
        "particle Gibbs": ("reference updates", lambda r: r.diagnostics["reference_update_rate"]),
        "parallel tempering": ("swap acceptance", lambda r: r.diagnostics["swap_acceptance"][0]),
        "power sampling": ("MH acceptance", lambda r: r.diagnostics["acceptance_rate"]),
    }
    correct = {m: 0 for m in methods}
    tokens = {m: 0 for m in methods}
    diag = {m: [] for m in methods}
    seconds = {m: 0.0 for m in methods}
    key = jax.random.key(args.seed)
    for i, (problem, prompt) in enumerate(zip(problems, prompts)):
        prog = base.with_prompt(prompt)
        for j, (name, run) in enumerate(methods.items()):
            t0 = time.perf_counter()
            res = run(prog, jax.random.fold_in(jax.random.fold_in(key, i), j))
            seconds[name] += time.perf_counter() - t0
            correct[name] += res.answer is not None and res.answer == problem.answer
            tokens[name] += res.compute.generated_tokens
            diag[name].append(diagnostic[name][1](res))

    n = len(problems)
    print(f"bundled LM + PRM, {n} {args.difficulty} test problems, budget {B} rollouts, sampler temperature "
          f"{args.temperature} ({time.perf_counter() - t_start:.1f} s in all)")
    print(f"{'method':>20s} {'accuracy':>9s} {'tokens/problem':>15s} {'seconds':>8s}  mixing")
    for name in methods:
        label, _ = diagnostic[name]
        values = np.asarray(diag[name], np.float64)
        values = values[np.isfinite(values)]
        mix = "" if label == "-" else f"{label} {values.mean():.2f}" if values.size else f"{label} n/a"
        print(f"{name:>20s} {correct[name] / n:9.3f} {tokens[name] / n:15.0f} {seconds[name]:8.1f}  {mix}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
