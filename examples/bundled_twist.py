r"""Train a twist for the bundled task by contrastive twist learning, then judge it by log Z bounds.

The target is q(x) phi(x): q the bundled program's sampler (the tiny LM at temperature 0.8, one
line per step) and phi = 1 for a right final answer, 0.01 otherwise. The optimal twist of a
prefix is E_q[phi | prefix], about the chance that the LM, continuing it, ends right.

1. Rollouts of the program on train-split problems (``ppl_models.train.twist.make_pool``).
2. CTL from the bundled PRM's weights (``train_twist_head``): the PRM scores "every step so far is
   right", which overestimates the future; CTL moves it toward the expected final potential.
3. On held-out test problems, the log loss of psi_t against the rollouts' outcomes, and the gap
   between the SMC lower and the conditional-SMC upper bound on log Z for the bootstrap filter,
   the PRM as twist and the new twist (``ppl_models.scale.bounds.BoundsRunner``).

About 2 minutes on 2 CPU cores with the defaults (measured 1 min 52 s); ``ppl train twist`` trains the shipped twist
(256 problems, 300 steps) and ``benchmarks/twist_study.py`` compares the filters on 64 problems.

    python examples/bundled_twist.py
"""

from __future__ import annotations

import argparse

import jax
import numpy as np


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--problems", type=int, default=48, help="train problems")
    ap.add_argument("--rollouts", type=int, default=16, help="rollouts per train problem")
    ap.add_argument("--steps", type=int, default=80, help="CTL steps")
    ap.add_argument("--test-problems", type=int, default=6)
    ap.add_argument("--num-particles", type=int, default=16)
    ap.add_argument("--runs", type=int, default=4)
    args = ap.parse_args(argv)

    from ppl_models import bundled
    from ppl_models.scale.bounds import BoundsRunner, checker_final, summarize_filter
    from ppl_models.train.twist import TwistTrainConfig, evaluate_twist, make_pool, train_twist_head

    prm = bundled.load_prm()
    cfg = TwistTrainConfig(num_problems=args.problems, num_rollouts=args.rollouts, steps=args.steps,
                           problems_per_batch=8)
    train = bundled.setup(cfg.num_problems, split="train", prm="oracle")
    pool = make_pool(train, cfg.num_rollouts, cfg.epsilon, jax.random.key(0), features_lm=prm.lm, progress=False)
    print(f"{pool.correct.size} rollouts, {pool.correct.mean():.1%} right")
    twist, hist = train_twist_head(pool, cfg, prm, features_lm=prm.lm, progress=False)
    print(f"CTL: surrogate {hist['loss'][0]:.3f} -> {hist['loss'][-1]:.3f} in {hist['train_seconds']:.0f} s")

    test = bundled.setup(args.test_problems, split="test", seed=7, prm="oracle")
    held = make_pool(test, 16, cfg.epsilon, jax.random.key(1), features_lm=prm.lm, progress=False)
    for name, head in (("PRM", prm), ("learned twist", twist)):
        m = evaluate_twist(head, held)
        print(f"{name:>14}: log loss {m['log_loss']:.3f}, Brier {m['brier']:.3f} (psi {m['mean_psi']:.2f} "
              f"vs right {m['mean_right']:.2f})")

    oracle = test.reward_for(test.problems[0])
    runner = BoundsRunner(test.program, {"bootstrap": None, "PRM twist": prm, "learned twist": twist},
                          checker_final(oracle, cfg.epsilon), oracle, args.num_particles, args.runs)
    rows = {name: [] for name in runner.twists}
    for i, (problem, prompt) in enumerate(zip(test.problems, test.prompts)):
        data = test.program.with_prompt(prompt).data
        params = test.reward_for(problem).params
        refs = runner.references(data, params, jax.random.key(100 + i))
        for name in runner.twists:
            rows[name].append(runner.run(name, data, params, params, refs, jax.random.key(200 + i)))
    print(f"log Z bounds, N={args.num_particles}, {args.runs} runs a side, {args.test_problems} problems:")
    for name, r in rows.items():
        s = summarize_filter(r, np.random.default_rng(0))
        print(f"{name:>14}: gap {s['gap']:.3f} [{s['gap_ci95'][0]:.3f}, {s['gap_ci95'][1]:.3f}], "
              f"var log Z {s['var_log_z']:.3f}, accuracy {s['accuracy']:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
