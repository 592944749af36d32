r"""Rankings from posterior draws: intervals, rank distributions, pairwise probabilities,
statistically tied groups, ArviZ output and plots.

From :math:`S` posterior draws :math:`r^{(s)} \in \mathbb R^K` of model strengths:

- **strengths** with equal-tailed credible intervals, on a display scale (Elo-like:
  :math:`\tfrac{400}{\ln 10}(r_i - r_{\text{anchor}}) + \text{base}`);
- **rank distribution**: :math:`\mathrm{rank}_i^{(s)} = 1 + \#\{j : r_j^{(s)} > r_i^{(s)}\}`,
  :math:`P(\mathrm{rank}_i = k)` and :math:`P(\mathrm{rank}_i \le k)`;
- **pairwise** :math:`P(r_i > r_j)` and, for Bradley–Terry models, the posterior-mean
  probability that :math:`i` beats :math:`j` in a battle (neutral position, average judge, a tie
  counting half);
- **statistically tied groups**: models sorted by posterior mean are cut between positions
  :math:`c` and :math:`c+1` when :math:`P(\min_{i \le c} r_i > \max_{j > c} r_j) \ge` ``level``:
  the top :math:`c` are jointly better than the rest with posterior probability at least
  ``level``; models within a group are not separated;
- the **Arena display rank**: :math:`1 + \#\{j : \text{lower}_j > \text{upper}_i\}`.
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Optional, Sequence

import numpy as np

import ppl

__all__ = ["Ranking", "summarize", "rank_draws", "tied_groups", "render_table"]


def rank_draws(draws: np.ndarray) -> np.ndarray:
    """``[S, K]`` ranks (1 = best) of each draw: ``1 + #{j : r_j > r_i}`` (ties share the
    better rank)."""
    draws = np.asarray(draws)
    s = np.sort(draws, axis=1)  # ascending
    k = draws.shape[1]
    # number of entries strictly greater than draws[s, i]
    greater = k - np.stack([np.searchsorted(s[i], draws[i], side="right") for i in range(len(draws))])
    return greater + 1


def tied_groups(draws: np.ndarray, order: np.ndarray, level: float = 0.95):
    """Cut the models, sorted by ``order`` (best first), into groups that are separated with
    posterior probability ``>= level``. Returns ``(groups, p_separated)`` where ``groups`` is a
    list of lists of model indices and ``p_separated[c-1]`` is
    :math:`P(\\min_{\\text{top } c} r > \\max_{\\text{rest}} r)`."""
    x = np.asarray(draws)[:, order]
    k = x.shape[1]
    top_min = np.minimum.accumulate(x, axis=1)[:, :-1]
    rest_max = np.maximum.accumulate(x[:, ::-1], axis=1)[:, ::-1][:, 1:]
    p_sep = (top_min > rest_max).mean(0)
    groups, cur = [], [int(order[0])]
    for c in range(1, k):
        if p_sep[c - 1] >= level:
            groups.append(cur)
            cur = []
        cur.append(int(order[c]))
    groups.append(cur)
    return groups, p_sep


def render_table(report: dict, top: Optional[int] = None, *, digits: int = 1, battles: bool = True) -> str:
    """A plain-text table of a ranking's plain dict (:meth:`Ranking.to_dict`), best first: rank,
    tied group, name, value with its interval, P(rank = 1) and (``battles``) the battles played."""
    rows = report["models"]
    lo_name = f"{100 * report['ci']:g}% interval"
    name, value = ("model", "rating") if battles else ("name", "value")
    head = f"{'rank':>4} {'grp':>3}  {name:<28} {value:>8}  {lo_name:>19}  {'P(rank=1)':>9}"
    head += f"  {'battles':>8}" if battles else ""
    lines = [head, "-" * len(head)]
    for n, r in enumerate(rows):
        if top is not None and n >= top:
            lines.append(f"... ({len(rows) - top} more)")
            break
        line = (f"{r['rank']:>4} {r['group']:>3}  {r['name'][:28]:<28} {r['rating']:>8.{digits}f}  "
                f"[{r['ci_low']:>8.{digits}f}, {r['ci_high']:>8.{digits}f}]  {r['p_rank_1']:>9.3f}")
        if battles:
            nb = r["num_battles"]
            line += f"  {'' if nb is None else format(nb, 'g'):>8}" + ("  (no battles)" if nb == 0 else "")
        lines.append(line)
    return "\n".join(lines)


@dataclasses.dataclass
class Ranking:
    """A posterior ranking of ``K`` models (build it with :func:`summarize` or
    :func:`ppl_models.judges.rank`).

    Attributes:
        models: names ``[K]``.
        draws: ``[chains, draws, K]`` strengths on the display scale.
        mean, median, ci_low, ci_high: ``[K]`` posterior summaries (equal-tailed ``ci``).
        ranks: ``[chains, draws, K]`` rank of each model in each draw (1 = best).
        rank_probs: ``[K, K]``: ``rank_probs[i, k-1]`` = :math:`P(\\mathrm{rank}_i = k)`.
        p_better: ``[K, K]`` :math:`P(r_i > r_j)`.
        p_win: ``[K, K]`` posterior-mean P(i beats j) (Bradley–Terry only, else ``None``).
        groups: statistically tied groups (lists of indices, best group first).
        display_rank: ``[K]`` Arena-style rank.
        num_battles: ``[K]`` battles per model (``None`` if unknown).
        scale: a description of the display scale.
        ci, level: interval mass and tie-group level.
        params: summaries of other scalar parameters (position bias, tie parameter...).
        diagnostics: ``r_hat`` and ``ess_bulk`` per model, timings, sampler counts.
        result: the underlying :class:`ppl.PosteriorResult` (if any).
    """

    models: tuple
    draws: np.ndarray
    mean: np.ndarray
    median: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    ranks: np.ndarray
    rank_probs: np.ndarray
    p_better: np.ndarray
    p_win: Optional[np.ndarray]
    groups: list
    p_separated: np.ndarray
    display_rank: np.ndarray
    num_battles: Optional[np.ndarray]
    scale: str
    ci: float
    level: float
    params: dict = dataclasses.field(default_factory=dict)
    diagnostics: dict = dataclasses.field(default_factory=dict)
    result: object = None

    @property
    def order(self) -> np.ndarray:
        """Model indices sorted by posterior mean, best first."""
        return np.argsort(-self.mean, kind="stable")

    @property
    def p_rank_le(self) -> np.ndarray:
        """``[K, K]``: ``p_rank_le[i, k-1]`` = :math:`P(\\mathrm{rank}_i \\le k)`."""
        return np.cumsum(self.rank_probs, axis=1)

    def group_of(self) -> np.ndarray:
        """``[K]`` 1-based tied-group number of each model."""
        g = np.zeros(len(self.models), int)
        for n, members in enumerate(self.groups, 1):
            g[members] = n
        return g

    # ------------------------------------------------------------------ text and JSON
    def table(self, top: Optional[int] = None) -> str:
        """A plain-text table, best first (:func:`render_table` of :meth:`to_dict`)."""
        return render_table(self.to_dict(), top)

    def to_dict(self) -> dict:
        """JSON-ready dict: ``{"models": [{"name", "rating", "ci_low", "ci_high", "rank",
        "p_rank_1", ...}], "scale", "ci", "groups", "pairwise", "params", "diagnostics"}``."""
        g = self.group_of()
        rows = []
        mean_rank = (self.rank_probs * np.arange(1, len(self.models) + 1)).sum(1)
        for i in self.order:
            rows.append(
                {
                    "name": self.models[i],
                    "rating": float(self.mean[i]),
                    "median": float(self.median[i]),
                    "ci_low": float(self.ci_low[i]),
                    "ci_high": float(self.ci_high[i]),
                    "rank": int(self.display_rank[i]),
                    "p_rank_1": float(self.rank_probs[i, 0]),
                    "p_rank_le_3": float(self.p_rank_le[i, min(2, len(self.models) - 1)]),
                    "mean_rank": float(mean_rank[i]),
                    "group": int(g[i]),
                    "num_battles": None if self.num_battles is None else float(self.num_battles[i]),
                    "r_hat": _get(self.diagnostics.get("r_hat"), i),
                    "ess_bulk": _get(self.diagnostics.get("ess_bulk"), i),
                }
            )
        out = {
            "models": rows,
            "scale": self.scale,
            "ci": self.ci,
            "tie_level": self.level,
            "groups": [[self.models[i] for i in grp] for grp in self.groups],
            "pairwise": {
                "names": list(self.models),
                "p_better": np.round(self.p_better, 6).tolist(),
                "p_win": None if self.p_win is None else np.round(self.p_win, 6).tolist(),
            },
            "params": self.params,
            "diagnostics": {k: v for k, v in self.diagnostics.items() if k not in ("r_hat", "ess_bulk")},
        }
        return out

    def to_json(self, path: Optional[str] = None, **kw) -> str:
        s = json.dumps(self.to_dict(), allow_nan=False, **kw)
        if path is not None:
            from ppl_models.outputs import write_text_atomic

            write_text_atomic(path, s + "\n")
        return s

    # ------------------------------------------------------------------ ArviZ
    def to_inference_data(self):
        """:class:`arviz.InferenceData`: ``posterior`` with ``strength (chain, draw, model)``
        on the display scale and ``rank (chain, draw, model)`` (plus the sampler's own sites
        when a result is attached), ``sample_stats`` from the sampler, and a ``ranking`` group
        with the summaries: ``rank_prob (model, rank)``, ``p_rank_le (model, rank)``,
        ``p_better (model, opponent)``, ``p_win (model, opponent)``, ``group (model)``,
        ``display_rank (model)``, intervals."""
        import arviz as az
        import xarray as xr

        k = len(self.models)
        c, d = self.draws.shape[:2]
        coords = {"chain": np.arange(c), "draw": np.arange(d), "model": list(self.models)}
        post = xr.Dataset(
            {
                "strength": (("chain", "draw", "model"), self.draws),
                "rank": (("chain", "draw", "model"), self.ranks),
            },
            coords=coords,
        )
        if self.result is not None:
            base = ppl.to_arviz(self.result)
            other = base.posterior.drop_vars([v for v in ("rating",) if v in base.posterior])
            post = xr.merge([post, other], compat="override", join="outer")
            groups = {"posterior": post, "sample_stats": base.sample_stats}
        else:
            groups = {"posterior": post}
        rcoords = {"model": list(self.models), "rank": np.arange(1, k + 1), "opponent": list(self.models)}
        summ = {
            "mean": (("model",), self.mean),
            "ci_low": (("model",), self.ci_low),
            "ci_high": (("model",), self.ci_high),
            "rank_prob": (("model", "rank"), self.rank_probs),
            "p_rank_le": (("model", "rank"), self.p_rank_le),
            "p_better": (("model", "opponent"), self.p_better),
            "group": (("model",), self.group_of()),
            "display_rank": (("model",), self.display_rank),
        }
        if self.p_win is not None:
            summ["p_win"] = (("model", "opponent"), self.p_win)
        idata = az.InferenceData(**groups)
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "ranking" is not a standard group
            idata.add_groups({"ranking": xr.Dataset(summ, coords=rcoords)})
        idata.posterior.attrs.update({"scale": self.scale, "inference_library": "ppl"})
        return idata

    # ------------------------------------------------------------------ plots
    def plot_forest(self, path: Optional[str] = None, ax=None, top: Optional[int] = None):
        """Forest plot: posterior mean and ``ci`` interval per model, best at the top, tied
        groups in alternating shades. Saves a PNG when ``path`` is given; returns the figure."""
        import matplotlib

        if ax is None:
            matplotlib.use("Agg", force=False) if path else None
        import matplotlib.pyplot as plt

        order = self.order if top is None else self.order[:top]
        n = len(order)
        if ax is None:
            fig, ax = plt.subplots(figsize=(7, 1.0 + 0.28 * n))
        else:
            fig = ax.figure
        g = self.group_of()
        y = np.arange(n)[::-1]
        colors = np.where(g[order] % 2 == 1, "C0", "C1")
        for yy, i, col in zip(y, order, colors):
            ax.plot([self.ci_low[i], self.ci_high[i]], [yy, yy], color=col, lw=2)
            ax.plot(self.mean[i], yy, "o", color=col, ms=4)
        ax.set_yticks(y)
        ax.set_yticklabels([f"{self.models[i]} (#{self.display_rank[i]})" for i in order], fontsize=8)
        ax.set_xlabel(f"strength ({self.scale}); {100 * self.ci:g}% intervals")
        ax.grid(axis="x", alpha=0.3)
        ax.set_title("Posterior strengths (colours alternate between statistically tied groups)", fontsize=9)
        fig.tight_layout()
        if path:
            _save(fig, path)
        return fig

    def plot_rank_heatmap(self, path: Optional[str] = None, ax=None, top: Optional[int] = None):
        """Heatmap of :math:`P(\\mathrm{rank}_i = k)`: models (best first) by rank."""
        import matplotlib.pyplot as plt

        order = self.order if top is None else self.order[:top]
        n = len(order)
        k = self.rank_probs.shape[1] if top is None else min(self.rank_probs.shape[1], top)
        if ax is None:
            fig, ax = plt.subplots(figsize=(1.5 + 0.3 * k, 1.0 + 0.28 * n))
        else:
            fig = ax.figure
        m = self.rank_probs[order][:, :k]
        im = ax.imshow(m, aspect="auto", cmap="viridis", vmin=0, vmax=1)
        ax.set_yticks(np.arange(n))
        ax.set_yticklabels([self.models[i] for i in order], fontsize=8)
        ax.set_xticks(np.arange(k))
        ax.set_xticklabels(np.arange(1, k + 1), fontsize=7)
        ax.set_xlabel("rank")
        if n * k <= 400:
            for a in range(n):
                for b in range(k):
                    if m[a, b] >= 0.005:
                        ax.text(b, a, f"{m[a, b]:.2f}", ha="center", va="center", fontsize=6,
                                color="w" if m[a, b] < 0.6 else "k")
        fig.colorbar(im, ax=ax, label="P(rank = k)")
        fig.tight_layout()
        if path:
            _save(fig, path)
        return fig


def _get(arr, i):
    if arr is None:
        return None
    v = float(np.asarray(arr)[i])
    return v if math.isfinite(v) else None


def summarize(
    draws,
    models: Sequence[str],
    *,
    ci: float = 0.95,
    level: float = 0.95,
    scale: float = 1.0,
    base: float = 0.0,
    anchor: Optional[int] = None,
    scale_name: str = "latent units",
    p_win=None,
    num_battles=None,
    params: Optional[dict] = None,
    result=None,
) -> Ranking:
    """Summarise posterior draws of strengths into a :class:`Ranking`.

    Args:
        draws: ``[chains, draws, K]`` (or ``[draws, K]``) latent strengths.
        models: the ``K`` names.
        ci: mass of the equal-tailed credible intervals.
        level: posterior probability needed to separate tied groups.
        scale, base, anchor: display transform ``scale * (r - r_anchor) + base`` per draw
            (``r_anchor`` = the anchor model's strength, or the mean strength when ``None``).
        scale_name: description for tables and plots.
        p_win: optional ``[K, K]`` posterior-mean probability that ``i`` beats ``j`` in a
            battle (model specific; see :func:`ppl_models.judges.fit.rank`).
        num_battles: optional ``[K]`` battles per model.
        params: summaries of other parameters to carry along.
        result: the sampler result, kept for :meth:`Ranking.to_inference_data`.
    """
    x = np.asarray(draws, np.float64)
    if x.ndim == 2:
        x = x[None]
    if x.ndim != 3 or x.shape[2] != len(models):
        raise ValueError(f"draws must be [chains, draws, K={len(models)}], got {x.shape}")
    if not 0 < ci < 1 or not 0 < level < 1:
        raise ValueError(f"ci and level must be in (0, 1), got {ci!r}, {level!r}")
    if not np.all(np.isfinite(x)):
        raise FloatingPointError("summarize: posterior draws contain NaN or inf")
    c, d, k = x.shape
    ref = x[..., anchor : anchor + 1] if anchor is not None else x.mean(-1, keepdims=True)
    disp = scale * (x - ref) + base
    flat = disp.reshape(c * d, k)
    lat = x.reshape(c * d, k)
    mean, median = flat.mean(0), np.median(flat, 0)
    a = (1 - ci) / 2
    lo, hi = np.quantile(flat, a, axis=0), np.quantile(flat, 1 - a, axis=0)
    ranks = rank_draws(flat)
    rank_probs = np.stack([(ranks == r).mean(0) for r in range(1, k + 1)], axis=1)
    p_better = np.stack([(lat[:, [i]] > lat).mean(0) for i in range(k)])
    if p_win is not None:
        p_win = np.asarray(p_win, np.float64)
        if p_win.shape != (k, k):
            raise ValueError(f"p_win must be [K, K] = [{k}, {k}], got {p_win.shape}")
    order = np.argsort(-mean, kind="stable")
    groups, p_sep = tied_groups(lat, order, level)
    display_rank = 1 + (lo[None, :] > hi[:, None]).sum(1)
    diagnostics = {}
    if c >= 2 and d >= 4:
        try:
            diagnostics["r_hat"], diagnostics["ess_bulk"] = _rhat_ess(x)
            diagnostics["max_r_hat"] = float(np.nanmax(diagnostics["r_hat"]))
            diagnostics["min_ess_bulk"] = float(np.nanmin(diagnostics["ess_bulk"]))
        except Exception:  # pragma: no cover - diagnostics are best effort
            pass
    return Ranking(
        models=tuple(models),
        draws=disp,
        mean=mean,
        median=median,
        ci_low=lo,
        ci_high=hi,
        ranks=ranks.reshape(c, d, k),
        rank_probs=rank_probs,
        p_better=p_better,
        p_win=p_win,
        groups=groups,
        p_separated=p_sep,
        display_rank=display_rank,
        num_battles=None if num_battles is None else np.asarray(num_battles, float),
        scale=scale_name,
        ci=ci,
        level=level,
        params=dict(params or {}),
        diagnostics=diagnostics,
        result=result,
    )


def _rhat_ess(x):
    import arviz as az
    import xarray as xr

    ds = xr.Dataset({"x": (("chain", "draw", "model"), x)})
    r = np.asarray(az.rhat(ds)["x"].values, float)
    e = np.asarray(az.ess(ds, method="bulk")["x"].values, float)
    return r, e


def _save(fig, path) -> None:
    """``fig`` to ``path``, atomically (the format from the suffix; PNG without one)."""
    from pathlib import Path

    from ppl_models.outputs import atomic_path

    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format=Path(path).suffix.lstrip(".") or "png")
