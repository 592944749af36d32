"""``ppl train lm|prm|twist``: reproduce the bundled models from scratch, deterministically.

``ppl train lm --out DIR`` trains the tiny LM with the defaults of
:class:`ppl_models.train.lm.TrainConfig` (the shipped model), saves it in Hugging Face format
(``config.json``, ``model.safetensors``, ``tokenizer.json``), evaluates pass@k per difficulty on
the test split and writes ``MODEL_CARD.md`` and ``metrics.json``.

Exit status: 0 on success, 2 on bad options.
"""

from __future__ import annotations

import argparse
import shlex
import sys

__all__ = ["setup", "run"]


def setup(parser: argparse.ArgumentParser) -> None:
    """Train the bundled tiny LM, process reward model or twist from scratch (deterministic)."""
    sub = parser.add_subparsers(dest="model", metavar="MODEL")
    sub.required = True
    p = sub.add_parser("lm", help="train the tiny LM on arithmetic-chain solutions",
                       description="Train the tiny LM on arithmetic-chain solutions (defaults: the shipped model).")
    from ppl_models.train.config import SCHEDULES, TrainConfig

    d = TrainConfig()
    p.add_argument("--out", default="ppl-lm", help="output folder (default: ./ppl-lm)")
    p.add_argument("--overwrite", action="store_true", help="replace the checkpoint in a non-empty --out folder")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--steps", type=int, default=d.steps, help=f"optimizer steps (default {d.steps})")
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--learning-rate", type=float, default=d.learning_rate)
    p.add_argument("--hidden-size", type=int, default=d.hidden_size)
    p.add_argument("--num-layers", type=int, default=d.num_layers)
    p.add_argument("--warmup-steps", type=int, default=d.warmup_steps)
    p.add_argument("--schedule", choices=SCHEDULES, default=d.schedule,
                   help="learning rate after the warm-up: constant (the bundled LM) or a cosine decay to 0 "
                        "(the bundled verifier LM)")
    p.add_argument("--init-from", default=None, metavar="DIR",
                   help="continue from this LM checkpoint folder instead of random weights "
                        "(its architecture and tokenizer are kept)")
    p.add_argument("--first-step", type=int, default=d.first_step,
                   help="index of the first batch of the data stream (a continued run: the steps already taken)")
    p.add_argument("--eval-problems", type=int, default=64,
                   help="test problems per difficulty for the model card (0: no evaluation, no card)")
    p.add_argument("--eval-samples", type=int, default=64, help="samples per problem (pass@k up to this k)")
    p.add_argument("--log", metavar="PATH", help="append the training loss as JSON lines")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)

    from ppl_models.train.config import STEP_LABELS, PRMTrainConfig

    d2 = PRMTrainConfig()
    q = sub.add_parser("prm", help="train the process reward model on labelled rollouts of the LM",
                       description="Train the PRM on labelled rollouts of the LM (defaults: the shipped PRM).")
    q.add_argument("--lm", default=None, metavar="DIR",
                   help="LM checkpoint folder whose rollouts label the prefixes (default: the bundled LM)")
    q.add_argument("--features-lm", default=None, metavar="DIR",
                   help="LM checkpoint folder whose token features the PRM reads (default: the bundled verifier "
                        "LM; 'rollout' for the --lm itself)")
    q.add_argument("--lm-features", action=argparse.BooleanOptionalAction, default=d2.lm_features,
                   help="read the features LM's token log-probabilities and entropies")
    q.add_argument("--out", default="ppl-prm", help="output folder (default: ./ppl-prm)")
    q.add_argument("--overwrite", action="store_true", help="replace the checkpoint in a non-empty --out folder")
    q.add_argument("--seed", type=int, default=d2.seed)
    q.add_argument("--steps", type=int, default=d2.steps, help=f"optimizer steps (default {d2.steps})")
    q.add_argument("--problems", type=int, default=d2.problems_per_difficulty, help="train problems per difficulty")
    q.add_argument("--rollouts", type=int, default=d2.num_rollouts, help="LM rollouts per problem and temperature")
    q.add_argument("--rollout-temperatures", type=float, nargs="+", default=list(d2.rollout_temperatures),
                   metavar="T", help="sampling temperatures of the rollouts")
    q.add_argument("--continuations", type=int, default=d2.num_continuations,
                   help="continuations per prefix for its Monte Carlo label")
    q.add_argument("--step-labels", choices=STEP_LABELS, default=d2.step_labels,
                   help="prefix labels: exact step correctness from the task's checker (process supervision, "
                        "the default), or the fraction of LM continuations that end right (monte-carlo)")
    q.add_argument("--init-from-lm", action=argparse.BooleanOptionalAction, default=d2.init_from_lm,
                   help="give the PRM the features LM's architecture and start from its weights")
    q.add_argument("--eval-problems", type=int, default=32, help="test problems per difficulty (0: no card)")
    q.add_argument("--eval-samples", type=int, default=32)
    q.add_argument("--log", metavar="PATH", help="append the training loss as JSON lines")
    q.add_argument("--quiet", action="store_true", help="no progress bar")
    q.set_defaults(func=run)

    from ppl_models.train.config import TWIST_INITS, TwistTrainConfig

    d3 = TwistTrainConfig()
    w = sub.add_parser("twist", help="train a twist for twisted SMC by contrastive twist learning (CTL)",
                       description="Train a twist head (the PRM's network) by contrastive twist learning on rollouts "
                                   "of the bundled program, for the target q(x) phi(x) with phi = 1 for a right answer "
                                   "and --epsilon otherwise (defaults: the shipped twist).")
    w.add_argument("--out", default="ppl-twist", help="output folder (default: ./ppl-twist)")
    w.add_argument("--overwrite", action="store_true", help="replace the checkpoint in a non-empty --out folder")
    w.add_argument("--seed", type=int, default=d3.seed)
    w.add_argument("--difficulty", default=d3.difficulty, help=f"problem difficulty (default {d3.difficulty})")
    w.add_argument("--problems", type=int, default=d3.num_problems, help="train-split problems")
    w.add_argument("--rollouts", type=int, default=d3.num_rollouts, help="rollouts of the program per problem")
    w.add_argument("--epsilon", type=float, default=d3.epsilon, help="phi of a wrong answer, in (0, 1)")
    w.add_argument("--init", choices=TWIST_INITS, default=d3.init,
                   help="start from the bundled PRM's weights (default) or at random")
    w.add_argument("--steps", type=int, default=d3.steps, help=f"optimizer steps (default {d3.steps})")
    w.add_argument("--problems-per-batch", type=int, default=d3.problems_per_batch)
    w.add_argument("--learning-rate", type=float, default=d3.learning_rate)
    w.add_argument("--eval-problems", type=int, default=64, help="held-out test problems (0: no card)")
    w.add_argument("--log", metavar="PATH", help="append the training surrogate as JSON lines")
    w.add_argument("--quiet", action="store_true", help="no progress bar")
    w.set_defaults(func=run)


