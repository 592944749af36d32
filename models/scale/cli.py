"""``ppl scale``: the main job — inference-time scaling methods × budgets on the bundled task.

Runs the chosen methods of :mod:`ppl.scaling` at budgets 1, 2, 4, …, 64 (full rollouts) on test
problems of the bundled arithmetic task with the bundled LM and PRM, prints accuracy with 95%
intervals and the compute spent, and writes ``scale.json`` and ``scale.png`` (accuracy against
budget on a log2 axis) into ``--out``. ``--quick`` is a smaller run (under 3 minutes on 2 CPU
cores). Deterministic for a given ``--seed``. ``--devices N`` runs the problems data-parallel over
N devices (the same table; see :mod:`ppl_models.scale.job`).

Exit status: 0 on success, 2 on bad options.
"""

from __future__ import annotations

import argparse
import sys

__all__ = ["setup", "run", "QUICK"]

#: What ``--quick`` changes (explicit options still win).
QUICK = {"num_problems": 16, "budgets": (1, 4, 16)}


def _int_list(text: str) -> tuple:
    try:
        out = tuple(int(x) for x in text.replace(",", " ").split())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected integers separated by commas, got {text!r}") from None
    if not out:
        raise argparse.ArgumentTypeError("expected at least one integer")
    return out


def _str_list(text: str) -> tuple:
    out = tuple(x for x in text.replace(",", " ").split() if x)
    if not out:
        raise argparse.ArgumentTypeError("expected at least one name")
    return out


