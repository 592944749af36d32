r"""Training the bundled tiny LM on arithmetic-chain solutions (flax nnx model, optax AdamW).

The model is a Llama-style :class:`ppl_models.lm.Transformer` (rotary positions, RMSNorm, SiLU-gated
MLP) with a character-level vocabulary. It is trained by teacher forcing on
``prompt + solution + <eos>`` with the cross-entropy of the solution tokens only:

.. math::

    \mathcal L(\theta) = -\frac{1}{\sum_{b,t} m_{bt}} \sum_{b,t} m_{bt}
        \log p_\theta(y_{b,t} \mid y_{b,<t}),

with AdamW (linear warm-up, then a constant rate or a cosine decay to zero, gradient
clipping). The bundled LM is trained deliberately *briefly* (constant rate) so that it stays
imperfect on the hard split (see the model card).

A run can also *continue* another: with ``init_from`` it starts from that checkpoint's weights
and, with ``first_step``, reads the data stream from that batch on (fresh problems). The bundled
verifier LM is the bundled LM continued for 1000 more steps with a cosine decay
(``schedule="cosine"``): annealing the rate lifts its pass@1 on the hard split from 0.30 to
0.82, so its token probabilities carry what the generator does not know (the PRM reads them,
:mod:`ppl_models.train.prm`).

Everything is deterministic given the seed: the initial weights (numpy, :func:`ppl_models.lm.random_lm`),
the batches (:func:`ppl_models.train.data.batch_for_step`) and the evaluation keys.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Optional

import jax
import jax.numpy as jnp
import optax

from ppl_models.lm import LanguageModel, LMConfig, random_lm, save_pretrained
from ppl_models.tasks import arithmetic
from ppl_models.tasks.tokenizer import build_tokenizer
from ppl_models.train.optim import warmup_adamw

from .config import SCHEDULES, TrainConfig  # noqa: F401  (re-exported)
from .data import batch_for_step
from .losslog import LossLog

__all__ = ["TrainConfig", "SCHEDULES", "lm_config", "train_lm", "write_lm_card", "train_and_save_lm", "lm_small_eval", "SMALL_EVAL"]


def lm_config(cfg: TrainConfig, vocab_size: int, eos_token_id: int) -> LMConfig:
    """The architecture: Llama style, vocabulary padded to a multiple of 8."""
    return LMConfig.llama(
        vocab_size=-(-vocab_size // 8) * 8, hidden_size=cfg.hidden_size, num_layers=cfg.num_layers,
        num_heads=cfg.num_heads, num_kv_heads=cfg.num_heads, intermediate_size=cfg.intermediate_size,
        max_position_embeddings=256, rope_theta=10000.0, tie_word_embeddings=False,
        bos_token_id=None, eos_token_id=eos_token_id,
    )


def _loss(apply, params, tokens, targets, mask):
    b, s = tokens.shape
    positions = jnp.broadcast_to(jnp.arange(s, dtype=jnp.int32), (b, s))
    logits, _ = apply(params, tokens, positions, None)
    logp = jax.nn.log_softmax(logits, axis=-1)
    nll = -jnp.take_along_axis(logp, targets[..., None], axis=-1)[..., 0]
    return jnp.sum(nll * mask) / jnp.maximum(jnp.sum(mask), 1.0)


def train_lm(cfg: TrainConfig = TrainConfig(), *, progress: bool = True, log_every: int = 50,
             log_file: Optional[str] = None, checkpoint_every: int = 0,
             checkpoint_dir: Optional[str] = None) -> tuple[LanguageModel, dict]:
    """Train the tiny LM; returns ``(lm, history)`` (``history``: losses, wall time).

    With ``checkpoint_every > 0`` the model after every that many steps is saved to
    ``checkpoint_dir/step_<n>`` (with ``schedule="constant"`` identical to a run with
    ``steps=n``: the rate is constant after warm-up).
    """
    if cfg.init_from is not None:
        from ppl_models.lm import load_pretrained

        lm = load_pretrained(cfg.init_from)
        if lm.tokenizer is None:
            raise ValueError(f"init_from={cfg.init_from!r}: the checkpoint has no tokenizer.json.")
        tok = lm.tokenizer
    else:
        tok = build_tokenizer()
        config = lm_config(cfg, tok.get_vocab_size(), tok.token_to_id("<eos>"))
        lm = random_lm(config, seed=cfg.seed, tokenizer=tok)
    mixture = arithmetic.training_mixture(cfg.max_steps_in_mixture, cfg.moduli, cfg.max_multiplier)

    # Linear warm-up then a constant rate (a checkpoint of a long run is exactly a shorter run), or
    # a cosine decay to zero at the last step, which anneals the weights.
    opt = warmup_adamw(cfg, decay_to=None if cfg.schedule == "constant" else 0.0, clip_norm=cfg.clip_norm, b2=0.98)
    params = lm.params
    opt_state = opt.init(params)
    apply = lm.apply

    def step_fn(params, opt_state, tokens, targets, mask):
        loss, grads = jax.value_and_grad(lambda p: _loss(apply, p, tokens, targets, mask))(params)
        updates, opt_state = opt.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    step_fn = jax.jit(step_fn, donate_argnums=(0, 1))

    from tqdm.auto import tqdm

    bar = tqdm(range(cfg.steps), desc="train lm", disable=not progress, mininterval=2.0)
    running = None
    with LossLog(log_file) as log:
        for i in bar:
            batch = batch_for_step(tok, cfg.first_step + i, cfg.seed, cfg.batch_size, mixture)
            params, opt_state, loss = step_fn(params, opt_state, jnp.asarray(batch.tokens),
                                              jnp.asarray(batch.targets), jnp.asarray(batch.mask))
            if i % 10 == 0 or i == cfg.steps - 1:
                lv = float(loss)
                running = lv if running is None else 0.8 * running + 0.2 * lv
                bar.set_postfix(loss=f"{running:.4f}")
            if checkpoint_every and checkpoint_dir and (i + 1) % checkpoint_every == 0:
                save_pretrained(lm.with_params(params), Path(checkpoint_dir) / f"step_{i + 1}")
            if i % log_every == 0 or i == cfg.steps - 1:
                log.record(i, loss)
    return lm.with_params(params), log.history


def write_lm_card(path, cfg: TrainConfig, lm: LanguageModel, history: dict, metrics: dict,
                  command: str, small_eval: Optional[dict] = None) -> Path:
    """Write ``MODEL_CARD.md`` and ``metrics.json`` next to the weights."""
    path = Path(path)
    c = lm.config
    rows = "\n".join(
        f"| {name} | {arithmetic.DIFFICULTIES[name].num_steps} | {arithmetic.DIFFICULTIES[name].modulus} | "
        f"{m['num_problems']} x {m['num_samples']} | {m['pass@1']:.3f} | {m.get('pass@8', float('nan')):.3f} | "
        f"{m.get('pass@64', float('nan')):.3f} | {m['majority_vote']:.3f} | {m['no_answer_rate']:.3f} |"
        for name, m in metrics.items())
    mix = arithmetic.training_mixture(cfg.max_steps_in_mixture, cfg.moduli, cfg.max_multiplier)
    small = ""
    if small_eval is not None:
        small = (f"\nSmall fixed evaluation used by the test suite (`ppl_models.train.lm_small_eval`): "
                 f"`{json.dumps(small_eval)}`.\n")
    if cfg.init_from is None:
        title, origin = "Bundled tiny LM: modular arithmetic chains", "trained from scratch"
        purpose = """It is **deliberately under-trained**: imperfect on the hard split, with much higher coverage
