r"""NUTS for static numpyro models, returning a :class:`~ppl.core.posterior.PosteriorResult`.

Runs numpyro's :class:`numpyro.infer.NUTS` kernel (Hoffman & Gelman 2014; multinomial
trajectory sampling as in Betancourt 2017) with step-size and diagonal mass-matrix adaptation
during ``num_warmup`` iterations. It targets the posterior
:math:`p(\theta \mid y) \propto p(\theta)\,p(y \mid \theta)` in numpyro's unconstrained space
and reports constrained values. Unlike :func:`ppl.tempered_smc` it gives no evidence estimate.

The warm-up and sampling loops are ``lax.scan`` s inside one compiled function per (model,
static configuration), cached: array model arguments are traced, so re-running on new data of
the same shape does not recompile (``numpyro.infer.MCMC`` recompiles on every ``run``). With
``progress_bar=True`` the run goes through ``numpyro.infer.MCMC`` instead, for its progress bar.
"""

from __future__ import annotations

import warnings
from typing import NamedTuple

import jax
import jax.numpy as jnp
from numpyro.handlers import seed, trace
from numpyro.infer import MCMC, NUTS

from ppl.core.posterior import PosteriorResult
from ppl.core.cache import LRUCache, structural_key
from ppl.core.checks import check_int, check_key, check_model_data
from ppl.smc.tempering import merge_model_args, split_model_args

__all__ = ["nuts"]

CHAIN_METHODS = ("vectorized", "parallel", "sequential")



def _check_no_discrete_latents(model_trace):
    try:
        import funsor  # noqa: F401  (numpyro enumerates discrete sites with it)

        return
    except ImportError:
        pass
    for name, site in model_trace.items():
        if site["type"] == "sample" and not site["is_observed"]:
            if getattr(site["fn"].support, "is_discrete", False):
                raise ValueError(
                    f"model site {name!r} is a discrete latent variable "
                    f"({type(site['fn']).__name__}); NUTS needs continuous latent sites. "
                    "Marginalise it out with a numpyro.factor, or install funsor for numpyro's "
                    "enumeration of discrete sites."
                )


class _Draws(NamedTuple):
    z: dict
    diverging: jax.Array
    accept_prob: jax.Array
    num_steps: jax.Array
    energy: jax.Array
    potential_energy: jax.Array
    step_size: jax.Array


def _build_runner(model, static_spec, num_chains, num_warmup, num_samples, chain_method):
    def one_chain(key, dynamic_args):
        args, kwargs = merge_model_args(dynamic_args, static_spec)
        k_check, k_init = jax.random.split(key)
        _check_no_discrete_latents(trace(seed(model, k_check)).get_trace(*args, **kwargs))
        kernel = NUTS(model)  # fresh per trace: it keeps closures over the (traced) data
        state = kernel.init(k_init, num_warmup, model_args=args, model_kwargs=kwargs)

        def warm(state, _):
            return kernel.sample(state, args, kwargs), None

        def draw(state, _):
            state = kernel.sample(state, args, kwargs)
            return state, _Draws(
                state.z,
                state.diverging,
                state.accept_prob,
                state.num_steps,
                state.energy,
                state.potential_energy,
                state.adapt_state.step_size,
            )

        state, _ = jax.lax.scan(warm, state, None, length=num_warmup)
        _, draws = jax.lax.scan(draw, state, None, length=num_samples)
        constrained = jax.vmap(kernel.postprocess_fn(args, kwargs))(draws.z)
        return constrained, draws._replace(z=None)

    if chain_method == "vectorized":
        return jax.jit(jax.vmap(one_chain, in_axes=(0, None)))
    if chain_method == "parallel":
        return jax.pmap(one_chain, in_axes=(0, None))
    return jax.jit(lambda keys, d: jax.lax.map(lambda k: one_chain(k, d), keys))


_RUNNER_CACHE = LRUCache(32)


def _get_runner(model, *rest):
    # The model by structure (a new but equal function or closure shares the compiled runner);
    # an unhashable static model argument compiles without caching.
    key = (structural_key(model),) + rest
    return _RUNNER_CACHE.get(key, lambda: _build_runner(model, *rest))


