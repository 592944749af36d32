"""``infer``: one entry point for static numpyro models; switch algorithms with one argument.

.. code-block:: python

    res = ppl.infer(model, data, method="nuts", num_chains=4, key=key)
    res = ppl.infer(model, data, method="tempered_smc", num_particles=2000, key=key)

Both return a :class:`ppl.core.posterior.PosteriorResult`.
"""

from __future__ import annotations

import inspect

from ppl.core.posterior import PosteriorResult
from ppl.mcmc.nuts import nuts
from ppl.smc.tempering import tempered_smc

__all__ = ["infer", "METHODS"]

METHODS = {"nuts": nuts, "tempered_smc": tempered_smc}


def _method_options(fn) -> set[str]:
    """Keyword-only options of an algorithm (everything but model, *model_args, key, **kw)."""
    return {
        name
        for name, p in inspect.signature(fn).parameters.items()
        if p.kind is inspect.Parameter.KEYWORD_ONLY and name != "key"
    }


def _model_accepts(model, name: str) -> bool:
    try:
        params = inspect.signature(model).parameters
    except (TypeError, ValueError):  # a callable without a signature: give it the benefit
        return True
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return True
    p = params.get(name)
    return p is not None and p.kind in (
        inspect.Parameter.POSITIONAL_OR_KEYWORD,
        inspect.Parameter.KEYWORD_ONLY,
    )


def infer(
    model, *model_args, method: str = "nuts", key, model_kwargs=None, **options
) -> PosteriorResult:
    """Posterior inference for a static numpyro model with the chosen algorithm.

    Args:
        model: a numpyro model.
        *model_args: positional arguments of the model (data).
        method: ``"nuts"`` (:func:`ppl.nuts`) or ``"tempered_smc"`` (:func:`ppl.tempered_smc`).
        key: a JAX PRNG key.
        model_kwargs: optional dict of keyword arguments for the model.
        **options: options of the chosen method (e.g. ``num_chains`` for NUTS,
            ``num_particles`` / ``kernel`` for tempered SMC). A name that is not an option of
            the method but is a parameter of the model is passed to the model.

    Raises:
        ValueError: unknown ``method``; an option that belongs to another method; a name that is
            neither an option of the method nor a parameter of the model.
    """
    if method not in METHODS:
        raise ValueError(f"infer: unknown method={method!r}; use one of {sorted(METHODS)}")
    fn = METHODS[method]
    own = _method_options(fn)
    kwargs = dict(model_kwargs or {})
    method_opts = {}
    for name, value in options.items():
        if name in own:
            method_opts[name] = value
            continue
        others = [m for m, f in METHODS.items() if m != method and name in _method_options(f)]
        if others and not _model_accepts(model, name):
            raise ValueError(
                f"infer: {name!r} is an option of method={others[0]!r}, not of method={method!r}; "
                f"{method!r} takes {sorted(own)}"
            )
        if not _model_accepts(model, name):
            raise ValueError(
                f"infer: {name!r} is neither an option of method={method!r} (options: "
                f"{sorted(own)}) nor a parameter of the model {getattr(model, '__name__', model)!r}"
            )
        kwargs[name] = value
    overlap = own & kwargs.keys()
    if overlap:
        raise ValueError(
            f"infer: model_kwargs {sorted(overlap)} clash with options of method={method!r}; "
            "rename the model parameters"
        )
    return fn(model, *model_args, key=key, **method_opts, **kwargs)
