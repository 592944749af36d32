"""``ppl analyze RESULTS``: scaling-law analysis of per-sample results or of ``ppl scale`` JSON.

Wired into ``ppl_models.cli.SUBCOMMANDS["analyze"]``.

For a CSV (``problem_id, sample, correct[, accepted][, tokens][, task_type]``) it prints the
pass@k curve with an interval over problems, the Beta–Binomial coverage curve with credible
bands (extrapolated beyond the samples drawn), the exp(a k^b) coverage law, the verifier ceiling
and optimal K (with ``accepted``), the saturation fit and budget, and a compute-optimal
allocation across difficulty bins. For ``ppl scale`` JSON it fits the saturation law per method,
recommends the best method per budget, compares methods at matched generated tokens, and — when
the file has the per-problem block — allocates method and budget per difficulty bin (Snell et
al. 2024). Plots go to ``--plots DIR``; ``--json PATH`` writes everything as JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Optional

import numpy as np

__all__ = ["setup", "run", "analyze_samples", "samples_report", "render_samples", "analyze_scale", "scale_report",
           "render_scale", "matched_tokens", "scale_allocation", "scale_budget_ratios"]


def setup(parser: argparse.ArgumentParser) -> None:
    """Scaling-law analysis (pass@k, coverage, verifier ceiling, saturation, allocation) of results."""
    parser.add_argument("results", metavar="RESULTS",
                        help="per-sample CSV (problem_id, sample, correct[, accepted, tokens, "
                             "task_type]) or the JSON written by `ppl scale --json`")
    parser.add_argument("--json", dest="json_path", metavar="PATH",
                        help="write all curves and fits as JSON to PATH")
    parser.add_argument("--plots", metavar="DIR",
                        help="directory for PNG plots (default: RESULTS without suffix + "
                             "'_plots')")
    parser.add_argument("--no-plots", action="store_true", help="write no plots")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing --json file or plots folder (default: refuse, before any compute)")
    parser.add_argument("--level", type=float, default=0.9,
                        help="probability of credible bands and of the pass@k interval "
                             "(default 0.9)")
    parser.add_argument("--eps", type=float, default=1e-3,
                        help="saturation: stop when one more sample gains less than EPS "
                             "(default 1e-3)")
    parser.add_argument("--saturation", choices=("mixture", "single"), default="mixture",
                        help="saturation form: F_max (1 - E[(1-p)^N]) with p ~ Beta over problems "
                             "(mixture: problems of mixed difficulty), or one rate p for all problems "
                             "(single) (default mixture)")
    parser.add_argument("--max-k", type=int, default=None,
                        help="extrapolate coverage up to this k (default 16 x the samples per "
                             "problem)")
    parser.add_argument("--value-correct", type=float, default=1.0,
                        help="verifier utility of an accepted correct answer (default 1)")
    parser.add_argument("--value-false-positive", type=float, default=-1.0,
                        help="verifier utility of an accepted wrong answer, <= 0 (default -1)")
    parser.add_argument("--budget", "--total-budget", dest="budget", type=float, default=None,
                        help="allocation: average budget per problem (default: the samples per "
                             "problem of a CSV; the median budget of `ppl scale` JSON)")
    parser.add_argument("--bins", type=int, default=5, help="allocation: difficulty bins (5)")
    parser.add_argument("--verifier-per-type", action="store_true",
                        help="verifier model with a true-positive rate and specificity per "
                             "task_type (default: one pair shared by all types)")
    parser.add_argument("--zero-inflated", action="store_true",
                        help="coverage model with a fraction of unsolvable problems")
    parser.add_argument("--method", choices=("nuts", "tempered_smc"), default="nuts",
                        help="posterior inference algorithm (default nuts)")
    parser.add_argument("--chains", type=int, default=2, help="NUTS chains (default 2)")
    parser.add_argument("--draws", type=int, default=500,
                        help="NUTS warm-up and kept draws per chain (default 500)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.set_defaults(func=run)


def _fmt_iv(d, digits=3):
    m = d.get("mean", d.get("median"))
    return f"{m:.{digits}f} [{d['ci_low']:.{digits}f}, {d['ci_high']:.{digits}f}]"


def _table(rows, header):
    w = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    line = lambda r: "  ".join(str(x).rjust(n) for x, n in zip(r, w))  # noqa: E731
    return "\n".join([line(header)] + [line(r) for r in rows])


def _saturation_formula(form: str) -> str:
    return ("F(N) = F_max (1 - E[(1-p)^N]), p ~ Beta(mean p, concentration kappa) over problems"
            if form == "mixture" else "F(N) = F_max (1 - (1-p)^N)")


def _saturation_params(s: dict) -> str:
    return (f"F_max = {_fmt_iv(s['f_max'])}, p = {_fmt_iv(s['p'])}"
            + (f", kappa = {_fmt_iv(s['kappa'])}" if "kappa" in s else ""))


def _infer_options(args):
    if args.method == "nuts":
        return {"num_chains": args.chains, "num_warmup": args.draws, "num_samples": args.draws}
    return {}


def analyze_samples(table, args, out=print) -> tuple[dict, dict]:
    """The CSV analysis: :func:`samples_report` (compute), then :func:`render_samples` (text);
    returns ``(report_dict, curves_for_plots)``."""
    report, plots = samples_report(table, args)
    render_samples(report, out)
    return report, plots


def samples_report(table, args) -> tuple[dict, dict]:
    """The CSV analysis as a plain dict (what ``--json`` writes and :func:`render_samples` prints)
    and the curves for the plots; prints nothing."""
    import jax

    from ppl_models.scaling.allocation import allocate_from_posterior
    from ppl_models.scaling.coverage import fit_beta_binomial, fit_power_law_to_pass_at_k
    from ppl_models.scaling.passk import pass_at_k_curve
    from ppl_models.scaling.saturation import fit_saturation
    from ppl_models.scaling.verifiers import fit_verifier, verifier_data

    key = jax.random.key(args.seed)
    k_bb, k_pl, k_ver, k_sat = jax.random.split(key, 4)
    opts = dict(method=args.method, **_infer_options(args))
    level = args.level
    n, c = table.counts()
    report: dict = {"input": {"kind": "samples", "problems": table.num_problems, "samples": int(n.sum()),
                              "samples_per_problem": {"min": int(n.min()), "max": int(n.max())},
                              "correct": int(c.sum())}, "level": level}
    plots: dict = {}

    # pass@k: the unbiased estimator averaged over problems.
    pk = pass_at_k_curve(n, c, level=level)
    report["pass_at_k"] = pk.to_dict()
    plots["pass_at_k"] = pk

    # Beta-Binomial coverage, extrapolated.
    max_k = args.max_k or 16 * int(n.max())
    kx = np.unique(np.round(np.geomspace(1, max_k, 40)).astype(np.int64))
    bb = fit_beta_binomial(n, c, key=k_bb, zero_inflated=args.zero_inflated, **opts)
    bench, popu = bb.coverage(kx, level=level), bb.coverage(kx, population=True, level=level)
    show = sorted(set([k for k in (1, 10, 100, 1000, 10000) if k <= max_k] + [max_k]))
    report["coverage_beta_binomial"] = {"parameters": bb.summary(level), "zero_inflated": bool(args.zero_inflated),
                                        "benchmark": bench.to_dict("k"), "population": popu.to_dict("k"),
                                        "at": bb.coverage(show, level=level).to_dict("k")}
    plots["beta_binomial"] = bench

    # The exp(a k^b) law.
    try:
        pl = fit_power_law_to_pass_at_k(pk, key=k_pl, **opts)
        band = pl.coverage(kx, level=level)
        report["coverage_power_law"] = {"parameters": pl.summary(level), "curve": band.to_dict()}
        plots["power_law"] = band
    except ValueError as e:
        report["coverage_power_law"] = {"error": str(e)}

    # Imperfect verifier.
    if table.accepted is not None:
        groups = table.task_type if table.task_type is not None else table.problem
        vd = verifier_data(groups, table.correct, table.accepted)
        vf = fit_verifier(vd, key=k_ver, per_type=args.verifier_per_type, **opts)
        ceil = vf.ceiling(level)
        kopt = vf.optimal_k(level, value_correct=args.value_correct,
                            value_false_positive=args.value_false_positive)
        Ks = np.arange(0, 33)
        util = vf.utility(Ks, level=level, value_correct=args.value_correct,
                          value_false_positive=args.value_false_positive)
        accb = vf.accuracy(Ks[1:], level=level)
        report["verifier"] = {"parameters": vf.summary(level), "ceiling": ceil,
                              "optimal_k": kopt, "utility": util.to_dict("K"),
                              "accuracy": accb.to_dict("K"),
                              "types": "task_type" if table.task_type is not None else "problem",
                              "value_correct": args.value_correct,
                              "value_false_positive": args.value_false_positive,
                              "per_type": args.verifier_per_type}
        if args.verifier_per_type:
            report["verifier"]["type_rates"] = vf.type_rates(level)
        plots["verifier"] = (util, accb, ceil)

    # Saturation of coverage.
    # The pass@k points share their problems: their over-problem errors move together and say
    # little about the curve's shape, so the fit's own noise scale absorbs the misfit instead.
    sat = fit_saturation(pk.k, pk.estimate, 0.0, key=k_sat, mixture=args.saturation == "mixture", **opts)
    report["saturation"] = {"fitted_to": "pass_at_k (noise scale fitted)", "form": args.saturation,
                            "parameters": sat.summary(level), "eps": args.eps,
                            "budget": sat.budget(args.eps, level), "curve": sat.curve(kx, level).to_dict("N")}
    plots["saturation"] = sat.curve(kx, level)

    # Allocation across difficulty bins.
    total = args.budget if args.budget is not None else float(n.min())
    budgets = np.unique(np.concatenate([[0], 2 ** np.arange(0, int(np.log2(max(total, 1) * 8)) + 1)]))
    try:
        alloc, _ = allocate_from_posterior(bb, budgets, total, num_bins=args.bins, level=level)
        labels = [f"q{b + 1} ({'hardest' if b == 0 else 'easiest' if b == args.bins - 1 else ''})"
                  .replace(" ()", "") for b in range(args.bins)]
        report["allocation"] = {"total_budget_per_problem": total, "budgets": budgets.tolist(),
                                "objective": "coverage with a perfect checker",
                                **alloc.to_dict(["repeated_sampling"], labels)}
    except ValueError as e:
        report["allocation"] = {"error": str(e)}
    return report, plots


def render_samples(report: dict, out=print) -> None:
    """The text report of :func:`samples_report`'s dict."""
    level, inp = report["level"], report["input"]
    spp = inp["samples_per_problem"]
    out(f"{inp['problems']} problems, {inp['samples']} samples ({spp['min']}-{spp['max']} per problem), "
        f"{inp['correct']} correct")
    pk = report["pass_at_k"]
    out(f"\npass@k (unbiased estimator, mean over problems; {level:.0%} t-interval over problems)")
    out(_table([(int(k), f"{e:.4f}", f"[{lo:.4f}, {hi:.4f}]")
                for k, e, lo, hi in zip(pk["k"], pk["estimate"], pk["ci_low"], pk["ci_high"])],
               ("k", "pass@k", "interval")))
    bb = report["coverage_beta_binomial"]
    out("\nBeta-Binomial coverage model: p_i ~ Beta(alpha, beta)"
        + (" with an unsolvable fraction" if bb["zero_inflated"] else ""))
    for name, d in bb["parameters"].items():
        out(f"  {name:>14s} = {_fmt_iv(d)}")
    at = bb["at"]
    out(_table([(int(k), f"{m:.4f}", f"[{lo:.4f}, {hi:.4f}]")
                for k, m, lo, hi in zip(at["k"], at["mean"], at["ci_low"], at["ci_high"])],
               ("k", "coverage", f"{level:.0%} band")))
    pl = report["coverage_power_law"]
    if "error" in pl:
        out(f"\ncoverage law exp(a k^b): not fitted ({pl['error']})")
    else:
        s, band = pl["parameters"], pl["curve"]
        out(f"\ncoverage law exp(a k^b): a = {_fmt_iv(s['a'])}, b = {_fmt_iv(s['b'])}")
        out(f"  extrapolated coverage at k={band['k'][-1]}: {band['mean'][-1]:.4f} "
            f"[{band['ci_low'][-1]:.4f}, {band['ci_high'][-1]:.4f}]")
    vf = report.get("verifier")
    if vf is not None:
        s = vf["parameters"]
        if vf["per_type"]:
            out(f"\nverifier, rates per type: population mean true-positive rate "
                f"{_fmt_iv(s['c_mean'])}, specificity {_fmt_iv(s['s_mean'])}")
            tr = vf["type_rates"]
            if len(tr) <= 20:
                out(_table([(name, _fmt_iv(d["r"]), _fmt_iv(d["c"]), _fmt_iv(d["s"]))
                            for name, d in tr.items()], ("type", "r", "c", "s")))
        else:
            out(f"\nverifier: true-positive rate c = {_fmt_iv(s['c'])}, specificity s = "
                f"{_fmt_iv(s['s'])}")
        kopt = vf["optimal_k"]
        out(f"  accuracy ceiling of resampling until accepted A_inf = {_fmt_iv(vf['ceiling'])}")
        out(f"  optimal attempts K (V_c={vf['value_correct']}, V_fp={vf['value_false_positive']}): "
            f"median {kopt['median']:g}, {level:.0%} interval [{kopt['ci_low']:g}, "
            f"{kopt['ci_high']:g}]")
    sat = report["saturation"]
    nstar = sat["budget"]
    out(f"\nsaturation {_saturation_formula(sat['form'])} fitted to pass@k: {_saturation_params(sat['parameters'])}")
    out(f"  budget N* beyond which one more sample gains < {sat['eps']:g}: median "
        f"{nstar['median']:g} [{nstar['ci_low']:g}, {nstar['ci_high']:g}]")
    alloc = report["allocation"]
    if "error" not in alloc:
        out(f"\nallocation of {alloc['total_budget_per_problem']:g} samples per problem across "
            f"{len(alloc['bins'])} difficulty bins (posterior coverage with a perfect checker):")
        out("  " + ", ".join(f"{b['bin']}: {int(b['budget'])}" for b in alloc["bins"]))
        lo, hi = alloc["gain_ci"]
        out(f"  expected coverage {alloc['accuracy']:.4f} vs uniform N={alloc['uniform_budget']:g}: "
            f"{alloc['uniform_accuracy']:.4f}; gain {alloc['gain']:+.4f} [{lo:+.4f}, {hi:+.4f}]")


