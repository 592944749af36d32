"""``ppl rank FILE``: a Bayesian ranking of models from a battle log.

Reads CSV / TSV / JSONL / JSON battle logs in the Chatbot Arena convention (columns
``model_a``, ``model_b``, ``winner`` in {``model_a``, ``model_b``, ``tie``, ``tie (bothbad)``};
optional ``judge``, ``count``/``weight``, soft outcomes ``p_model_a``/``p_model_b``/``p_tie``,
numeric covariates named with ``--covariate``; see :mod:`ppl_models.judges.data`), validates every
row before any compute, fits a Bradley–Terry-family model with NUTS (or tempered SMC), prints
a ranked table with credible intervals, and writes ``--json`` and ``--plot`` outputs.

Other inputs (``--input``): ``responses`` (per-item benchmark results, columns ``model``,
``item``, ``correct``; IRT ``--irt 1pl|2pl``, see :mod:`ppl_models.judges.irt`), ``rankings``
(full or partial rankings, column ``ranking`` as ``a>b>c``; Plackett–Luce, see
:mod:`ppl_models.judges.plackett_luce`) and ``scores`` (graded judge scores, columns
``candidate``, ``item``, ``judge``, ``score``; the judge-on-a-simplex model, see
:mod:`ppl_models.judges.scores`, with ``--prior-sweep`` for the prior-sensitivity analysis).

Exit status: 0 on success, 2 on bad input or options (the message names the line and field).
"""

from __future__ import annotations

import argparse
import sys
import time

__all__ = ["setup", "run"]


def setup(parser: argparse.ArgumentParser) -> None:
    """Bayesian ranking of models from a battle log (Bradley-Terry family with intervals)."""
    from ppl_models.judges.presets import PRESETS

    parser.add_argument("file", help="battle log: .csv, .tsv, .jsonl or .json (Arena columns model_a, model_b, winner)")
    parser.add_argument("--input", default="battles", choices=["battles", "responses", "rankings", "scores"],
                        help="battles (default: pairwise battle log); responses: per-item correctness (IRT); "
                             "rankings: full/partial rankings (Plackett-Luce); scores: graded judge scores "
                             "(judge-on-a-simplex / Dawid-Skene)")
    parser.add_argument("--irt", default="2pl", choices=["1pl", "2pl"], help="IRT model for --input responses")
    parser.add_argument("--levels", type=int, help="number of score levels for --input scores (default: max score + 1)")
    parser.add_argument("--confusion-prior", default="2,1", metavar="DIAG,OFF",
                        help="Dirichlet prior of judge confusion rows for --input scores (default 2,1)")
    parser.add_argument("--prior-sweep", action="store_true",
                        help="--input scores: refit under judge-quality priors 1,1 2,1 5,1 10,1 and report how the ranking moves")
    parser.add_argument("--format", choices=["csv", "tsv", "jsonl"], help="override the format guessed from the extension")
    parser.add_argument("--model", default="davidson", choices=sorted(PRESETS),
                        help="bt: logit, ties as half wins (Arena's likelihood, a pseudo-likelihood: its posterior "
                             "intervals come out too wide; use --bootstrap for Arena's intervals); bt-noties: ties dropped; "
                             "thurstone: probit, ties half; davidson (default): logit with Davidson ties; "
                             "rao-kupper: logit with Rao-Kupper ties; glenn-david: probit with thresholds")
    parser.add_argument("--ties", choices=["none", "half", "davidson", "rao_kupper"], help="override the tie model of --model")
    parser.add_argument("--position-bias", action="store_true", help="model a first-position (model_a) advantage")
    parser.add_argument("--judges", action="store_true", help="per-judge bias and discrimination (needs a 'judge' column)")
    parser.add_argument("--covariate", action="append", default=[], metavar="COLUMN",
                        help="numeric column entering the outcome linearly (style control); repeatable")
    parser.add_argument("--covariate-nodes", type=int, default=3, metavar="M",
                        help="summarise continuous covariates by M moment-matching nodes per pair and outcome "
                             "(one covariate: its moments up to degree 2M-1 are kept; default 3), so that the "
                             "table stays proportional to pairs x outcomes; 0: exact, about one row per battle")
    parser.add_argument("--ignore-extra-columns", action="store_true", help="skip columns that are not recognised instead of failing")
    parser.add_argument("--models", help="comma-separated list of all models (models with no battles are reported)")
    parser.add_argument("--method", default="nuts", choices=["nuts", "tempered_smc"])
    parser.add_argument("--bootstrap", type=int, default=0, metavar="R",
                        help="battle logs: instead of a posterior, percentile intervals of the maximum-likelihood "
                             "ratings refitted on R resamples of the battles (Chatbot Arena's bootstrap)")
    parser.add_argument("--chains", type=int, default=4, help="NUTS chains (vectorized)")
    parser.add_argument("--warmup", type=int, default=500)
    parser.add_argument("--samples", type=int, default=500, help="NUTS draws per chain")
    parser.add_argument("--particles", type=int, default=2000, help="tempered SMC particles")
    parser.add_argument("--prior-scale", type=float, default=2.0, help="prior sd of ratings (logit units)")
    parser.add_argument("--anchor", help="model shown at --base on the display scale (default: the mean)")
    parser.add_argument("--base", type=float, default=1000.0, help="display rating of the anchor (default 1000)")
    parser.add_argument("--latent", action="store_true", help="show latent (logit/probit) units instead of the Elo-like scale")
    parser.add_argument("--ci", type=float, default=0.95, help="credible interval mass (default 0.95)")
    parser.add_argument("--tie-level", type=float, default=0.95, help="posterior probability that separates tied groups")
    parser.add_argument("--top", type=int, help="print only the top N rows")
    parser.add_argument("--json", metavar="PATH", help="write the ranking as JSON")
    parser.add_argument("--plot", metavar="PATH", help="write the forest plot (PNG)")
    parser.add_argument("--rank-plot", metavar="PATH", help="write the rank-probability heatmap (PNG)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quiet", action="store_true", help="no progress messages on stderr")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace existing --json / --plot / --rank-plot files (default: refuse, before any compute)")
    parser.set_defaults(func=run)


