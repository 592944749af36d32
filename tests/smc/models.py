"""Small models shared by the SMC tests (module-level so compiled code is reused)."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist

import ppl
from ppl_models.state_space import LinearGaussian

# ---------------------------------------------------------------- linear-Gaussian state space
LG = LinearGaussian(a=0.9, q=1.0, r=0.25, m0=0.0, p0=1.0)
A, Q, R, M0, P0 = LG.a, LG.q, LG.r, LG.m0, LG.p0
T_LG = 20


def simulate_lg(seed=0, T=T_LG):
    return LG.simulate(T, seed)


lg_transition, lg_potential, lg_step = LG.transition, LG.log_potential, LG.step
lg_bootstrap, lg_guided = LG.bootstrap, LG.guided


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