def setup(parser: argparse.ArgumentParser) -> None:
    """The main job: inference-time scaling methods x budgets on the bundled task, LM and PRM."""
    from ppl_models.scale.config import (DEFAULT_METHODS, METHODS, PF_RESAMPLINGS, PF_SELECTS, PF_WEIGHTINGS,
                                         PRM_KINDS, ScaleConfig)

    d = ScaleConfig()
    parser.description = (
        "Run inference-time scaling methods (best-of-N, voting, beam search, DVTS, particle filtering, "
        "particle Gibbs, power sampling, ...) at several budgets on the bundled arithmetic task; print "
        "accuracy with 95% intervals and compute; write a JSON file and a plot.")
    parser.add_argument("--quick", action="store_true",
                        help=f"a small run: {QUICK['num_problems']} problems, budgets "
                             f"{','.join(map(str, QUICK['budgets']))} (under 3 minutes on 2 CPU cores)")
    parser.add_argument("--methods", type=_str_list, default=None,
                        help=f"comma-separated methods (default: {','.join(DEFAULT_METHODS)}; "
                             f"available: {','.join(METHODS)})")
    parser.add_argument("--budgets", type=_int_list, default=None,
                        help="comma-separated budgets in full rollouts (default: 1,2,4,8,16,32,64)")
    parser.add_argument("--problems", type=int, default=None, dest="num_problems",
                        help=f"test problems (default {d.num_problems})")
    parser.add_argument("--difficulty", default=d.difficulty, help=f"task split (default {d.difficulty!r})")
    parser.add_argument("--prm", choices=PRM_KINDS, default=d.prm,
                        help="reward: the bundled learned PRM, the exact oracle, the learned PRM with logit "
                             "noise (noisy), or the oracle with logit noise (noisy-oracle; scores clipped to "
                             "[1e-4, 1 - 1e-4] first, so noise above about 4 starts to flip its verdicts)")
    parser.add_argument("--prm-noise", type=float, default=d.prm_noise,
                        help=f"logit-noise standard deviation for --prm noisy|noisy-oracle (default {d.prm_noise})")
    parser.add_argument("--temperature", type=float, default=d.temperature,
                        help=f"LM sampling temperature (default {d.temperature})")
    parser.add_argument("--tau", type=float, default=d.tau,
                        help=f"particle-filter softmax temperature on PRM log-odds (default {d.tau})")
    parser.add_argument("--pf-weighting", choices=PF_WEIGHTINGS, default=d.pf_weighting,
                        help="particle-filter weights: softmax of log-odds / tau at every step (the reference), "
                             "the ratio of consecutive scores, which targets the final score only, or the ratio "
                             f"of consecutive odds^(1/tau), which targets the final odds (default {d.pf_weighting})")
    parser.add_argument("--pf-resampling", choices=PF_RESAMPLINGS, default=d.pf_resampling,
                        help="particle-filter resampling scheme; entropic: systematic from weights flattened "
                             "while the ESS is low early in the run (its_hub's ePF), with the importance "
                             f"correction kept so the target is unchanged (default {d.pf_resampling})")
    parser.add_argument("--pf-select", choices=PF_SELECTS, default=d.pf_select,
                        help="particle-filter answer: the best-scored particle's, or the weighted vote over "
                             f"particles (default {d.pf_select})")
    parser.add_argument("--beam-width", type=int, default=d.beam_width,
                        help=f"beam search / DVTS expansion width M (default {d.beam_width})")
    parser.add_argument("--max-steps", type=int, default=d.max_steps, help=f"reasoning steps at most ({d.max_steps})")
    parser.add_argument("--checkpoint", default=None, metavar="DIR",
                        help="a local Hugging Face-format LM folder (with tokenizer.json) instead of the bundled LM")
    parser.add_argument("--prm-checkpoint", default=None, metavar="DIR",
                        help="a PRM folder written by `ppl train prm` instead of the bundled PRM")
    parser.add_argument("--prm-features-lm", default=None, metavar="DIR",
                        help="the LM whose token features --prm-checkpoint reads (default: the bundled verifier LM)")
    parser.add_argument("--devices", type=int, default=d.devices, metavar="N",
                        help="run the problems data-parallel over the first N devices (a 1-d mesh, axis "
                             "'prompts'), N at a time; 0 (default): one by one on the default device. The table "
                             "is the same as with 0. On CPU, fake devices need XLA_FLAGS="
                             "--xla_force_host_platform_device_count=N set before the command starts")
    parser.add_argument("--problems-per-device", type=int, default=d.problems_per_device, metavar="B",
                        help="with --devices: problems each device runs in one call (default 1: exactly the "
                             "one-problem program; B > 1 vmaps B problems per device, for accelerators that one "
                             "problem does not fill; slower on CPU, and may round differently in the last bits)")
    parser.add_argument("--bounds", type=int, default=d.bounds_particles, metavar="N", dest="bounds_particles",
                        help="also report, per filter (bootstrap, the reward as twist, the bundled learned twist), "
                             "the two-sided log Z bounds and their gap with N particles, for the target "
                             "sampler x final reward score (0: off, the default)")
    parser.add_argument("--bounds-runs", type=int, default=d.bounds_runs, metavar="R",
                        help=f"SMC and conditional SMC runs per problem and filter for --bounds (default {d.bounds_runs})")
    from ppl_models.scale.config import DATA_FORMATS, DTYPES, PRM_TYPES

    g = parser.add_argument_group("your own model and data (Hugging Face folders and a JSON-lines file)")
    g.add_argument("--data", default=None, metavar="FILE",
                   help="math problems (MATH/MATH500, GSM8K or AIME JSON lines) instead of the bundled task; needs "
                        "--checkpoint (your LM) and --prm-checkpoint (your reward model)")
    g.add_argument("--data-format", choices=DATA_FORMATS, default=d.data_format)
    g.add_argument("--prm-type", choices=PRM_TYPES, default=d.prm_type,
                   help="the reward checkpoint: a PRM with a classification head (Qwen2.5-Math-PRM), an LM read "
                        "as a judge (good/bad token after each step), or an outcome reward model")
    g.add_argument("--judge-tokens", nargs=2, default=list(d.judge_tokens), metavar=("GOOD", "BAD"),
                   help="an lm-judge's good and bad tokens (default + -)")
    g.add_argument("--prm-separator", default=d.prm_separator, metavar="auto|none|TOKEN",
                   help="a classifier PRM reads this token after each step in place of the step delimiter and "
                        "end-of-sequence (auto: <extra_0>, Qwen2.5-Math-PRM's convention, if its tokenizer has it)")
    g.add_argument("--chat-template", default=d.chat_template, metavar="auto|none|FILE",
                   help="the prompt's chat template: the checkpoint's (auto), none, or a jinja file")
    g.add_argument("--step-delimiter", default=d.step_delimiter,
                   help="what ends a reasoning step: one token of the tokenizer (default a blank line)")
    g.add_argument("--dtype", choices=DTYPES, default=d.dtype, help="compute dtype of the LM and the reward")
    g.add_argument("--max-new-tokens", type=int, default=None, metavar="N",
                   help="tokens per solution at most (default max-steps x max-step-tokens)")
    parser.add_argument("--max-step-tokens", type=int, default=d.max_step_tokens,
                        help=f"tokens per reasoning step at most ({d.max_step_tokens})")
    parser.add_argument("--seed", type=int, default=d.seed)
    parser.add_argument("--out", default="ppl-scale",
                        help="folder for scale.json, scale.png and samples.jsonl, one line per problem x method x "
                             "budget, streamed as problems finish (default ./ppl-scale)")
    parser.add_argument("--json", default=None, metavar="PATH", help="JSON path (default OUT/scale.json)")
    parser.add_argument("--plot", default=None, metavar="PATH", help="PNG path (default OUT/scale.png)")
    parser.add_argument("--no-plot", action="store_true", help="do not write the plot")
    parser.add_argument("--x", choices=["budget", "tokens", "flops"], default="budget",
                        help="what the compute rows of the table and the plot's x-axis show: the budget (with "
                             "generated tokens in the table), generated tokens, or FLOPs of the generator and the "
                             "reward together (default budget); a display option, free to change on --resume")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run recorded in OUT/samples.jsonl (same options): its finished problems "
                             "are not run again, and the final JSON equals an uninterrupted run's (timings aside)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing OUT/samples.jsonl, JSON or plot (default: refuse, before any compute)")
    parser.add_argument("--from-json", default=None, metavar="PATH",
                        help="run nothing: re-print the table and re-draw the plot of a saved scale.json")
    parser.set_defaults(func=run)


