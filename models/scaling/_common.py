"""Shared pieces of the scaling-law models: posterior draws, intervals, bands, fitting."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

import ppl

__all__ = ["Band", "posterior_draws", "interval", "run_inference", "summarize"]


class Band(NamedTuple):
    """A curve with a pointwise band: ``x [K]``, posterior ``mean [K]``, ``lo``/``hi [K]``.

    ``lo`` and ``hi`` are equal-tailed quantiles at probability ``level``.
    """

    x: np.ndarray
    mean: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    level: float

    def to_dict(self, x_name: str = "k") -> dict:
        return {
            x_name: np.asarray(self.x).tolist(),
            "mean": np.asarray(self.mean).tolist(),
            "ci_low": np.asarray(self.lo).tolist(),
            "ci_high": np.asarray(self.hi).tolist(),
            "level": self.level,
        }


def posterior_draws(result: "ppl.PosteriorResult", seed: int = 0) -> dict:
    """Equally weighted draws ``{site: [S, ...]}`` (float64 numpy) pooled over chains.

    Weighted results (tempered SMC) are resampled multinomially per chain with ``seed``.
    """
    out = {}
    C, D = result.num_chains, result.num_draws
    idx = None
    if result.log_weights is not None:
        rng = np.random.default_rng(seed)
        w = np.exp(np.asarray(result.log_weights, np.float64))
        w /= w.sum(axis=1, keepdims=True)
        idx = np.stack([rng.choice(D, size=D, p=w[c]) for c in range(C)])
    for name, x in result.samples.items():
        x = np.asarray(x, np.float64)
        if idx is not None:
            x = np.take_along_axis(x, idx.reshape(idx.shape + (1,) * (x.ndim - 2)), axis=1)
        out[name] = x.reshape((C * D,) + x.shape[2:])
    return out


def interval(draws, level: float = 0.9, axis: int = 0):
    """``(mean, lo, hi)`` of draws along ``axis``: the mean and the equal-tailed interval."""
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    d = np.asarray(draws, np.float64)
    lo, hi = np.quantile(d, [0.5 - level / 2, 0.5 + level / 2], axis=axis)
    return np.mean(d, axis=axis), lo, hi


def summarize(draws: dict, names, level: float = 0.9) -> dict:
    """``{name: {"mean", "ci_low", "ci_high", "level"}}`` for scalar sites."""
    out = {}
    for name in names:
        m, lo, hi = interval(draws[name], level)
        out[name] = {"mean": float(m), "ci_low": float(lo), "ci_high": float(hi), "level": level}
    return out


def run_inference(model, *args, key, method="nuts", num_chains=2, num_warmup=400,
                  num_samples=400, **options):
    """``ppl.infer`` with the sizes these small models need (NUTS by default)."""
    if method == "nuts":
        options = dict(num_chains=num_chains, num_warmup=num_warmup, num_samples=num_samples,
                       **options)
    return ppl.infer(model, *args, method=method, key=key, **options)


def bucket(size: int, minimum: int = 16) -> int:
    """The padded length for ``size`` rows: the next power of two, at least ``minimum``.

    The models pad their data to this length with a mask, so new data of a similar size reuses
    the compiled sampler instead of recompiling."""
    return max(minimum, 1 << max(int(size) - 1, 0).bit_length())


def pad(x, size: int, fill) -> np.ndarray:
    """``x`` (1-d) padded with ``fill`` to ``size``."""
    x = np.asarray(x)
    return np.concatenate([x, np.full(size - x.size, fill, dtype=x.dtype)])
