"""Best-of-N, weighted best-of-N, self-consistency, weighted majority and RPC on the bundled LM
and PRM, at several budgets from one pool of rollouts per problem.

    python examples/scaling_sampling.py [--problems 16] [--rollouts 32] [--difficulty hard] [--seed 0]

For each test problem of the bundled arithmetic task, the bundled LM writes ``--rollouts``
solutions (one reasoning step per line, temperature 0.8) in one compiled call, and the bundled
PRM scores each finished solution once (:func:`ppl.scaling.rollouts`). Every selection rule is
then evaluated at budgets 1, 2, 4, ... on the first B rollouts of that pool (exact: they are B
independent rollouts, and their compute is counted exactly). The table prints the accuracy of
each rule with the answer checked by the task's exact checker; "pass@B" is the fraction of
problems where some rollout among the first B is right (the ceiling of every rule).
"""

from __future__ import annotations

import argparse
import time

import jax
import numpy as np

from ppl import scaling

RULES = {
    "best-of-N": lambda pool, k, fn: scaling.best_of_n_from(pool, k, answer_fn=fn),
    "weighted BoN": lambda pool, k, fn: scaling.weighted_best_of_n_from(pool, k, answer_fn=fn),
    "self-consistency": lambda pool, k, fn: scaling.self_consistency_from(pool, k, answer_fn=fn),
    "weighted majority": lambda pool, k, fn: scaling.weighted_majority_from(pool, k, answer_fn=fn, tau=1.0),
    "perplexity consist.": lambda pool, k, fn: scaling.perplexity_consistency(pool, k, answer_fn=fn),
    "RPC": lambda pool, k, fn: scaling.rpc(pool, k, answer_fn=fn),
}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", type=int, default=16)
    parser.add_argument("--rollouts", type=int, default=32, help="rollouts per problem (the largest budget)")
    parser.add_argument("--difficulty", default="hard")
    parser.add_argument("--max-steps", type=int, default=8)
    parser.add_argument("--max-step-tokens", type=int, default=24)
    parser.add_argument("--temperature", type=float, default=0.8)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    from ppl_models import bundled

    t_start = time.perf_counter()
    # One padded prompt width and buffer for all problems: one compiled program.
    task = bundled.setup(args.problems, difficulty=args.difficulty, seed=args.seed, max_steps=args.max_steps,
                         max_step_tokens=args.max_step_tokens, temperature=args.temperature)
    prm, answer_fn, problems, prompts, base = (task.reward_for(None), task.answer_fn, task.problems, task.prompts,
                                               task.program)
    budgets = [b for b in (1, 2, 4, 8, 16, 32, 64, 128, 256) if b <= args.rollouts]
    correct = {name: np.zeros(len(budgets)) for name in ["pass@B", *RULES]}
    tokens, prm_calls = np.zeros(len(budgets)), np.zeros(len(budgets))
    key = jax.random.key(args.seed)
    t_sample = 0.0
    for i, (problem, prompt) in enumerate(zip(problems, prompts)):
        t0 = time.perf_counter()
        pool = scaling.rollouts(base.with_prompt(prompt), args.rollouts, key=jax.random.fold_in(key, i), reward=prm)
        t_sample += time.perf_counter() - t0
        right = np.array([a is not None and a == problem.answer
                          for a in (answer_fn(g) for g in scaling.generations(pool.particles))])
        for j, b in enumerate(budgets):
            correct["pass@B"][j] += right[:b].any()
            for name, rule in RULES.items():
                res = rule(pool, b, answer_fn)
                correct[name][j] += res.answer is not None and res.answer == problem.answer
            comp = pool.compute(b)
            tokens[j] += comp.generated_tokens
            prm_calls[j] += comp.prm_calls

    n = len(problems)
    print(f"bundled LM + PRM, {n} {args.difficulty} test problems, temperature {args.temperature}, "
          f"{args.rollouts} rollouts per problem ({t_sample:.1f} s sampling, {time.perf_counter() - t_start:.1f} s "
          "in all)")
    print(f"{'budget B':>20s} " + " ".join(f"{b:>6d}" for b in budgets))
    for name, row in correct.items():
        print(f"{name:>20s} " + " ".join(f"{v / n:6.3f}" for v in row))
    print(f"{'tokens / problem':>20s} " + " ".join(f"{t / n:6.0f}" for t in tokens))
    print(f"{'PRM calls / problem':>20s} " + " ".join(f"{c / n:6.0f}" for c in prm_calls))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