def _run_numpyro_mcmc(model, args, kwargs, key, num_chains, num_warmup, num_samples, method):
    _check_no_discrete_latents(trace(seed(model, jax.random.key(0))).get_trace(*args, **kwargs))
    mcmc = MCMC(
        NUTS(model),
        num_warmup=num_warmup,
        num_samples=num_samples,
        num_chains=num_chains,
        chain_method=method,
        progress_bar=True,
    )
    fields = ("diverging", "accept_prob", "num_steps", "energy", "potential_energy",
              "adapt_state.step_size")
    mcmc.run(key, *args, extra_fields=fields, **kwargs)
    extra = mcmc.get_extra_fields(group_by_chain=True)
    draws = _Draws(None, *(extra[f] for f in fields))
    return mcmc.get_samples(group_by_chain=True), draws


def nuts(
    model,
    *model_args,
    key,
    num_chains: int = 4,
    num_warmup: int = 500,
    num_samples: int = 500,
    chain_method: str = "vectorized",
    progress_bar: bool = False,
    **model_kwargs,
) -> PosteriorResult:
    """Sample the posterior of a numpyro model with NUTS (numpyro).

    Args:
        model: a numpyro model with continuous latent sites.
        *model_args, **model_kwargs: passed to the model.
        key: a JAX PRNG key (``jax.random.key(0)``).
        num_chains: independent chains (each with its own warm-up).
        num_warmup: warm-up (adaptation) iterations per chain, discarded.
        num_samples: kept draws per chain.
        chain_method: ``"vectorized"`` (one vmapped program), ``"parallel"`` (one device per
            chain; falls back to sequential with a warning when there are too few devices) or
            ``"sequential"``.
        progress_bar: show numpyro's progress bar (runs through ``numpyro.infer.MCMC``, which
            compiles on every call).

    Returns:
        :class:`PosteriorResult` with ``samples[site] [chains, draws, ...]`` (latent and
        deterministic sites, constrained), ``log_weights=None``, ``log_evidence=None`` and
        ``diagnostics``: ``diverging``, ``accept_prob``, ``num_steps`` (leapfrog steps),
        ``tree_depth``, ``step_size``, ``energy``, ``potential_energy`` (all
        ``[chains, draws]``) and ``divergences [chains]`` (count per chain).
    """
    if not callable(model):
        raise TypeError(f"nuts: model must be a callable numpyro model, got {type(model).__name__}")
    check_key(key, "nuts")
    num_chains = check_int("num_chains", num_chains, 1, "nuts")
    num_warmup = check_int("num_warmup", num_warmup, 0, "nuts")
    num_samples = check_int("num_samples", num_samples, 1, "nuts")
    if chain_method not in CHAIN_METHODS:
        raise ValueError(f"nuts: chain_method must be one of {CHAIN_METHODS}, got {chain_method!r}")
    check_model_data(model, model_args, model_kwargs, "nuts")
    if chain_method == "parallel" and jax.local_device_count() < num_chains:
        warnings.warn(
            f"nuts: chain_method='parallel' needs {num_chains} devices, found "
            f"{jax.local_device_count()}; running the chains sequentially",
            stacklevel=2,
        )
        chain_method = "sequential"

    if progress_bar:
        samples, extra = _run_numpyro_mcmc(
            model, model_args, model_kwargs, key, num_chains, num_warmup, num_samples, chain_method
        )
    else:
        dynamic, static_spec = split_model_args(model_args, model_kwargs)
        runner = _get_runner(model, static_spec, num_chains, num_warmup, num_samples, chain_method)
        samples, extra = runner(jax.random.split(key, num_chains), dynamic)
    diagnostics = {
        "diverging": extra.diverging,
        "divergences": jnp.sum(extra.diverging, axis=1),
        "accept_prob": extra.accept_prob,
        "num_steps": extra.num_steps,
        "tree_depth": jnp.ceil(jnp.log2(extra.num_steps.astype(jnp.float32) + 1.0)).astype(
            jnp.int32
        ),
        "step_size": extra.step_size,
        "energy": extra.energy,
        "potential_energy": extra.potential_energy,
    }
    return PosteriorResult(
        samples=dict(samples),
        log_weights=None,
        log_evidence=None,
        diagnostics=diagnostics,
        method="nuts",
    )
