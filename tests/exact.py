"""Exact answers the tests compare inference against: HMM forward pass, enumeration.

(The Kalman filter lives with its model, in ``ppl_models.state_space``.)

Written in numpy/float64, independently of the engine.
"""

from __future__ import annotations

import itertools

import numpy as np
from scipy.special import logsumexp


def hmm_forward(log_p0, log_trans, log_lik):
    """Forward algorithm: log p(y_{0:T-1}) and the filtering marginals [T, K].

    ``log_lik[t, k] = log p(y_t | x_t = k)``."""
    log_alpha = log_p0 + log_lik[0]
    log_z = logsumexp(log_alpha)
    filt = [np.exp(log_alpha - log_z)]
    for t in range(1, log_lik.shape[0]):
        log_alpha = logsumexp(log_alpha[:, None] + log_trans, axis=0) + log_lik[t]
        filt.append(np.exp(log_alpha - logsumexp(log_alpha)))
    return logsumexp(log_alpha), np.array(filt)


def enumerate_chain(log_p0, log_trans, log_g0, log_g, T, absorbing=None, repeat_final=False):
    """Brute-force the Feynman–Kac target over all K^T paths of a discrete Markov chain.

    The target is M_0(x_0) G_0(x_0) prod_t M(x_{t-1}, x_t) G(x_{t-1}, x_t). If ``absorbing`` is a
    state, a path that has reached it stays there with probability one and potential one (the
    engine's "done" semantics), or with ``repeat_final`` the potential it received on entering
    the state, again at every later step (``finished=absorbing``). Returns (log Z, marginal of
    x_{T-1} [K], marginal of x_0 [K])."""
    K = log_p0.shape[0]
    log_terms, last, first = [], [], []
    for path in itertools.product(range(K), repeat=T):
        lw = log_p0[path[0]] + log_g0[path[0]]
        final = log_g0[path[0]]
        for t in range(1, T):
            i, j = path[t - 1], path[t]
            if absorbing is not None and i == absorbing:
                lw += (final if repeat_final else 0.0) if j == absorbing else -np.inf
            else:
                lw += log_trans[i, j] + log_g[i, j]
                final = log_g[i, j]
        log_terms.append(lw)
        last.append(path[-1])
        first.append(path[0])
    log_terms = np.array(log_terms)
    log_z = logsumexp(log_terms)
    w = np.exp(log_terms - log_z)
    return log_z, np.bincount(last, weights=w, minlength=K), np.bincount(first, weights=w, minlength=K)