def _command(model: str) -> str:
    """The command line, for the model card."""
    return "ppl train " + " ".join(shlex.quote(a) for a in sys.argv[2:]) if len(sys.argv) > 2 else f"ppl train {model}"


def _print_metrics(metrics: dict, digits: int = 3) -> None:
    for name, m in metrics.items():
        print(f"  {name}: " + ", ".join(f"{k}={v:.{digits}f}" for k, v in m.items() if isinstance(v, float)))


def _err(msg: str) -> int:
    print(f"ppl train: error: {msg}", file=sys.stderr)
    return 2


def run(args: argparse.Namespace) -> int:
    """Handler of ``ppl train``: the output folder is checked before training (a non-empty one
    is replaced only with ``--overwrite``); Ctrl-C exits 130 without a traceback."""
    from pathlib import Path

    if args.model not in ("lm", "prm", "twist"):
        return _err(f"unknown model {args.model!r}; expected 'lm', 'prm' or 'twist'.")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        return _err(f"--out {out}: is a file; give a folder")
    if out.is_dir() and any(out.iterdir()) and not getattr(args, "overwrite", False):
        return _err(f"--out {out}: exists and is not empty; pass --overwrite to replace the checkpoint in it")
    try:
        return {"lm": _run_lm, "prm": _run_prm, "twist": _run_twist}[args.model](args)
    except KeyboardInterrupt:
        print(f"\nppl train: interrupted; no checkpoint written to {out}", file=sys.stderr)
        return 130


def _run_lm(args) -> int:
    import dataclasses

    from ppl_models.train.lm import TrainConfig, train_and_save_lm

    for name in ("steps", "batch_size", "hidden_size", "num_layers", "eval_samples"):
        if getattr(args, name) < 1:
            return _err(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}.")
    if args.eval_problems < 0:
        return _err(f"--eval-problems must be >= 0, got {args.eval_problems}.")
    if not args.learning_rate > 0:
        return _err(f"--learning-rate must be > 0, got {args.learning_rate}.")
    for name in ("warmup_steps", "first_step"):
        if getattr(args, name) < 0:
            return _err(f"--{name.replace('_', '-')} must be >= 0, got {getattr(args, name)}.")
    if args.init_from is not None:
        from pathlib import Path

        if not (Path(args.init_from) / "config.json").is_file():
            return _err(f"--init-from {args.init_from}: not an LM checkpoint folder (no config.json).")
    cfg = dataclasses.replace(TrainConfig(), seed=args.seed, steps=args.steps, batch_size=args.batch_size,
                              learning_rate=args.learning_rate, hidden_size=args.hidden_size,
                              num_layers=args.num_layers, warmup_steps=args.warmup_steps, schedule=args.schedule,
                              init_from=args.init_from, first_step=args.first_step)
    command = _command("lm")
    lm, info = train_and_save_lm(cfg, args.out, command=command, progress=not args.quiet,
                                 eval_problems=args.eval_problems, eval_samples=args.eval_samples,
                                 log_file=args.log)
    h = info["history"]
    print(f"trained {lm.config.num_params:,} parameters in {h['train_seconds'] / 60:.1f} min; "
          f"final loss {h['loss'][-1]:.4f}; saved to {args.out}")
    for name, m in info["metrics"].items():
        print(f"  {name}: " + ", ".join(f"{k}={v:.3f}" for k, v in m.items() if k.startswith("pass@")))
    return 0