def _err(msg: str) -> int:
    print(f"ppl rank: error: {msg}", file=sys.stderr)
    return 2


def run(args) -> int:
    """Handler of ``ppl rank``; returns the exit status (130 after Ctrl-C, nothing written)."""
    from ppl_models.outputs import OutputError, check_output

    try:  # every output path, before any compute
        for flag, path in (("--json", args.json), ("--plot", args.plot), ("--rank-plot", args.rank_plot)):
            if path:
                check_output(path, flag, overwrite=bool(getattr(args, "overwrite", False)))
    except OutputError as e:
        return _err(str(e))
    try:
        return _run(args)
    except KeyboardInterrupt:
        print("\nppl rank: interrupted; nothing written", file=sys.stderr)
        return 130


def _run(args) -> int:
    t0 = time.perf_counter()
    say = (lambda *a: None) if args.quiet else (lambda m: print(f"[{time.perf_counter() - t0:6.1f}s] {m}", file=sys.stderr))
    from ppl_models.judges.data import BattleLogError, aggregate, read_battles
    from ppl_models.judges.presets import PRESETS

    for name, v, lo in (("--chains", args.chains, 1), ("--samples", args.samples, 1), ("--warmup", args.warmup, 0),
                        ("--particles", args.particles, 2), ("--covariate-nodes", args.covariate_nodes, 0)):
        if v < lo:
            return _err(f"{name} must be >= {lo}, got {v}")
    if not 0 < args.ci < 1 or not 0 < args.tie_level < 1:
        return _err("--ci and --tie-level must be in (0, 1)")
    if not args.prior_scale > 0:
        return _err(f"--prior-scale must be > 0, got {args.prior_scale}")
    models = [m.strip() for m in args.models.split(",")] if args.models else None
    if args.input != "battles":
        return _run_other(args, models, say)
    say(f"reading {args.file}")
    try:
        battles = read_battles(
            args.file,
            format=args.format,
            models=models,
            covariates=args.covariate,
            extra_columns="ignore" if args.ignore_extra_columns else "error",
        )
    except BattleLogError as e:
        return _err(str(e))
    if args.judges and not battles.judges:
        return _err("--judges needs a 'judge' column in the battle log")
    comps = aggregate(battles, by_judge=args.judges,  # a judge column is read only for --judges
                      covariate_nodes=args.covariate_nodes or None)
    say(f"{battles.num_battles:g} battles, {len(battles.models)} models, {len(battles.judges)} judges "
        f"-> {comps.num_rows} aggregated rows")
    if len(comps.models) < 2:
        return _err("need at least 2 models")
    unused = comps.unused_models()
    if unused:
        print(f"ppl rank: note: models with no battles (prior-only ratings): {', '.join(unused)}", file=sys.stderr)
    parts = comps.components()
    if len(parts) > 1:
        shown = " | ".join(", ".join(p[:6]) + (f" (+{len(p) - 6})" if len(p) > 6 else "") for p in parts)
        print(f"ppl rank: warning: the comparisons fall into {len(parts)} parts that never meet ({shown}); ratings "
              "in different parts are related only through the prior", file=sys.stderr)
    if args.judges and not comps.judges:
        return _err("--judges needs a 'judge' column in the battle log")
    if args.anchor is not None and args.anchor not in comps.models:
        return _err(f"--anchor {args.anchor!r} is not a model in the log")
    opts = dict(PRESETS[args.model])
    if args.ties:
        opts["ties"] = args.ties
    if opts["ties"] == "davidson" and opts["link"] != "logit":
        return _err("Davidson ties need the logit link; use --model glenn-david or --ties rao_kupper")
    method = args.method
    if args.bootstrap:
        if args.bootstrap < 10:
            return _err(f"--bootstrap must be >= 10 resamples, got {args.bootstrap}")
        method, inf = "bootstrap", dict(num_bootstrap=args.bootstrap)
        say(f"bootstrap: the MLE refitted on {args.bootstrap} resamples of the battles, model {args.model} {opts}")
    elif args.method == "nuts":
        inf = dict(num_chains=args.chains, num_warmup=args.warmup, num_samples=args.samples)
        say(f"NUTS: {args.chains} chains x ({args.warmup} warmup + {args.samples} draws), model {args.model} {opts}")
    else:
        inf = dict(num_particles=args.particles)
        say(f"tempered SMC: {args.particles} particles, model {args.model} {opts}")
    import warnings

    import jax

    from ppl_models.judges.fit import rank

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # unused models / dropped ties are reported above
        try:
            ranking = rank(
                comps,
                key=jax.random.key(args.seed),
                method=method,
                position_bias=args.position_bias,
                judge_effects=args.judges,
                prior_scale=args.prior_scale,
                display="latent" if args.latent else "elo",
                anchor=args.anchor,
                base=args.base if not args.latent else 0.0,
                ci=args.ci,
                level=args.tie_level,
                **opts,
                **inf,
            )
        except (ValueError, FloatingPointError) as e:
            return _err(str(e))
    import json

    from ppl_models.outputs import write_text_atomic

    report = ranking.to_dict()  # compute -> plain dict -> render (text, JSON, plots)
    d = report["diagnostics"]
    say(f"inference {d['inference_s']:.1f}s, summaries {d['summary_s']:.1f}s")
    render_battles(report, str(args.file), args.top)
    if args.json:
        write_text_atomic(args.json, json.dumps(report, allow_nan=False, indent=1) + "\n")
        say(f"wrote {args.json}")
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        ranking.plot_forest(args.plot, top=args.top)
        say(f"wrote {args.plot}")
    if args.rank_plot:
        import matplotlib

        matplotlib.use("Agg")
        ranking.plot_rank_heatmap(args.rank_plot, top=args.top)
        say(f"wrote {args.rank_plot}")
    say("done")
    return 0


