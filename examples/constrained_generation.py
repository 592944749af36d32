"""A hard constraint that plain sampling almost never meets, solved by SMC on an LM program.

    python examples/constrained_generation.py [--particles 256] [--samples 8192] [--seed 0]

The LM is a small random transformer from ``ppl_models.lm`` (the bundled trained model replaces it
when it lands). Constraint: the generation must contain token 7 exactly ``--count`` times by the
time it finishes. Plain sampling meets it with probability Z = P(constraint) — the acceptance
rate of rejection sampling. SMC checks "at most ``--count`` so far" after every step and
"exactly ``--count``" at the end, so every final particle satisfies the constraint; and its
log-evidence estimates log Z, which the printout compares with the rejection estimate.
"""

from __future__ import annotations

import argparse
import math
import time

import jax
import jax.numpy as jnp
import numpy as np

import ppl
from ppl_models.lm import LMConfig, random_lm

TARGET = 7


def count_target(state):
    idx = jnp.arange(state.tokens.shape[0])
    generated = (idx >= state.prompt_length) & (idx < state.length)
    return jnp.sum(generated & (state.tokens == TARGET))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--particles", type=int, default=256)
    parser.add_argument("--samples", type=int, default=8192, help="plain samples for rejection sampling")
    parser.add_argument("--count", type=int, default=6, help="required number of token 7")
    parser.add_argument("--twist", type=float, default=1.0, help="strength of the look-ahead twist (0: none)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    config = LMConfig(vocab_size=32, hidden_size=64, num_layers=2, num_heads=4, num_kv_heads=2,
                      max_position_embeddings=128, eos_token_id=0)
    lm = random_lm(config, seed=args.seed, std=0.3)
    prompt = np.array([1, 5, 9, 2])
    steps = dict(max_steps=8, step_delimiter=1, max_step_tokens=6, max_length=64)
    key = jax.random.key(args.seed)

    # Rejection sampling: plain sampling from the LM (no potential, never resample), then check.
    plain = ppl.lm.LMProgram(lm, prompt, None, **steps)
    t0 = time.perf_counter()
    res = ppl.run_smc(plain, args.samples, key=jax.random.fold_in(key, 1), ess_threshold=0.0)
    counts = np.asarray(jax.vmap(count_target)(res.particles))
    t_plain = time.perf_counter() - t0
    accept = float(np.mean(counts == args.count))
    print(f"random transformer LM (vocab {config.vocab_size}, {config.num_layers} layers); constraint: "
          f"exactly {args.count} x token {TARGET}")
    print(f"rejection sampling: {args.samples} samples, acceptance rate {accept:.4%} "
          f"({int(accept * args.samples)} accepted), {t_plain:.1f} s")

    at_most = ppl.lm.constraint(lambda s: count_target(s) <= args.count)
    exactly = ppl.lm.when_finished(ppl.lm.constraint(lambda s: count_target(s) == args.count), steps["max_steps"])
    # A twist psi = exp(lam * count) pulls particles towards the target count early; dividing it
    # out at the finish keeps the final target p(x) * 1[constraint] unchanged (the twists telescope).
    lam = args.twist
    guide = ppl.lm.twist(lambda s: lam * count_target(s))
    unguide = ppl.lm.when_finished(ppl.lm.on_prefix(lambda s: -lam * count_target(s)), steps["max_steps"])
    program = ppl.lm.LMProgram(lm, prompt, at_most * exactly * guide * unguide, **steps)
    t0 = time.perf_counter()
    try:
        smc = ppl.run_smc(program, args.particles, key=jax.random.fold_in(key, 2), ess_threshold=0.5)
    except ppl.SMCError as err:
        print(f"SMC failed: {err}\n(more particles or a stronger --twist help)")
        return 1
    smc_counts = np.asarray(jax.vmap(count_target)(smc.particles))
    t_smc = time.perf_counter() - t0
    w = np.exp(np.asarray(smc.log_weights, np.float64))
    ok = float(np.sum(w * (smc_counts == args.count)))
    ess = 1.0 / float(np.sum(w**2))
    print(f"SMC: {args.particles} particles, weighted fraction meeting the constraint {ok:.3f}, "
          f"final ESS {ess:.0f} ({ess / args.particles:.0%}), {t_smc:.1f} s")
    rej = math.log(accept) if accept > 0 else float("-inf")
    print(f"log Z: SMC {float(smc.log_evidence):.3f}  vs  log(acceptance rate) {rej:.3f}")
    print(f"constraint-satisfying samples per 1000 generations: rejection sampling {1000 * accept:.1f}, "
          f"SMC {1000 * ess / args.particles:.1f} (effective)")
    best = int(np.argmax(w))
    print("one SMC sample (generated tokens):", ppl.lm.text_of(jax.tree_util.tree_map(lambda a: a[best], smc.particles)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
