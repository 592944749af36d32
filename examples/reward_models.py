"""How well each reward ranks one problem's samples: the generator's own confidence, the
verifier LM's, and the bundled PRM, on a pool of the bundled LM's solutions.

    python examples/reward_models.py [--problems 24] [--samples 16] [--temperature 0.8] [--seed 7]

For each hard test problem the bundled LM writes ``--samples`` solutions. Each is scored by

* the generator's summed token log-probability :math:`\\sum_t \\log p_{\\mathrm{gen}}(x_t \\mid x_{<t})`,
* the verifier LM's (:func:`ppl_models.bundled.load_verifier`: the same network trained further),
* the bundled PRM's outcome score (it reads the verifier's token features),

and the table prints, per reward, the **within-problem AUC** (how often a right solution of a
problem scores above a wrong one of the same problem, averaged over problems with both) and the
accuracy of best-of-N with that reward. Selection can only be as good as the first column.
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", type=int, default=24)
    parser.add_argument("--samples", type=int, default=16)
    parser.add_argument("--temperature", type=float, default=0.8)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    if args.problems < 1 or args.samples < 2 or not args.temperature > 0:
        parser.error("--problems >= 1, --samples >= 2 and --temperature > 0 are required")

    from ppl_models import bundled
    from ppl_models.rewards.prm import lm_token_features
    from ppl_models.tasks import arithmetic
    from ppl_models.tasks.tokenizer import EOS, encode
    from ppl_models.train.evaluate import sample_solutions
    from ppl_models.train.prm import auc

    lm, verifier, prm = bundled.load_lm(), bundled.load_verifier(), bundled.load_prm()
    tok = lm.tokenizer
    problems = arithmetic.generate(args.problems, "hard", "test", seed=args.seed)
    pools = sample_solutions(lm, problems, args.samples, jax.random.key(args.seed), max_new_tokens=96,
                             batch_prompts=min(args.problems, 16), temperature=args.temperature)

    def summed_logp(model):
        feats = jax.jit(lambda t: lm_token_features(model, model.params, t))

        def score(problem, texts):
            prompt = encode(tok, problem.prompt)
            rows = [prompt + encode(tok, t) + [tok.token_to_id(EOS)] for t in texts]
            tokens = np.zeros((len(rows), -(-max(map(len, rows)) // 16) * 16), np.int32)
            for i, r in enumerate(rows):
                tokens[i, :len(r)] = r
            logp = np.asarray(feats(jnp.asarray(tokens)))[..., 0]
            return np.array([logp[i, len(prompt):len(r)].sum() for i, r in enumerate(rows)])

        return score

    rewards = {"generator log p": summed_logp(lm), "verifier log p": summed_logp(verifier),
               "bundled PRM": lambda p, texts: prm.final_score([p.prompt] * len(texts), texts)}
    right = [np.array([arithmetic.check(p, t) for t in texts]) for p, texts in zip(problems, pools)]
    print(f"{args.problems} hard test problems x {args.samples} samples at temperature {args.temperature}; "
          f"pass@1 {np.mean(np.concatenate(right)):.2f}, coverage {np.mean([r.any() for r in right]):.2f}")
    print(f"{'reward':18s} {'within-problem AUC':>20s} {'best-of-N':>10s}")
    for name, score in rewards.items():
        aucs, best = [], []
        for p, texts, y in zip(problems, pools, right):
            s = np.nan_to_num(np.asarray(score(p, texts), float), nan=-np.inf)
            if 0 < y.sum() < len(y):
                aucs.append(auc(s, y))
            best.append(y[int(np.argmax(s))])
        within = f"{np.mean(aucs):.3f}" if aucs else "n/a"
        print(f"{name:18s} {within:>20s} {np.mean(best):10.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