def render_battles(report: dict, source: str, top=None, out=print) -> None:
    """The text of ``ppl rank`` on a battle log, from the ranking's plain dict
    (:meth:`~ppl_models.judges.ranking.Ranking.to_dict`)."""
    from ppl_models.judges.ranking import render_table

    d = report["diagnostics"]
    out(f"# {source}: {d['num_battles']:g} battles, {len(report['models'])} models; {report['scale']}")
    out(render_table(report, top))
    for k, v in (report["params"] or {}).items():
        if isinstance(v.get("mean"), float):
            out(f"# {k}: {v['mean']:.3f} [{v['ci_low']:.3f}, {v['ci_high']:.3f}]")
    if "max_r_hat" in d:
        out(f"# max R-hat {d['max_r_hat']:.3f}, min bulk ESS {d['min_ess_bulk']:.0f}, "
            f"divergences {d.get('divergences', 0)}")
        if d["max_r_hat"] > 1.05:
            print("ppl rank: warning: R-hat > 1.05, run more --warmup/--samples", file=sys.stderr)
    if "num_bootstrap" in d:
        out(f"# intervals: {report['ci']:.0%} percentiles of the MLE over {d['num_bootstrap'] - d['failed']} "
            f"bootstrap refits ({d['failed']} without a finite MLE left out); not posterior credible intervals")