def matched_tokens(methods: dict, reference: Optional[str] = None, *,
                   tolerance: float = 0.05) -> Optional[dict]:
    """Accuracy of every method at the mean generated tokens of the reference's budgets.

    ``reference`` defaults to ``best_of_n`` (else the first method with tokens). Each method's
    accuracy is interpolated linearly in log tokens between its measured points (linearly in
    tokens if a count is 0) and is ``None`` outside its measured range: no extrapolation,
    except that a target within ``tolerance`` (relative) of the range's end takes the end's
    accuracy (methods at the same budget differ by a few tokens). Returns ``None`` when no
    method reports tokens.
    """
    with_tokens = [n for n, m in methods.items() if m.tokens is not None]
    if not with_tokens:
        return None
    if reference is None:
        reference = "best_of_n" if "best_of_n" in with_tokens else with_tokens[0]
    ref = methods[reference]
    if ref.tokens is None:
        raise ValueError(f"matched_tokens: reference {reference!r} has no tokens")
    targets = ref.tokens
    acc = {}
    for name in with_tokens:
        m = methods[name]
        order = np.argsort(m.tokens, kind="stable")
        t, a = m.tokens[order], m.accuracy[order]
        log = bool(np.all(t > 0) and np.all(targets > 0))
        x, xq = (np.log(t), np.log(targets)) if log else (t, targets)
        inside = (targets >= t[0] * (1 - tolerance)) & (targets <= t[-1] * (1 + tolerance))
        vals = np.interp(np.clip(xq, x[0], x[-1]), x, a)
        acc[name] = [float(v) if ok else None for v, ok in zip(vals, inside)]
    best = []
    for i, tok in enumerate(targets):
        cand = [(acc[n][i], n) for n in with_tokens if acc[n][i] is not None]
        a, n = max(cand)
        best.append({"tokens": float(tok), "method": n, "accuracy": a})
    return {"reference": reference, "budgets": ref.budgets.tolist(), "tokens": targets.tolist(),
            "accuracy": acc, "best": best,
            "interpolation": "linear in log(tokens) between measured points; null outside a "
                             f"method's measured range (+-{tolerance:.0%})",
            "without_tokens": [n for n in methods if n not in with_tokens]}