def _run_prm(args) -> int:
    import dataclasses

    from ppl_models.train.prm import PRMTrainConfig, train_and_save_prm

    for name in ("steps", "problems", "rollouts", "continuations", "eval_samples"):
        if getattr(args, name) < 1:
            return _err(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}.")
    try:
        cfg = dataclasses.replace(PRMTrainConfig(), seed=args.seed, steps=args.steps,
                                  problems_per_difficulty=args.problems, num_rollouts=args.rollouts,
                                  rollout_temperatures=tuple(args.rollout_temperatures),
                                  num_continuations=args.continuations, step_labels=args.step_labels,
                                  init_from_lm=args.init_from_lm, lm_features=args.lm_features)
    except ValueError as e:
        return _err(str(e))
    from ppl_models import bundled

    lm = _load_lm_arg("--lm", args.lm, bundled.load_lm)
    if isinstance(lm, int):
        return lm
    if args.features_lm == "rollout" or not (cfg.lm_features or cfg.init_from_lm):
        feature_lm = lm  # read the rollout LM, or no LM at all
    else:
        feature_lm = _load_lm_arg("--features-lm", args.features_lm, bundled.load_verifier)
        if isinstance(feature_lm, int):
            return feature_lm
    command = _command("prm")
    prm, info = train_and_save_prm(lm, cfg, args.out, command=command, progress=not args.quiet,
                                   eval_problems=args.eval_problems, eval_samples=args.eval_samples,
                                   log_file=args.log, feature_lm=feature_lm)
    h = info["history"]
    print(f"trained a {prm.config.num_params:,}-parameter PRM in {h['total_seconds'] / 60:.1f} min "
          f"({info['data']['labelled_prefixes']} labelled prefixes); saved to {args.out}")
    _print_metrics(info["metrics"])
    return 0


def _run_twist(args) -> int:
    import dataclasses

    from ppl_models.tasks import arithmetic
    from ppl_models.train.twist import TwistTrainConfig, train_and_save_twist

    if args.eval_problems < 0:
        return _err(f"--eval-problems must be >= 0, got {args.eval_problems}.")
    if args.difficulty not in arithmetic.DIFFICULTIES:
        return _err(f"--difficulty {args.difficulty!r}: expected one of {sorted(arithmetic.DIFFICULTIES)}.")
    try:
        cfg = dataclasses.replace(TwistTrainConfig(), seed=args.seed, difficulty=args.difficulty,
                                  num_problems=args.problems, num_rollouts=args.rollouts, epsilon=args.epsilon,
                                  init=args.init, steps=args.steps, problems_per_batch=args.problems_per_batch,
                                  learning_rate=args.learning_rate)
    except ValueError as e:
        flag = str(e).split(":")[0].replace("num_", "").replace("_", "-")
        return _err(f"--{flag}: {str(e).split(':', 1)[1].strip()}")
    command = _command("twist")
    head, info = train_and_save_twist(cfg, args.out, command=command, progress=not args.quiet,
                                      eval_problems=args.eval_problems, log_file=args.log)
    h = info["history"]
    print(f"trained a {head.config.num_params:,}-parameter twist in {h['total_seconds'] / 60:.1f} min "
          f"({info['data']['rollouts']} rollouts, {info['data']['right']:.1%} right); saved to {args.out}")
    _print_metrics(info["metrics"], 4)
    return 0


def _load_lm_arg(flag: str, path, default):
    """The LM of a ``--lm``-like option (``default()`` if not given), or an exit status."""
    if path is None:
        return default()
    from ppl_models.lm import load_pretrained

    try:
        lm = load_pretrained(path)
    except (OSError, ValueError) as e:
        return _err(f"{flag} {path}: {e}")
    if lm.tokenizer is None:
        return _err(f"{flag} {path}: the checkpoint has no tokenizer.json.")
    return lm
