"""Imperfect verifiers (Inference Scaling fLaws): the ceiling of resampling until accepted and
the optimal number of attempts, in closed form and fitted with uncertainty.

    python examples/scaling_verifiers.py [--problems 150] [--samples 12] [--seed 0]
"""

from __future__ import annotations

import argparse

import jax
import numpy as np

from ppl_models.scaling import accuracy_ceiling, fit_verifier, optimal_k, verifier_data


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--problems", type=int, default=150)
    ap.add_argument("--samples", type=int, default=12)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    c, s = 0.9, 0.85
    r = rng.beta(0.6, 1.2, args.problems)
    print(f"closed form: ceiling A_inf = {accuracy_ceiling(r, c, s):.3f} "
          f"(single-sample accuracy {r.mean():.3f})")
    for vfp in (0.0, -1.0, -4.0):
        print(f"  optimal K with V_fp = {vfp:+.0f}: {optimal_k(r, c, s, value_false_positive=vfp):g}")
    problem = np.repeat(np.arange(args.problems), args.samples)
    correct = (rng.random(problem.size) < r[problem]).astype(int)
    u = rng.random(problem.size)
    accepted = np.where(correct == 1, u < c, u < 1 - s).astype(int)
    fit = fit_verifier(verifier_data(problem, correct, accepted), key=jax.random.key(args.seed))
    sm = fit.summary()
    print(f"\nfitted from {problem.size} samples: c = {sm['c']['mean']:.3f} "
          f"[{sm['c']['ci_low']:.3f}, {sm['c']['ci_high']:.3f}], s = {sm['s']['mean']:.3f} "
          f"[{sm['s']['ci_low']:.3f}, {sm['s']['ci_high']:.3f}]")
    ce = fit.ceiling()
    print(f"  ceiling A_inf = {ce['mean']:.3f} [{ce['ci_low']:.3f}, {ce['ci_high']:.3f}]")
    for vfp in (-1.0, -4.0):
        k = fit.optimal_k(value_false_positive=vfp)
        print(f"  optimal K (V_fp = {vfp:+.0f}) = {k['median']:g} [{k['ci_low']:g}, {k['ci_high']:g}]")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