def scale_allocation(problems, args) -> dict:
    """Compute-optimal allocation per difficulty bin from the per-problem block of ``ppl scale``
    JSON (:func:`ppl_models.scaling.allocation.allocate_from_outcomes`); returns the report entry
    (:func:`render_scale` prints it)."""
    from ppl_models.scaling.allocation import allocate_from_outcomes

    names = list(problems.solved)
    if not names:
        return {"error": "no per-problem outcomes in 'problems.solved'"}
    budgets = np.unique(np.concatenate([b for b, _ in problems.solved.values()]))
    P = problems.num_problems
    outcomes = np.full((len(names), budgets.size, P), np.nan)
    for i, name in enumerate(names):
        b, o = problems.solved[name]
        outcomes[i, np.searchsorted(budgets, b)] = o
    baseline = "best_of_n" if "best_of_n" in names else names[0]
    total = args.budget if args.budget is not None else float(np.median(budgets))
    nb = args.bins
    try:
        alloc, tab = allocate_from_outcomes(outcomes, budgets, problems.pool_success, total,
                                            num_bins=nb, baseline_method=names.index(baseline),
                                            level=args.level, seed=args.seed)
    except ValueError as e:
        return {"error": str(e), "total_budget_per_problem": total}
    labels = [f"q{b + 1}" + (" (hardest)" if b == 0 and nb > 1 else
                             " (easiest)" if b == nb - 1 and nb > 1 else "") for b in range(nb)]
    d = alloc.to_dict(names, labels)
    g0 = int(np.searchsorted(tab.budgets, alloc.uniform_budget))
    for b, entry in enumerate(d["bins"]):
        g = int(np.searchsorted(tab.budgets, alloc.budget[b]))
        if alloc.budget[b] == 0:
            entry["method"] = None  # nothing gains here: spend no compute
        lo, hi = tab.score_range[b]
        entry.update(problems=int(tab.counts[b]),
                     pool_success=[None if np.isnan(lo) else float(lo),
                                   None if np.isnan(hi) else float(hi)],
                     accuracy=float(tab.accuracy[alloc.method[b], b, g]),
                     baseline_accuracy=float(tab.accuracy[names.index(baseline), b, g0]))
    return {"total_budget_per_problem": total, "budgets": tab.budgets.tolist(),
            "difficulty": "quantile bins of problems.pool_success (q1 hardest)",
            "baseline": baseline, "objective": "measured accuracy per (method, bin, budget)",
            "accuracy_table": {"methods": names, "bins": labels,
                               "accuracy": np.asarray(tab.accuracy).tolist()},
            **d}


