r"""Training a twist for the bundled task by contrastive twist learning (CTL).

The target is :math:`\sigma(x) \propto q(x)\,\varphi(x)`: :math:`q` the bundled program's sampler
(the LM at its temperature, one line per step, at most ``max_steps`` steps) and
:math:`\varphi(x) = 1` for a right final answer, :math:`\varepsilon` otherwise (the task's
checker). The optimal twist of a prefix is :math:`\psi_t(x_{1:t}) \propto
\mathbb{E}_q[\varphi(x) \mid x_{1:t}]`, about the probability that the LM, continuing the prefix,
ends right. The twist head is the bundled PRM's network (:class:`ppl_models.rewards.prm.PRMNet`,
reading the verifier LM's token features), with :math:`\log\psi_t = \log\sigma(z_i)`, its logit
at the last token :math:`i` of the prefix; because it is causal, one forward pass over a finished
rollout gives :math:`\psi_t` of all its prefixes. It starts from the PRM's weights (whose score
is the probability that every step *so far* is right, an upper bound of the target's) or at random.

**Data.** ``num_problems`` train-split problems; for each, ``num_rollouts`` draws of the program
with no potential (:math:`x^k \sim q`), their prefix lengths after every step, and
:math:`\varphi(x^k)`. The verifier's token features of every rollout are computed once.

**Objective** (:mod:`ppl.lm.twists`). The CTL gradient is
:math:`\sum_t \big(\mathbb{E}_{\pi_t^\theta} - \mathbb{E}_{\sigma}\big)[\nabla_\theta\log\psi_t^\theta]`.
Both expectations are taken over a problem's rollouts by self-normalised importance sampling from
:math:`q`: for :math:`\pi_t^\theta` the weights are those of a twisted filter without resampling
(:func:`ppl.lm.twists.pool_log_weights`: :math:`\psi_t^\theta` for an open prefix,
:math:`\varphi` for a finished one), recomputed for the current parameters at every step; for
:math:`\sigma` (the positives) they are :math:`\varphi(x^k)`, the same in expectation as the
exact samples that rejection would accept, with less noise. Adam on batches of
``problems_per_batch`` problems, gradient norm clipped to 1.

Deterministic given the seed.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from pathlib import Path
from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ppl.lm.twists import ctl_surrogate, pool_log_weights

from .losslog import LossLog

from .config import TWIST_INITS, TwistTrainConfig  # noqa: F401  (re-exported)

__all__ = ["TwistTrainConfig", "TwistPool", "make_pool", "twist_log_psi", "train_twist_head", "evaluate_twist",
           "train_and_save_twist", "write_twist_card", "TWIST_SMALL_EVAL", "twist_small_eval"]


class TwistPool(NamedTuple):
    """Rollouts of a program for CTL: ``tokens int32[P, K, L]`` (the finished buffers),
    ``ends int32[P, K, T]`` (the prefix length after each step), ``is_open bool[P, K, T]`` (the
    prefix is unfinished and fewer than ``max_steps`` steps long), ``log_phi f32[P, K]`` and
    ``correct bool[P, K]``; ``features f32[P, K, L, F]``: the features LM's token features (or
    ``None``)."""

    tokens: np.ndarray
    ends: np.ndarray
    is_open: np.ndarray
    log_phi: np.ndarray
    correct: np.ndarray
    features: Optional[np.ndarray] = None


def _rollout_fn(program, oracle, num_rollouts: int):
    from ppl.smc import resampling as rs
    from ppl.smc.loop import build_filter

    T = int(program.num_steps)
    run = build_filter(program, int(num_rollouts), rs.systematic, 0.0, keep_history=True)

    def rollouts(data, rparams, key):
        res = run(data, key)[0]
        x, h = res.particles, res.history  # no resampling: history[t, k] is rollout k after step t
        right = x.done & (jax.vmap(lambda s: oracle.log_score(rparams, s))(x) == 0.0)
        is_open = ~h.done & (h.num_steps < T)
        return x.tokens, h.length.T, is_open.T, right

    return jax.jit(rollouts)


def make_pool(setup, num_rollouts: int, epsilon: float, key, *, features_lm=None, progress: bool = True) -> TwistPool:
    """:class:`TwistPool` of ``setup`` (:func:`ppl_models.bundled.setup` with ``prm="oracle"``):
    ``num_rollouts`` draws of ``setup.program`` for each of ``setup.problems``; with
    ``features_lm``, its token features of every rollout."""
    from tqdm.auto import tqdm

    program = setup.program
    oracle0 = setup.reward_for(setup.problems[0])
    fn = _rollout_fn(program, oracle0, num_rollouts)
    rows = []
    keys = jax.random.split(key, len(setup.problems))
    for problem, prompt, k in tqdm(list(zip(setup.problems, setup.prompts, keys)), desc="twist rollouts",
                                   disable=not progress, mininterval=2.0):
        data = program.with_prompt(prompt).data
        rows.append([np.asarray(a) for a in fn(data, setup.reward_for(problem).params, k)])
    tokens, ends, is_open, right = (np.stack(c) for c in zip(*rows))
    used = -(-int(np.max(ends)) // 16) * 16
    tokens = tokens[:, :, :used]
    log_phi = np.where(right, 0.0, math.log(epsilon)).astype(np.float32)
    feats = None
    if features_lm is not None:
        from ppl_models.rewards.prm import lm_token_features

        flat = tokens.reshape(-1, used)
        feat_fn = jax.jit(lambda t: lm_token_features(features_lm, features_lm.params, t))
        feats = np.concatenate([np.asarray(feat_fn(jnp.asarray(flat[i:i + 256]))) for i in range(0, len(flat), 256)])
        feats = feats.reshape(tokens.shape + feats.shape[-1:])
    return TwistPool(tokens.astype(np.int32), ends.astype(np.int32), is_open, log_phi, right, feats)


def twist_log_psi(head, params, tokens, features, ends) -> jax.Array:
    r""":math:`\log\psi_t` ``[B, T]`` of the prefixes of ``tokens [B, L]`` of lengths ``ends [B, T]``:
    the head's log-sigmoid at each prefix's last token (one causal forward pass per row)."""
    pos = jnp.broadcast_to(jnp.arange(tokens.shape[1], dtype=jnp.int32), tokens.shape)
    z = head.apply(params, tokens, pos) if features is None else _apply_with(head, params, tokens, pos, features)
    idx = jnp.clip(ends - 1, 0, tokens.shape[1] - 1)
    return jax.nn.log_sigmoid(jnp.take_along_axis(z, idx, axis=1))


def _apply_with(head, params, tokens, pos, features):
    from flax import nnx

    return nnx.merge(head.graphdef, params)(tokens, pos, features)


def _batch_loss(head, params, tokens, features, ends, is_open, log_phi):
    """Mean over problems of the CTL surrogate of each problem's rollouts (module docstring)."""
    p, k, length = tokens.shape
    feats = None if features is None else features.reshape((p * k, length, features.shape[-1]))
    lp = twist_log_psi(head, params, tokens.reshape(p * k, length), feats, ends.reshape(p * k, -1))
    lp = lp.reshape(ends.shape)

    def one(lp_i, open_i, phi_i):
        neg_w = pool_log_weights(lp_i, open_i, phi_i)
        return ctl_surrogate(lp_i, open_i, lp_i, open_i, neg_w, pos_weights=jnp.exp(phi_i))

    return jnp.mean(jax.vmap(one)(lp, is_open, log_phi))


