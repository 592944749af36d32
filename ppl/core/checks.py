"""Input checks shared by the engine's entry points: clear errors before any compute."""

from __future__ import annotations

import inspect

import jax
import numpy as np

__all__ = ["check_no_nan", "check_model_data"]


def check_no_nan(tree, name: str, *, time_axis: bool = False) -> None:
    """Raise ``ValueError`` naming the leaf and index of the first NaN in ``tree``.

    NaN in data is never read as "missing": a numpyro density returns ``-inf`` (or NaN) for it,
    so a filter would report every weight zero and NUTS would return a confident wrong
    posterior. Traced leaves (inside a user's ``jit``) are skipped; so are non-float leaves.
    ``time_axis`` says that the leading axis of every leaf is time, and the message names the
    step.
    """
    for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
        if isinstance(leaf, jax.core.Tracer):
            continue
        try:
            arr = np.asarray(leaf)
        except Exception:  # not array-like (a callable, a string): not data
            continue
        if not np.issubdtype(arr.dtype, np.inexact):
            continue
        bad = np.isnan(arr)
        if not bad.any():
            continue
        idx = tuple(int(i) for i in np.argwhere(bad)[0])
        where = f"{name}{jax.tree_util.keystr(path)}"
        step = f" (time step {idx[0]})" if time_axis and idx else ""
        raise ValueError(
            f"{where}: NaN at index {idx}{step}, {int(bad.sum())} NaN value(s) in all; ppl does not "
            "read NaN as missing data: drop those entries, or mask them in the model "
            "(numpyro.handlers.mask, or a potential of 0 where an observation is missing)")


def check_model_data(model, args: tuple, kwargs: dict, fn: str) -> None:
    """:func:`check_no_nan` on a numpyro model's arguments, each named by its parameter."""
    try:
        bound = inspect.signature(model).bind_partial(*args, **kwargs).arguments
    except (TypeError, ValueError):  # no signature, or arguments it cannot bind: name by position
        bound = {**{f"args[{i}]": a for i, a in enumerate(args)}, **kwargs}
    for name, value in bound.items():
        check_no_nan(value, f"{fn}: model argument {name!r}")