def _render_allocation(a: dict, level: float, out) -> None:
    if "error" in a:
        out(f"\nallocation: not computed ({a['error']})" if "total_budget_per_problem" in a
            else "\nallocation: the per-problem block has no solved outcomes; skipped")
        return
    nan = lambda v: float("nan") if v is None else v  # noqa: E731
    rows = [(e["bin"], f"[{nan(e['pool_success'][0]):.3f}, {nan(e['pool_success'][1]):.3f}]", e["problems"],
             e["method"] or "skip", int(e["budget"]), f"{e['accuracy']:.3f}", f"{e['baseline_accuracy']:.3f}")
            for e in a["bins"]]
    base, uni = a["baseline"], a["uniform_budget"]
    out(f"\ncompute-optimal allocation (Snell et al. 2024): {a['total_budget_per_problem']:g} per problem on "
        f"average, {len(a['bins'])} bins by quantiles of pool pass@1 (the fraction of each problem's rollout pool "
        "that is right)")
    out(_table(rows, ("bin", "pool pass@1", "problems", "method", "budget", "accuracy", f"{base}@{uni:g}")))
    gi, hi = a["gain_ci"], a["heldout_gain_ci"]
    out(f"  held-out gain over uniform {base} at {uni:g} (chosen on half of each "
        f"bin, scored on the other half): {a['heldout_gain']:+.4f} [{hi[0]:+.4f}, {hi[1]:+.4f}] "
        f"({level:.0%} cross-fitted bootstrap over problems)")
    out(f"  in-sample (optimistic: chosen and scored on the same problems): accuracy "
        f"{a['accuracy']:.4f} (spends {a['spent_per_problem']:.2f} per problem) vs {a['uniform_accuracy']:.4f}; "
        f"gain {a['gain']:+.4f} [{gi[0]:+.4f}, {gi[1]:+.4f}]")