def _initial_head(cfg: TwistTrainConfig, prm, features_lm):
    from ppl_models.rewards.prm import random_prm

    if cfg.init == "prm":
        return prm
    return random_prm(prm.config, seed=cfg.seed, tokenizer=prm.tokenizer, lm=features_lm)


def train_twist_head(pool: TwistPool, cfg: TwistTrainConfig, prm, *, features_lm=None, progress: bool = True,
                     log_file: Optional[str] = None):
    """Fit the twist head on ``pool`` by CTL (module docstring); returns ``(head, history)``.
    ``prm`` gives the architecture (and, with ``cfg.init == "prm"``, the starting weights)."""
    from tqdm.auto import tqdm

    head = _initial_head(cfg, prm, features_lm)
    opt = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(cfg.learning_rate))
    params = head.params
    opt_state = opt.init(params)

    @jax.jit
    def step_fn(params, opt_state, tokens, features, ends, is_open, log_phi):
        loss, grads = jax.value_and_grad(lambda p: _batch_loss(head, p, tokens, features, ends, is_open, log_phi))(params)
        updates, opt_state = opt.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    rng = np.random.default_rng(cfg.seed)
    n = pool.tokens.shape[0]
    b = min(cfg.problems_per_batch, n)
    perm, at = rng.permutation(n), 0
    bar = tqdm(range(cfg.steps), desc="train twist", disable=not progress, mininterval=2.0)
    with LossLog(log_file, bar) as log:
        for i in bar:
            if at + b > n:
                perm, at = rng.permutation(n), 0
            idx = np.sort(perm[at:at + b])
            at += b
            feats = None if pool.features is None else jnp.asarray(pool.features[idx])
            params, opt_state, loss = step_fn(params, opt_state, jnp.asarray(pool.tokens[idx]), feats,
                                              jnp.asarray(pool.ends[idx]), jnp.asarray(pool.is_open[idx]),
                                              jnp.asarray(pool.log_phi[idx]))
            if i % 25 == 0 or i == cfg.steps - 1:
                if not math.isfinite(log.record(i, loss)):
                    raise FloatingPointError(f"train_twist_head: the CTL surrogate is {float(loss)} at step {i}; "
                                             "lower the learning rate")
    return head.with_params(params), log.history


