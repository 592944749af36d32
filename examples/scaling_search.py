"""Particle filtering against beam search and DVTS on the bundled LM and PRM, at matched budgets.

    python examples/scaling_search.py [--problems 16] [--budget 8] [--beam-width 4] [--prm learned|oracle]

For each test problem of the bundled arithmetic task, each method spends a budget of B full
rollouts: best-of-N (B independent rollouts, the highest final PRM score wins) as the baseline;
particle filtering (Puri et al. 2025) with B particles, weights softmax(logit(r)/tau) of the
PRM's score of each prefix and resampling at every step; beam search with B beams of width M
(keep the top B/M prefixes by PRM score, expand each M ways; finished beams set aside); DVTS with
B/M independent subtrees. The table prints accuracy (exact checker), generated tokens and PRM
calls per problem (a PRM call reads the whole prefix).
"""

from __future__ import annotations

import argparse
import time

import jax
import numpy as np

from ppl import scaling
from ppl.lm.potentials import odds


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", type=int, default=16)
    parser.add_argument("--budget", type=int, default=8, help="particles / beams per problem")
    parser.add_argument("--beam-width", type=int, default=4)
    parser.add_argument("--tau", type=float, default=1.0)
    parser.add_argument("--prm", choices=("learned", "oracle"), default="learned")
    parser.add_argument("--difficulty", default="hard")
    parser.add_argument("--max-steps", type=int, default=8)
    parser.add_argument("--max-step-tokens", type=int, default=24)
    parser.add_argument("--temperature", type=float, default=0.8)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.budget % args.beam_width:
        parser.error(f"--budget {args.budget} must be a multiple of --beam-width {args.beam_width}")

    from ppl_models import bundled

    t_start = time.perf_counter()
    task = bundled.setup(args.problems, difficulty=args.difficulty, seed=args.seed, max_steps=args.max_steps,
                         max_step_tokens=args.max_step_tokens, temperature=args.temperature, prm=args.prm)
    answer_fn, problems, prompts, base = task.answer_fn, task.problems, task.prompts, task.program
    methods = {
        "best-of-N": lambda prog, r, k: scaling.best_of_n(prog, args.budget, key=k, reward=r, answer_fn=answer_fn),
        "particle filter": lambda prog, r, k: scaling.particle_filter(prog, args.budget, key=k, reward=r,
                                                                      answer_fn=answer_fn,
                                                                      potential=odds(args.tau)),
        "beam search": lambda prog, r, k: scaling.beam_search(prog, args.budget, beam_width=args.beam_width,
                                                              key=k, reward=r, answer_fn=answer_fn),
        "DVTS": lambda prog, r, k: scaling.dvts(prog, args.budget, beam_width=args.beam_width, key=k, reward=r,
                                                answer_fn=answer_fn),
    }
    stats = {name: np.zeros(3) for name in methods}  # correct, generated tokens, PRM calls
    key = jax.random.key(args.seed)
    for i, (problem, prompt) in enumerate(zip(problems, prompts)):
        program = base.with_prompt(prompt)
        reward = task.reward_for(problem)
        for j, (name, run) in enumerate(methods.items()):
            res = run(program, reward, jax.random.fold_in(jax.random.fold_in(key, i), j))
            stats[name] += [res.answer is not None and res.answer == problem.answer,
                            res.compute.generated_tokens, res.compute.prm_calls]
    n = len(problems)
    print(f"{n} {args.difficulty} test problems, budget {args.budget} rollouts, reward: {args.prm}")
    print(f"{'method':<18}{'accuracy':>10}{'tokens':>10}{'PRM calls':>11}")
    for name, (c, t, p) in stats.items():
        print(f"{name:<18}{c / n:>10.3f}{t / n:>10.0f}{p / n:>11.1f}")
    print(f"{time.perf_counter() - t_start:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
