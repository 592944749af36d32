r"""Bootstrap intervals of the maximum-likelihood ratings (Chatbot Arena's recipe).

Arena resamples its battles with replacement and refits the Bradley–Terry MLE on each resample;
the intervals are percentiles of the refitted ratings. On aggregated data a resample of the
:math:`N` battles is a multinomial draw of :math:`N` over the cells (row × outcome) with the
observed frequencies (Poisson draws of each cell's count when counts are not integers), so the
:math:`R` refits are one compiled, vmapped Newton solve of the model's negative log-likelihood
(:func:`ppl_models.judges.bradley_terry.bradley_terry` with ``prior="flat"``), the counts being
the only thing that changes. These are sampling-distribution intervals of an estimator, not
posterior credible intervals: they say how much the MLE would move under another draw of the
battles, and they are empty of prior information.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree
from numpyro.infer.util import constrain_fn, initialize_model, potential_energy

from ppl_models.judges.bradley_terry import bradley_terry

__all__ = ["bootstrap_mle"]


def _resample(counts: np.ndarray, num: int, rng: np.random.Generator) -> np.ndarray:
    flat = counts.reshape(-1).astype(np.float64)
    total = flat.sum()
    if np.allclose(flat, np.round(flat)):
        draws = rng.multinomial(int(round(total)), flat / total, size=num)
    else:
        draws = rng.poisson(flat, size=(num, flat.size))
    return draws.reshape((num,) + counts.shape).astype(np.float32)


def bootstrap_mle(comps, *, num_bootstrap: int = 100, seed: int = 0, newton_steps: int = 40, **model_options):
    """``(samples, info)``: the MLE refitted on ``num_bootstrap`` resamples of the battles.

    ``samples`` maps every latent and deterministic site to ``[1, R, ...]`` (one "chain" of
    ``R`` refits, so that :func:`ppl_models.judges.ranking.summarize` takes it as draws);
    ``info`` has ``failed``: how many refits had no finite maximum (a model that won or lost all
    its resampled battles), which are left out, and ``num_bootstrap``.
    """
    opts = dict(model_options, prior="flat")
    comps = dataclasses.replace(comps, counts=np.asarray(comps.counts, np.float32))
    init = initialize_model(jax.random.key(0), bradley_terry, model_args=(comps,), model_kwargs=opts)
    flat0, unravel = ravel_pytree(init.param_info.z)
    flat0 = jnp.zeros_like(flat0)

    def nll(x, counts):
        return potential_energy(bradley_terry, (dataclasses.replace(comps, counts=counts),), opts, unravel(x))

    grad, hess = jax.grad(nll), jax.hessian(nll)

    def solve(counts):
        def step(_, x):
            g, h = grad(x, counts), hess(x, counts)
            d = jnp.linalg.solve(h + 1e-9 * jnp.eye(x.shape[0]), g)
            d = d * jnp.minimum(1.0, 2.0 / (jnp.max(jnp.abs(d)) + 1e-12))  # damped: at most 2 per coordinate
            return x - d

        x = jax.lax.fori_loop(0, newton_steps, step, flat0)
        # A finite maximum has a small gradient and a curvature bounded away from 0 (at a maximum
        # at infinity the likelihood flattens out: both vanish).
        eig = jnp.linalg.eigvalsh(hess(x, counts))
        return x, jnp.max(jnp.abs(grad(x, counts))), eig[0] / jnp.maximum(1.0, eig[-1])

    boot = _resample(np.asarray(comps.counts), int(num_bootstrap), np.random.default_rng(seed))
    xs, gmax, curv = (np.asarray(v) for v in jax.jit(jax.vmap(solve))(jnp.asarray(boot)))
    total = np.maximum(1.0, boot.reshape(len(boot), -1).sum(1))
    ok = np.isfinite(gmax) & (gmax < 1e-3 * total) & (curv > 1e-6) & (np.max(np.abs(xs), axis=1) < 30.0)
    if not ok.any():
        raise ValueError("bootstrap: no resample has a finite maximum-likelihood estimate (a model won or lost "
                         "all its battles); use the Bayesian fit instead")

    def constrained(x):
        return constrain_fn(bradley_terry, (comps,), opts, unravel(x), return_deterministic=True)

    sites = jax.jit(jax.vmap(constrained))(jnp.asarray(xs[ok]))
    samples = {k: np.asarray(v)[None] for k, v in sites.items()}
    return samples, {"num_bootstrap": int(num_bootstrap), "failed": int((~ok).sum())}
