"""Saturation: fit F(N) = F_max (1 - (1-p)^N) to accuracy against budget, with uncertainty,
and the budget N* beyond which one more sample gains less than eps.

    python examples/scaling_saturation.py [--eps 1e-3] [--seed 0]
"""

from __future__ import annotations

import argparse

import jax
import numpy as np

from ppl_models.scaling import fit_saturation, saturation_budget, saturation_curve


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--eps", type=float, default=1e-3)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    f_max, p, se = 0.72, 0.12, 0.015
    N = 2.0 ** np.arange(0, 7)  # budgets 1..64, as `ppl scale` runs them
    acc = np.clip(saturation_curve(N, f_max, p) + rng.normal(0, se, N.size), 0, 1)
    fit = fit_saturation(N, acc, se, key=jax.random.key(args.seed))
    s = fit.summary()
    for name, t in (("f_max", f_max), ("p", p)):
        print(f"{name:6s} = {s[name]['mean']:.3f} [{s[name]['ci_low']:.3f}, "
              f"{s[name]['ci_high']:.3f}]  (truth {t})")
    b = fit.budget(args.eps)
    print(f"N*(eps={args.eps:g}) = {b['median']:g} [{b['ci_low']:g}, {b['ci_high']:g}]  "
          f"(truth {saturation_budget(f_max, p, args.eps):g})")
    band = fit.curve([128, 256])
    print("extrapolated accuracy: " + ", ".join(
        f"N={int(x)}: {m:.3f} [{lo:.3f}, {hi:.3f}]"
        for x, m, lo, hi in zip(band.x, band.mean, band.lo, band.hi)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