at 64 samples, so that inference-time scaling (best-of-N, particle filtering with a PRM,
majority vote) has room to work."""
    else:
        title = "Verifier LM: modular arithmetic chains"
        origin = (f"continued from the checkpoint `{cfg.init_from}` (data stream from batch {cfg.first_step} on, "
                  f"so every problem is fresh)")
        purpose = """It is the generator LM **trained further, with the learning rate annealed**, so it knows the
arithmetic much better than the generator; the bundled process reward model reads its token
log-probabilities (a reward model stronger than the policy, as in practice). It is not meant to
be sampled from in the scaling experiments."""
    loader = ("`ppl_models.bundled.load_lm()`" if cfg.init_from is None else
              "`ppl_models.lm.load_pretrained(folder)` (the bundled one: `ppl_models.bundled.load_verifier()`)")
    rate = ("(then constant)" if cfg.schedule == "constant"
            else f"(then a cosine decay to 0 at step {cfg.steps})")
    text = f"""# {title}

A {c.num_params:,}-parameter Llama-style decoder ({c.num_layers} layers, width {c.hidden_size},
{c.num_heads} heads, gated MLP {c.intermediate_size}, rotary positions, vocabulary {c.vocab_size}
characters) {origin}, with optax AdamW, to write chain-of-thought solutions of
modular arithmetic chains (`ppl_models.tasks.arithmetic`), one step per line:

