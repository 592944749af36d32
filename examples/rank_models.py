"""Rank LMs from a simulated arena judged by position-biased LLM judges.

Eight models with known strengths battle; three judges decide, each preferring the answer
shown first by a different amount; ties follow the Davidson model. We fit the Bradley–Terry
family with Davidson ties and per-judge bias with NUTS, print the ranking with 95% intervals,
the judges' measured position biases against the truth, and save the forest plot and the
rank-probability heatmap.

    python examples/rank_models.py [--battles 4000] [--out-dir DIR]
"""

from __future__ import annotations

import argparse
import os

import jax
import matplotlib

matplotlib.use("Agg")
import numpy as np

from ppl_models import judges


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--battles", type=int, default=4000)
    ap.add_argument("--out-dir", default=None, help="folder for the two plots (default: no plots)")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    rng = np.random.default_rng(a.seed)
    names = ["orca-70b", "lynx-34b", "heron-13b", "otter-8b", "wren-7b", "mole-3b", "newt-1b", "gnat-0.5b"]
    truth = np.array([1.3, 1.1, 0.6, 0.2, 0.1, -0.6, -1.2, -1.5])
    judge_bias = np.array([0.6, 0.2, -0.1])  # judge_0 strongly prefers the first answer
    recs = judges.simulate_battles(rng, truth, a.battles, ties="davidson", log_nu=-0.7,
                                   judge_bias=judge_bias, names=names)
    battles = judges.battles_from_records(recs)
    print(f"{a.battles} battles, {len(battles.models)} models, judges {battles.judges}")

    ranking = judges.rank(battles, ties="davidson", judge_effects=True, key=jax.random.key(a.seed),
                          num_chains=4, num_warmup=500, num_samples=500)
    print(ranking.table())
    jb = ranking.params["judge_bias"]
    print("\njudge position bias (logit units): posterior mean [95%]  vs truth")
    for j, name in enumerate(battles.judges):
        k = int(name.split("_")[1])
        print(f"  {name}: {jb['mean'][j]:+.2f} [{jb['ci_low'][j]:+.2f}, {jb['ci_high'][j]:+.2f}]   truth {judge_bias[k]:+.2f}")
    order = [names[i] for i in np.argsort(-truth)]
    print("\ntrue order:     ", order)
    print("posterior order:", [ranking.models[i] for i in ranking.order])
    print("tied groups:    ", [[ranking.models[i] for i in g] for g in ranking.groups])
    d = ranking.diagnostics
    print(f"max R-hat {d['max_r_hat']:.3f}, min ESS {d['min_ess_bulk']:.0f}, NUTS {d['inference_s']:.1f}s")
    if a.out_dir is not None:
        os.makedirs(a.out_dir, exist_ok=True)
        ranking.plot_forest(os.path.join(a.out_dir, "rank_forest.png"))
        ranking.plot_rank_heatmap(os.path.join(a.out_dir, "rank_heatmap.png"))
        print(f"saved rank_forest.png and rank_heatmap.png in {a.out_dir}")
    idata = ranking.to_inference_data()
    print(f"InferenceData groups {list(idata.groups())}")
    return ranking


if __name__ == "__main__":
    main()
