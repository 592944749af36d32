"""Benchmark: Bradley–Terry NUTS on aggregated sufficient statistics vs a naive per-battle model.

    python benchmarks/judges.py            # quick: 30 models, 20,000 battles, 2 chains x (300 + 300)
    python benchmarks/judges.py --full     # the issue's size: 100 models, 200,000 battles,
                                           # 4 vectorized chains x (1000 warmup + 1000 draws)

Both models are the same Bradley–Terry likelihood (logit link, ties as half wins, sum-to-zero
ratings with a Normal(0, 2) prior); the naive one has one Bernoulli-with-weights term per
battle in a plate, ours (:func:`ppl_models.judges.bradley_terry`) one term per ordered pair and
outcome. Timings include compilation (each is one call of :func:`ppl.nuts`). Progress goes to
stderr; the last line of stdout is one JSON object with ``bt_aggregated_speedup`` (naive wall
time / ours), ``min_ess_per_s`` (ours: smallest bulk ESS over ratings per second), the same
for the naive model, and the largest difference between the two posterior means (a check
that both sample the same posterior).
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import arviz as az
import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist

import ppl
from ppl_models import judges


def naive_bt(first, second, y, w, num_models: int, prior_scale: float = 2.0):
    """Per-battle Bradley–Terry: y = 1 if the first model won, weight w (1, or 1/2 for each
    half of a tie)."""
    q = jnp.asarray(judges.sum_to_zero_basis(num_models), jnp.float32)
    z = numpyro.sample("rating_free", dist.Normal(jnp.zeros(num_models - 1), prior_scale).to_event(1))
    r = numpyro.deterministic("rating", q @ z)
    with numpyro.plate("battles", first.shape[0]):
        lp = dist.Bernoulli(logits=r[first] - r[second]).log_prob(y)
        numpyro.factor("ll", w * lp)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--full", action="store_true", help="the issue's sizes (slow on CPU)")
    ap.add_argument("--models", type=int)
    ap.add_argument("--battles", type=int)
    ap.add_argument("--chains", type=int)
    ap.add_argument("--warmup", type=int)
    ap.add_argument("--samples", type=int)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    k = a.models or (100 if a.full else 30)
    n = a.battles or (200_000 if a.full else 20_000)
    chains = a.chains or (4 if a.full else 2)
    warm = a.warmup or (1000 if a.full else 300)
    draws = a.samples or (1000 if a.full else 300)
    log = lambda m: print(m, file=sys.stderr, flush=True)

    rng = np.random.default_rng(a.seed)
    truth = rng.normal(0, 1, k)
    t = time.perf_counter()
    battles = judges.battles_from_records(judges.simulate_battles(rng, truth, n, ties="davidson", log_nu=-1.0))
    comps = judges.aggregate(battles)
    prep_s = time.perf_counter() - t
    log(f"{n} battles, {k} models -> {comps.num_rows} rows (prep {prep_s:.1f}s)")

    # per-battle arrays: a tie becomes two half-weighted battles (one each way)
    o = battles.outcome.argmax(1)
    f, s = battles.first, battles.second
    tie = o == 2
    first = np.r_[f, f[tie]].astype(np.int32)
    second = np.r_[s, s[tie]].astype(np.int32)
    y = np.r_[(o == 0).astype(np.float32), np.zeros(tie.sum(), np.float32)]
    y[: len(f)][tie] = 1.0
    w = np.r_[np.where(tie, 0.5, 1.0), np.full(tie.sum(), 0.5)].astype(np.float32)

    opts = dict(num_chains=chains, num_warmup=warm, num_samples=draws)

    def timed(fn):
        t = time.perf_counter()
        res = fn()
        jax.block_until_ready(res.samples)
        return res, time.perf_counter() - t

    ours, t_ours = timed(lambda: ppl.nuts(judges.bradley_terry, comps, key=jax.random.key(1), ties="half", **opts))
    log(f"ours (aggregated): {t_ours:.1f}s")
    naive, t_naive = timed(lambda: ppl.nuts(naive_bt, first, second, y, w, k, key=jax.random.key(1), **opts))
    log(f"naive (per battle): {t_naive:.1f}s")

    def min_ess(res):
        ds = az.convert_to_dataset({"rating": np.asarray(res.samples["rating"])})
        return float(np.min(az.ess(ds, method="bulk")["rating"].values))

    ess_ours, ess_naive = min_ess(ours), min_ess(naive)
    diff = float(np.max(np.abs(np.asarray(ours.mean("rating")) - np.asarray(naive.mean("rating")))))
    sd = float(np.max(np.sqrt(np.asarray(ours.var("rating")))))
    out = {
        "bt_aggregated_speedup": t_naive / t_ours,
        "min_ess_per_s": ess_ours / t_ours,
        "naive_min_ess_per_s": ess_naive / t_naive,
        "ours_s": t_ours,
        "naive_s": t_naive,
        "prep_s": prep_s,
        "max_posterior_mean_diff": diff,
        "max_posterior_sd": sd,
        "num_models": k,
        "num_battles": n,
        "num_rows": comps.num_rows,
        "chains": chains,
        "warmup": warm,
        "samples": draws,
        "full": bool(a.full),
        "device": str(jax.devices()[0].platform),
    }
    ok = all(np.isfinite(v) for v in out.values() if isinstance(v, float))
    out["ok"] = bool(ok)
    print(json.dumps(out))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