def _err(msg: str) -> int:
    print(f"ppl scale: error: {msg}", file=sys.stderr)
    return 2


def config_from_args(args):
    """The :class:`~ppl_models.scale.job.ScaleConfig` that ``args`` ask for (validated)."""
    import dataclasses

    from ppl_models.scale.config import DEFAULT_METHODS, ScaleConfig

    d = ScaleConfig()
    quick = bool(getattr(args, "quick", False))
    cfg = ScaleConfig(
        methods=args.methods or DEFAULT_METHODS,
        budgets=args.budgets or (QUICK["budgets"] if quick else d.budgets),
        num_problems=args.num_problems if args.num_problems is not None else (QUICK["num_problems"] if quick
                                                                               else d.num_problems),
        difficulty=args.difficulty, seed=args.seed, prm=args.prm, prm_noise=args.prm_noise,
        temperature=args.temperature, tau=args.tau,
        pf_weighting=getattr(args, "pf_weighting", d.pf_weighting), pf_select=getattr(args, "pf_select", d.pf_select),
        pf_resampling=getattr(args, "pf_resampling", d.pf_resampling),
        beam_width=args.beam_width, max_steps=args.max_steps,
        checkpoint=args.checkpoint, prm_checkpoint=args.prm_checkpoint,
        prm_features_lm=getattr(args, "prm_features_lm", None),
        devices=getattr(args, "devices", d.devices),
        problems_per_device=getattr(args, "problems_per_device", d.problems_per_device),
        bounds_particles=getattr(args, "bounds_particles", d.bounds_particles),
        bounds_runs=getattr(args, "bounds_runs", d.bounds_runs),
        max_step_tokens=getattr(args, "max_step_tokens", d.max_step_tokens),
        data=getattr(args, "data", None), data_format=getattr(args, "data_format", d.data_format),
        prm_type=getattr(args, "prm_type", d.prm_type),
        judge_tokens=tuple(getattr(args, "judge_tokens", d.judge_tokens)),
        chat_template=getattr(args, "chat_template", d.chat_template),
        prm_separator=getattr(args, "prm_separator", d.prm_separator),
        step_delimiter=getattr(args, "step_delimiter", d.step_delimiter),
        dtype=getattr(args, "dtype", d.dtype), max_new_tokens=getattr(args, "max_new_tokens", None))
    return dataclasses.replace(cfg).validate()


def _replot(args) -> int:
    import json
    from pathlib import Path

    from ppl_models.scale.job import ScaleResults
    from ppl_models.scale.report import format_table, plot

    try:
        res = ScaleResults.from_json(json.loads(Path(args.from_json).read_text(encoding="utf-8")))
    except OSError as e:
        return _err(f"--from-json {args.from_json}: cannot read ({e.strerror})")
    except ValueError as e:
        return _err(f"--from-json {args.from_json}: {e}")
    print(format_table(res, x=args.x))
    if not args.no_plot:
        print(f"wrote {plot(res, args.plot or Path(args.out) / 'scale.png', x=args.x)}")
    return 0