def _run_other(args, models, say) -> int:
    """``--input responses|rankings|scores``."""
    import json
    import warnings

    import jax

    from ppl_models.judges.data import BattleLogError

    inf = (dict(num_chains=args.chains, num_warmup=args.warmup, num_samples=args.samples)
           if args.method == "nuts" else dict(num_particles=args.particles))
    key = jax.random.key(args.seed)
    common = dict(key=key, method=args.method, ci=args.ci, level=args.tie_level, **inf)
    report = None
    say(f"reading {args.file} as {args.input}")
    try:
        if args.input == "responses":
            from ppl_models.judges.irt import rank_irt, read_responses

            data = read_responses(args.file, format=args.format, models=models,
                                  extra_columns="ignore" if args.ignore_extra_columns else "error")
            say(f"{data.num_models} models, {data.num_items} items, {data.num_rows} (model, item) rows; IRT {args.irt}")
            fit = lambda: rank_irt(data, kind=args.irt, **common)  # noqa: E731
            digits = 2
        elif args.input == "rankings":
            from ppl_models.judges.plackett_luce import rank_plackett_luce, read_rankings

            data = read_rankings(args.file, format=args.format, models=models)
            say(f"{data.num_models} models, {data.num_rows} distinct rankings; Plackett-Luce")
            fit = lambda: rank_plackett_luce(data, prior_scale=args.prior_scale,  # noqa: E731
                                             display="latent" if args.latent else "elo", **common)
            digits = 1 if not args.latent else 2
        else:
            from ppl_models.judges.scores import rank_simplex, read_scores
            from ppl_models.judges.sensitivity import DEFAULT_PRIORS, prior_sensitivity

            try:
                cp = tuple(float(v) for v in args.confusion_prior.split(","))
                if len(cp) != 2 or min(cp) <= 0:
                    raise ValueError
            except ValueError:
                return _err(f"--confusion-prior must be two positive numbers DIAG,OFF, got {args.confusion_prior!r}")
            if args.levels is not None and args.levels < 2:
                return _err(f"--levels must be >= 2, got {args.levels}")
            data = read_scores(args.file, format=args.format, num_levels=args.levels,
                               extra_columns="ignore" if args.ignore_extra_columns else "error")
            say(f"{len(data.candidates)} candidates, {data.num_items} items, {data.num_judges} judges, "
                f"{data.num_levels} levels; judge-on-a-simplex")
            digits = 3
            if args.prior_sweep:
                priors = list(DEFAULT_PRIORS) if cp in DEFAULT_PRIORS else [cp] + list(DEFAULT_PRIORS)
                fit = lambda: prior_sensitivity(data, priors, reference=priors.index(cp), **common)  # noqa: E731
            else:
                fit = lambda: rank_simplex(data, confusion_prior=cp, **common)  # noqa: E731
    except BattleLogError as e:
        return _err(str(e))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            out = fit()
        except (ValueError, FloatingPointError) as e:
            return _err(str(e))
    for w in caught:
        if "not identifiable" in str(w.message):
            print(f"ppl rank: warning: {w.message}", file=sys.stderr)
            break
    if args.input == "scores" and args.prior_sweep:
        report, ranking = out, out.rankings[out.reference]
    else:
        ranking = out
    from ppl_models.judges.ranking import render_table

    payload = ranking.to_dict()  # compute -> plain dict -> render (text, JSON, plots)
    print(f"# {args.file}: {payload['scale']}")
    print(render_table(payload, args.top, digits=digits, battles=False))
    d = payload["diagnostics"]
    if "max_r_hat" in d:
        print(f"# max R-hat {d['max_r_hat']:.3f}, min bulk ESS {d['min_ess_bulk']:.0f}, divergences {d.get('divergences', 0)}")
    if report is not None:
        print("# prior sensitivity of the ranking (judge-quality prior a_diag, a_off):")
        print(report.table())
    from ppl_models.outputs import write_text_atomic

    if args.json:
        payload["input"] = args.input
        if report is not None:
            payload["prior_sensitivity"] = report.to_dict()
        write_text_atomic(args.json, json.dumps(payload, indent=1, allow_nan=False) + "\n")
        say(f"wrote {args.json}")
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        ranking.plot_forest(args.plot, top=args.top)
    if args.rank_plot:
        import matplotlib

        matplotlib.use("Agg")
        ranking.plot_rank_heatmap(args.rank_plot, top=args.top)
    say("done")
    return 0
