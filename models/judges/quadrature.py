r"""Continuous covariates in aggregated battle logs: a few weighted nodes per cell.

A battle's log-likelihood is :math:`\log p_o(d + x^\top\beta)`, with :math:`d` fixed by the pair
(and judge) and :math:`x` the battle's covariates. The battles of one cell — one pair, judge and
outcome :math:`o` — contribute

.. math::  \sum_{i \in \text{cell}} w_i\, f(x_i), \qquad f(x) = \log p_o(d + x^\top\beta),

so with per-battle continuous covariates the exact table keeps one row per battle. Replacing the
cell's weighted empirical distribution by a rule of :math:`m` nodes :math:`\xi_k` with weights
:math:`\lambda_k` (:math:`\sum_k \lambda_k = \sum_i w_i`) gives a table of at most
:math:`3 P m` rows per pair (and judge), whatever the number of battles.

One covariate (:math:`P = 1`)
    the :math:`m`-point **Gauss rule of the cell's empirical distribution**: the nodes are the
    zeros of its :math:`m`-th orthogonal polynomial (built by the discretised Stieltjes
    procedure; they are the eigenvalues of the Jacobi matrix, and
    :math:`\lambda_k = W v_{k,0}^2`). It is exact for every polynomial of degree
    :math:`\le 2m - 1`:

    .. math::  \sum_i w_i\, x_i^j = \sum_k \lambda_k\, \xi_k^j, \qquad j = 0, \dots, 2m-1,

    so the error in the cell's log-likelihood is of order
    :math:`\|f^{(2m)}\|_\infty\, \beta^{2m}\, \mathrm{Var}(x)^m / (2m)!` per battle, small when
    :math:`\beta` times the covariate's spread is at most about one (for the logit link
    :math:`|f^{(k)}| \le 1` for :math:`k \ge 2`). A cell with at most :math:`m` distinct values
    is reproduced exactly.
Several covariates (:math:`P > 1`)
    the same rule along each principal axis :math:`u_j` of the cell's covariance
    (eigenvalues :math:`s_j`): nodes :math:`\bar x + \sqrt{P s_j}\,\xi_{jk} u_j` with weights
    :math:`W\lambda_{jk}/P`, where :math:`(\xi_{jk}, \lambda_{jk})` is the Gauss rule of the
    standardised coordinate :math:`u_j^\top(x - \bar x)/\sqrt{s_j}`. This keeps the cell's
    mean and covariance exactly (degree 2); higher moments only approximately.

:func:`ppl_models.judges.data.aggregate` applies the rule only to a pair whose exact rows
outnumber the rule's :math:`3 P m`, so a log with few distinct covariate values stays exact.
"""

from __future__ import annotations

import numpy as np

__all__ = ["cell_gauss_rules", "covariate_nodes"]


def cell_gauss_rules(z: np.ndarray, w: np.ndarray, cell: np.ndarray, num_cells: int, m: int,
                     tol: float = 1e-10):
    r"""The :math:`m`-point Gauss rule of each cell's weighted empirical distribution.

    Args:
        z: ``[N]`` values (best centred and scaled per cell, for the recurrence's accuracy).
        w: ``[N]`` positive weights.
        cell: ``[N]`` cell index of each value, in ``[0, num_cells)``.
        m: nodes per cell. A cell with fewer than ``m`` distinct values gets as many nodes as
            it has distinct values (the recurrence breaks down there: that rule is exact).
        tol: relative norm under which an orthogonal polynomial counts as zero on the cell.

    Returns:
        ``(nodes, weights)``, each ``[num_cells, m]``; unused nodes have weight 0. The weights of
        a cell sum to its total weight.
    """
    z, w = np.asarray(z, np.float64), np.asarray(w, np.float64)
    total = np.bincount(cell, weights=w, minlength=num_cells)
    a = np.zeros((num_cells, m))
    off = np.zeros((num_cells, m))  # off[:, k] = sqrt(norm_k / norm_{k-1}), k >= 1
    alive = total > 0
    p_prev, p = np.zeros_like(z), np.ones_like(z)
    norm_prev = np.ones(num_cells)
    for k in range(m):
        norm = np.bincount(cell, weights=w * p * p, minlength=num_cells)
        alive = alive & (norm > (tol * total if k > 0 else 0.0))
        safe = np.where(alive, norm, 1.0)
        if k > 0:
            off[:, k] = np.where(alive, np.sqrt(safe / norm_prev), 0.0)
        a[:, k] = np.where(alive, np.bincount(cell, weights=w * z * p * p, minlength=num_cells) / safe, 0.0)
        b = off[:, k] ** 2
        p_prev, p = p, (z - a[cell, k]) * p - b[cell] * p_prev
        norm_prev = safe
    jac = np.zeros((num_cells, m, m))
    idx = np.arange(m)
    jac[:, idx, idx] = a
    jac[:, idx[1:], idx[:-1]] = off[:, 1:]
    jac[:, idx[:-1], idx[1:]] = off[:, 1:]
    nodes, vecs = np.linalg.eigh(jac)
    weights = total[:, None] * vecs[:, 0, :] ** 2
    weights[weights <= 1e-12 * np.maximum(total, 1e-300)[:, None]] = 0.0
    return nodes, weights


def covariate_nodes(x: np.ndarray, w: np.ndarray, cell: np.ndarray, num_cells: int, m: int):
    r"""Replace each cell's weighted covariates ``x [N, P]`` by the rule of the module docstring.

    Returns ``(cell_of_node, x_node [M, P], weight_node [M])`` with zero-weight nodes dropped;
    per cell the weights sum to its total weight and the weighted mean and covariance equal
    the cell's (for ``P = 1`` every moment up to degree ``2m - 1`` does).
    """
    x, w = np.asarray(x, np.float64), np.asarray(w, np.float64)
    n, p = x.shape
    total = np.bincount(cell, weights=w, minlength=num_cells)
    safe_total = np.where(total > 0, total, 1.0)
    mean = np.stack([np.bincount(cell, weights=w * x[:, j], minlength=num_cells) for j in range(p)], 1) / safe_total[:, None]
    dx = x - mean[cell]
    cov = np.zeros((num_cells, p, p))
    for i in range(p):
        for j in range(i, p):
            cov[:, i, j] = cov[:, j, i] = np.bincount(cell, weights=w * dx[:, i] * dx[:, j], minlength=num_cells) / safe_total
    s, u = np.linalg.eigh(cov)  # [C, P], [C, P, P] (columns are the axes)
    s = np.maximum(s, 0.0)
    sd = np.sqrt(s)
    proj = np.einsum("np,npq->nq", dx, u[cell])  # coordinates along the cell's axes
    z = np.where(sd[cell] > 0, proj / np.where(sd[cell] > 0, sd[cell], 1.0), 0.0)
    cells, xs, ws = [], [], []
    for j in range(p):
        nodes, weights = cell_gauss_rules(z[:, j], w, cell, num_cells, m)  # [C, m]
        pts = mean[:, None, :] + np.sqrt(p) * (sd[:, j, None] * nodes)[:, :, None] * u[:, None, :, j]
        cells.append(np.repeat(np.arange(num_cells), m))
        xs.append(pts.reshape(-1, p))
        ws.append((weights / p).reshape(-1))
    cells, xs, ws = np.concatenate(cells), np.concatenate(xs), np.concatenate(ws)
    keep = ws > 0
    return cells[keep], xs[keep], ws[keep]