#: Options that change how a run is spread over devices, not its numbers (with one problem per device).
_LAYOUT = ("devices", "problems_per_device")


def _read_samples(path, cfg) -> list:
    """The records of ``samples.jsonl`` (a torn last line, from an interrupted write, is dropped),
    after checking that they were written with ``cfg``."""
    import json

    lines = path.read_text(encoding="utf-8").splitlines()
    records = []
    for n, line in enumerate(lines, 1):
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            if n == len(lines):
                break
            raise ValueError(f"--resume: {path} line {n}: not JSON") from None
    head = records[0] if records else {}
    if head.get("kind") != "config":
        raise ValueError(f"--resume: {path} does not start with the run's configuration")
    want, got = cfg.to_json(), head["config"]
    diff = sorted(k for k in set(want) | set(got) if k not in _LAYOUT and want.get(k) != got.get(k))
    if diff:
        raise ValueError(f"--resume: {path} was written with other options ({', '.join(diff)}: "
                         f"{', '.join(f'{got.get(k)!r}' for k in diff)}); resume with those, or start over with "
                         "--overwrite")
    return records[1:]


def _checkpoint_folders(cfg) -> list:
    from ppl_models import bundled

    folders = [cfg.checkpoint or bundled.LM_DIR]
    if cfg.prm in ("learned", "noisy"):
        folders += [cfg.prm_checkpoint or bundled.PRM_DIR, cfg.prm_features_lm or bundled.VERIFIER_DIR]
    return folders


def run(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from ppl_models.outputs import OutputError, check_output, run_meta, write_text_atomic

    if getattr(args, "from_json", None):
        return _replot(args)

    try:
        cfg = config_from_args(args)
    except ValueError as e:
        return _err(str(e))
    for name in ("checkpoint", "prm_checkpoint", "prm_features_lm"):
        path = getattr(args, name)
        if path is not None and not Path(path).is_dir():
            return _err(f"--{name.replace('_', '-')} {path}: not a folder")
    if cfg.data is not None and not Path(cfg.data).is_file():
        return _err(f"--data {cfg.data}: not a file")
    resume, overwrite = bool(getattr(args, "resume", False)), bool(getattr(args, "overwrite", False))
    out = Path(args.out)
    samples = out / "samples.jsonl"
    prior = []
    try:  # every output path, before any compute
        json_path = check_output(args.json or out / "scale.json", "--json", overwrite=overwrite or resume)
        png_path = None if args.no_plot else check_output(args.plot or out / "scale.png", "--plot",
                                                          overwrite=overwrite or resume)
        if resume:
            if not samples.is_file():
                return _err(f"--resume: no {samples} to continue (run without --resume first)")
            prior = _read_samples(samples, cfg)
        else:
            check_output(samples, "--out", overwrite=overwrite)
    except (OutputError, ValueError) as e:
        return _err(str(e))
    from ppl_models.scale.job import complete_problems, run_scale
    from ppl_models.scale.report import format_table, plot, write_json

    done = complete_problems(cfg, prior)
    head = {"kind": "config", "config": cfg.to_json()}
    # Keep the finished problems only (a problem cut short is run again), then append as problems finish.
    write_text_atomic(samples, "".join(json.dumps(r) + "\n" for r in [head] + [r for v in done.values() for r in v]))
    kept = [len(done)]

    with open(samples, "a", encoding="utf-8") as fh:
        def stream(records):
            fh.write("".join(json.dumps(r) + "\n" for r in records))
            fh.flush()
            kept[0] += sum(r["kind"] == "pool" for r in records)

        try:
            res = run_scale(cfg, progress=not args.quiet, done=[r for v in done.values() for r in v],
                            on_problems=stream)
        except KeyboardInterrupt:
            print(f"\nppl scale: interrupted; {kept[0]} of {cfg.num_problems} problems are kept in {samples}; "
                  "run the same command with --resume to continue", file=sys.stderr)
            return 130
        except (OSError, ValueError) as e:
            if not kept[0]:  # refused before any problem finished (setup, memory): leave no stale header behind
                samples.unlink(missing_ok=True)
            return _err(str(e))
    print(format_table(res, x=args.x))
    meta = run_meta(_checkpoint_folders(cfg), cfg.to_json())
    print(f"\nwrote {write_json(res, json_path, meta=meta)}")
    print(f"wrote {samples}")
    if png_path is not None:
        print(f"wrote {plot(res, png_path, x=args.x)}")
    return 0
