"""Input checks shared by the engine's entry points: clear errors before any compute."""

from __future__ import annotations

import inspect
import math
import numbers
from typing import Hashable

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["check_int", "check_positive", "check_fraction", "check_key", "check_no_nan", "check_model_data",
           "check_reward", "reward_key"]


def _prefix(fn):
    return f"{fn}: " if fn else ""


def check_int(name: str, value, minimum: int, fn: str | None = None) -> int:
    """``value`` as an ``int`` if it is an integer (not a bool) ``>= minimum``, else ``ValueError``
    naming ``name`` (and the function ``fn``)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{_prefix(fn)}{name}: expected an integer >= {minimum}, got {value!r}")
    return int(value)


def check_positive(name: str, value, fn: str | None = None) -> float:
    """``value`` as a ``float`` if it is a positive finite number, else ``ValueError`` naming it."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{_prefix(fn)}{name}: expected a positive number, got {value!r}") from None
    if not (v > 0 and math.isfinite(v)):
        raise ValueError(f"{_prefix(fn)}{name}: expected a positive finite number, got {value!r}")
    return v


def check_fraction(name: str, value, fn: str | None = None) -> float:
    """``value`` as a float in :math:`[0, 1]` (e.g. an ESS threshold), else a ValueError naming ``name``."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        v = math.nan
    if isinstance(value, bool) or not 0.0 <= v <= 1.0:
        raise ValueError(f"{_prefix(fn)}{name}: expected a number in [0, 1], got {value!r}")
    return v


def check_key(key, fn: str | None = None):
    """One PRNG key (``jax.random.key(0)`` or a raw ``uint32[2]``), returned as is; a
    ``TypeError`` for a non-array, a ``ValueError`` for a batch of keys or another array."""
    if not isinstance(key, jax.Array):
        raise TypeError(f"{_prefix(fn)}key: expected a jax.random.key(...), got {type(key).__name__}")
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        ok = key.ndim == 0
    else:
        ok = key.dtype == jnp.uint32 and key.shape == (2,)
    if not ok:
        raise ValueError(f"{_prefix(fn)}key: expected one jax.random.key(...), got an array of shape "
                         f"{key.shape} and dtype {key.dtype}; run one call per key")
    return key


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


def reward_key(reward) -> Hashable:
    """The static part of a reward model (``reward.static_key()`` if it has one, else itself)."""
    if reward is None:
        return None
    fn = getattr(reward, "static_key", None)
    return fn() if callable(fn) else reward


def check_reward(reward, required: bool, name: str, program=None) -> None:
    """``reward`` follows :class:`~ppl.core.protocols.RewardModel` (or is ``None`` where optional)
    and, for a ``program`` with ``padding="left"``, says it reads left-padded token buffers (a
    true ``left_padding`` attribute: it masks ``state.pad`` slots, or reads only the generation)."""
    if reward is not None and getattr(program, "padding", "right") == "left" and not getattr(
            reward, "left_padding", False):
        raise ValueError(f"reward: {type(reward).__name__} does not say it reads left-padded prompts (no true "
                         "left_padding attribute), so it would read the padding as tokens; build the LMProgram with "
                         "padding='right'")
    if reward is None:
        if required:
            raise TypeError(f"reward: {name} needs a reward model (an object with params and "
                            "log_score(params, state) -> log r)")
        return
    from ppl.core.protocols import RewardModel

    if not isinstance(reward, RewardModel):
        raise TypeError(f"reward: expected an object with params and log_score(params, state) -> log r "
                        f"for one particle (ppl.core.protocols.RewardModel), got {type(reward).__name__}")
