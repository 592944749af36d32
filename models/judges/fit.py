r"""One call from a battle log to a posterior ranking: :func:`rank`.

.. code-block:: python

    battles = judges.read_battles("battles.jsonl")
    ranking = judges.rank(battles, ties="davidson", key=jax.random.key(0))
    print(ranking.table())
    ranking.plot_forest("forest.png"); ranking.to_json("ranking.json")
    idata = ranking.to_inference_data()

It aggregates the log to sufficient statistics, runs :func:`ppl.infer` on
:func:`ppl_models.judges.bradley_terry` (NUTS by default, or tempered SMC) and summarises the draws
with :func:`ppl_models.judges.ranking.summarize` on the Elo-like display scale.
"""

from __future__ import annotations

import time
import warnings
from typing import Optional, Union

import jax
import jax.numpy as jnp
import numpy as np

import ppl
from ppl_models.judges.bradley_terry import (
    bradley_terry,
    check_options,
    elo_scale,
    outcome_log_probs,
)
from ppl_models.judges.data import Battles, Comparisons, aggregate
from ppl_models.judges.presets import PRESETS
from ppl_models.judges.ranking import Ranking, summarize

__all__ = ["PRESETS", "rank", "pairwise_win_probability"]


def pairwise_win_probability(samples: dict, *, link: str, ties: str, max_draws: int = 2000):
    """``[K, K]`` posterior mean of P(i beats j) in a battle with neutral position, an average
    judge and no covariates; a tie counts half. ``samples`` holds ``rating [..., K]`` and the
    tie parameter sites, with matching leading dimensions."""
    r = np.asarray(samples["rating"]).reshape(-1, np.shape(samples["rating"])[-1])
    step = max(1, len(r) // max_draws)
    r = r[::step]
    extra = {}
    for name in ("log_nu", "log_eta"):
        if name in samples:
            extra[name] = jnp.asarray(np.asarray(samples[name]).reshape(-1)[::step])[:, None]
    out = []
    for i in range(r.shape[1]):
        d = jnp.asarray(r[:, i : i + 1] - r)
        lp = outcome_log_probs(d, link=link, ties=ties, **extra)
        p = jnp.exp(lp[..., 0]) + 0.5 * jnp.exp(lp[..., 2])
        out.append(np.asarray(p.mean(0)))
    return np.stack(out)


def _param_summary(samples: dict, names, ci: float = 0.95) -> dict:
    """Mean and central ``ci`` interval of each named parameter (and of ``nu``/``eta`` from their logs)."""
    a = (1.0 - ci) / 2.0
    out = {}
    for n in names:
        if n not in samples:
            continue
        x = np.asarray(samples[n], np.float64)
        x = x.reshape(x.shape[0] * x.shape[1], -1)
        q = np.quantile(x, [a, 1.0 - a], axis=0)
        vals = {"mean": x.mean(0).tolist(), "ci_low": q[0].tolist(), "ci_high": q[1].tolist()}
        if x.shape[1] == 1:
            vals = {k: v[0] for k, v in vals.items()}
        out[n] = vals
    if "log_nu" in out:
        out["nu"] = _exp_summary(samples["log_nu"], a)
    if "log_eta" in out:
        out["eta"] = _exp_summary(samples["log_eta"], a)
    return out


def _exp_summary(x, a: float = 0.025):
    x = np.exp(np.asarray(x, np.float64).reshape(-1))
    q = np.quantile(x, [a, 1.0 - a])
    return {"mean": float(x.mean()), "ci_low": float(q[0]), "ci_high": float(q[1])}


def rank(
    data: Union[Battles, Comparisons],
    *,
    key=None,
    method: str = "nuts",
    link: str = "logit",
    ties: str = "davidson",
    position_bias: bool = False,
    judge_effects: bool = False,
    identify: str = "sum_to_zero",
    prior: str = "normal",
    prior_scale: float = 2.0,
    display: str = "elo",
    anchor: Optional[Union[int, str]] = None,
    base: Optional[float] = None,
    ci: float = 0.95,
    level: float = 0.95,
    **infer_options,
) -> Ranking:
    """Fit a Bradley–Terry-family model to battles and summarise the ranking.

    Args:
        data: a validated :class:`~ppl_models.judges.data.Battles` log (aggregated here by
            :func:`~ppl_models.judges.data.aggregate`: by judge only with ``judge_effects``,
            continuous covariates summarised by its default node rule) or :class:`~ppl_models.judges.data.Comparisons`.
        key: JAX PRNG key (default ``jax.random.key(0)``).
        method: ``"nuts"`` or ``"tempered_smc"`` (:func:`ppl.infer`: posterior credible
            intervals), or ``"bootstrap"``: percentile intervals of the maximum-likelihood
            ratings refitted on resamples of the battles (Chatbot Arena's recipe;
            ``num_bootstrap=``, default 100; :mod:`ppl_models.judges.bootstrap`).
        link, ties, position_bias, judge_effects, identify, prior, prior_scale: model options
            of :func:`ppl_models.judges.bradley_terry`.
        display: ``"elo"`` (``400/ln 10`` points per logit, the anchor at ``base``, default
            1000) or ``"latent"`` (raw units, anchor at 0).
        anchor: model (name or index) shown at ``base`` on the display scale (and fixed at 0
            when ``identify="anchor"``); default: the mean strength.
        ci, level: interval mass; posterior probability that separates tied groups.
        **infer_options: options of the inference method (``num_chains``, ``num_warmup``,
            ``num_samples``, ``num_particles``, ...).

    Returns:
        :class:`~ppl_models.judges.ranking.Ranking` (``.result`` is the :class:`ppl.PosteriorResult`;
        ``.diagnostics`` has timings, divergences, R-hat and ESS).
    """
    check_options(link, ties, identify, prior)
    if display not in ("elo", "latent"):
        raise ValueError(f"display must be 'elo' or 'latent', got {display!r}")
    t0 = time.perf_counter()
    comps = aggregate(data, by_judge=judge_effects) if isinstance(data, Battles) else data
    if not isinstance(comps, Comparisons):
        raise TypeError(f"data must be Battles or Comparisons, got {type(data).__name__}")
    if comps.num_models < 2:
        raise ValueError(f"ranking needs at least 2 models, got {list(comps.models)}")
    a_idx = None
    if anchor is not None:
        if isinstance(anchor, str):
            if anchor not in comps.models:
                raise ValueError(f"anchor: model {anchor!r} is not in the data; models: {list(comps.models)}")
            a_idx = comps.models.index(anchor)
        else:
            a_idx = int(anchor)
    if judge_effects and not comps.judges:
        raise ValueError("judge_effects=True needs a 'judge' column in the battle log")
    unused = comps.unused_models()
    if unused:
        warnings.warn(
            f"models with no battles (their ratings come from the prior only): {list(unused)}",
            stacklevel=2,
        )
        if prior == "flat":
            raise ValueError(
                f"models {list(unused)} have no battles: with prior='flat' their ratings are "
                "improper; use prior='normal' or drop them"
            )
    parts = comps.components()
    if len(parts) > 1:
        warnings.warn(f"the comparisons fall into {len(parts)} parts that never meet ({parts}); ratings in "
                      "different parts are related only through the prior", stacklevel=2)
    if ties == "none" and float(np.asarray(comps.counts)[:, 2].sum()) > 0:
        warnings.warn(
            f"ties='none' discards {float(np.asarray(comps.counts)[:, 2].sum()):g} tied battles",
            stacklevel=2,
        )
    opts = dict(
        link=link,
        ties=ties,
        position_bias=position_bias,
        judge_effects=judge_effects,
        identify=identify,
        anchor=0 if a_idx is None else a_idx,
        prior=prior,
        prior_scale=float(prior_scale),
    )
    if method == "nuts":
        infer_options.setdefault("num_chains", 4)
    key = jax.random.key(0) if key is None else key
    t1 = time.perf_counter()
    if method == "bootstrap":  # percentile intervals of refitted MLEs (Arena's recipe), not a posterior
        from ppl_models.judges.bootstrap import bootstrap_mle

        seed = int(jax.random.randint(key, (), 0, 2**31 - 1))
        samples, boot = bootstrap_mle(comps, seed=seed, **{k: v for k, v in opts.items() if k not in
                                                           ("prior", "prior_scale")}, **infer_options)
        result = None
    else:
        result = ppl.infer(bradley_terry, comps, method=method, key=key, **opts, **infer_options)
        jax.block_until_ready(result.samples)
        samples = {k: np.asarray(v) for k, v in result.samples.items()}
    t2 = time.perf_counter()
    if not np.all(np.isfinite(samples["rating"])):
        raise FloatingPointError("rank: the sampler returned non-finite ratings")
    scale = elo_scale(link) if display == "elo" else 1.0
    base = (1000.0 if display == "elo" else 0.0) if base is None else float(base)
    p_win = pairwise_win_probability(samples, link=link, ties=ties)
    params = _param_summary(
        samples, ("position_bias", "log_nu", "log_eta", "judge_bias", "judge_discrimination", "beta"), ci
    )
    name = f"Elo scale, {scale:.1f} points per latent unit, " + (
        f"{comps.models[a_idx]} = {base:g}" if a_idx is not None else f"mean = {base:g}"
    ) if display == "elo" else "latent units"
    ranking = summarize(
        samples["rating"],
        comps.models,
        ci=ci,
        level=level,
        scale=scale,
        base=base,
        anchor=a_idx,
        scale_name=name,
        p_win=p_win,
        num_battles=comps.battles_per_model(),
        params=params,
        result=result,
    )
    diag = ranking.diagnostics
    diag.update(
        {
            "method": method,
            "model": {k: v for k, v in opts.items()},
            "num_rows": comps.num_rows,
            "num_battles": float(np.asarray(comps.counts).sum()),
            "prepare_s": t1 - t0,
            "inference_s": t2 - t1,
            "summary_s": time.perf_counter() - t2,
            "unused_models": list(unused),
        }
    )
    if result is None:  # the bootstrap: no sampler, no R-hat
        diag.update(boot)
        for k in ("r_hat", "ess_bulk", "max_r_hat", "min_ess_bulk"):
            diag.pop(k, None)
        return ranking
    if "divergences" in result.diagnostics:
        diag["divergences"] = int(np.asarray(result.diagnostics["divergences"]).sum())
    if result.log_evidence is not None:
        diag["log_evidence"] = [float(v) for v in np.asarray(result.log_evidence)]
    return ranking
