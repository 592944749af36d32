"""Conversion of ppl results to :class:`arviz.InferenceData`: :func:`to_arviz`.

The conversion is one way: this module reads the engine's result types; they do not know it.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from ppl.core.posterior import PosteriorResult
from ppl.smc.conditional import ParticleGibbsResult
from ppl.smc.loop import SMCResult, trajectories
from ppl.smc.resampling import gather, systematic

__all__ = ["particle_gibbs_to_inference_data", "posterior_to_inference_data", "scaling_to_inference_data",
           "smc_to_inference_data", "to_arviz"]

# NUTS diagnostics -> ArviZ's conventional sample_stats names.
_NUTS_STATS = {
    "diverging": "diverging",
    "accept_prob": "acceptance_rate",
    "num_steps": "n_steps",
    "step_size": "step_size",
    "energy": "energy",
    "tree_depth": "tree_depth",
}


def posterior_to_inference_data(result):
    """Convert a :class:`ppl.analysis.results.PosteriorResult` to :class:`arviz.InferenceData`.

    Groups:
        posterior: every sample site, dims ``(chain, draw, <site>_dim_0, ...)``.
        sample_stats: ``log_weight (chain, draw)`` (uniform ``-log(draws)`` for MCMC),
            ``log_evidence (chain, draw)`` (the per-chain estimate repeated over draws; only when
            the method estimates it), and per-draw method statistics: for NUTS ``diverging``,
            ``acceptance_rate``, ``n_steps``, ``tree_depth``, ``step_size``, ``energy`` and
            ``lp`` (the unnormalised log posterior density, ``-potential_energy``); for tempered
            SMC the per-particle ``log_likelihood`` and ``lp`` (log prior + log likelihood in
            the unconstrained space), plus the tempering trace ``temperature``, ``ess``,
            ``tempering_acceptance_rate`` and ``log_evidence_increment`` along the dimension
            ``tempering_step``.

    ``az.summary(idata)`` and ``az.plot_posterior(idata)`` work on the result. For tempered
    SMC the particles are equally weighted after the final resampling, so ArviZ's unweighted
    statistics are the right ones; ``r_hat`` is not meaningful with one chain.
    """
    import arviz as az
    import xarray as xr

    samples = {k: np.asarray(v) for k, v in result.samples.items()}
    chains, draws = result.num_chains, result.num_draws
    coords = {"chain": np.arange(chains), "draw": np.arange(draws)}
    posterior = xr.Dataset(_vars_with_dims(samples), coords=coords)

    stats: dict = {}
    if result.log_weights is not None:
        stats["log_weight"] = (["chain", "draw"], np.asarray(result.log_weights))
    else:
        stats["log_weight"] = (["chain", "draw"], np.full((chains, draws), -np.log(draws)))
    if result.log_evidence is not None:
        lz = np.asarray(result.log_evidence).reshape(chains, 1)
        stats["log_evidence"] = (["chain", "draw"], np.broadcast_to(lz, (chains, draws)).copy())

    diag = {k: np.asarray(v) for k, v in (result.diagnostics or {}).items()}
    if result.method == "nuts":
        for src, dst in _NUTS_STATS.items():
            if src in diag and diag[src].shape[:2] == (chains, draws):
                stats[dst] = (["chain", "draw"], diag[src])
        if "potential_energy" in diag:
            stats["lp"] = (["chain", "draw"], -diag["potential_energy"])
    else:
        if "log_likelihood" in diag:
            stats["log_likelihood"] = (["chain", "draw"], diag["log_likelihood"])
            if "log_prior" in diag:
                stats["lp"] = (["chain", "draw"], diag["log_prior"] + diag["log_likelihood"])
        for src, dst in (
            ("temperatures", "temperature"),
            ("ess", "ess"),
            ("acceptance_rate", "tempering_acceptance_rate"),
            ("log_evidence_increments", "log_evidence_increment"),
        ):
            if src in diag and diag[src].ndim == 1:
                stats[dst] = (["tempering_step"], diag[src])

    sample_stats = xr.Dataset(stats, coords=coords)
    attrs = {"inference_library": "ppl", "method": result.method}
    posterior.attrs.update(attrs)
    sample_stats.attrs.update(attrs)
    return az.InferenceData(posterior=posterior, sample_stats=sample_stats)


# ------------------------------------------------------------------------------------------
# Feynman–Kac results: SMC runs and particle Gibbs chains


def _state_variables(tree, lead: int) -> dict:
    """Name the leaves of a particle-state pytree for ArviZ.

    An array is ``x``; a dict or NamedTuple gives its keys / fields; a
    :class:`~ppl.core.step_program.ProgramState` gives its latent sites (by site name) and its
    return value (``value`` or ``value.<key>``) unless that is one of the sites (no variable twice). ``lead`` leading axes are (chain, draw, ...).
    """
    from ppl.core.step_program import INIT_SITE, ProgramState

    if isinstance(tree, ProgramState):
        out = {k: v for k, v in tree.sites.items() if k != INIT_SITE}
        for name, v in _state_variables(tree.value, lead).items():
            if any(np.shape(v) == np.shape(s) and np.array_equal(np.asarray(v), np.asarray(s)) for s in out.values()):
                continue  # the return value is a site (the usual `return x`): listed once
            out["value" if name == "x" else f"value.{name}"] = v
        return out
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    if len(leaves) == 1 and not leaves[0][0]:
        return {"x": leaves[0][1]}
    out = {}
    for path, leaf in leaves:
        name = ".".join(str(getattr(p, "key", getattr(p, "name", getattr(p, "idx", p)))) for p in path)
        out[name] = leaf
    return out


def _vars_with_dims(values: dict, extra: tuple = ()) -> dict:
    data_vars = {}
    for name, v in values.items():
        v = np.asarray(v)
        dims = ["chain", "draw", *extra]
        dims += [f"{name}_dim_{i}" for i in range(v.ndim - len(dims))]
        data_vars[name] = (dims, v)
    return data_vars


def smc_to_inference_data(result, *, resample_key=None):
    """Convert a :class:`ppl.smc.loop.SMCResult` to :class:`arviz.InferenceData`.

    One chain per SMC run (a batch of keys gives several chains); the draws are the final
    particles — or, for a run with ``keep_history=True``, their whole ancestral paths, with a
    ``time`` dimension. ArviZ treats draws as equally weighted, so the weighted particles are
    resampled first. Groups:

    posterior
        :math:`N` equally weighted draws: a systematic resample of the particles by their
        weights (``resample_key``, default ``jax.random.key(0)``), so that ``az.summary``
        estimates the weighted posterior's expectations; the state's variables (see
        :func:`_state_variables`), ``(chain, draw[, time], ...)``.
    weighted_posterior
        the particles as they are, with ``log_weight (chain, draw)``, their normalised
        log-weights (the particle approximation itself: weighted means are
        :math:`\\sum_n W^n f(x^n)`); ``attrs["ess"]``, each chain's effective sample size.
    sample_stats
        ``log_weight (chain, draw)`` of the resampled draws (uniform); ``log_evidence (chain,
        draw)`` — each run's :math:`\\log \\hat Z`, repeated over draws; per-step diagnostics
        ``ess``, ``log_evidence_increment`` and ``resampled`` along ``step``.
    """
    import arviz as az
    import xarray as xr

    batched = np.ndim(result.log_evidence) == 1
    res = result if batched else jax.tree_util.tree_map(lambda a: a[None], result)
    draws_tree = jax.vmap(trajectories)(res) if res.history is not None else res.particles
    log_w = res.log_weights
    chains, n = log_w.shape
    keys = jax.random.split(jax.random.key(0) if resample_key is None else resample_key, chains)
    idx = jax.vmap(lambda k, lw: systematic(k, lw, n))(keys, log_w)
    coords = {"chain": np.arange(chains), "draw": np.arange(n)}
    extra = ("time",) if res.history is not None else ()
    weighted = _vars_with_dims(_state_variables(draws_tree, 2), extra)
    posterior = xr.Dataset(_vars_with_dims(_state_variables(jax.vmap(gather)(draws_tree, idx), 2), extra),
                           coords=coords)
    weighted["log_weight"] = (["chain", "draw"], np.asarray(log_w))
    weighted_posterior = xr.Dataset(weighted, coords=coords)
    weighted_posterior.attrs["ess"] = np.asarray(1.0 / jnp.sum(jnp.exp(2.0 * log_w), axis=-1)).tolist()
    lz = np.asarray(res.log_evidence).reshape(chains, 1)
    stats = {
        "log_weight": (["chain", "draw"], np.full((chains, n), -np.log(n))),
        "log_evidence": (["chain", "draw"], np.broadcast_to(lz, (chains, n)).copy()),
        "ess": (["chain", "step"], np.asarray(res.ess)),
        "log_evidence_increment": (["chain", "step"], np.asarray(res.log_evidence_increments)),
        "resampled": (["chain", "step"], np.asarray(res.resampled)),
    }
    sample_stats = xr.Dataset(stats, coords=coords)
    return az.InferenceData(posterior=posterior, weighted_posterior=weighted_posterior, sample_stats=sample_stats)


def particle_gibbs_to_inference_data(result):
    """Convert a :class:`ppl.smc.conditional.ParticleGibbsResult` to :class:`arviz.InferenceData`.

    Iterations are draws (one chain per key of a batch), each draw a whole trajectory with a
    ``time`` dimension; ``sample_stats.log_evidence`` holds each conditional sweep's estimate.
    Discard a burn-in with ``idata.sel(draw=slice(burn, None))``.
    """
    import arviz as az
    import xarray as xr

    batched = np.ndim(result.log_evidence) == 2
    res = result if batched else jax.tree_util.tree_map(lambda a: a[None], result)
    chains, draws = res.log_evidence.shape
    coords = {"chain": np.arange(chains), "draw": np.arange(draws)}
    posterior = xr.Dataset(_vars_with_dims(_state_variables(res.trajectories, 2), ("time",)), coords=coords)
    sample_stats = xr.Dataset({"log_evidence": (["chain", "draw"], np.asarray(res.log_evidence))},
                              coords=coords)
    return az.InferenceData(posterior=posterior, sample_stats=sample_stats)


def scaling_to_inference_data(result, resample_key=None):
    """``arviz.InferenceData`` of a :class:`ppl.scaling.ScalingResult`'s particles (one chain), as
    for an SMC run (:func:`smc_to_inference_data`).

    ``weighted_posterior`` holds the particles as they are: ``score`` and ``num_tokens``,
    with ``log_weight``; ``posterior`` holds :math:`N` equally weighted draws of them (a
    systematic resample; ``resample_key`` defaults to ``jax.random.key(0)``), so that
    ``az.summary`` gives weighted means. Answers are labels, not quantities: the group
    ``answers`` holds ``probability`` along ``answer`` (the labels of ``answer_posterior``,
    as text), and each particle's answer index (``-1``: none) is ``answer`` in
    ``weighted_posterior``. ``attrs`` hold the method, the budget, the chosen answer and the
    compute."""
    import arviz as az
    import xarray as xr

    labels = list(result.answer_posterior)
    codes = {a: i for i, a in enumerate(labels)}
    answer_code = np.array([codes[a] if a is not None else -1 for a in result.answers], np.int64)
    n_tok = np.array([len(g) for g in result.generations()], np.int64)
    n = len(result.answers)
    coords = {"chain": [0], "draw": np.arange(n)}
    values = {"score": np.asarray(result.scores, np.float64), "num_tokens": n_tok}
    lw = np.asarray(result.log_weights, np.float64)
    idx = np.asarray(systematic(jax.random.key(0) if resample_key is None else resample_key,
                                jnp.asarray(lw, jnp.float32), n))
    dims = ["chain", "draw"]
    posterior = xr.Dataset({k: (dims, v[idx][None]) for k, v in values.items()}, coords=coords)
    weighted = xr.Dataset({**{k: (dims, v[None]) for k, v in values.items()},
                           "answer": (dims, answer_code[None]), "log_weight": (dims, lw[None])}, coords=coords)
    answers = xr.Dataset({"probability": (["answer"], np.array(list(result.answer_posterior.values())))},
                         coords={"answer": [str(a) for a in labels]})
    attrs = {"method": result.method, "budget": -1 if result.budget is None else int(result.budget),
             "answer": str(result.answer), "answer_code": -1 if result.answer is None else codes.get(result.answer, -1)}
    attrs.update({f"compute_{k}": v for k, v in result.compute.as_dict().items()})
    for ds in (posterior, weighted):
        ds.attrs.update(attrs)
    return az.InferenceData(posterior=posterior, weighted_posterior=weighted, answers=answers)


@functools.singledispatch
def to_arviz(result, **kwargs):
    """``arviz.InferenceData`` of any ppl result: an :class:`~ppl.smc.loop.SMCResult`
    (:func:`smc_to_inference_data`; ``resample_key=`` turns the weighted particles into equally
    weighted draws), a :class:`~ppl.smc.conditional.ParticleGibbsResult`
    (:func:`particle_gibbs_to_inference_data`), a :class:`~ppl.core.posterior.PosteriorResult`
    (:func:`posterior_to_inference_data`), or an object with its own ``to_arviz()`` (e.g.
    :class:`ppl.scaling.ScalingResult`)."""
    method = getattr(result, "to_arviz", None)
    if not callable(method):
        raise TypeError(f"result: no ArviZ conversion for {type(result).__name__}")
    return method(**kwargs)


to_arviz.register(SMCResult, smc_to_inference_data)
to_arviz.register(ParticleGibbsResult, particle_gibbs_to_inference_data)
to_arviz.register(PosteriorResult, posterior_to_inference_data)