def evaluate_twist(head, pool: TwistPool) -> dict:
    r"""How well :math:`\psi_t` predicts whether the rollout ends right, over the open prefixes of a
    held-out ``pool``: ``log_loss`` (binary cross-entropy of :math:`\psi_t` against the
    rollout's correctness, a proper score for :math:`P(\text{right} \mid x_{1:t})`), ``brier``,
    ``mean_psi`` and ``mean_right`` (how often the open prefixes' rollouts end right)."""
    p, k, length = pool.tokens.shape
    fn = jax.jit(lambda t, f, e: twist_log_psi(head, head.params, t, f, e))
    lps = []
    for i in range(p):
        f = None if pool.features is None else jnp.asarray(pool.features[i])
        lps.append(np.asarray(fn(jnp.asarray(pool.tokens[i]), f, jnp.asarray(pool.ends[i]))))
    lp = np.stack(lps)
    m = pool.is_open
    y = np.broadcast_to(pool.correct[:, :, None], m.shape)[m].astype(np.float64)
    psi = np.exp(lp[m].astype(np.float64))
    log1m = np.log1p(-np.minimum(psi, 1 - 1e-7))
    return {"open_prefixes": int(m.sum()), "log_loss": float(-np.mean(y * np.log(np.maximum(psi, 1e-300)) + (1 - y) * log1m)),
            "brier": float(np.mean((psi - y) ** 2)), "mean_psi": float(psi.mean()), "mean_right": float(y.mean())}


#: The small fixed evaluation the test suite re-runs on the shipped twist: rollouts of the hard
#: test split (problems and key fixed).
TWIST_SMALL_EVAL = dict(difficulty="hard", num_problems=8, num_rollouts=16, seed=99)


def twist_small_eval(head, prm, epsilon: float = 0.01) -> dict:
    """:func:`evaluate_twist` of ``head`` and of ``prm`` on :data:`TWIST_SMALL_EVAL`."""
    from ppl_models import bundled

    e = TWIST_SMALL_EVAL
    s = bundled.setup(e["num_problems"], difficulty=e["difficulty"], split="test", seed=e["seed"], prm="oracle")
    pool = make_pool(s, e["num_rollouts"], epsilon, jax.random.key(e["seed"]), features_lm=prm.lm, progress=False)
    return {**e, "twist_log_loss": evaluate_twist(head, pool)["log_loss"],
            "prm_log_loss": evaluate_twist(prm, pool)["log_loss"]}


