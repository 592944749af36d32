"""Compute-optimal allocation (Snell et al. 2024): spend a fixed sampling budget unevenly across
difficulty bins, (a) using per-problem posteriors of a Beta-Binomial fit, (b) choosing method and
budget per bin from measured per-problem outcomes, as `ppl analyze` does with `ppl scale` JSON.

    python examples/scaling_allocation.py [--problems 300] [--samples 8] [--budget 8] [--seed 0]
"""

from __future__ import annotations

import argparse

import jax
import numpy as np

from ppl_models.scaling import allocate_from_outcomes, allocate_from_posterior, fit_beta_binomial


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--problems", type=int, default=300)
    ap.add_argument("--samples", type=int, default=8)
    ap.add_argument("--budget", type=float, default=8.0, help="average samples per problem")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    p = rng.beta(0.5, 1.0, args.problems)
    c = rng.binomial(args.samples, p)
    fit = fit_beta_binomial(np.full(args.problems, args.samples), c, key=jax.random.key(args.seed))
    budgets = [0, 1, 2, 4, 8, 16, 32, 64]
    alloc, bins = allocate_from_posterior(fit, budgets, args.budget)
    print("(a) repeated sampling with a perfect checker, budgets from the Beta-Binomial posterior")
    for b in range(5):
        print(f"bin {b + 1} (mean true rate {p[bins == b].mean():.3f}): {int(alloc.budget[b])} samples")
    print(f"expected coverage {alloc.accuracy:.3f} vs uniform N={alloc.uniform_budget:g}: "
          f"{alloc.uniform_accuracy:.3f}; gain {alloc.gain:+.3f} "
          f"[{alloc.gain_interval[0]:+.3f}, {alloc.gain_interval[1]:+.3f}]")

    # (b) Two methods measured per problem, as `ppl scale` records them. A toy of Snell et al.'s
    # finding: best-of-N with a verifier that picks a right answer 90% of the time it can;
    # a search that triples the per-sample success on hard problems but over-optimises the
    # verifier (never above 85%). Difficulty = the pass@1 of a 64-sample pool.
    methods = ["best_of_n", "beam_search"]
    grid = np.array([1, 2, 4, 8, 16, 32, 64])
    q = np.stack([1 - (1 - 0.9 * p[None]) ** grid[:, None],
                  0.85 * (1 - (1 - np.minimum(3 * p[None], 1)) ** grid[:, None])])  # [M, G, P]
    outcomes = (rng.random(q.shape) < q).astype(float)
    pool = rng.binomial(64, p) / 64
    alloc, tab = allocate_from_outcomes(outcomes, grid, pool, args.budget, seed=args.seed)
    print("\n(b) method and budget per bin from measured outcomes (bins of pool pass@1)")
    for b in range(5):
        lo, hi = tab.score_range[b]
        g = int(np.searchsorted(tab.budgets, alloc.budget[b]))
        name = methods[alloc.method[b]] if alloc.budget[b] else "skip"
        print(f"bin {b + 1} (pool pass@1 {lo:.2f}-{hi:.2f}): {name} at {int(alloc.budget[b])}, "
              f"accuracy {tab.accuracy[alloc.method[b], b, g]:.3f}")
    print(f"accuracy {alloc.accuracy:.3f} vs uniform best_of_n N={alloc.uniform_budget:g}: "
          f"{alloc.uniform_accuracy:.3f}; gain {alloc.gain:+.3f} "
          f"[{alloc.gain_interval[0]:+.3f}, {alloc.gain_interval[1]:+.3f}], held out "
          f"{alloc.heldout_gain:+.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
