"""A new inference-time scaling method in one file: a model, kernel options and an answer rule.

    python examples/new_method.py [--problems 8] [--budget 8]

The method: *product-weighted voting*. Draw B rollouts with no resampling and weight each by the
product of its PRM step scores, w = prod_t r(x_{1:t}) (Lightman et al.'s "product" aggregation),
then take the weighted vote over answers. As inference it is sequential importance sampling for
the target q(x) prod_t r_t: the model is the LM program with the reward as a potential
(``ratio("product")``: the ratio of successive products is each step's score), the kernel never
resamples (``ess_threshold=0``), finished generations keep their weight (the recipe's finished
rule, ``factor_one``), and the compute counter collects tokens and PRM calls. It
runs beside best-of-N on the bundled task, on the same rollouts (same keys, same key schedule).
"""

from __future__ import annotations

import argparse

import jax
import numpy as np

import ppl
from ppl import scaling
from ppl.lm.compute import Compute, token_counter
from ppl.lm.potentials import ratio
from ppl.smc import base
from ppl.smc import resampling as rs
from ppl.smc.loop import build_filter


def product_vote(program, n, *, key, reward, answer_fn=None):
    """Product-weighted voting with ``n`` rollouts: the whole method."""

    potential = ratio("product")

    def core(data, reward_params, key):
        model = program.with_potential(potential(reward, reward_params), correct_proposal=False)
        res, failure, _ = build_filter(model, n, rs.systematic, 0.0, finished=potential.finished,
                                       collect=token_counter)(data, key)
        return res, failure

    res, failure = jax.jit(core)(program.data, reward.params, key)
    if int(failure) != base.OK:
        raise ppl.SMCError("product_vote: every weight became zero or a score was NaN")
    gen, calls, read = (int(v) for v in res.aux)
    compute = Compute.count(generated_tokens=gen, lm_forward_tokens=int(program.data["prompt_length"]) + gen,
                            prm_calls=calls, prm_forward_tokens=read, lm=program.lm, reward=reward)
    return scaling.finish("product_vote", res.particles, res.log_weights, scores=np.exp(res.particles.memory.total),
                          answer_fn=answer_fn, select="vote", compute=compute, budget=n)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", type=int, default=8)
    parser.add_argument("--budget", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    from ppl_models import bundled

    task = bundled.setup(args.problems, seed=args.seed)
    prm, answer_fn, problems, prompts = task.reward_for(None), task.answer_fn, task.problems, task.prompts
    base_program = task.program
    right = {"product vote": 0, "best-of-N": 0}
    tokens = {"product vote": 0, "best-of-N": 0}
    for i, (problem, prompt) in enumerate(zip(problems, prompts)):
        program, key = base_program.with_prompt(prompt), jax.random.key(args.seed * 1000 + i)
        for name, fn in (("product vote", product_vote), ("best-of-N", scaling.best_of_n)):
            res = fn(program, args.budget, key=key, reward=prm, answer_fn=answer_fn)
            right[name] += res.answer is not None and res.answer == problem.answer
            tokens[name] += res.compute.generated_tokens
    print(f"{args.problems} problems, budget {args.budget} rollouts (same keys: the same rollouts for both rules)")
    assert tokens["product vote"] == tokens["best-of-N"], tokens
    for name in right:
        print(f"{name:<14} accuracy {right[name] / args.problems:.3f}  tokens/problem {tokens[name] / args.problems:.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