def analyze_scale(methods: dict, args, out=print, problems=None) -> tuple[dict, dict]:
    """The ``ppl scale`` JSON analysis: :func:`scale_report` (compute), then :func:`render_scale`
    (text); returns ``(report_dict, curves_for_plots)``."""
    report, plots = scale_report(methods, args, problems)
    render_scale(report, out)
    return report, plots


def scale_report(methods: dict, args, problems=None) -> tuple[dict, dict]:
    """The ``ppl scale`` JSON analysis as a plain dict: saturation per method, best method per
    budget, accuracy at matched tokens, and (with the per-problem block ``problems``, a
    :class:`~ppl_models.scaling.data.ScaleProblems`) budget ratios and the allocation per
    difficulty bin; prints nothing."""
    import jax

    from ppl_models.scaling.saturation import fit_saturation

    level = args.level
    report: dict = {"input": {"kind": "ppl scale", "methods": list(methods)}, "level": level, "methods": {}}
    plots: dict = {"methods": {}}
    keys = jax.random.split(jax.random.key(args.seed), len(methods))
    for key, (name, m) in zip(keys, methods.items()):
        entry = {"budgets": m.budgets.tolist(), "accuracy": m.accuracy.tolist()}
        if m.ci_low is not None:
            entry.update(ci_low=np.asarray(m.ci_low).tolist(), ci_high=np.asarray(m.ci_high).tolist())
        if m.tokens is not None:
            entry["tokens"] = m.tokens.tolist()
        band = None
        if m.budgets.size >= 2:
            try:
                sat = fit_saturation(m.budgets, m.accuracy, m.standard_error(0.95), key=key,
                                     method=args.method, mixture=args.saturation == "mixture",
                                     **_infer_options(args))
                entry["saturation"] = {"form": args.saturation, "parameters": sat.summary(level),
                                       "eps": args.eps, "budget": sat.budget(args.eps, level)}
                grid = np.unique(np.round(np.geomspace(1, 16 * m.budgets.max(), 40)))
                band = sat.curve(grid, level)
                entry["saturation"]["curve"] = band.to_dict("N")
            except ValueError as e:
                entry["saturation"] = {"error": str(e)}
        report["methods"][name] = entry
        plots["methods"][name] = (m, band)
    budgets = sorted({float(b) for m in methods.values() for b in m.budgets})
    best = []
    for b in budgets:
        cand = [(m.accuracy[list(m.budgets).index(b)], name) for name, m in methods.items()
                if b in list(m.budgets)]
        acc, name = max(cand)
        best.append({"budget": b, "method": name, "accuracy": float(acc)})
    report["best_method_per_budget"] = best
    mt = matched_tokens(methods)
    if mt is not None:
        report["matched_tokens"] = mt
        plots["tokens"] = True
    if problems is not None:
        ratios = scale_budget_ratios(problems, args)
        if ratios:
            report["budget_ratio"] = ratios
        report["allocation"] = scale_allocation(problems, args)
    return report, plots


