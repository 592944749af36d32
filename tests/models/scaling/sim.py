"""Simulated data shared by the scaling tests (same shapes -> compiled samplers are reused)."""

import functools

import numpy as np

P, N = 120, 16
ALPHA, BETA = 0.4, 1.5
C_TRUE, S_TRUE = 0.85, 0.9
DRAWS = dict(num_chains=2, num_warmup=300, num_samples=300)


@functools.lru_cache(maxsize=None)
def samples(seed: int = 0):
    """Per-sample arrays: rates p [P], problem [P*N], correct, accepted, tokens."""
    rng = np.random.default_rng(seed)
    p = rng.beta(ALPHA, BETA, P)
    problem = np.repeat(np.arange(P), N)
    correct = (rng.random(P * N) < p[problem]).astype(np.int64)
    u = rng.random(P * N)
    accepted = np.where(correct == 1, u < C_TRUE, u < 1 - S_TRUE).astype(np.int64)
    tokens = rng.integers(20, 200, P * N)
    return p, problem, correct, accepted, tokens


def write_csv(path, seed: int = 0):
    p, problem, correct, accepted, tokens = samples(seed)
    lines = ["problem_id,sample,correct,accepted,tokens"]
    sample = np.tile(np.arange(N), P)
    lines += [f"q{i},{s},{c},{a},{t}" for i, s, c, a, t in
              zip(problem, sample, correct, accepted, tokens)]
    path.write_text("\n".join(lines) + "\n")
    return path
