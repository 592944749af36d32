r"""Posterior mode of a numpyro model by damped Newton's method in unconstrained space.

For a model whose latent sites are all real-valued (as in :func:`ppl_models.judges.bradley_terry`,
which samples ``log_nu`` / ``log_eta`` rather than positive parameters), the mode in
unconstrained space is the posterior mode, and with ``prior="flat"`` it is the
maximum-likelihood estimate. For sites with constrained supports the unconstrained mode
includes the log-Jacobian of the transform (it is the mode of the density of the unconstrained
parameters).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree
from numpyro.infer.util import init_to_value, initialize_model

__all__ = ["posterior_mode", "ModeNotFound"]


class ModeNotFound(RuntimeError):
    """Newton's method did not converge (for example an unbounded likelihood: a model that
    won or lost every battle has no finite maximum-likelihood rating under a flat prior)."""


def posterior_mode(
    model, *model_args, init_values=None, max_iter: int = 200, gtol: float = 1e-6, max_abs: float = 30.0,
    **model_kwargs
) -> dict:
    """Maximise the model's log joint density; return constrained values of every site.

    Args:
        model: a numpyro model with continuous latent sites.
        *model_args, **model_kwargs: passed to the model.
        init_values: optional dict of starting values (constrained); default: the model's
            ``init_to_value`` of zeros where possible (numpyro's default otherwise).
        max_iter: Newton iterations.
        gtol: convergence when the largest absolute gradient entry (in unconstrained space) is
            below ``gtol`` times ``max(1, |log density|)``.
        max_abs: an unconstrained coordinate beyond this at convergence is taken as a mode at
            infinity (``exp(30)`` odds), as is a (near-)singular Hessian.

    Returns:
        dict of constrained latent and deterministic sites at the mode, plus
        ``"log_density"`` (the log joint at the mode, unconstrained space).

    Raises:
        ModeNotFound: no convergence in ``max_iter`` iterations, or a non-finite density.
    """
    kwargs = dict(model_kwargs)
    strategy = init_to_value(values=init_values or {})
    info = initialize_model(
        jax.random.key(0), model, model_args=model_args, model_kwargs=kwargs, init_strategy=strategy
    )
    z0 = info.param_info.z
    if init_values is None:
        z0 = jax.tree_util.tree_map(jnp.zeros_like, z0)
    x0, unravel = ravel_pytree(z0)
    pot = info.potential_fn

    @jax.jit
    def vgh(x):
        f = lambda x: pot(unravel(x))
        return f(x), jax.grad(f)(x), jax.hessian(f)(x)

    f_only = jax.jit(lambda x: pot(unravel(x)))
    x = np.asarray(x0, np.float64)
    dtype = x0.dtype
    lam = 0.0
    for _ in range(int(max_iter)):
        f, g, h = (np.asarray(v, np.float64) for v in vgh(jnp.asarray(x, dtype)))
        if not np.isfinite(f) or not np.all(np.isfinite(g)):
            raise ModeNotFound(f"posterior_mode: non-finite log density or gradient at {x}")
        n = len(x)
        while True:
            try:
                step = np.linalg.solve(h + lam * np.eye(n), g)
                if g @ step > 0 or not np.any(g):
                    break
            except np.linalg.LinAlgError:
                pass
            lam = max(1e-6, 10 * lam)
        size = np.max(np.abs(step), initial=0.0) / (1.0 + np.max(np.abs(x), initial=0.0))
        small_grad = np.max(np.abs(g), initial=0.0) <= gtol * max(1.0, abs(f))
        # Converged: a negligible Newton step, or a small gradient with a small step (a
        # gradient that vanishes while Newton still moves far is a mode at infinity).
        if size <= 1e-9 or (small_grad and size <= 1e-3):
            break
        t = 1.0
        while t > 1e-10:
            xn = x - t * step
            fn = float(f_only(jnp.asarray(xn, dtype)))
            if np.isfinite(fn) and fn <= f - 1e-4 * t * (g @ step):
                break
            t /= 2
        else:
            if size <= 1e-3:  # at the floating-point precision floor
                break
            raise ModeNotFound("posterior_mode: line search failed (is the density bounded?)")
        x = xn
        lam = lam / 10 if lam > 1e-6 else 0.0
    else:
        raise ModeNotFound(
            f"posterior_mode: no convergence in {max_iter} Newton steps (gradient "
            f"{np.max(np.abs(g)):.3g}, step {size:.3g}); the likelihood may be unbounded, e.g. a "
            "model that won or lost all its battles under a flat prior: use a proper prior"
        )
    eig = np.linalg.eigvalsh(h) if len(x) else np.ones(1)
    if eig[0] <= 1e-8 * max(1.0, abs(eig[-1])) or np.max(np.abs(x), initial=0.0) > max_abs:
        raise ModeNotFound(
            f"posterior_mode: the density is flat in some direction at the optimum (smallest "
            f"Hessian eigenvalue {eig[0]:.3g}, largest |parameter| {np.max(np.abs(x)):.3g}); the "
            "mode is at infinity or not unique, e.g. a model that won or lost all its battles "
            "under a flat prior. Use a proper prior"
        )
    z = unravel(jnp.asarray(x, dtype))
    out = {k: np.asarray(v) for k, v in info.postprocess_fn(z).items()}
    out["log_density"] = -float(f)
    return out