def render_scale(report: dict, out=print) -> None:
    """The text report of :func:`scale_report`'s dict."""
    level = report["level"]
    for name, e in report["methods"].items():
        ci = e.get("ci_low")
        tokens = e.get("tokens")
        out(f"\n{name}:")
        out(_table([(f"{b:g}", f"{a:.4f}", "" if ci is None else f"[{e['ci_low'][i]:.4f}, {e['ci_high'][i]:.4f}]",
                     "" if tokens is None else f"{tokens[i]:g}")
                    for i, (b, a) in enumerate(zip(e["budgets"], e["accuracy"]))],
                   ("budget", "accuracy", "95% interval", "tokens")))
        sat = e.get("saturation", {})
        if "parameters" in sat:
            nb = sat["budget"]
            out(f"  saturation ({sat['form']}): {_saturation_params(sat['parameters'])}; "
                f"N*(eps={sat['eps']:g}) = {nb['median']:g} [{nb['ci_low']:g}, {nb['ci_high']:g}]")
    best = report["best_method_per_budget"]
    out("\nrecommendation (highest measured accuracy per budget):")
    out(_table([(f"{d['budget']:g}", d["method"], f"{d['accuracy']:.4f}") for d in best],
               ("budget", "method", "accuracy")))
    mt = report.get("matched_tokens")
    if mt is not None:
        ref, names = mt["reference"], list(mt["accuracy"])
        out(f"\naccuracy at matched generated tokens (mean per problem; at {ref}'s budgets, "
            "interpolated in log tokens, '-' outside a method's measured range +-5%):")
        out(_table([(f"{t:.0f}", f"{b:g}", *("-" if mt["accuracy"][n][i] is None else
                                             f"{mt['accuracy'][n][i]:.4f}" for n in names),
                     mt["best"][i]["method"])
                    for i, (t, b) in enumerate(zip(mt["tokens"], mt["budgets"]))],
                   ("tokens", f"{ref} N", *names, "best")))
    ratios = report.get("budget_ratio")
    if ratios:
        ref = ratios["reference"]
        out(f"\nbudget ratio: {ref['method']}@{ref['budget']} solves {ref['accuracy']:.4f}; the budget at which "
            f"each method first reaches that, as {ref['budget']}/budget, with a {level:.0%} paired bootstrap over "
            "problems (0: not reached at any measured budget)")
        out(_table([(name, f"{r['ratio']:g}", f"[{r['ci_low']:g}, {r['ci_high']:g}]",
                     f"{r['p_at_least']['1']:.2f}", f"{r['p_at_least']['2']:.2f}", f"{r['p_at_least']['4']:.2f}")
                    for name, r in ratios.items() if name != "reference"],
                   ("method", "ratio", "interval", "P(>=1)", "P(>=2)", "P(>=4)")))
    if "allocation" in report:
        _render_allocation(report["allocation"], level, out)