def write_twist_card(path, cfg: TwistTrainConfig, head, history: dict, stats: dict, metrics: dict,
                     command: str, small_eval: Optional[dict] = None) -> Path:
    """``MODEL_CARD.md`` and ``metrics.json`` of a trained twist."""
    path = Path(path)
    rows = "\n".join(f"| {name} | {m['open_prefixes']} | {m['log_loss']:.4f} | {m['brier']:.4f} | "
                     f"{m['mean_psi']:.3f} | {m['mean_right']:.3f} |" for name, m in metrics.items())
    text = f"""# Bundled learned twist for the arithmetic chains (hard split)

A twist head for twisted SMC (Zhao, Brekelmans, Makhzani & Grosse 2024) on the bundled task: the
bundled PRM's network ({head.config.num_params:,} parameters, reading the bundled verifier LM's
token features), trained by contrastive twist learning so that sigmoid(logit) at the last token
of a prefix estimates psi_t = E_q[phi | prefix], for the target q(x) phi(x): q the bundled
program's sampler (temperature 0.8, one line per step, at most {cfg.max_steps} steps), phi = 1 for
a right final answer and {cfg.epsilon} otherwise. Use it with
`ppl.lm.twisted(twist, final, max_steps)`; load it with `ppl_models.bundled.load_twist()`.

## Training

{cfg.num_problems} train-split problems of difficulty `{cfg.difficulty}`, {cfg.num_rollouts} rollouts of the
program each ({json.dumps(stats)}). CTL with self-normalised importance weights over each
problem's rollouts (`ppl_models.train.twist`), Adam (learning rate {cfg.learning_rate}, gradient norm
clipped to 1), {cfg.steps} steps of {cfg.problems_per_batch} problems, starting from
{"the bundled PRM's weights" if cfg.init == "prm" else "random weights"}, seed {cfg.seed}.
Command: `{command}`. Wall time: {history.get('total_seconds', float('nan')) / 60:.1f} min on 2 CPU cores
(rollouts {history.get('pool_seconds', float('nan')) / 60:.1f} min, fit {history.get('train_seconds', float('nan')) / 60:.1f} min).
Surrogate: first {history['loss'][0]:.4f}, last {history['loss'][-1]:.4f} (its value is not a divergence;
its gradient is CTL's).

## Quality (held-out: test-split rollouts)

How well psi_t predicts whether the rollout continuing the prefix ends right, over the open
prefixes (log loss and Brier score: lower is better), for the starting PRM and the twist. The
PRM's score estimates P(every step so far is right), not the future, so it overestimates.

| head | open prefixes | log loss | Brier | mean psi | mean right |
|---|---|---|---|---|---|
{rows}

Filter quality with this twist (bounds gap, variance of log Z-hat, accuracy against the bootstrap
filter and the PRM as twist): `docs/smc.md`, from `benchmarks/twist_study.py`.
Config: `{json.dumps(dataclasses.asdict(cfg))}`
{"" if small_eval is None else "Small fixed evaluation used by the test suite (`ppl_models.train.twist.twist_small_eval`): `" + json.dumps(small_eval) + "`."}
"""
    (path / "MODEL_CARD.md").write_text(text)
    with open(path / "metrics.json", "w") as fh:
        json.dump({"metrics": metrics, "small_eval": small_eval, "train_config": dataclasses.asdict(cfg), "num_params": head.config.num_params,
                   "data": stats, "loss_first": history["loss"][0], "loss_last": history["loss"][-1],
                   "command": command, "seconds": {k: v for k, v in history.items() if k.endswith("seconds")}},
                  fh, indent=2)
    return path / "MODEL_CARD.md"


def train_and_save_twist(cfg: TwistTrainConfig, out, *, command: str = "ppl train twist", progress: bool = True,
                         eval_problems: int = 64, log_file: Optional[str] = None):
    """Rollouts, CTL fit, save (:func:`ppl_models.rewards.prm.save_prm`), held-out evaluation and
    model card, on the bundled LM, verifier and PRM. Returns ``(head, info)``."""
    from ppl_models import bundled
    from ppl_models.rewards.prm import save_prm

    t0 = time.time()
    prm = bundled.load_prm()
    verifier = prm.lm
    train = bundled.setup(cfg.num_problems, difficulty=cfg.difficulty, split="train", seed=cfg.seed,
                          max_steps=cfg.max_steps, prm="oracle")
    pool = make_pool(train, cfg.num_rollouts, cfg.epsilon, jax.random.key(cfg.seed), features_lm=verifier,
                     progress=progress)
    pool_s = time.time() - t0
    head, history = train_twist_head(pool, cfg, prm, features_lm=verifier, progress=progress, log_file=log_file)
    history["pool_seconds"] = pool_s
    out = Path(out)
    save_prm(head, out)
    stats = {"rollouts": int(pool.correct.size), "right": round(float(pool.correct.mean()), 4),
             "open_prefixes": int(pool.is_open.sum())}
    metrics = {}
    if eval_problems > 0:
        test = bundled.setup(eval_problems, difficulty=cfg.difficulty, split="test", seed=cfg.seed + 1000,
                             max_steps=cfg.max_steps, prm="oracle")
        held = make_pool(test, cfg.num_rollouts, cfg.epsilon, jax.random.key(cfg.seed + 1), features_lm=verifier,
                         progress=progress)
        metrics = {"bundled PRM": evaluate_twist(prm, held), "twist": evaluate_twist(head, held)}
    history["total_seconds"] = time.time() - t0
    small = twist_small_eval(head, prm, cfg.epsilon) if eval_problems > 0 else None
    if metrics:
        write_twist_card(out, cfg, head, history, stats, metrics, command, small)
    return head, {"history": history, "metrics": metrics, "data": stats, "small_eval": small}
