r"""Twisted SMC, a twist learned by CTL, and two-sided bounds on log Z; then A* decoding.

A small random transformer (vocabulary 4) writes up to 4 one-token steps after a 2-token prompt.
The target is p(x) phi(x) with phi = 1 when the generation holds two 3s, else 0.05. Exact samples
of the target come by rejection from the LM (``ppl.exact_references``); the bootstrap filter and a
twisted filter whose twist is fitted by contrastive twist learning (``ppl.lm.twists.train_twist``)
are compared by the gap between the SMC lower bound and the conditional-SMC upper bound on log Z
(``ppl.log_evidence_bounds``). Last, A* (``ppl.scaling.a_star``) searches for a generation with
two 3s, its priority log p + log phi (phi as the reward).

    python examples/twisted_bounds.py
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp

import ppl
import ppl.lm.twists
from ppl import scaling

PROMPT, EPS, GOOD = [1, 3], 0.05, 3


def log_phi(prev, state):
    """log phi: 0 with two GOOD tokens in the generation, else log EPS."""
    idx = jnp.arange(state.tokens.shape[0])
    n = jnp.sum((idx >= state.prompt_length) & (idx < state.length) & (state.tokens == GOOD))
    return jnp.where(n >= 2, 0.0, jnp.log(EPS))


def log_psi(table, state):
    """A tabular twist: one log psi per generated prefix (digits 1..4 in base 5)."""
    idx = jnp.arange(state.tokens.shape[0]) - state.prompt_length
    gen = (idx >= 0) & (idx < state.length - state.prompt_length)
    return table[jnp.sum(jnp.where(gen, (state.tokens + 1) * 5 ** jnp.maximum(idx, 0), 0))]


class Phi:
    """phi as a reward model (the RewardModel protocol), for A*'s heuristic: r = phi of the prefix."""

    params = ()

    def log_score(self, params, state):
        return log_phi(None, state)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--iterations", type=int, default=300, help="CTL steps")
    ap.add_argument("--runs", type=int, default=200, help="runs per side of the bounds")
    args = ap.parse_args(argv)

    from ppl_models.lm import LMConfig, random_lm

    lm = random_lm(LMConfig(vocab_size=4, hidden_size=16, num_layers=2, num_heads=2, num_kv_heads=1,
                            max_position_embeddings=16, eos_token_id=0), seed=0, std=0.5)
    kw = dict(max_steps=4, max_step_tokens=1, max_length=6)
    base = ppl.lm.LMProgram(lm, PROMPT, **kw)
    bootstrap = base.with_potential(ppl.lm.when_finished(log_phi, 4))
    refs = ppl.exact_references(bootstrap, args.runs, key=jax.random.key(1), log_bound=0.0)
    train = ppl.exact_references(bootstrap, 1000, key=jax.random.key(2), log_bound=0.0, batch_size=2048)
    fit = ppl.lm.twists.train_twist(base, log_psi, jnp.zeros(5 ** 4), log_phi, train, key=jax.random.key(3),
                                    num_iterations=args.iterations, num_negatives=256, batch_size=256)
    print(f"CTL: surrogate {fit.losses[0]:.3f} -> {fit.losses[-1]:.3f} over {len(fit.losses)} steps")
    twisted = base.with_potential(ppl.lm.twisted(lambda s: log_psi(fit.params, s), log_phi, 4))
    print("N   filter          lower    upper    gap (KL(Q||P) + KL(P||Q))")
    for n in (4, 16):
        for name, fk in (("bootstrap", bootstrap), ("learned twist", twisted)):
            b = ppl.log_evidence_bounds(fk, n, refs, key=jax.random.key(n))
            print(f"{n:<3} {name:<15} {b.lower:7.3f}  {b.upper:7.3f}  {b.gap:.3f} +- {b.gap_se:.3f}")

    res = scaling.a_star(base, 20, key=jax.random.key(0), reward=Phi(), pool=16, children=4)
    print(f"A*: answer {res.answer} (phi = {1.0 if list(res.answer).count(GOOD) >= 2 else EPS}) after "
          f"{res.diagnostics['expansions']} expansions, {res.compute.generated_tokens} tokens, goal reached: "
          f"{res.diagnostics['goal']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
