r"""Training the bundled process reward model on rollouts of the tiny LM.

1. **Rollouts.** For problems of the *train* split (a mixture of difficulties), sample
   ``num_rollouts`` solutions from the LM at each of ``rollout_temperatures``.
2. **Labels.** With ``step_labels="exact"`` (process supervision, the default) the label of
   the prefix that ends at a step boundary (the newline ending step ``t``) is whether every
   step so far is right, from the task's checker. With ``step_labels="monte-carlo"``,
   ``num_continuations`` continuations are sampled from the prefix and its label is the
   fraction of them whose final answer is right — a Monte Carlo estimate of
   :math:`V(x_{1:t}) = P(\text{correct} \mid x_{1:t})` under the LM. Either way the label at
   the end-of-sequence token is the exact correctness of the finished rollout.
3. **Fit.** The PRM network (:class:`ppl_models.rewards.prm.PRMNet`) is trained with binary
   cross-entropy on these labels at the labelled positions (optax AdamW):

.. math::

    \mathcal L = -\frac{1}{|B|}\sum_{(b,i) \in B} \big[y_{bi} \log \sigma(z_{bi})
                 + (1 - y_{bi}) \log(1 - \sigma(z_{bi}))\big].

The network reads, besides the tokens, the token log-probabilities and entropies of a
*features LM* (:func:`ppl_models.rewards.prm.lm_token_features`). For the bundled PRM that is the
bundled **verifier LM** (the generator trained further, :mod:`ppl_models.train.lm`), not the
generator: a PRM that only sees the generator's own confidence cannot flag the generator's
confident mistakes (with the generator's features the within-problem AUC on ``ppl scale``'s
pools was 0.69; with the verifier's it is about 0.96).

Deterministic given the seed.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import NamedTuple, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from ppl_models.rewards.prm import PRMConfig, ProcessRewardModel, random_prm, save_prm
from ppl_models.tasks import arithmetic
from ppl_models.tasks.tokenizer import EOS, encode
from ppl_models.train.optim import warmup_adamw

from .config import STEP_LABELS, PRMTrainConfig  # noqa: F401  (re-exported)
from .evaluate import sample_solutions
from .losslog import LossLog

__all__ = ["STEP_LABELS", "PRMTrainConfig", "RolloutData", "make_rollout_data", "train_prm", "evaluate_prm", "auc",
           "expected_calibration_error", "write_prm_card", "train_and_save_prm", "prm_small_eval", "PRM_SMALL_EVAL"]


#: Prefixes (prompt included) longer than this many tokens are not labelled; it is also the
#: prompt width of the continuations that give Monte Carlo labels.
MAX_PREFIX_TOKENS = 112


class _Prompt(NamedTuple):
    prompt: str


class RolloutData(NamedTuple):
    """``tokens int32[N, L]``, ``labels f32[N, L]``, ``weights f32[N, L]`` (1 at labelled
    positions) and, for analysis, ``oracle f32[N, L]`` (exact step correctness at those positions)."""

    tokens: np.ndarray
    labels: np.ndarray
    weights: np.ndarray
    oracle: np.ndarray


def _boundaries(solution: str) -> list[str]:
    """Prefixes of ``solution`` that end with a newline (one per finished non-final line)."""
    lines = solution.split("\n")
    return ["\n".join(lines[: i + 1]) + "\n" for i in range(len(lines) - 1)]


def make_rollout_data(lm, cfg: PRMTrainConfig, key, progress: bool = True, split: str = "train",
                      width: int = 256) -> RolloutData:
    """Rollouts and their prefix labels (see the module docstring)."""
    tok = lm.tokenizer
    problems = []
    for j, (steps, mod) in enumerate(cfg.difficulties):
        d = arithmetic.Difficulty(steps, mod)
        problems += arithmetic.generate(cfg.problems_per_difficulty, d, split=split, seed=cfg.seed * 1000 + j)
    key, k_roll = jax.random.split(key)
    rollouts = [[] for _ in problems]
    for t, temp in enumerate(cfg.rollout_temperatures):
        sub = k_roll if t == 0 else jax.random.fold_in(k_roll, t)
        drawn = sample_solutions(lm, problems, cfg.num_rollouts, sub, max_new_tokens=112, batch_prompts=16,
                                 prompt_width=32, temperature=temp)
        rollouts = [r + d for r, d in zip(rollouts, drawn)]
    # every (problem, rollout, boundary) prefix, continued num_continuations times
    prefix_jobs = []
    for pi, (p, rows) in enumerate(zip(problems, rollouts)):
        for ri, sol in enumerate(rows):
            for bi, pre in enumerate(_boundaries(sol)):
                if len(encode(tok, p.prompt + pre)) <= MAX_PREFIX_TOKENS:
                    prefix_jobs.append((pi, ri, bi, pre))
    from tqdm.auto import tqdm

    # (problem, rollout, boundary) -> its Monte Carlo value, or None: the exact step label
    values = {(pi, ri, bi): None for pi, ri, bi, _ in prefix_jobs}
    chunk = 64
    starts = range(0, len(prefix_jobs), chunk) if cfg.step_labels == "monte-carlo" else ()
    bar = tqdm(starts, desc="prm labels", disable=not progress, mininterval=2.0)
    for start in bar:
        jobs = prefix_jobs[start:start + chunk]
        key, sub = jax.random.split(key)
        conts = sample_solutions(lm, [_Prompt(problems[pi].prompt + pre) for pi, _, _, pre in jobs],
                                 cfg.num_continuations, sub, max_new_tokens=112, batch_prompts=chunk,
                                 prompt_width=MAX_PREFIX_TOKENS)
        for (pi, ri, bi, pre), cs in zip(jobs, conts):
            values[(pi, ri, bi)] = float(np.mean([arithmetic.check(problems[pi], pre + c) for c in cs]))
    examples = [(p, sol, [values.get((pi, ri, bi)) for bi in range(sol.count("\n"))])
                for pi, (p, rows) in enumerate(zip(problems, rollouts)) for ri, sol in enumerate(rows)]
    return _label_rows(tok, examples, width)


def _label_rows(tok, examples, width: int) -> RolloutData:
    """Token rows of ``(problem, solution, prefix values or None)`` with labels at the step
    boundaries (a prefix's value if given, else its exact step correctness) and at the
    end-of-sequence token of a finished solution (its exact correctness)."""
    nl, eos = tok.token_to_id("\n"), tok.token_to_id(EOS)
    n = len(examples)
    tokens = np.zeros((n, width), np.int32)
    labels = np.zeros((n, width), np.float32)
    weights = np.zeros((n, width), np.float32)
    oracle = np.zeros((n, width), np.float32)
    for r, (p, sol, vals) in enumerate(examples):
        finished = arithmetic.extract_answer(sol) is not arithmetic.NO_ANSWER
        plen = len(encode(tok, p.prompt))
        ids = (encode(tok, p.prompt) + encode(tok, sol) + ([eos] if finished else []))[:width]
        tokens[r, :len(ids)] = ids
        steps_ok = arithmetic.step_correctness(p, sol)
        nl_pos = [j for j in range(plen, len(ids)) if ids[j] == nl]
        for bi, j in enumerate(nl_pos):
            if j >= MAX_PREFIX_TOKENS:  # the prefix ending here is too long to be labelled
                break
            oracle[r, j] = float(bi < len(steps_ok) and steps_ok[bi])
            v = None if vals is None else vals[bi]
            labels[r, j] = oracle[r, j] if v is None else v
            weights[r, j] = 1.0
        if finished and ids[-1] == eos:
            labels[r, len(ids) - 1] = float(arithmetic.check(p, sol))
            weights[r, len(ids) - 1] = 1.0
            oracle[r, len(ids) - 1] = float(bool(steps_ok) and steps_ok[-1])
    # trim the width to what is used
    used = int(np.max(np.nonzero(tokens.any(axis=0))[0])) + 1 if tokens.any() else 16
    used = -(-used // 16) * 16
    return RolloutData(tokens[:, :used], labels[:, :used], weights[:, :used], oracle[:, :used])


def train_prm(data: RolloutData, cfg: PRMTrainConfig, tokenizer, *, lm=None, progress: bool = True,
              log_file: Optional[str] = None) -> tuple[ProcessRewardModel, dict]:
    """Fit the PRM network to ``data`` (BCE on soft labels at labelled positions).

    ``lm`` is the LM the PRM reads (its token features) or starts from; it need not be the LM
    that drew the rollouts: the bundled PRM reads the bundled *verifier* LM, which knows the
    arithmetic better than the generator.

    With ``cfg.init_from_lm`` the network has the LM's architecture and starts from the LM's
    weights (embedding, blocks, final norm; a fresh scalar head replaces the vocabulary head):
    the LM already computes the arithmetic, so spotting a wrong step is a small change of its
    features, whereas a PRM trained from scratch would have to learn the arithmetic itself.
    With ``cfg.lm_features`` (the default) the network also reads, at every position, the frozen
    LM's log-probability of the token and the entropy of its prediction
    (:func:`ppl_models.rewards.prm.lm_token_features`): a wrong step shows up as an unlikely token.
    """
    nl, eos = tokenizer.token_to_id("\n"), tokenizer.token_to_id(EOS)
    if cfg.init_from_lm:
        if lm is None:
            raise ValueError("train_prm: init_from_lm=True needs the LM (lm=...).")
        c = lm.config
        pcfg = PRMConfig(vocab_size=c.vocab_size, hidden_size=c.hidden_size, num_layers=c.num_layers,
                         num_heads=c.num_heads, intermediate_size=c.intermediate_size,
                         max_length=c.max_position_embeddings, newline_token_id=nl, eos_token_id=eos,
                         lm_features=cfg.lm_features)
        prm = _prm_from_lm(pcfg, lm, cfg.seed, tokenizer)
    else:
        pcfg = PRMConfig(vocab_size=-(-tokenizer.get_vocab_size() // 8) * 8, hidden_size=cfg.hidden_size,
                         num_layers=cfg.num_layers, num_heads=cfg.num_heads, intermediate_size=cfg.intermediate_size,
                         newline_token_id=nl, eos_token_id=eos, lm_features=cfg.lm_features)
        if cfg.lm_features and lm is None:
            raise ValueError("train_prm: lm_features=True needs the LM (lm=...).")
        prm = random_prm(pcfg, seed=cfg.seed, tokenizer=tokenizer, lm=lm if cfg.lm_features else None)
    opt = warmup_adamw(cfg, decay_to=0.1)
    params = prm.params
    opt_state = opt.init(params)

    graphdef = prm.graphdef
    feats_all = None
    if pcfg.lm_features:  # the LM is frozen: compute its token features once for the whole data set
        from ppl_models.rewards.prm import lm_token_features

        feat_fn = jax.jit(lambda t: lm_token_features(lm, lm.params, t))
        feats_all = np.concatenate([np.asarray(feat_fn(jnp.asarray(data.tokens[i:i + 256])))
                                    for i in range(0, data.tokens.shape[0], 256)])

    def loss_fn(params, tokens, feats, labels, weights):
        pos = jnp.broadcast_to(jnp.arange(tokens.shape[1], dtype=jnp.int32), tokens.shape)
        z = nnx.merge(graphdef, params)(tokens, pos, feats)
        bce = optax.sigmoid_binary_cross_entropy(z, labels)
        return jnp.sum(bce * weights) / jnp.maximum(jnp.sum(weights), 1.0)

    @jax.jit
    def step_fn(params, opt_state, tokens, feats, labels, weights):
        loss, grads = jax.value_and_grad(loss_fn)(params, tokens, feats, labels, weights)
        updates, opt_state = opt.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    from tqdm.auto import tqdm

    rng = np.random.default_rng(cfg.seed)
    n = data.tokens.shape[0]
    perm, pos = rng.permutation(n), 0
    bar = tqdm(range(cfg.steps), desc="train prm", disable=not progress, mininterval=2.0)
    with LossLog(log_file, bar) as log:
        for i in bar:
            if pos + cfg.batch_size > n:
                perm, pos = rng.permutation(n), 0
            idx = perm[pos:pos + cfg.batch_size]
            pos += cfg.batch_size
            feats = None if feats_all is None else jnp.asarray(feats_all[idx])
            params, opt_state, loss = step_fn(params, opt_state, jnp.asarray(data.tokens[idx]), feats,
                                              jnp.asarray(data.labels[idx]), jnp.asarray(data.weights[idx]))
            if i % 50 == 0 or i == cfg.steps - 1:
                log.record(i, loss)
    return prm.with_params(params), log.history


def _prm_from_lm(pcfg: PRMConfig, lm, seed: int, tokenizer) -> ProcessRewardModel:
    """A PRM whose trunk is a copy of ``lm``'s (same architecture) and whose head is fresh."""
    from flax import nnx

    from ppl_models.rewards.prm import PRMNet

    net = PRMNet(pcfg, rngs=nnx.Rngs(seed))
    src = lm.module()
    for name in ("embed", "layers", "final_norm"):
        nnx.update(getattr(net, name), nnx.state(getattr(src, name)))
    return ProcessRewardModel(net, tokenizer=tokenizer, lm=lm if pcfg.lm_features else None)


# ------------------------------------------------------------------------------ metrics
def auc(scores, labels) -> float:
    """Area under the ROC curve: P(score of a random positive > a random negative), ties 1/2."""
    s = np.asarray(scores, np.float64)
    y = np.asarray(labels, bool)
    pos, neg = s[y], s[~y]
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    order = np.argsort(np.concatenate([pos, neg]), kind="mergesort")
    allv = np.concatenate([pos, neg])[order]
    ranks = np.empty(len(allv))
    # average ranks for ties
    i = 0
    while i < len(allv):
        j = i
        while j + 1 < len(allv) and allv[j + 1] == allv[i]:
            j += 1
        ranks[i:j + 1] = (i + j) / 2 + 1
        i = j + 1
    r = np.empty(len(allv))
    r[order] = ranks
    r_pos = r[: len(pos)].sum()
    return float((r_pos - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def expected_calibration_error(probs, outcomes, num_bins: int = 10) -> float:
    """ECE: sum over equal-width bins of (bin share) x |mean predicted - mean observed|."""
    p = np.asarray(probs, np.float64)
    y = np.asarray(outcomes, np.float64)
    bins = np.minimum((p * num_bins).astype(int), num_bins - 1)
    ece = 0.0
    for b in range(num_bins):
        m = bins == b
        if m.any():
            ece += m.mean() * abs(p[m].mean() - y[m].mean())
    return float(ece)


def evaluate_prm(prm: ProcessRewardModel, lm, difficulties: Sequence[str] = ("medium", "hard", "expert"),
                 num_problems: int = 32, num_samples: int = 32, seed: int = 4321) -> dict:
    """Quality of the PRM on fresh LM samples for *test* problems.

    Per difficulty: ``auc_final`` (final score, correct vs incorrect solutions, pooled over
    problems), ``auc_within`` (the same within each problem, averaged over problems whose
    samples are neither all right nor all wrong: what selecting among samples needs), ``ece_final``
    (calibration of the final score against correctness), ``auc_steps`` (step scores vs exact
    step correctness at every step boundary), ``pass@1`` of the LM, and ``prm_best_of_n``:
    accuracy of the solution with the highest final score among the ``num_samples``.
    """
    out = {}
    key = jax.random.key(seed)
    for name in difficulties:
        key, sub = jax.random.split(key)
        problems = arithmetic.generate(num_problems, name, split="test", seed=seed)
        texts = sample_solutions(lm, problems, num_samples, sub, batch_prompts=8)
        finals, correct, step_s, step_y, best, within = [], [], [], [], [], []
        for p, row in zip(problems, texts):
            scores = prm.step_scores([p.prompt] * len(row), row)
            fin = [arithmetic.extract_answer(t) is not arithmetic.NO_ANSWER for t in row]
            ok = [arithmetic.check(p, t) for t in row]
            row_final = []
            for t, s, f, c in zip(row, scores, fin, ok):
                sc = arithmetic.step_correctness(p, t)
                fs = float(s[-1]) if (f and len(s)) else 0.0
                row_final.append(fs)
                finals.append(fs)
                correct.append(c)
                for b in range(min(len(s), len(sc))):
                    step_s.append(float(s[b]))
                    step_y.append(bool(sc[b]))
            best.append(ok[int(np.argmax(row_final))])
            if 0 < sum(ok) < len(ok):
                within.append(auc(row_final, ok))
        out[name] = {
            "num_problems": num_problems, "num_samples": num_samples,
            "pass@1": float(np.mean(correct)),
            "auc_final": auc(finals, correct),
            "auc_within": float(np.mean(within)) if within else float("nan"),
            "ece_final": expected_calibration_error(finals, correct),
            "auc_steps": auc(step_s, step_y),
            "prm_best_of_n": float(np.mean(best)),
        }
    return out


def write_prm_card(path, cfg: PRMTrainConfig, prm: ProcessRewardModel, history: dict, data_stats: dict,
                   metrics: dict, command: str, small_eval: Optional[dict] = None) -> Path:
    path = Path(path)
    rows = "\n".join(
        f"| {name} | {m['num_problems']} x {m['num_samples']} | {m['pass@1']:.3f} | {m['auc_final']:.3f} | "
        f"{m['auc_within']:.3f} | {m['ece_final']:.3f} | {m['auc_steps']:.3f} | {m['prm_best_of_n']:.3f} |"
        for name, m in metrics.items())
    small = ""
    if small_eval is not None:
        small = (f"Small fixed evaluation used by the test suite (`ppl_models.train.prm.prm_small_eval`): "
                 f"`{json.dumps(small_eval)}`.\n")
    target = ("P(every step so far is right | prefix)" if cfg.step_labels == "exact"
              else "P(final answer correct | prefix) under the LM")
    features = ""
    if prm.config.lm_features:
        features = ("Besides the tokens, it reads at every position the log-probability that a frozen *features LM* "
                    "gives the token and the entropy of that prediction (`ppl_models.rewards.prm.lm_token_features`), "
                    "so loading it needs that LM. The bundled PRM reads the bundled **verifier LM** "
                    "(`models/bundled/verifier`: the generator trained further, which knows the arithmetic "
                    "much better); `ppl_models.bundled.load_prm()` passes it.")
    if cfg.step_labels == "exact":
        labels = ("every step-boundary prefix labelled with its exact step correctness from the task's checker "
                  "(1 if every step so far is right)")
    else:
        labels = (f"every step-boundary prefix labelled with the fraction of {cfg.num_continuations} LM "
                  "continuations that reach the right answer")
    text = f"""# Bundled process reward model (PRM) for the arithmetic chains

A {prm.config.num_params:,}-parameter causal transformer ({prm.config.num_layers} layers, width
{prm.config.hidden_size}, {prm.config.num_heads} heads) with a scalar head, scoring every prefix
of a solution at its step boundaries (newline tokens; the end-of-sequence token gives the
outcome score). Score = sigmoid(logit) = estimated {target}; at the end of a finished solution,
P(answer correct). {features}

## Training data

Rollouts of the bundled LM (`models/bundled/lm`) on *train*-split problems:
{cfg.problems_per_difficulty} problems for each (steps, modulus) in {list(cfg.difficulties)},
{cfg.num_rollouts} rollouts each at each temperature in {list(cfg.rollout_temperatures)};
{labels}; the end of a finished rollout labelled with its exact correctness. {json.dumps(data_stats)}

## Training

Binary cross-entropy on the labels, AdamW (peak {cfg.learning_rate}, {cfg.warmup_steps}
warm-up, cosine decay), {cfg.steps} steps of batch {cfg.batch_size}, seed {cfg.seed}.
Command: `{command}`. Wall time: {history.get('total_seconds', float('nan')) / 60:.1f} min on 2 CPU cores
(labels {history.get('label_seconds', float('nan')) / 60:.1f} min, fit {history.get('train_seconds', float('nan')) / 60:.1f} min).
Final loss {history['loss'][-1]:.4f}. Config: `{json.dumps(dataclasses.asdict(cfg))}`

## Quality (fresh LM samples on *test*-split problems)

`auc_final`: AUC of the final (outcome) score, correct vs incorrect solutions, pooled over
problems; `auc_within`: the same within each problem (averaged over problems with both right and
wrong samples; what choosing among one problem's samples needs); `ece_final`: expected
calibration error of the final score (10 bins); `auc_steps`: AUC of step scores against exact
step correctness; `best-of-n`: accuracy of the highest-scored of the n samples.

| difficulty | problems x samples | LM pass@1 | auc_final | auc_within | ece_final | auc_steps | best-of-n |
|---|---|---|---|---|---|---|---|
{rows}

{small}
Load with `ppl_models.bundled.load_prm()`.
"""
    (path / "MODEL_CARD.md").write_text(text)
    with open(path / "metrics.json", "w") as fh:
        json.dump({"metrics": metrics, "small_eval": small_eval, "train_config": dataclasses.asdict(cfg), "num_params": prm.config.num_params,
                   "data": data_stats, "final_loss": history["loss"][-1], "command": command,
                   "seconds": {k: v for k, v in history.items() if k.endswith("seconds")}}, fh, indent=2)
    return path / "MODEL_CARD.md"


def train_and_save_prm(lm, cfg: PRMTrainConfig, out, *, command: str = "ppl train prm", progress: bool = True,
                       eval_problems: int = 32, eval_samples: int = 32, log_file: Optional[str] = None,
                       feature_lm=None):
    """Rollout labels, fit, save (:func:`ppl_models.rewards.prm.save_prm`), evaluate, model card.

    ``lm`` draws the rollouts (and the evaluation samples); ``feature_lm`` (default ``lm``) is
    the LM whose token features the PRM reads, or whose weights it starts from."""
    t0 = time.time()
    data = make_rollout_data(lm, cfg, jax.random.key(cfg.seed), progress=progress)
    label_s = time.time() - t0
    prm, history = train_prm(data, cfg, lm.tokenizer, lm=lm if feature_lm is None else feature_lm,
                             progress=progress, log_file=log_file)
    history["label_seconds"] = label_s
    history["total_seconds"] = time.time() - t0
    out = Path(out)
    save_prm(prm, out)
    w = data.weights > 0
    stats = {"rollouts": int(data.tokens.shape[0]), "labelled_prefixes": int(w.sum()),
             "mean_label": round(float(data.labels[w].mean()), 4)}
    metrics, small = {}, None
    if eval_problems > 0:
        metrics = evaluate_prm(prm, lm, num_problems=eval_problems, num_samples=eval_samples)
        small = prm_small_eval(prm, lm)
        write_prm_card(out, cfg, prm, history, stats, metrics, command, small)
    return prm, {"history": history, "metrics": metrics, "data": stats, "small_eval": small}


#: The small fixed evaluation the test suite re-runs on the shipped PRM (with the shipped LM).
PRM_SMALL_EVAL = dict(difficulty="hard", num_problems=16, num_samples=16, seed=99)


def prm_small_eval(prm: ProcessRewardModel, lm) -> dict:
    """:func:`evaluate_prm` on :data:`PRM_SMALL_EVAL` (fixed problems and sampling key)."""
    s = PRM_SMALL_EVAL
    res = evaluate_prm(prm, lm, difficulties=(s["difficulty"],), num_problems=s["num_problems"],
                       num_samples=s["num_samples"], seed=s["seed"])[s["difficulty"]]
    return {**s, **{k: v for k, v in res.items() if k not in ("num_problems", "num_samples")}}
