"""Small models shared by the SMC tests (module-level so compiled code is reused)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist

import ppl

# ---------------------------------------------------------------- linear-Gaussian state space
A, Q, R, M0, P0 = 0.9, 1.0, 0.25, 0.0, 1.0
T_LG = 20


def simulate_lg(seed=0, T=T_LG):
    rng = np.random.default_rng(seed)
    x = rng.normal(M0, np.sqrt(P0))
    ys = []
    for t in range(T):
        if t:
            x = A * x + rng.normal(0, np.sqrt(Q))
        ys.append(x + rng.normal(0, np.sqrt(R)))
    return np.array(ys, dtype=np.float32)


def lg_transition(x, t, y):
    return dist.Normal(A * x, np.sqrt(Q))


def lg_potential(x_prev, x, t, y):
    return dist.Normal(x, np.sqrt(R)).log_prob(y)


def lg_optimal_proposal(x_prev, t, y):
    """p(x_t | x_{t-1}, y_t): the locally optimal (guided) proposal."""
    if x_prev is None:
        prior_m, prior_v = M0, P0
    else:
        prior_m, prior_v = A * x_prev, Q
    v = 1.0 / (1.0 / prior_v + 1.0 / R)
    return dist.Normal(v * (prior_m / prior_v + y / R), jnp.sqrt(v))


def lg_bootstrap(ys):
    return ppl.FeynmanKac(init=dist.Normal(M0, np.sqrt(P0)), transition=lg_transition,
                          log_potential=lg_potential, data=jnp.asarray(ys))


def lg_guided(ys):
    return ppl.FeynmanKac(init=dist.Normal(M0, np.sqrt(P0)), transition=lg_transition,
                          log_potential=lg_potential, proposal=lg_optimal_proposal,
                          data=jnp.asarray(ys))


def lg_step(x_prev, y):
    x = numpyro.sample("x", dist.Normal(A * x_prev, np.sqrt(Q)))
    numpyro.sample("y", dist.Normal(x, np.sqrt(R)), obs=y)
    return x


# ---------------------------------------------------------------- a small discrete chain
K = 3
T_D = 4
LOG_P0 = np.log(np.array([0.5, 0.3, 0.2]))
LOG_TRANS = np.log(np.array([[0.6, 0.3, 0.1], [0.2, 0.5, 0.3], [0.25, 0.25, 0.5]]))
LOG_G0 = np.array([0.0, -1.0, 0.7])
# Potential favouring moves "up by one" and punishing staying in state 0.
LOG_G = np.array([[-1.5, 0.8, -0.3], [0.1, -0.7, 1.0], [0.9, -0.2, -0.5]])


def discrete_fk(done=None):
    p0, tr, g0, g = (jnp.asarray(a, jnp.float32) for a in (LOG_P0, LOG_TRANS, LOG_G0, LOG_G))

    def log_potential(x_prev, x, t, d):
        return g0[x] if x_prev is None else g[x_prev, x]

    return ppl.FeynmanKac(init=dist.Categorical(logits=p0),
                          transition=lambda x, t, d: dist.Categorical(logits=tr[x]),
                          log_potential=log_potential, num_steps=T_D, done=done)