```
prompt:   34+21*3-17 mod 97
solution: 34+21=55=55
          55*3=165=68
          68-17=51=51
          answer: 51<eos>
```

{purpose}

## Training

- Data: problems from the *train* split only (hash-based split of prompts; test problems are
  never seen), drawn fresh for every batch; mixture of {len(mix)} difficulties — 1 to
  {cfg.max_steps_in_mixture} steps, moduli {list(cfg.moduli)}, multipliers 2..{cfg.max_multiplier};
  each batch is one difficulty, cycling through the mixture.
- Loss: cross-entropy of the solution tokens and the end-of-sequence token (prompt masked).
- Optimizer: AdamW (b1 0.9, b2 0.98, weight decay {cfg.weight_decay}), learning rate
  {cfg.learning_rate} after {cfg.warmup_steps} linear warm-up steps {rate}, global-norm clipping
  {cfg.clip_norm}; {cfg.steps} steps of batch {cfg.batch_size}; seed {cfg.seed}.
- Command: `{command}`
- Wall time: {history.get('train_seconds', float('nan')) / 60:.1f} min on 2 CPU cores (shared machine).
- Final training loss: {history['loss'][-1]:.4f}.
- Training config: `{json.dumps(dataclasses.asdict(cfg))}`

## Evaluation (test split, plain sampling at temperature 1)

pass@k is the unbiased estimator from n = 64 samples per problem; "majority" is
self-consistency over the 64 samples; "no answer" the fraction of samples without a
well-formed `answer:` line.

| difficulty | steps | modulus | problems x samples | pass@1 | pass@8 | pass@64 | majority | no answer |
|---|---|---|---|---|---|---|---|---|
{rows}
{small}
## Files

`config.json` (Hugging Face Llama format), `model.safetensors` (float32), `tokenizer.json`
(character-level `tokenizers` WordLevel model; `<pad>`=0, `<eos>`=1, `<unk>`=2; the newline
token delimits steps), `metrics.json` (the table above as JSON).

Load with {loader} (no training, no network).
"""
    (path / "MODEL_CARD.md").write_text(text)
    with open(path / "metrics.json", "w") as fh:
        json.dump({"metrics": metrics, "small_eval": small_eval, "train_config": dataclasses.asdict(cfg),
                   "num_params": c.num_params, "train_seconds": history.get("train_seconds"),
                   "final_loss": history["loss"][-1], "command": command}, fh, indent=2)
    return path / "MODEL_CARD.md"


#: The small fixed evaluation the test suite re-runs on the shipped LM.
SMALL_EVAL = dict(difficulty="hard", num_problems=48, num_samples=8, problem_seed=99, key_seed=0)


def lm_small_eval(lm) -> dict:
    """pass@1 of ``lm`` on :data:`SMALL_EVAL` (fixed problems, fixed sampling key)."""
    from .evaluate import evaluate

    s = SMALL_EVAL
    problems = arithmetic.generate(s["num_problems"], s["difficulty"], split="test", seed=s["problem_seed"])
    res = evaluate(lm, problems, s["num_samples"], jax.random.key(s["key_seed"]), ks=(1,),
                   batch_prompts=s["num_problems"] // 2)
    return {**s, "pass@1": res["pass@1"]}


def train_and_save_lm(cfg: TrainConfig, out, *, command: str = "ppl train lm", progress: bool = True,
                      eval_problems: int = 64, eval_samples: int = 64, eval_seed: int = 1234,
                      log_file: Optional[str] = None) -> tuple[LanguageModel, dict]:
    """Train, save (``save_pretrained``), evaluate per difficulty and write the model card."""
    from .evaluate import evaluate_difficulties

    lm, history = train_lm(cfg, progress=progress, log_file=log_file)
    out = Path(out)
    save_pretrained(lm, out)
    metrics, small = {}, None
    if eval_problems > 0:
        t0 = time.time()
        metrics = evaluate_difficulties(lm, num_problems=eval_problems, num_samples=eval_samples, seed=eval_seed,
                                        ks=tuple(k for k in (1, 8, 64) if k <= eval_samples), progress=progress)
        small = lm_small_eval(lm)
        history["eval_seconds"] = time.time() - t0
        write_lm_card(out, cfg, lm, history, metrics, command, small)
    return lm, {"history": history, "metrics": metrics, "small_eval": small}