def scale_budget_ratios(problems, args, reference: str = "best_of_n") -> dict:
    """Per method, the budget at which it first reaches ``reference``'s accuracy at the
    reference's largest budget, as the ratio of the two budgets with a paired bootstrap interval
    over problems (:func:`ppl_models.scale.compare.budget_ratio_interval`), and under
    ``"reference"`` the reference's method, budget and accuracy; ``{}`` without the reference in
    the per-problem block."""
    from ppl_models.scale.compare import budget_ratio_interval

    solved = {name: {int(b): row.tolist() for b, row in zip(*problems.solved[name])} for name in problems.solved}
    if reference not in solved or len(solved) < 2:
        return {}
    res = {name: budget_ratio_interval(solved, reference, name, level=args.level, seed=args.seed)
           for name in solved if name != reference}
    ref_b = max(solved[reference])
    res["reference"] = {"method": reference, "budget": ref_b, "accuracy": float(np.mean(solved[reference][ref_b]))}
    return res


def _save(fig, path: Path) -> Path:
    import matplotlib.pyplot as plt

    from ppl_models.outputs import atomic_path

    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)
    return path


def _plot(plots: dict, outdir: Path, kind: str) -> list:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    outdir.mkdir(parents=True, exist_ok=True)
    written = []
    if kind == "samples":
        fig, ax = plt.subplots(figsize=(6.4, 4.2))
        pk = plots["pass_at_k"]
        ax.errorbar(pk.k, pk.estimate, yerr=[pk.estimate - pk.ci_low, pk.ci_high - pk.estimate],
                    fmt="o", ms=3, color="k", label="pass@k (unbiased)")
        for name, color in (("beta_binomial", "C0"), ("power_law", "C1"), ("saturation", "C2")):
            band = plots.get(name)
            if band is None:
                continue
            label = {"beta_binomial": "Beta-Binomial coverage", "power_law": "exp(a k^b)",
                     "saturation": "saturation F(N)"}[name]
            ax.plot(band.x, band.mean, color=color, label=label)
            ax.fill_between(band.x, band.lo, band.hi, color=color, alpha=0.2)
        ax.set_xscale("log")
        ax.set_xlabel("k (samples)")
        ax.set_ylabel("coverage")
        ax.legend()
        written.append(_save(fig, outdir / "coverage.png"))
        if "verifier" in plots:
            util, accb, ceil = plots["verifier"]
            fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4))
            a1.plot(util.x, util.mean, color="C0")
            a1.fill_between(util.x, util.lo, util.hi, color="C0", alpha=0.2)
            a1.set_xlabel("attempts K")
            a1.set_ylabel("expected utility U(K)")
            a2.plot(accb.x, accb.mean, color="C1", label="resample until accepted")
            a2.fill_between(accb.x, accb.lo, accb.hi, color="C1", alpha=0.2)
            a2.axhline(ceil["mean"], color="k", ls="--", label="ceiling A_inf")
            a2.axhspan(ceil["ci_low"], ceil["ci_high"], color="k", alpha=0.1)
            a2.set_xlabel("attempts K")
            a2.set_ylabel("accuracy")
            a2.legend()
            written.append(_save(fig, outdir / "verifier.png"))
    else:
        fig, ax = plt.subplots(figsize=(6.4, 4.2))
        for i, (name, (m, band)) in enumerate(plots["methods"].items()):
            color = f"C{i % 10}"
            ax.plot(m.budgets, m.accuracy, "o", color=color, label=name)
            if m.ci_low is not None:
                ax.vlines(m.budgets, m.ci_low, m.ci_high, color=color)
            if band is not None:
                ax.plot(band.x, band.mean, color=color, lw=1)
                ax.fill_between(band.x, band.lo, band.hi, color=color, alpha=0.15)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("budget")
        ax.set_ylabel("accuracy")
        ax.legend()
        written.append(_save(fig, outdir / "saturation.png"))
        if plots.get("tokens"):
            fig, ax = plt.subplots(figsize=(6.4, 4.2))
            for i, (name, (m, _)) in enumerate(plots["methods"].items()):
                if m.tokens is None:
                    continue
                color = f"C{i % 10}"
                ax.plot(m.tokens, m.accuracy, "o-", color=color, ms=3, label=name)
                if m.ci_low is not None:
                    ax.vlines(m.tokens, m.ci_low, m.ci_high, color=color, alpha=0.5)
            ax.set_xscale("log")
            ax.set_xlabel("generated tokens per problem (mean)")
            ax.set_ylabel("accuracy")
            ax.legend()
            written.append(_save(fig, outdir / "accuracy_vs_tokens.png"))
    return written


