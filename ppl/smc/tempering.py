r"""Adaptive tempered SMC for static numpyro models.

Write :math:`\theta` for the latent sites of a numpyro model, mapped to numpyro's
unconstrained space :math:`z = T^{-1}(\theta)` with :math:`T` = ``biject_to(site.support)``.
The model's joint density splits into a prior part and a likelihood part,

.. math::
    \log p_0(z) = \sum_{\text{latent } s} c_s\big[\log p_s(\theta_s) + \log|\det J_{T_s}(z_s)|\big],
    \qquad
    \ell(z) = \sum_{\text{observed } s} c_s \log p_s(y_s \mid \theta),

where the "observed" sites are the ``obs=`` sample sites and the ``numpyro.factor`` sites, and
:math:`c_s` is the site's ``scale`` (plates with subsampling). Tempered SMC walks through the
bridge of distributions

.. math:: \pi_\beta(z) \propto p_0(z)\, \exp\{\beta\,\ell(z)\}, \qquad
          0 = \beta_0 < \beta_1 < \dots < \beta_T = 1,

as a Feynman–Kac model with potentials :math:`G_t(z) = \exp\{(\beta_t - \beta_{t-1})\ell(z)\}`
and MCMC moves that leave :math:`\pi_{\beta_t}` invariant (Del Moral, Doucet & Jasra 2006;
Chopin 2002). With :math:`N` particles drawn from the prior:

1. **choose** :math:`\beta_t`: the largest :math:`\beta' \le 1` such that the effective sample
   size of the incremental weights :math:`w_i = \exp\{(\beta' - \beta_{t-1})\ell(z_i)\}`,
   :math:`\mathrm{ESS} = (\sum_i w_i)^2 / \sum_i w_i^2`, is at least ``target_ess`` :math:`\cdot N`
   (bisection with a fixed number of iterations; Jasra et al. 2011), or read it from a fixed
   schedule;
2. **reweight** and accumulate the evidence,
   :math:`\log \hat Z \mathrel{+}= \log \sum_i W_i^{t-1} w_i` (:math:`W^{t-1}` the normalised
   previous weights, uniform after resampling);
3. **resample** (every step) with the chosen scheme;
4. **move** each particle with ``num_mcmc_steps`` MCMC steps targeting :math:`\pi_{\beta_t}`
   (:mod:`ppl.smc.kernels`), tuned from the population.

:math:`\hat Z` is an unbiased estimate of the marginal likelihood :math:`p(y)` of the model (in
the model's own parametrisation: the Jacobian makes the evidence parametrisation-invariant).

Everything runs in one ``jax.jit``-compiled ``lax.while_loop``. Static configuration (number of
particles, kernel, steps, resampling scheme, the model function itself and non-array model
arguments) is static; array model arguments are traced, so re-running on new data of the same
shape does not recompile.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree
from jax.scipy.special import logsumexp
from numpyro.distributions import biject_to
from numpyro.distributions.util import sum_rightmost
from numpyro.handlers import seed, substitute, trace

from ppl.core.posterior import PosteriorResult
from ppl.smc.kernels import get_kernel
from ppl.smc.resampling import gather, get_scheme

from ppl.core.cache import LRUCache, structural_key
from ppl.core.checks import check_int, check_key, check_model_data
from ppl.core.errors import SMCError

__all__ = ["tempered_smc", "SMCError"]

_BISECTION_ITERS = 50
_STATUS_OK, _STATUS_NAN, _STATUS_COLLAPSE, _STATUS_MAX_STEPS = 0, 1, 2, 3


# ------------------------------------------------------------------------------------------
# Model plumbing: split args into traced / static, trace the model, prior vs likelihood
# ------------------------------------------------------------------------------------------


def _is_array(x) -> bool:
    return isinstance(x, (jax.Array, np.ndarray, np.generic))


def split_model_args(model_args: tuple, model_kwargs: dict):
    """Split ``(args, kwargs)`` into traced array leaves and a hashable static description.

    Array leaves (``jax.Array``, ``numpy.ndarray``) become traced inputs of the compiled
    function; every other leaf (Python numbers, strings, ``None``...) is treated as static
    configuration (it may determine shapes) and becomes part of the compilation cache key.
    """
    leaves, treedef = jax.tree_util.tree_flatten((tuple(model_args), dict(model_kwargs)))
    mask = tuple(_is_array(x) for x in leaves)
    dynamic = [jnp.asarray(x) for x, m in zip(leaves, mask) if m]
    static = tuple(None if m else x for x, m in zip(leaves, mask))
    return dynamic, (treedef, mask, static)


def merge_model_args(dynamic, static_spec):
    treedef, mask, static = static_spec
    it = iter(dynamic)
    leaves = [next(it) if m else s for m, s in zip(mask, static)]
    args, kwargs = jax.tree_util.tree_unflatten(treedef, leaves)
    return args, kwargs


def latent_sites(model_trace) -> list[str]:
    """Names of the latent (not observed) sample sites; raises on discrete ones."""
    names = []
    for name, site in model_trace.items():
        if site["type"] != "sample" or site["is_observed"]:
            continue
        if site["infer"].get("is_auxiliary", False):
            continue
        fn = site["fn"]
        if getattr(fn.support, "is_discrete", False):
            raise ValueError(
                f"model site {name!r} is a discrete latent variable ({type(fn).__name__}); "
                "tempered_smc moves particles with gradient-free or gradient-based MCMC on "
                "continuous unconstrained space. Marginalise the site out of the model (sum its "
                "probabilities into a numpyro.factor), or observe it."
            )
        names.append(name)
    if not names:
        raise ValueError(
            "model has no latent sample sites: there is nothing to infer (observed sites need "
            "obs=..., latent ones must not have it)"
        )
    return names


def _site_log_prob(site, value=None):
    value = site["value"] if value is None else value
    fn = site["fn"]
    if site["intermediates"]:
        lp = fn.log_prob(value, site["intermediates"])
    else:
        lp = fn.log_prob(value)
    scale = site["scale"]
    if scale is not None:
        lp = scale * lp
    return jnp.sum(lp)


def make_log_densities(model, args, kwargs, latent: list[str], unravel):
    r"""Return ``fn(z) -> (log_prior, log_likelihood, trace)`` on flat unconstrained vectors.

    ``log_prior`` includes :math:`\log|\det J_T(z)|` of each latent site's bijection, computed
    with the distribution the site has in *this* run (so supports that depend on other latent
    values are handled).
    """
    rng = jax.random.key(0)  # only reached by subsampling plates; keeps the target deterministic

    def fn(z):
        u = unravel(z)

        def sub(msg):
            if msg["type"] == "sample" and not msg["is_observed"] and msg["name"] in u:
                return biject_to(msg["fn"].support)(u[msg["name"]])
            return None

        tr = trace(substitute(seed(model, rng), substitute_fn=sub)).get_trace(*args, **kwargs)
        log_prior = jnp.zeros(())
        log_lik = jnp.zeros(())
        for name, site in tr.items():
            if site["type"] != "sample":
                continue
            if site["is_observed"]:
                log_lik = log_lik + _site_log_prob(site)
            elif name in u:
                fn_ = site["fn"]
                t = biject_to(fn_.support)
                log_det = t.log_abs_det_jacobian(u[name], site["value"])
                log_det = sum_rightmost(
                    log_det, jnp.ndim(log_det) - jnp.ndim(site["value"]) + len(fn_.event_shape)
                )
                if site["scale"] is not None:
                    log_det = site["scale"] * log_det
                log_prior = log_prior + _site_log_prob(site) + jnp.sum(log_det)
        return log_prior, log_lik, tr

    return fn


# ------------------------------------------------------------------------------------------
# Tempering
# ------------------------------------------------------------------------------------------


def _safe_increment(delta, log_lik):
    r"""Incremental log-weight :math:`\delta\,\ell`, with :math:`\ell = -\infty \mapsto -\infty`
    (so that :math:`0 \cdot (-\infty)` never makes a NaN)."""
    return jnp.where(jnp.isneginf(log_lik), -jnp.inf, delta * log_lik)


def _ess(log_w):
    return jnp.exp(2.0 * logsumexp(log_w) - logsumexp(2.0 * log_w))


def next_temperature(log_lik, beta, target_ess_fraction):
    r"""The next inverse temperature :math:`\beta' \in (\beta, 1]`.

    :math:`\beta' = 1` if the ESS of :math:`\exp\{(1-\beta)\ell_i\}` is at least
    :math:`\rho N` (:math:`\rho` = ``target_ess_fraction``); otherwise :math:`\beta' = \beta+\delta`
    where :math:`\mathrm{ESS}(\delta) = \rho N`, found by ``50`` bisection steps on
    :math:`\delta \in (0, 1-\beta]` (the ESS decreases in :math:`\delta`). The upper end of the
    final bracket is returned, so :math:`\beta' > \beta` always.
    """
    n = log_lik.shape[0]
    target = target_ess_fraction * n
    # Particles with NaN log-likelihood are reported by the caller; ignore them here.
    ll = jnp.where(jnp.isnan(log_lik), -jnp.inf, log_lik)
    span = 1.0 - beta

    def ess_at(delta):
        return _ess(_safe_increment(delta, ll))

    def bisect(_, bracket):
        lo, hi = bracket
        mid = 0.5 * (lo + hi)
        ok = ess_at(mid) >= target
        return jnp.where(ok, mid, lo), jnp.where(ok, hi, mid)

    _, hi = jax.lax.fori_loop(0, _BISECTION_ITERS, bisect, (jnp.zeros_like(span), span))
    return jnp.where(ess_at(span) >= target, jnp.ones_like(beta), beta + hi)


class _LoopState(NamedTuple):
    step: jax.Array
    beta: jax.Array
    key: jax.Array
    z: jax.Array  # [N, d]
    log_prior: jax.Array  # [N]
    log_lik: jax.Array  # [N]
    log_evidence: jax.Array
    kernel_params: Any
    acceptance: jax.Array
    status: jax.Array
    temperatures: jax.Array  # [S]
    ess: jax.Array  # [S]
    acceptance_rate: jax.Array  # [S]
    log_evidence_increments: jax.Array  # [S]
    step_size: jax.Array  # [S]


class _RunOutput(NamedTuple):
    samples: dict
    log_prior: jax.Array
    log_likelihood: jax.Array
    log_evidence: jax.Array
    num_steps: jax.Array
    beta: jax.Array
    status: jax.Array
    temperatures: jax.Array
    ess: jax.Array
    acceptance_rate: jax.Array
    log_evidence_increments: jax.Array
    step_size: jax.Array


def _build_runner(model, static_spec, num_particles, kernel, num_mcmc_steps, num_buffer, scheme,
                  fixed_schedule):
    n = num_particles

    def run(key, dynamic_args, target_ess, temperatures):
        args, kwargs = merge_model_args(dynamic_args, static_spec)
        k_proto, k_init, k_loop = jax.random.split(key, 3)

        proto = trace(seed(model, k_proto)).get_trace(*args, **kwargs)
        latent = latent_sites(proto)

        def draw(k):
            tr = trace(seed(model, k)).get_trace(*args, **kwargs)
            return {s: biject_to(tr[s]["fn"].support).inv(tr[s]["value"]) for s in latent}

        u0 = jax.vmap(draw)(jax.random.split(k_init, n))
        _, unravel = ravel_pytree(jax.tree_util.tree_map(lambda x: x[0], u0))
        z0 = jax.vmap(lambda u: ravel_pytree(u)[0])(u0)
        densities = make_log_densities(model, args, kwargs, latent, unravel)

        def prior_lik(z):
            lp, ll, _ = densities(z)
            return lp, ll

        lp0, ll0 = jax.vmap(prior_lik)(z0)
        dtype = z0.dtype
        buf = jnp.full((num_buffer,), jnp.nan, dtype)

        init = _LoopState(
            step=jnp.zeros((), jnp.int32),
            beta=jnp.zeros((), dtype),
            key=k_loop,
            z=z0,
            log_prior=lp0,
            log_lik=ll0,
            log_evidence=jnp.zeros((), dtype),
            kernel_params=kernel.initial_params(z0),
            acceptance=jnp.full((), jnp.nan, dtype),
            status=jnp.zeros((), jnp.int32),
            temperatures=buf,
            ess=buf,
            acceptance_rate=buf,
            log_evidence_increments=buf,
            step_size=buf,
        )

        def cond(s):
            return (s.beta < 1.0) & (s.step < num_buffer) & (s.status == _STATUS_OK)

        def body(s):
            key, k_res, k_mcmc = jax.random.split(s.key, 3)
            bad = jnp.any(jnp.isnan(s.log_lik)) | jnp.any(jnp.isnan(s.log_prior))
            if fixed_schedule:
                beta_next = temperatures[s.step].astype(dtype)
            else:
                beta_next = next_temperature(s.log_lik, s.beta, target_ess).astype(dtype)
            incr = _safe_increment(beta_next - s.beta, s.log_lik)
            incr = jnp.where(jnp.isnan(incr), -jnp.inf, incr)
            # Weights before reweighting are uniform (we resample at every step).
            lz_incr = logsumexp(incr) - math.log(n)
            ess = _ess(incr)
            collapsed = ~jnp.isfinite(lz_incr)
            status = jnp.where(bad, _STATUS_NAN, jnp.where(collapsed, _STATUS_COLLAPSE, _STATUS_OK))

            # Guard the gather against all -inf weights (the loop stops on the status anyway).
            safe = jnp.where(collapsed, jnp.zeros_like(incr), incr)
            idx = scheme(k_res, safe, n)
            z, lp, ll = gather((s.z, s.log_prior, s.log_lik), idx)

            params = kernel.params_from_particles(z, previous_params=s.kernel_params)

            def logdensity(x):
                lp_, ll_ = prior_lik(x)
                return lp_ + beta_next * ll_, (lp_, ll_)

            if num_mcmc_steps > 0:
                states = jax.vmap(kernel.init, in_axes=(0, None))(z, logdensity)

                def move(carry, k):
                    # One sweep over the population, then the kernel adapts to its acceptance.
                    states, params = carry
                    states, info = kernel.step_batch(k, states, logdensity, params)
                    acc = jnp.mean(info.acceptance_rate)
                    return (states, kernel.adapt(params, acc)), acc

                (states, params), accs = jax.lax.scan(
                    move, (states, params), jax.random.split(k_mcmc, num_mcmc_steps))
                z = states.position
                lp, ll = states.aux
                acc = jnp.mean(accs).astype(dtype)
            else:
                acc = jnp.full((), jnp.nan, dtype)

            step_size = getattr(params, "step_size", jnp.full((), jnp.nan, dtype))
            i = s.step
            return _LoopState(
                step=i + 1,
                beta=beta_next,
                key=key,
                z=z,
                log_prior=lp,
                log_lik=ll,
                log_evidence=s.log_evidence + lz_incr,
                kernel_params=params,
                acceptance=acc,
                status=status,
                temperatures=s.temperatures.at[i].set(beta_next),
                ess=s.ess.at[i].set(ess),
                acceptance_rate=s.acceptance_rate.at[i].set(acc),
                log_evidence_increments=s.log_evidence_increments.at[i].set(lz_incr),
                step_size=s.step_size.at[i].set(jnp.asarray(step_size, dtype)),
            )

        s = jax.lax.while_loop(cond, body, init)
        status = jnp.where(
            (s.status == _STATUS_OK) & (s.beta < 1.0), _STATUS_MAX_STEPS, s.status
        )

        def constrained(z):
            _, _, tr = densities(z)
            out = {}
            for name, site in tr.items():
                if name in latent or site["type"] == "deterministic":
                    out[name] = site["value"]
            return out

        samples = jax.vmap(constrained)(s.z)
        return _RunOutput(
            samples=samples,
            log_prior=s.log_prior,
            log_likelihood=s.log_lik,
            log_evidence=s.log_evidence,
            num_steps=s.step,
            beta=s.beta,
            status=status,
            temperatures=s.temperatures,
            ess=s.ess,
            acceptance_rate=s.acceptance_rate,
            log_evidence_increments=s.log_evidence_increments,
            step_size=s.step_size,
        )

    return jax.jit(run)


_RUNNER_CACHE = LRUCache(64)


def _get_runner(model, *rest):
    # The model by structure (a new but equal function or closure shares the compiled runner);
    # an unhashable static model argument compiles without caching.
    key = (structural_key(model),) + rest
    return _RUNNER_CACHE.get(key, lambda: _build_runner(model, *rest))


# ------------------------------------------------------------------------------------------
# Validation and the public entry point
# ------------------------------------------------------------------------------------------


def validate_temperatures(temperatures) -> np.ndarray:
    """Check a fixed schedule: 1-d, finite, strictly increasing in (0, 1], ending at 1.

    A leading 0 (the prior) is allowed and dropped.
    """
    t = np.asarray(temperatures, dtype=np.float64)
    if t.ndim != 1 or t.size == 0:
        raise ValueError(
            f"temperatures must be a non-empty 1-d sequence of inverse temperatures, got shape "
            f"{t.shape}"
        )
    if not np.all(np.isfinite(t)):
        raise ValueError("temperatures must be finite")
    if t[0] == 0.0:
        t = t[1:]
        if t.size == 0:
            raise ValueError("temperatures must contain at least one value in (0, 1], ending at 1")
    if np.any(np.diff(t) <= 0):
        raise ValueError(f"temperatures must be strictly increasing, got {temperatures!r}")
    if t[0] <= 0.0:
        raise ValueError(f"temperatures must be positive (a leading 0 is allowed), got {t[0]}")
    if not abs(t[-1] - 1.0) < 1e-9:
        raise ValueError(
            f"temperatures must end at 1 (the posterior), got last value {t[-1]}; append 1.0"
        )
    t[-1] = 1.0
    return t


def tempered_smc(
    model,
    *model_args,
    key,
    num_particles: int = 1000,
    target_ess: float = 0.5,
    kernel="rwmh",
    num_mcmc_steps: int = 10,
    temperatures=None,
    max_steps: int = 500,
    resampling="systematic",
    **model_kwargs,
) -> PosteriorResult:
    r"""Sample a numpyro model's posterior with adaptive tempered SMC; estimate its evidence.

    Targets :math:`\pi_\beta(z) \propto p_0(z)\exp\{\beta\ell(z)\}` for an increasing sequence of
    :math:`\beta` from 0 (prior) to 1 (posterior); see the module docstring for the algorithm.

    Args:
        model: a numpyro model (a plain function) whose latent sample sites are continuous.
        *model_args, **model_kwargs: passed to the model. Array arguments are traced (new data
            of the same shape reuses the compiled sampler); other values are static.
        key: a JAX PRNG key.
        num_particles: :math:`N`.
        target_ess: :math:`\rho \in (0, 1)`: each adaptive step keeps the ESS of the incremental
            weights at :math:`\rho N`. Smaller means fewer, bigger steps.
        kernel: rejuvenation kernel: ``"rwmh"`` (diagonal random-walk MH), ``"rwmh_full"``
            (full-covariance random walk), ``"hmc"``, or a configured
            :class:`ppl.smc.kernels.RWMH` / :class:`ppl.smc.kernels.HMC`.
        num_mcmc_steps: MCMC moves per particle per tempering step.
        temperatures: optional fixed schedule :math:`\beta_1 < \dots < \beta_T = 1` (a leading
            0 is allowed); skips adaptation and ``target_ess``.
        max_steps: maximum number of adaptive tempering steps (preallocated diagnostics size).
        resampling: a scheme name of :mod:`ppl.smc.resampling` or a callable.

    Returns:
        :class:`ppl.core.posterior.PosteriorResult` with ``samples[site]`` of shape
        ``[1, N, ...]`` (constrained values of latent and deterministic sites), uniform
        ``log_weights [1, N]`` (the particles are resampled after the last reweighting),
        ``log_evidence [1]`` and ``diagnostics``: ``temperatures [T]`` (:math:`\beta_1..\beta_T`),
        ``ess [T]`` (after reweighting), ``acceptance_rate [T]``, ``log_evidence_increments [T]``,
        ``step_size [T]`` (HMC; NaN for random walk), ``num_steps``, and per-particle
        ``log_likelihood [1, N]`` and ``log_prior [1, N]`` (unconstrained space).

    Raises:
        ValueError / TypeError: bad configuration, or a discrete latent site (named).
        SMCError: NaN log-densities, all incremental weights zero, or ``max_steps`` reached
            before :math:`\beta = 1`.
    """
    if not callable(model):
        raise TypeError(f"model must be a callable numpyro model, got {type(model).__name__}")
    check_key(key, "tempered_smc")
    num_particles = check_int("num_particles", num_particles, 2, "tempered_smc")
    num_mcmc_steps = check_int("num_mcmc_steps", num_mcmc_steps, 0, "tempered_smc")
    max_steps = check_int("max_steps", max_steps, 1, "tempered_smc")
    if isinstance(target_ess, bool) or not isinstance(target_ess, numbers.Real) or not (
        0.0 < float(target_ess) < 1.0
    ):
        raise ValueError(f"target_ess must be a number in (0, 1), got {target_ess!r}")
    check_model_data(model, model_args, model_kwargs, "tempered_smc")
    kern = get_kernel(kernel)
    scheme = get_scheme(resampling, "tempered_smc")
    if temperatures is not None:
        temps = validate_temperatures(temperatures)
        num_buffer = temps.shape[0]
        temps = jnp.asarray(temps, dtype=jnp.result_type(float))
    else:
        temps = None
        num_buffer = max_steps

    dynamic, static_spec = split_model_args(model_args, model_kwargs)
    runner = _get_runner(
        model, static_spec, num_particles, kern, num_mcmc_steps, num_buffer, scheme,
        temps is not None,
    )
    out = runner(key, dynamic, jnp.asarray(float(target_ess)), temps)

    status = int(out.status)
    num_steps = int(out.num_steps)
    if status != _STATUS_OK:
        beta = float(out.beta)
        if status == _STATUS_NAN:
            raise SMCError(
                f"tempered_smc: NaN log-likelihood or log-prior at tempering step {num_steps - 1} "
                f"(beta={beta:.4g}); check the model for invalid parameter values (e.g. a scale "
                "that can be 0 or negative) or data with NaNs",
                step=num_steps - 1,
            )
        if status == _STATUS_COLLAPSE:
            raise SMCError(
                f"tempered_smc: the effective sample size collapsed at tempering step "
                f"{num_steps - 1} (all incremental weights are zero, beta={beta:.4g}): every "
                "particle has log-likelihood -inf. Use more particles, a finer temperature "
                "schedule, or check that the data are possible under the prior",
                step=num_steps - 1,
            )
        raise SMCError(
            f"tempered_smc: reached max_steps={num_buffer} tempering steps at beta={beta:.4g} < 1; "
            "increase max_steps or lower target_ess",
            step=num_steps,
        )

    samples = {name: v[None] for name, v in out.samples.items()}
    dtype = out.log_evidence.dtype
    diagnostics = {
        "temperatures": out.temperatures[:num_steps],
        "ess": out.ess[:num_steps],
        "acceptance_rate": out.acceptance_rate[:num_steps],
        "log_evidence_increments": out.log_evidence_increments[:num_steps],
        "step_size": out.step_size[:num_steps],
        "num_steps": jnp.asarray(num_steps, jnp.int32),
        "log_likelihood": out.log_likelihood[None],
        "log_prior": out.log_prior[None],
    }
    return PosteriorResult(
        samples=samples,
        log_weights=jnp.full((1, num_particles), -math.log(num_particles), dtype),
        log_evidence=out.log_evidence[None],
        diagnostics=diagnostics,
        method="tempered_smc",
    )
