"""Coverage as k grows: pass@k, the Beta-Binomial model and the exp(a k^b) law, and when each
extrapolates well.

    python examples/scaling_coverage.py [--problems 200] [--samples 16] [--seed 0]

Two simulated benchmarks: (1) rates with a heavy left tail, p ~ Beta(0.3, 1.5), where both
laws extrapolate; (2) 25% unsolvable problems plus p ~ Beta(2, 2), where coverage plateaus at
0.75: the power law overshoots and the zero-inflated Beta-Binomial model finds the plateau.
Each fit sees only the first --samples samples; the truth at k = 1000 is printed beside it.
"""

from __future__ import annotations

import argparse

import jax
import numpy as np

from ppl_models.scaling import fit_beta_binomial, fit_power_law_to_pass_at_k, pass_at_k_curve


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--problems", type=int, default=200)
    ap.add_argument("--samples", type=int, default=16)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    P, n, K = args.problems, args.samples, 1000
    cases = {
        "heavy left tail, Beta(0.3, 1.5)": rng.beta(0.3, 1.5, P),
        "25% unsolvable + Beta(2, 2)": np.where(rng.random(P) < 0.25, 0.0, rng.beta(2, 2, P)),
    }
    key = jax.random.key(args.seed)
    for name, p in cases.items():
        c = rng.binomial(n, p)
        truth = np.mean(1 - (1 - p) ** K)
        pk = pass_at_k_curve(np.full(P, n), c)
        print(f"\n{name}: pass@1 = {pk.estimate[0]:.3f}, pass@{n} = {pk.estimate[-1]:.3f} "
              f"[{pk.ci_low[-1]:.3f}, {pk.ci_high[-1]:.3f}]; true coverage at k={K}: {truth:.3f}")
        for zi in (False, True):
            fit = fit_beta_binomial(np.full(P, n), c, key=key, zero_inflated=zi)
            b = fit.coverage([K])
            label = "zero-inflated Beta-Binomial" if zi else "Beta-Binomial"
            print(f"  {label:28s} coverage({K}) = {b.mean[0]:.3f} [{b.lo[0]:.3f}, {b.hi[0]:.3f}]")
        pl = fit_power_law_to_pass_at_k(pk, key=key)
        b = pl.coverage([K])
        s = pl.summary()
        print(f"  {'exp(a k^b)':28s} coverage({K}) = {b.mean[0]:.3f} [{b.lo[0]:.3f}, {b.hi[0]:.3f}]"
              f"  (b = {s['b']['mean']:.2f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