def run(args) -> int:
    """Handler of ``ppl analyze``: 0 on success, 2 on bad input."""
    from ppl_models.scaling.data import (
        InputError, read_samples_csv, read_scale_json, read_scale_problems,
    )

    path = Path(args.results)
    if not 0 < args.level < 1:
        print(f"ppl analyze: --level must be in (0, 1), got {args.level}", file=sys.stderr)
        return 2
    if args.bins < 1:
        print(f"ppl analyze: --bins must be >= 1, got {args.bins}", file=sys.stderr)
        return 2
    if args.budget is not None and not args.budget > 0:
        print(f"ppl analyze: --budget must be > 0, got {args.budget}", file=sys.stderr)
        return 2
    if args.eps <= 0 or args.value_false_positive > 0 or args.value_correct <= 0:
        print("ppl analyze: need --eps > 0, --value-correct > 0, --value-false-positive <= 0",
              file=sys.stderr)
        return 2
    from ppl_models.outputs import OutputError, check_output, jsonable, write_text_atomic

    outdir = None if args.no_plots else (Path(args.plots) if args.plots else path.with_name(path.stem + "_plots"))
    overwrite = bool(getattr(args, "overwrite", False))
    try:  # every output path, before any compute
        if args.json_path:
            check_output(args.json_path, "--json", overwrite=overwrite)
        if outdir is not None:
            if outdir.exists() and not outdir.is_dir():
                raise OutputError(f"--plots {outdir}: is a file; give a folder")
            if outdir.is_dir() and any(outdir.iterdir()) and not overwrite:
                raise OutputError(f"--plots {outdir}: exists and is not empty; pass --overwrite to replace its plots")
            check_output(outdir / "plot.png", "--plots", overwrite=True)
    except OutputError as e:
        print(f"ppl analyze: {e}", file=sys.stderr)
        return 2
    try:
        if path.suffix.lower() == ".json":
            kind = "scale"
            data = read_scale_json(path)
            problems = read_scale_problems(path, data)
        else:
            kind = "samples"
            data = read_samples_csv(path)
    except InputError as e:
        print(f"ppl analyze: {e}", file=sys.stderr)
        return 2
    try:
        if kind == "samples":
            report, plots = analyze_samples(data, args)
        else:
            report, plots = analyze_scale(data, args, problems=problems)
    except KeyboardInterrupt:
        print("\nppl analyze: interrupted; nothing written", file=sys.stderr)
        return 130
    if outdir is not None:
        written = _plot(plots, outdir, kind)
        report["plots"] = [str(p) for p in written]
        print("\nplots: " + ", ".join(str(p) for p in written))
    if args.json_path:
        write_text_atomic(args.json_path, json.dumps(jsonable(report), indent=1))
        print(f"JSON: {args.json_path}")
    return 0
