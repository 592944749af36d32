"""``ppl train lm|prm``: reproduce the bundled models from scratch, deterministically.

``ppl train lm --out DIR`` trains the tiny LM with the defaults of
:class:`models.train.lm.TrainConfig` (the shipped model), saves it in Hugging Face format
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
    """Train the bundled tiny LM or process reward model from scratch (deterministic)."""
    sub = parser.add_subparsers(dest="model", metavar="MODEL")
    sub.required = True
    p = sub.add_parser("lm", help="train the tiny LM on arithmetic-chain solutions",
                       description="Train the tiny LM on arithmetic-chain solutions (defaults: the shipped model).")
    from models.train.lm import TrainConfig

    d = TrainConfig()
    p.add_argument("--out", default="ppl-lm", help="output folder (default: ./ppl-lm)")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--steps", type=int, default=d.steps, help=f"optimizer steps (default {d.steps})")
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--learning-rate", type=float, default=d.learning_rate)
    p.add_argument("--hidden-size", type=int, default=d.hidden_size)
    p.add_argument("--num-layers", type=int, default=d.num_layers)
    p.add_argument("--eval-problems", type=int, default=64,
                   help="test problems per difficulty for the model card (0: no evaluation, no card)")
    p.add_argument("--eval-samples", type=int, default=64, help="samples per problem (pass@k up to this k)")
    p.add_argument("--log", metavar="PATH", help="append the training loss as JSON lines")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)

    from models.train.prm import STEP_LABELS, PRMTrainConfig

    d2 = PRMTrainConfig()
    q = sub.add_parser("prm", help="train the process reward model on rollout labels from the LM",
                       description="Train the PRM on Monte Carlo rollout labels from the LM (defaults: the shipped PRM).")
    q.add_argument("--lm", default=None, metavar="DIR",
                   help="LM checkpoint folder whose rollouts label the prefixes (default: the bundled LM)")
    q.add_argument("--out", default="ppl-prm", help="output folder (default: ./ppl-prm)")
    q.add_argument("--seed", type=int, default=d2.seed)
    q.add_argument("--steps", type=int, default=d2.steps, help=f"optimizer steps (default {d2.steps})")
    q.add_argument("--problems", type=int, default=d2.problems_per_difficulty, help="train problems per difficulty")
    q.add_argument("--rollouts", type=int, default=d2.num_rollouts, help="LM rollouts per problem")
    q.add_argument("--continuations", type=int, default=d2.num_continuations,
                   help="continuations per prefix for its Monte Carlo label")
    q.add_argument("--step-labels", choices=STEP_LABELS, default=d2.step_labels,
                   help="prefix labels: the fraction of LM continuations that end right (default), or "
                        "exact step correctness from the task's checker (process supervision)")
    q.add_argument("--init-from-lm", action="store_true",
                   help="give the PRM the LM's architecture and start from the LM's weights")
    q.add_argument("--eval-problems", type=int, default=32, help="test problems per difficulty (0: no card)")
    q.add_argument("--eval-samples", type=int, default=32)
    q.add_argument("--log", metavar="PATH", help="append the training loss as JSON lines")
    q.add_argument("--quiet", action="store_true", help="no progress bar")
    q.set_defaults(func=run)


def _err(msg: str) -> int:
    print(f"ppl train: error: {msg}", file=sys.stderr)
    return 2


def run(args: argparse.Namespace) -> int:
    if args.model == "lm":
        return _run_lm(args)
    if args.model == "prm":
        return _run_prm(args)
    return _err(f"unknown model {args.model!r}; expected 'lm' or 'prm'.")


def _run_lm(args) -> int:
    import dataclasses

    from models.train.lm import TrainConfig, train_and_save_lm

    for name in ("steps", "batch_size", "hidden_size", "num_layers", "eval_samples"):
        if getattr(args, name) < 1:
            return _err(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}.")
    if args.eval_problems < 0:
        return _err(f"--eval-problems must be >= 0, got {args.eval_problems}.")
    if not args.learning_rate > 0:
        return _err(f"--learning-rate must be > 0, got {args.learning_rate}.")
    cfg = dataclasses.replace(TrainConfig(), seed=args.seed, steps=args.steps, batch_size=args.batch_size,
                              learning_rate=args.learning_rate, hidden_size=args.hidden_size,
                              num_layers=args.num_layers)
    command = "ppl train " + " ".join(shlex.quote(a) for a in sys.argv[2:]) if len(sys.argv) > 2 else "ppl train lm"
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

    from models.train.prm import PRMTrainConfig, train_and_save_prm

    for name in ("steps", "problems", "rollouts", "continuations", "eval_samples"):
        if getattr(args, name) < 1:
            return _err(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}.")
    if args.lm is None:
        from models.bundled import load_lm

        lm = load_lm()
    else:
        from models.lm import load_pretrained

        try:
            lm = load_pretrained(args.lm)
        except (OSError, ValueError) as e:
            return _err(f"--lm {args.lm}: {e}")
        if lm.tokenizer is None:
            return _err(f"--lm {args.lm}: the checkpoint has no tokenizer.json.")
    cfg = dataclasses.replace(PRMTrainConfig(), seed=args.seed, steps=args.steps,
                              problems_per_difficulty=args.problems, num_rollouts=args.rollouts,
                              num_continuations=args.continuations, step_labels=args.step_labels,
                              init_from_lm=args.init_from_lm)
    command = "ppl train " + " ".join(shlex.quote(a) for a in sys.argv[2:]) if len(sys.argv) > 2 else "ppl train prm"
    prm, info = train_and_save_prm(lm, cfg, args.out, command=command, progress=not args.quiet,
                                   eval_problems=args.eval_problems, eval_samples=args.eval_samples,
                                   log_file=args.log)
    h = info["history"]
    print(f"trained a {prm.config.num_params:,}-parameter PRM in {h['total_seconds'] / 60:.1f} min "
          f"({info['data']['labelled_prefixes']} labelled prefixes); saved to {args.out}")
    for name, m in info["metrics"].items():
        print(f"  {name}: " + ", ".join(f"{k}={v:.3f}" for k, v in m.items() if isinstance(v, float)))
    return 0
