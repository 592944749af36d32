"""Judge selection: best-of-k and softmax selection in the LLM-as-a-judge model (Dec 2025),
simulated exactly: 1/k^2 decay with the teacher as judge, a finite optimal k with a
misspecified judge, and an optimal temperature for fixed k.

    python examples/scaling_judge_selection.py [--out PLOT.png] [--seed 0] [--datasets 256]
"""

from __future__ import annotations

import argparse
import os

import jax
import numpy as np

from ppl_models.scaling.judge_selection import (
    fit_judge_decay,
    judge_optimal_k,
    judge_optimal_temperature,
    simulate_judge_selection,
)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=None, help="PNG to write (default: none; the numbers are printed)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--datasets", type=int, default=256, help="training sets per curve")
    ap.add_argument("--test", type=int, default=32, help="test inputs per training set")
    ap.add_argument("--kmax", type=int, default=1024, help="largest k (rounded to a power of 2)")
    ap.add_argument("--dim", type=int, default=32)
    ap.add_argument("--train", type=int, default=128, help="training pairs per set")
    ap.add_argument("--noise", type=float, default=0.5)
    ap.add_argument("--overlaps", type=float, nargs="+", default=[0.95, 0.9, 0.8],
                    help="judge-teacher overlaps of the misspecified judges")
    ap.add_argument("--k-temp", type=int, default=64, help="k of the temperature sweep")
    args = ap.parse_args(argv)

    key = jax.random.key(args.seed)
    k_sim, k_boot = jax.random.split(key)
    ks = 2 ** np.arange(int(np.log2(args.kmax)) + 1)
    sizes = dict(dim=args.dim, num_train=args.train, noise=args.noise,
                 num_datasets=args.datasets, num_test=args.test)
    temps = np.r_[0.0, np.logspace(-3, 1, 13), np.inf]
    k_temp = int(ks[np.argmin(np.abs(ks - args.k_temp))])

    print(f"d={args.dim}, n={args.train}, sigma={args.noise}: {args.datasets} training sets x "
          f"{args.test} test inputs, k = 1..{ks[-1]}")

    # (a) the teacher as judge: best-of-k error ~ C / k^2
    teacher = simulate_judge_selection(k_sim, ks, (0.0,), **sizes)
    k_min = min(32, int(ks[-2])) if len(ks) > 1 else 1
    fit = fit_judge_decay(teacher, key=k_boot, k_min=k_min)
    print("\n(a) teacher as judge, best-of-k (T = 0): excess error E(k)")
    for k, e, s in zip(teacher.k, teacher.error[0], teacher.se[0]):
        print(f"  k={k:5d}  E={e:.3e} +- {s:.1e}  k^2 E={k * k * e:.3f}")
    print(f"  log-log slope on k in [{fit.k_min}, {fit.k_max}]: {fit.slope:.3f} "
          f"[{fit.ci_low:.3f}, {fit.ci_high:.3f}] ({fit.level:.0%} bootstrap over training sets)")
    print(f"  k^2 E(k) -> C = E[pi s^2 exp(z^2)] = {teacher.bok_coefficient:.3f}; "
          f"k = 1 closed form E[(m - y*)^2 + s^2] = {teacher.k1_error:.4f}")

    # (b) misspecified judges: a finite optimal k
    print("\n(b) misspecified judge (overlap rho with the teacher), best-of-k")
    mis = {}
    for rho in args.overlaps:
        r = simulate_judge_selection(k_sim, ks, (0.0,), reward_overlap=rho, **sizes)
        opt = judge_optimal_k(r, key=k_boot)
        mis[rho] = (r, opt)
        print(f"  rho={rho:.2f}: optimal k = {opt.value:g} [{opt.ci_low:g}, {opt.ci_high:g}] "
              f"(interior in {opt.prob_interior:.0%} of bootstraps), E(k*)={opt.error:.4f}, "
              f"E(k={ks[-1]})={r.error[0, -1]:.4f}, judge's own error {r.judge_error:.4f}")

    # (c) fixed k: an optimal temperature
    rho_t = min(args.overlaps)
    sweep = simulate_judge_selection(k_sim, np.array([1, k_temp]), temps, reward_overlap=rho_t,
                                     **sizes)
    topt = judge_optimal_temperature(sweep, key=k_boot, k=k_temp)
    print(f"\n(c) rho={rho_t:.2f}, k={k_temp}: error against the softmax temperature T")
    for t, e in zip(sweep.temperature, sweep.error[:, 1]):
        print(f"  T={t:9.4g}  E={e:.4f}")
    print(f"  optimal T = {topt.value:.3g} [{topt.ci_low:.3g}, {topt.ci_high:.3g}], "
          f"E={topt.error:.4f} (T=0: {sweep.error[0, 1]:.4f}, T=inf: {sweep.error[-1, 1]:.4f})")

    if args.out:
        _plot(args.out, teacher, fit, mis, sweep, topt, k_temp, rho_t)
        print(f"\nplot: {args.out}")
    return 0


def _plot(path, teacher, fit, mis, sweep, topt, k_temp, rho_t):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(14, 4.2))
    ax = axes[0]
    k = teacher.k.astype(float)
    ax.errorbar(k, teacher.error[0], yerr=2 * teacher.se[0], fmt="o", ms=3, color="k",
                label="simulated (teacher judge)")
    ax.plot(k, teacher.bok_coefficient / k**2, "C0--", label="C / k^2")
    kk = k[k >= fit.k_min]
    ax.plot(kk, fit.coefficient * kk**fit.slope, "C1",
            label=f"fit: slope {fit.slope:.2f} [{fit.ci_low:.2f}, {fit.ci_high:.2f}]")
    ax.set(xscale="log", yscale="log", xlabel="k", ylabel="excess error",
           title="(a) best-of-k, teacher as judge")
    ax.legend(fontsize=8)

    ax = axes[1]
    for i, (rho, (r, opt)) in enumerate(mis.items()):
        ax.plot(r.k, r.error[0], "o-", ms=3, color=f"C{i}", label=f"rho={rho:g}")
        ax.axhline(r.judge_error, color=f"C{i}", ls=":", lw=1)
        ax.plot([opt.value], [opt.error], "*", ms=12, color=f"C{i}")
    ax.set(xscale="log", xlabel="k", ylabel="excess error",
           title="(b) misspecified judge: finite optimal k")
    ax.legend(fontsize=8)

    ax = axes[2]
    t = sweep.temperature
    finite = np.isfinite(t) & (t > 0)
    e = sweep.error[:, 1]
    ax.plot(t[finite], e[finite], "o-", ms=3, color="C3", label=f"k={k_temp}")
    ax.axhline(e[t == 0][0], color="C0", ls="--", lw=1, label="T=0 (best-of-k)")
    ax.axhline(e[np.isinf(t)][0], color="C2", ls=":", lw=1, label="T=inf (= k=1)")
    ax.plot([topt.value], [topt.error], "*", ms=12, color="C3")
    ax.set(xscale="log", xlabel="temperature T", ylabel="excess error",
           title=f"(c) rho={rho_t:g}, k={k_temp}: optimal T")
    ax.legend(fontsize=8)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    raise SystemExit(main())
