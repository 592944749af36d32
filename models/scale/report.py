"""The outputs of ``ppl scale``: the accuracy table, the JSON file and the plot."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Optional

import numpy as np

from ppl_models.outputs import atomic_path, write_text_atomic
from ppl_models.scale.job import ScaleResults, wilson

__all__ = ["format_table", "write_json", "plot", "summary", "X_AXES"]

#: What the compute rows of the table and the plot's x-axis show (``ppl scale --x``).
X_AXES = ("budget", "tokens", "flops")
_PAIRED_REFERENCE = "particle_filter"


def _fmt_tokens(x: float) -> str:
    return f"{x / 1000:.1f}k" if x >= 1000 else f"{x:.0f}"


def _reward_label(cfg) -> str:
    """The reward, with the options that change what it or the particle filter does."""
    if getattr(cfg, "data", None):
        label = f"{cfg.prm_type} from {os.path.basename(os.path.normpath(cfg.prm_checkpoint))}"
    else:
        label = cfg.prm + (f" (noise {cfg.prm_noise:g})" if cfg.prm.startswith("noisy") else "")
    if cfg.prm_checkpoint and cfg.prm in ("learned", "noisy") and not getattr(cfg, "data", None):
        label += f" from {os.path.basename(os.path.normpath(cfg.prm_checkpoint))}"
    pf = [f"tau {cfg.tau:g}"] if cfg.tau != 1.0 else []
    pf += [f"{cfg.pf_weighting} weights"] if cfg.pf_weighting != "softmax" else []
    pf += [f"{cfg.pf_select} answer"] if cfg.pf_select != "argmax" else []
    pf += [f"{cfg.pf_resampling} resampling"] if getattr(cfg, "pf_resampling", "multinomial") != "multinomial" else []
    return label + (f"; particle filter {', '.join(pf)}" if pf and "particle_filter" in cfg.methods else "")


def _fmt_flops(x: float) -> str:
    return f"{x:.3g}"


def _check_x(x: str) -> None:
    if x not in X_AXES:
        raise ValueError(f"x: expected one of {X_AXES}, got {x!r}")


def format_table(res: ScaleResults, x: str = "budget") -> str:
    """Accuracy with 95% intervals per method (rows) and budget (columns); the paired tests of
    every method against the particle filter (:func:`ppl_models.scale.compare.paired_tests`);
    then the compute spent: generated tokens (``x="budget"`` or ``"tokens"``) or FLOPs, generator
    and reward together (``x="flops"``), and the reward-model calls."""
    _check_x(x)
    budgets = list(res.config.budgets)
    n = res.num_problems
    name_w = max([len("coverage (pass@B)")] + [len(m) for m in res.methods]) + 2
    col_w = 17
    head = "method".ljust(name_w) + "".join(f"B={b}".rjust(col_w) for b in budgets)
    what = (f"problems of {os.path.basename(res.config.data)}" if getattr(res.config, "data", None)
            else f"{res.config.difficulty} test problems")
    lines = [f"accuracy on {n} {what}, 95% Wilson intervals "
             f"(reward: {_reward_label(res.config)}; temperature {res.config.temperature})", head, "-" * len(head)]

    def row(name, bs, correct):
        cells = []
        for b in budgets:
            if b in bs:
                k = correct[bs.index(b)]
                lo, hi = wilson(k, n)
                cells.append(f"{k / n:.2f} [{lo:.2f},{hi:.2f}]".rjust(col_w))
            else:
                cells.append("-".rjust(col_w))
        return name.ljust(name_w) + "".join(cells)

    for m, c in res.methods.items():
        lines.append(row(m, list(c.budgets), list(c.correct)))
    lines.append(row("coverage (pass@B)", list(res.coverage["budgets"]), list(res.coverage["correct"])))
    aucs = [a for a in res.reward_auc if a is not None]
    if aucs:
        lines.append(f"reward model within a problem: AUC {np.mean(aucs):.2f} of its final scores, right against "
                     f"wrong rollouts, mean over the {len(aucs)} problems whose pool has both")
    tests = paired(res)
    if tests:
        lines.append("")
        lines.append(f"paired against {_PAIRED_REFERENCE} on the same problems: accuracy difference "
                     "(method minus it), exact McNemar p-value")
        lines.append(head)
        lines.append("-" * len(head))
        for m, by_budget in tests.items():
            cells = [(f"{by_budget[b]['difference']:+.2f} p={by_budget[b]['p_value']:.2f}" if b in by_budget else "-")
                     .rjust(col_w) for b in budgets]
            lines.append(m.ljust(name_w) + "".join(cells))
    lines.append("")
    if x == "flops":
        lines.append("FLOPs per problem (mean; generator and reward model, 2 x parameters per token read)")
    else:
        lines.append("generated tokens per problem (mean; one rollout = "
                     f"{res.tokens_per_rollout:.0f} tokens)")
    lines.append(head)
    lines.append("-" * len(head))
    for m, c in res.methods.items():
        bs = list(c.budgets)
        vals, fmt = (c.flops, _fmt_flops) if x == "flops" else (c.generated_tokens, _fmt_tokens)
        cells = [(fmt(vals[bs.index(b)]) if b in bs else "-").rjust(col_w) for b in budgets]
        lines.append(m.ljust(name_w) + "".join(cells))
    lines.append("")
    lines.append("reward-model calls per problem (mean)")
    for m, c in res.methods.items():
        bs = list(c.budgets)
        cells = [(f"{c.prm_calls[bs.index(b)]:.0f}" if b in bs else "-").rjust(col_w) for b in budgets]
        lines.append(m.ljust(name_w) + "".join(cells))
    if res.bounds:
        lines += ["", format_bounds(res.bounds)]
    lines.append(f"\n{res.seconds:.0f} s in all")
    return "\n".join(lines)


def format_bounds(bounds: dict) -> str:
    """The ``--bounds`` table: per filter, the mean gap between the conditional-SMC upper and the
    SMC lower bound on log Z (95% bootstrap interval over problems), the variance of log Z-hat
    and the weight on right answers."""
    first = next(iter(bounds.values()))
    lines = [f"log Z bounds, target: sampler x final reward score; N={first['num_particles']}, {first['runs']} SMC and "
             f"{first['runs']} conditional SMC runs per problem (gap = upper - lower, 0 for exact inference)",
             f"{'filter':<12}{'gap [95% CI]':>26}{'var log Z':>12}{'accuracy':>10}"]
    for name, b in bounds.items():
        lo, hi = b["gap_ci95"]
        lines.append(f"{name:<12}" + f"{b['gap']:.3f} [{lo:.3f},{hi:.3f}]".rjust(26) + f"{b['var_log_z']:>12.3f}"
                     f"{b['accuracy']:>10.2f}")
    return "\n".join(lines)


def paired(res: ScaleResults) -> dict:
    """:func:`~ppl_models.scale.compare.paired_tests` of every method against the particle filter,
    at the budgets where both have every problem (``{}`` without a particle filter)."""
    from ppl_models.scale.compare import paired_tests

    return paired_tests(res.solved, _PAIRED_REFERENCE)


def summary(res: ScaleResults, reference: str = "best_of_n", method: str = "particle_filter") -> dict:
    """Where ``method`` first reaches ``reference``'s accuracy at its largest budget (with a
    paired bootstrap interval over problems of that budget ratio,
    :func:`~ppl_models.scale.compare.budget_ratio_interval`), and the budgets at which
    ``method`` is at or above each other method."""
    from ppl_models.scale.compare import budget_ratio_interval

    out: dict = {}
    if reference in res.methods and method in res.methods:
        ref, m = res.methods[reference], res.methods[method]
        if ref.budgets and m.budgets:
            target = ref.correct[-1]
            first = next((b for b, k in zip(m.budgets, m.correct) if k >= target), None)
            out["reference"] = {"method": reference, "budget": ref.budgets[-1], "accuracy": target / res.num_problems}
            out["first_budget_reaching_reference"] = first
            out["budget_ratio"] = (ref.budgets[-1] / first) if first else None
            full = {k: v for k, v in res.solved.items() if k in (reference, method)}
            if len(full) == 2 and all(full[k] for k in full) and max(full[reference]) == ref.budgets[-1]:
                out["budget_ratio_interval"] = budget_ratio_interval(full, reference, method)
    if method in res.methods:
        m = res.methods[method]
        at_or_above = {}
        for other, c in res.methods.items():
            if other == method:
                continue
            common = [b for b in m.budgets if b in c.budgets and b >= 4]
            at_or_above[other] = [b for b in common
                                  if m.correct[m.budgets.index(b)] >= c.correct[c.budgets.index(b)]]
        out["budgets_at_or_above"] = at_or_above
    return out


def write_json(res: ScaleResults, path, meta: Optional[dict] = None) -> Path:
    """Write :meth:`ScaleResults.to_json` (plus :func:`summary`, and ``meta``:
    :func:`ppl_models.outputs.run_meta`) to ``path``, atomically."""
    obj = res.to_json()
    obj["summary"] = summary(res)
    obj["paired"] = {"reference": _PAIRED_REFERENCE, "test": "exact McNemar", "tests": paired(res)}
    if meta is not None:
        obj["meta"] = meta
    return write_text_atomic(path, json.dumps(obj, indent=2) + "\n")


def plot(res: ScaleResults, path, x: str = "budget") -> Path:
    """Accuracy against budget (log2 axis), generated tokens or FLOPs (``x``; log axes), one line
    per method with its 95% band, and the coverage of the rollout pool (pass@B) dashed (against
    budget, or the tokens of that many rollouts)."""
    _check_x(x)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(os.fspath(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    n = res.num_problems
    fig, ax = plt.subplots(figsize=(9.0, 4.8))
    for m, c in res.methods.items():
        if not c.budgets:
            continue
        b = np.asarray({"budget": c.budgets, "tokens": c.generated_tokens, "flops": c.flops}[x], float)
        acc = np.asarray(c.correct, float) / n
        lo, hi = np.array([wilson(k, n) for k in c.correct]).T
        (line,) = ax.plot(b, acc, marker="o", lw=1.8, label=m)
        ax.fill_between(b, lo, hi, color=line.get_color(), alpha=0.07, lw=0)
    cb = np.asarray(res.coverage["budgets"], float)
    if x != "flops":  # coverage has no FLOPs of its own: it is the pool's, before any selection
        cx = cb if x == "budget" else cb * res.tokens_per_rollout
        ax.plot(cx, np.asarray(res.coverage["correct"], float) / n, ls="--", color="0.4", lw=1.2,
                label="coverage (pass@B)")
    if x == "budget":
        ax.set_xscale("log", base=2)
        ax.set_xticks(list(res.config.budgets))
        ax.set_xticklabels([str(b) for b in res.config.budgets])
    else:
        ax.set_xscale("log")
    ax.set_xlabel({"budget": "budget (full rollouts)", "tokens": "generated tokens per problem",
                   "flops": "FLOPs per problem (generator + reward)"}[x])
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1)
    ax.set_title(f"{res.config.difficulty} arithmetic chains, {n} problems, reward: {_reward_label(res.config)}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)
    return path
