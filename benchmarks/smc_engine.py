r"""Benchmark of the ``ppl`` SMC engine against ``particles`` and ``blackjax``.

Two comparisons, each on one problem, each timed *after compilation* (median of repeats):

1. **Bootstrap particle filter** (``ppl.run_smc`` on a :class:`ppl.FeynmanKac`) against the
   ``particles`` library (0.4) on a stochastic-volatility model

   .. math::

       x_0 \sim N(\mu, \sigma^2 / (1 - \rho^2)), \quad
       x_t = \mu + \rho (x_{t-1} - \mu) + \sigma \varepsilon_t, \quad
       y_t \mid x_t \sim N(0, e^{x_t}),

   with the same data (simulated once with a fixed seed), the same :math:`T` and :math:`N`,
   systematic resampling and the same ESS threshold (resample when ESS/N < 0.5, the
   ``particles`` default). ``particles`` pins ``numpy < 2``, which breaks jax, so it runs in its
   own virtual environment (``benchmarks/.venv-particles``, created on first use) in a
   subprocess running ``benchmarks/_particles_filter.py``.

2. **Adaptive tempered SMC** (``ppl.tempered_smc`` with ``kernel="rwmh"``) against blackjax's
   ``adaptive_tempered_smc`` with random-walk Metropolis moves, on a Bayesian logistic
   regression (simulated data, prior :math:`N(0, 1)` on every coefficient), with the same
   number of particles, MCMC steps per temperature and target ESS. The blackjax run is one
   jitted ``lax.while_loop`` over its tempering steps (its fastest form).

Run from the repository root::

    python benchmarks/smc_engine.py            # full run (T=1000, N=4096)
    python benchmarks/smc_engine.py --quick    # a short smoke run

The last line of stdout is one JSON object (see ``benchmarks/README.md`` for every field);
the exit status is 1 when a figure is not finite.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
if str(REPO) not in sys.path:  # `ppl` from the checkout; `ppl_models` (the models/ folder) needs `pip install -e .`
    sys.path.insert(0, str(REPO))

PARTICLES_VENV = HERE / ".venv-particles"
PARTICLES_REQUIREMENTS = ["particles==0.4", "numpy<2", "scipy"]

# Stochastic-volatility parameters (Pitt & Shephard 1999, the `particles` defaults).
SV_PARAMS = {"mu": -1.02, "rho": 0.9702, "sigma": 0.178}


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------- data
def simulate_sv(T: int, seed: int, mu: float, rho: float, sigma: float) -> np.ndarray:
    """Observations y_{0:T-1} of the stochastic-volatility model (numpy, fixed seed)."""
    rng = np.random.default_rng(seed)
    x = np.empty(T)
    x[0] = mu + sigma / math.sqrt(1.0 - rho**2) * rng.standard_normal()
    eps = rng.standard_normal(T)
    for t in range(1, T):
        x[t] = mu + rho * (x[t - 1] - mu) + sigma * eps[t]
    return np.exp(0.5 * x) * rng.standard_normal(T)


# A 3-d linear-Gaussian state-space model: a damped rotation, correlated noises.
_TH = 0.3
LGSSM3 = {
    "F": 0.9 * np.array([[math.cos(_TH), -math.sin(_TH), 0.0], [math.sin(_TH), math.cos(_TH), 0.0],
                         [0.0, 0.0, 1.0]]),
    "G": np.array([[1.0, 0.0, 0.0], [0.5, 1.0, 0.0], [0.0, 0.3, 1.0]]),
    "covX": 0.5 * np.array([[1.0, 0.3, 0.1], [0.3, 0.8, 0.2], [0.1, 0.2, 0.5]]),
    "covY": np.array([[1.0, 0.2, 0.0], [0.2, 1.0, 0.3], [0.0, 0.3, 1.0]]),
    "mu0": np.zeros(3),
    "cov0": np.eye(3),
}


def simulate_logistic(num_obs: int, dim: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Design matrix X [n, d], labels y [n] in {0, 1} and the true coefficients w [d]."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((num_obs, dim))
    w = rng.standard_normal(dim)
    p = 1.0 / (1.0 + np.exp(-X @ w))
    y = (rng.uniform(size=num_obs) < p).astype(np.float64)
    return X, y, w


# ------------------------------------------------------------------------------ particles
def ensure_particles_venv(venv: Path) -> Path:
    """The python of a virtual environment with particles 0.4 (created on first use)."""
    python = venv / "bin" / "python"
    check = [str(python), "-c", "import particles, numpy; assert numpy.__version__ < '2'"]
    if python.exists() and subprocess.run(check, capture_output=True).returncode == 0:
        return python
    log(f"[particles] creating {venv} (python3 -m venv; pip install {' '.join(PARTICLES_REQUIREMENTS)})")
    base_python = os.environ.get("PPL_BENCH_BASE_PYTHON", "python3")
    subprocess.run([base_python, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", *PARTICLES_REQUIREMENTS], check=True,
                   stdout=sys.stderr)
    subprocess.run(check, check=True)
    return python


class ParticlesServer:
    """``_particles_sv.py --serve`` in the particles venv: one bootstrap-filter run per request.

    Keeping the process alive lets the benchmark interleave the ``particles`` runs with its own,
    so both sides see the same machine load (timings on shared machines drift by tens of %).
    """

    def __init__(self, model: str, y: np.ndarray, params: dict, N: int, venv: Path):
        python = ensure_particles_venv(venv)
        self._tmp = tempfile.TemporaryDirectory()
        path = Path(self._tmp.name) / f"{model}_data.npz"
        np.savez(path, model=np.str_(model), y=np.asarray(y, dtype=np.float64),
                 **{k: np.asarray(v, dtype=np.float64) for k, v in params.items()})
        cmd = [str(python), str(HERE / "_particles_filter.py"), str(path), "--N", str(N),
               "--ess-rmin", "0.5", "--resampling", "systematic", "--serve"]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, bufsize=1)
        line = self.proc.stdout.readline()
        if not line.startswith("ready "):
            self.close()
            raise RuntimeError(f"particles subprocess failed to start:\n{line}{self.proc.stderr.read()[-4000:]}")
        self.info = json.loads(line[len("ready "):])

    def run(self, seed: int) -> dict:
        self.proc.stdin.write(f"run {seed}\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"particles subprocess died:\n{self.proc.stderr.read()[-4000:]}")
        out = json.loads(line)
        if "error" in out:
            raise RuntimeError(f"particles subprocess: {out['error']}")
        return out

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write("quit\n")
                self.proc.stdin.close()
                self.proc.wait(timeout=30)
            except Exception:  # pragma: no cover - best effort
                self.proc.kill()
        self._tmp.cleanup()


# ---------------------------------------------------------------------------- ppl: filter
def make_sv_feynman_kac(y, params: dict):
    """The bootstrap filter of the stochastic-volatility model as a ``ppl.FeynmanKac``."""
    import jax.numpy as jnp
    import numpyro.distributions as dist

    import ppl

    mu, rho, sigma = params["mu"], params["rho"], params["sigma"]
    sig0 = sigma / math.sqrt(1.0 - rho**2)

    def transition(x_prev, t, y_t):
        return dist.Normal(mu + rho * (x_prev - mu), sigma)

    def log_potential(x_prev, x, t, y_t):
        # log N(y_t; 0, exp(x_t))
        return -0.5 * (math.log(2.0 * math.pi) + x + y_t**2 * jnp.exp(-x))

    return ppl.FeynmanKac(
        init=dist.Normal(mu, sig0),
        transition=transition,
        log_potential=log_potential,
        data=jnp.asarray(y, dtype=jnp.float32),
    )


def make_ours_filter(y, params: dict, N: int, seed: int):
    """``r -> (log Z, number of resampling steps)`` of the stochastic-volatility filter, key ``r``."""
    return make_ours_filter_of(make_sv_feynman_kac(y, params), N, seed)


def lgssm3_model():
    """``LGSSM3`` as a ``ppl_models.state_space.MultivariateLinearGaussian``.

    Its ``bootstrap`` form is the plain way a user writes the filter (numpyro
    ``MultivariateNormal``, covariance matrices, no hand-written density). The engine draws the
    particle set from one lifted ``MultivariateNormal`` per step, and on CPU runs its tiny
    products and triangular solves as elementwise arithmetic (``ppl.core.small_dots``).
    """
    from ppl_models.state_space import MultivariateLinearGaussian

    p = LGSSM3
    return MultivariateLinearGaussian(F=p["F"], G=p["G"], Q=p["covX"], R=p["covY"], m0=p["mu0"], P0=p["cov0"])


def make_ours_filter_of(fk, N: int, seed: int):
    """``r -> (log Z, number of resampling steps)`` running ``ppl.run_smc`` on ``fk`` with key ``r``."""
    import jax

    import ppl

    base = jax.random.key(seed)

    def call(r):
        res = ppl.run_smc(fk, N, key=jax.random.fold_in(base, r + 1), resampling="systematic",
                          ess_threshold=0.5)
        jax.block_until_ready(res)
        return {"log_evidence": float(res.log_evidence),
                "num_resampling_steps": int(np.sum(np.asarray(res.resampled)))}

    return call


def _jax_reference(y, N: int, seed: int, init, move, log_g):
    """A hand-written, fully vectorised bootstrap filter in plain JAX (``lax.scan``).

    ``init(key) -> x [N, ...]``, ``move(key, x) -> x`` and ``log_g(x, y_t) -> [N]`` act on the
    whole particle set (one batched draw per step, no diagnostics); systematic resampling when
    ESS/N < 0.5. Not part of the comparison: it shows what JAX itself costs on this machine for
    the filter, so the engine's own overhead is ours / this.
    """
    import jax
    import jax.numpy as jnp
    from jax.scipy.special import logsumexp

    yj = jnp.asarray(y, jnp.float32)
    T = yj.shape[0]
    log_n = math.log(N)

    def systematic(key, log_w):
        cdf = jnp.cumsum(jnp.exp(log_w - logsumexp(log_w)))
        u = (jax.random.uniform(key) + jnp.arange(N)) / N
        return jnp.clip(jnp.searchsorted(cdf, u), 0, N - 1)

    @jax.jit
    def run(key, ys):
        k0, key = jax.random.split(key)
        x = init(k0)
        log_w = log_g(x, ys[0])
        log_z = logsumexp(log_w) - log_n

        def step(carry, inp):
            x, log_w, log_z, n_res = carry
            k, y_t = inp
            k_res, k_move = jax.random.split(k)
            log_w = log_w - logsumexp(log_w)
            do_res = jnp.exp(-logsumexp(2.0 * log_w)) < 0.5 * N
            x, log_w = jax.lax.cond(
                do_res, lambda a: (a[0][systematic(k_res, a[1])], jnp.full((N,), -log_n)),
                lambda a: a, (x, log_w))
            x = move(k_move, x)
            log_w = log_w + log_g(x, y_t)
            return (x, log_w, log_z + logsumexp(log_w), n_res + do_res), None

        (x, log_w, log_z, n_res), _ = jax.lax.scan(
            step, (x, log_w, log_z, jnp.zeros((), jnp.int32)), (jax.random.split(key, T - 1), ys[1:]))
        return log_z, n_res

    base = jax.random.key(seed + 2_000)

    def call(r):
        log_z, n_res = jax.block_until_ready(run(jax.random.fold_in(base, r + 1), yj))
        return {"log_evidence": float(log_z), "num_resampling_steps": int(n_res)}

    return call


def make_jax_reference_filter(y, params: dict, N: int, seed: int):
    """The hand-written JAX filter (:func:`_jax_reference`) of the stochastic-volatility model."""
    import jax
    import jax.numpy as jnp

    mu, rho, sigma = params["mu"], params["rho"], params["sigma"]
    sig0 = sigma / math.sqrt(1.0 - rho**2)
    return _jax_reference(
        y, N, seed,
        init=lambda k: mu + sig0 * jax.random.normal(k, (N,)),
        move=lambda k, x: mu + rho * (x - mu) + sigma * jax.random.normal(k, (N,)),
        log_g=lambda x, y_t: -0.5 * (math.log(2.0 * math.pi) + x + y_t**2 * jnp.exp(-x)))


def make_jax_reference_lgssm(y, params: dict, N: int, seed: int):
    """The hand-written JAX filter (:func:`_jax_reference`) of the linear-Gaussian model:
    states ``[N, dx]``, Cholesky factors computed once, a triangular solve for the density."""
    import jax
    import jax.numpy as jnp

    F, G, covX, covY, mu0, cov0 = (jnp.asarray(params[k], jnp.float32)
                                   for k in ("F", "G", "covX", "covY", "mu0", "cov0"))
    LX, LY, L0 = (jnp.linalg.cholesky(c) for c in (covX, covY, cov0))
    dx, dy = F.shape[0], G.shape[0]
    log_det = jnp.sum(jnp.log(jnp.diag(LY)))

    def log_g(x, y_t):
        z = jax.scipy.linalg.solve_triangular(LY, (y_t - x @ G.T).T, lower=True)
        return -0.5 * jnp.sum(z * z, 0) - log_det - 0.5 * dy * math.log(2 * math.pi)

    return _jax_reference(
        y, N, seed,
        init=lambda k: mu0 + jax.random.normal(k, (N, dx)) @ L0.T,
        move=lambda k, x: x @ F.T + jax.random.normal(k, (N, dx)) @ LX.T,
        log_g=log_g)


# ------------------------------------------------------------------- logistic regression
def logistic_model(X, y=None):
    import jax.numpy as jnp
    import numpyro
    import numpyro.distributions as dist

    w = numpyro.sample("w", dist.Normal(jnp.zeros(X.shape[1]), 1.0).to_event(1))
    numpyro.sample("y", dist.Bernoulli(logits=X @ w), obs=y)


def make_ours_tempered(X, y, num_particles: int, num_mcmc_steps: int, target_ess: float, seed: int):
    import jax
    import jax.numpy as jnp

    import ppl

    Xj, yj = jnp.asarray(X, jnp.float32), jnp.asarray(y, jnp.float32)
    base = jax.random.key(seed)

    def call(r):
        res = ppl.tempered_smc(logistic_model, Xj, yj, key=jax.random.fold_in(base, r + 1),
                               num_particles=num_particles, target_ess=target_ess, kernel="rwmh",
                               num_mcmc_steps=num_mcmc_steps, resampling="systematic")
        jax.block_until_ready(res)
        d = res.diagnostics
        acc = d.get("acceptance_rate")
        acc = float(np.nanmean(np.asarray(acc, dtype=float))) if acc is not None else None
        w = np.asarray(res.samples["w"]).reshape(-1, X.shape[1])
        lw = np.asarray(res.log_weights, dtype=float).reshape(-1)
        W = np.exp(lw - lw.max())
        return {"log_evidence": float(np.asarray(res.log_evidence).reshape(-1)[0]),
                "num_tempering_steps": int(np.asarray(d["num_steps"]).reshape(-1)[0]),
                "mean_acceptance_rate": acc,
                "posterior_mean": (W / W.sum()) @ w}

    return call


def make_blackjax_tempered(X, y, num_particles: int, num_mcmc_steps: int, target_ess: float,
                           seed: int, max_steps: int = 500):
    """blackjax's adaptive tempered SMC as one jitted ``lax.while_loop`` over tempering steps.

    Moves: blackjax's additive-step random-walk Metropolis (``additive_step_random_walk``, not
    ``rmh`` with a step function — see PLATFORM.md) with a Gaussian step of per-coordinate scale
    ``2.38 / sqrt(d) * std`` of the current (weighted) particles, recomputed at every
    temperature and passed as a shared MCMC parameter: the same rule as ``ppl``'s ``rwmh``.
    """
    import blackjax
    import blackjax.smc.resampling as resampling
    import jax
    import jax.numpy as jnp
    from blackjax.smc import adaptive_tempered as atsmc

    Xj, yj = jnp.asarray(X, jnp.float32), jnp.asarray(y, jnp.float32)
    d = Xj.shape[1]

    def logprior(w):
        return jnp.sum(jax.scipy.stats.norm.logpdf(w))

    def loglik(w):
        logits = Xj @ w
        return jnp.sum(yj * logits - jnp.logaddexp(0.0, logits))

    rw_kernel = blackjax.additive_step_random_walk.build_kernel()

    def mcmc_step_fn(key, state, logdensity_fn, scale):
        return rw_kernel(key, state, logdensity_fn, blackjax.mcmc.random_walk.normal(scale))

    kernel = atsmc.build_kernel(logprior, loglik, mcmc_step_fn, blackjax.rmh.init,
                                resampling.systematic, target_ess)

    def scale_of(particles, weights):
        mean = weights @ particles
        var = weights @ (particles - mean) ** 2
        return 2.38 / math.sqrt(d) * jnp.sqrt(var)

    @jax.jit
    def run(key):
        init_key, key = jax.random.split(key)
        state = atsmc.init(jax.random.normal(init_key, (num_particles, d)))

        def cond(carry):
            state, _, _, n, _ = carry
            return (state.tempering_param < 1.0) & (n < max_steps)

        def body(carry):
            state, key, log_z, n, acc = carry
            key, sub = jax.random.split(key)
            # leading axis of length 1: a parameter shared by all particles
            params = {"scale": scale_of(state.particles, state.weights)[None]}
            state, info = kernel(sub, state, num_mcmc_steps, params)
            return (state, key, log_z + info.log_likelihood_increment, n + 1,
                    acc + jnp.mean(info.update_info.acceptance_rate))

        state, _, log_z, n, acc = jax.lax.while_loop(
            cond, body, (state, key, jnp.zeros(()), jnp.zeros((), jnp.int32), jnp.zeros(())))
        return state.particles, state.weights, log_z, n, acc / jnp.maximum(n, 1), state.tempering_param

    base = jax.random.key(seed + 1_000)

    def call(r):
        parts, weights, log_z, n, acc, beta = jax.block_until_ready(run(jax.random.fold_in(base, r + 1)))
        if float(beta) < 1.0:
            raise RuntimeError(f"blackjax tempered SMC did not reach temperature 1 in {max_steps} steps")
        return {"log_evidence": float(log_z), "num_tempering_steps": int(n),
                "mean_acceptance_rate": float(acc),
                "posterior_mean": np.asarray(weights) @ np.asarray(parts)}

    return call


def reference_log_evidence(X, y, num_samples: int = 400_000, seed: int = 0) -> float:
    """log p(y) of the logistic regression by importance sampling from its Laplace approximation.

    Newton's method finds the mode; the proposal is a Student-t (5 dof) with the inverse
    Hessian as scale, so the weights have finite variance. With 4e5 draws the Monte Carlo error
    is far below the SMC noise; used only as a yardstick for both sides.
    """
    n, d = X.shape
    w = np.zeros(d)
    for _ in range(50):
        p = 1.0 / (1.0 + np.exp(-X @ w))
        grad = X.T @ (y - p) - w
        H = X.T @ (X * (p * (1 - p))[:, None]) + np.eye(d)
        step = np.linalg.solve(H, grad)
        w = w + step
        if np.max(np.abs(step)) < 1e-10:
            break
    p = 1.0 / (1.0 + np.exp(-X @ w))
    H = X.T @ (X * (p * (1 - p))[:, None]) + np.eye(d)
    L = np.linalg.cholesky(np.linalg.inv(H))
    rng = np.random.default_rng(seed)
    nu = 5.0
    log_w = []
    for _ in range(num_samples // 50_000):
        z = rng.standard_normal((50_000, d))
        g = rng.chisquare(nu, size=(50_000, 1)) / nu
        t = z / np.sqrt(g)
        W = w + t @ L.T
        # multivariate Student-t log density (location w, scale L L^T)
        log_q = (math.lgamma((nu + d) / 2) - math.lgamma(nu / 2) - d / 2 * math.log(nu * math.pi)
                 - np.sum(np.log(np.diag(L))) - (nu + d) / 2 * np.log1p(np.sum(t * t, 1) / nu))
        logits = W @ X.T
        log_p = (np.sum(y * logits - np.logaddexp(0.0, logits), 1)
                 - 0.5 * np.sum(W * W, 1) - d / 2 * math.log(2 * math.pi))
        log_w.append(log_p - log_q)
    log_w = np.concatenate(log_w)
    m = log_w.max()
    return float(m + np.log(np.mean(np.exp(log_w - m))))


# ---------------------------------------------------------------------------------- timing
def interleaved(sides: dict, repeats: int) -> dict:
    """Warm up every side (the first call compiles), then time ``repeats`` rounds in turn.

    ``sides`` maps a name to ``call(r) -> dict``. Interleaving the rounds spreads any drift of
    the machine's load evenly over the sides. Returns, per side, ``first_call_seconds``,
    ``seconds`` (wall), ``cpu_seconds`` (process CPU time, all threads; a side that runs in a
    subprocess returns its own as ``cpu_seconds``) and the lists of every field the calls
    returned.
    """
    out = {}
    for name, call in sides.items():
        t0 = time.perf_counter()
        call(-1)
        out[name] = {"first_call_seconds": time.perf_counter() - t0, "seconds": [],
                     "cpu_seconds": [], "records": []}
    for r in range(repeats):
        for name, call in sides.items():
            t0, c0 = time.perf_counter(), time.process_time()
            rec = dict(call(r))
            out[name]["seconds"].append(time.perf_counter() - t0)
            # CPU time of this process (all its threads); a subprocess side reports its own.
            out[name]["cpu_seconds"].append(rec.pop("cpu_seconds", time.process_time() - c0))
            out[name]["records"].append(rec)
    for name, res in out.items():
        for field in res["records"][0]:
            res[field] = [rec[field] for rec in res["records"]]
        del res["records"]
    return out


def _median(xs):
    return float(statistics.median(xs))


def ratio_ci95(num, den, scale: float = 1.0, reps: int = 4000, seed: int = 0) -> list[float]:
    """95% bootstrap interval of ``scale * median(num) / median(den)``.

    The repeats are interleaved rounds, so round ``r`` of both sides ran under the same load:
    the bootstrap resamples rounds (pairs), not each side on its own.
    """
    num, den = np.asarray(num, float), np.asarray(den, float)
    idx = np.random.default_rng(seed).integers(0, len(num), (reps, len(num)))
    r = scale * np.median(num[idx], axis=1) / np.median(den[idx], axis=1)
    return [float(np.quantile(r, 0.025)), float(np.quantile(r, 0.975))]


def _mean(xs):
    return float(np.mean(xs))


def _std(xs):
    return float(np.std(xs, ddof=1)) if len(xs) > 1 else float("nan")


def versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for dist in ("jax", "jaxlib", "numpyro", "blackjax", "numpy"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            out[dist] = None
    import ppl

    out["ppl"] = getattr(ppl, "__version__", None)
    return out


def platform_info() -> dict:
    import jax

    return {
        "system": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor() or None,
        "cpu_count": os.cpu_count(),
        "jax_backend": jax.default_backend(),
        "jax_devices": [str(d) for d in jax.devices()],
        "jax_enable_x64": bool(jax.config.read("jax_enable_x64")),
        "dtype": "float32 (ppl, blackjax, JAX reference); float64 (particles)",
    }


def _loadavg():
    try:
        return list(os.getloadavg())
    except OSError:  # pragma: no cover
        return None


def _finite_problems(obj, prefix="") -> list[str]:
    problems = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            problems += _finite_problems(v, f"{prefix}{k}.")
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            problems += _finite_problems(v, f"{prefix}{i}.")
    elif isinstance(obj, float) and not math.isfinite(obj):
        problems.append(prefix.rstrip("."))
    return problems


# Targets (issue 16). Every one that was measured must hold for "ok": true.
TARGETS = {
    "pf_vs_jax_reference_ratio": ("<=", 1.2),
    "pf_vs_particles_speedup": (">=", 2.0),
    "pf_vs_particles_speedup_lgssm3": (">=", 1.5),
    "tempered_vs_blackjax_speedup_per_step": (">=", 1.2),
}


def logz_agreement(result: dict) -> dict:
    """Log-evidence checks: |ours - yardstick| within 4 standard errors of the two runs' means
    (plus 0.05 nats of float32 slack). Yardsticks: particles (SV), Kalman (LGSSM), the
    importance-sampling reference (tempered)."""
    checks = {}
    r = result.get("repeats", 1)

    def within(name, diff, *stds):
        se = math.sqrt(sum((s or 0.0) ** 2 for s in stds) / r)
        checks[name] = {"abs_diff": diff, "bound": 4 * se + 0.05, "ok": diff <= 4 * se + 0.05}

    if "logz_abs_diff_vs_particles" in result:
        within("sv_vs_particles", result["logz_abs_diff_vs_particles"], result["pf_ours_logz_std"],
               result["pf_particles_logz_std"])
    if "lgssm3_ours_logz_abs_err" in result:
        within("lgssm3_vs_kalman", result["lgssm3_ours_logz_abs_err"], result["lgssm3_ours_logz_std"])
    if "tempered_ours_logz_abs_err" in result:
        within("tempered_vs_reference", result["tempered_ours_logz_abs_err"], result["tempered_ours_logz_std"],
               result.get("tempered_blackjax_logz_std"))
    return checks


def missed_targets(result: dict) -> list[str]:
    """Names of the speed targets (of those measured) and log-evidence checks that failed."""
    missed = []
    for name, (op, bound) in TARGETS.items():
        value = result.get(name)
        if value is None:
            continue
        if not (value <= bound if op == "<=" else value >= bound):
            missed.append(f"{name} = {value:.3g} (target {op} {bound})")
    result["logz_agreement"] = logz_agreement(result)
    missed += [f"log Z {k}: |diff| {v['abs_diff']:.3g} > {v['bound']:.3g}"
               for k, v in result["logz_agreement"].items() if not v["ok"]]
    return missed


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description="Benchmark ppl's SMC engine against particles (bootstrap filter) and blackjax "
                    "(adaptive tempered SMC). The last stdout line is one JSON object.")
    p.add_argument("--T", type=int, default=1000, help="time steps of the stochastic-volatility data")
    p.add_argument("--N", type=int, default=4096, help="particles of the bootstrap filter")
    p.add_argument("--repeats", type=int, default=5, help="timed runs per side, after one warm-up run")
    p.add_argument("--tempered-particles", type=int, default=1000)
    p.add_argument("--num-mcmc-steps", type=int, default=10, help="rejuvenation steps per temperature")
    p.add_argument("--target-ess", type=float, default=0.5, help="adaptive tempering target ESS/N")
    p.add_argument("--dim", type=int, default=10, help="logistic-regression coefficients")
    p.add_argument("--num-obs", type=int, default=500, help="logistic-regression observations")
    p.add_argument("--seed", type=int, default=0, help="seed of the simulated data and of the runs")
    p.add_argument("--quick", action="store_true",
                   help="short smoke run: T=200, N=1024, 300 tempered particles, 2 repeats")
    p.add_argument("--skip", action="append", default=[], choices=["filter", "lgssm3", "tempered"],
                   help="leave out one comparison (repeatable)")
    p.add_argument("--no-jax-reference", action="store_true",
                   help="do not time the hand-written plain-JAX filter")
    p.add_argument("--particles-venv", type=Path, default=PARTICLES_VENV,
                   help="virtual environment with particles 0.4 (created if missing)")
    p.add_argument("--output", type=Path, default=None, help="also write the JSON line to this file")
    args = p.parse_args(argv)
    if args.quick:
        args.T, args.N, args.tempered_particles, args.repeats = 200, 1024, 300, 2
    for name in ("T", "N", "repeats", "tempered_particles", "num_mcmc_steps", "dim", "num_obs"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')}: expected a positive integer, got {getattr(args, name)}")
    if args.T < 2:
        p.error(f"--T: expected at least 2 time steps, got {args.T}")
    if not 0.0 < args.target_ess < 1.0:
        p.error(f"--target-ess: expected a fraction in (0, 1), got {args.target_ess}")
    return args


def _filter_sides(args, tag: str, model: str, y, params: dict, ours, make_reference):
    """Time ``particles`` (in its subprocess), ours and, unless ``--no-jax-reference``, the
    hand-written JAX filter, interleaved; log each side's times and log Z. Returns the timings
    and the ``particles`` server's info."""
    server = ParticlesServer(model, y, params, args.N, args.particles_venv)
    try:
        sides = {"particles": lambda r: server.run(args.seed + r + 1 if r >= 0 else 10_001), "ours": ours}
        if not args.no_jax_reference:
            sides["jax_reference"] = make_reference(y, params, args.N, args.seed)
        res = interleaved(sides, args.repeats)
    finally:
        server.close()
    for name, r in res.items():
        log(f"[{tag}] {name:13s} seconds {[round(s, 4) for s in r['seconds']]} "
            f"(first call {r['first_call_seconds']:.2f} s) log Z {[round(z, 2) for z in r['log_evidence']]}")
    return res, server.info


def compare_filter(args) -> dict:
    y = simulate_sv(args.T, args.seed, **SV_PARAMS)
    log(f"[filter] stochastic volatility T={args.T} N={args.N}, {args.repeats} interleaved repeats")
    res, info = _filter_sides(args, "filter", "stochastic_volatility", y, SV_PARAMS,
                              make_ours_filter(y, SV_PARAMS, args.N, args.seed), make_jax_reference_filter)
    theirs, ours = res["particles"], res["ours"]
    t_theirs, t_ours = _median(theirs["seconds"]), _median(ours["seconds"])
    out = {
        "pf_vs_particles_speedup": t_theirs / t_ours,
        "pf_vs_particles_speedup_ci95": ratio_ci95(theirs["seconds"], ours["seconds"]),
        "pf_vs_particles_speedup_cpu": _median(theirs["cpu_seconds"]) / _median(ours["cpu_seconds"]),
        "pf_ours_cpu_seconds": _median(ours["cpu_seconds"]),
        "pf_particles_cpu_seconds": _median(theirs["cpu_seconds"]),
        "logz_abs_diff_vs_particles": abs(_mean(ours["log_evidence"]) - _mean(theirs["log_evidence"])),
        "pf_vs_particles_speedup_best": min(theirs["seconds"]) / min(ours["seconds"]),
        "pf_model": {"name": "stochastic_volatility", **SV_PARAMS, "T": args.T, "N": args.N,
                     "resampling": "systematic", "ess_threshold": 0.5, "data_seed": args.seed},
        "pf_ours_seconds": t_ours,
        "pf_particles_seconds": t_theirs,
        "pf_ours_first_call_seconds": ours["first_call_seconds"],
        "pf_ours_seconds_all": ours["seconds"],
        "pf_particles_seconds_all": theirs["seconds"],
        "pf_ours_logz_mean": _mean(ours["log_evidence"]),
        "pf_ours_logz_std": _std(ours["log_evidence"]),
        "pf_particles_logz_mean": _mean(theirs["log_evidence"]),
        "pf_particles_logz_std": _std(theirs["log_evidence"]),
        "pf_ours_num_resampling_steps": ours["num_resampling_steps"],
        "pf_particles_num_resampling_steps": theirs["num_resampling_steps"],
        "particles_versions": info["versions"],
    }
    if "jax_reference" in res:
        ref = res["jax_reference"]
        out.update({
            "pf_jax_reference_seconds": _median(ref["seconds"]),
            "pf_jax_reference_logz_mean": _mean(ref["log_evidence"]),
            "pf_vs_jax_reference_ratio": t_ours / _median(ref["seconds"]),
            "pf_vs_jax_reference_ratio_ci95": ratio_ci95(ours["seconds"], ref["seconds"]),
            "pf_jax_reference_seconds_all": ref["seconds"],
            "pf_vs_jax_reference_ratio_cpu": _median(ours["cpu_seconds"]) / _median(ref["cpu_seconds"]),
        })
    return out


def compare_lgssm(args) -> dict:
    model = lgssm3_model()
    y = model.simulate(args.T, args.seed)
    log(f"[lgssm3] 3-d linear-Gaussian T={args.T} N={args.N} (numpyro MultivariateNormal), "
        f"{args.repeats} interleaved repeats")
    res, _ = _filter_sides(args, "lgssm3", "lgssm", y, LGSSM3,
                           make_ours_filter_of(model.bootstrap(y), args.N, args.seed), make_jax_reference_lgssm)
    theirs, ours = res["particles"], res["ours"]
    exact = model.kalman_log_evidence(y)
    t_theirs, t_ours = _median(theirs["seconds"]), _median(ours["seconds"])
    extra = {}
    if "jax_reference" in res:
        t_ref = _median(res["jax_reference"]["seconds"])
        extra |= {"lgssm3_jax_reference_seconds": t_ref,
                  "lgssm3_jax_reference_seconds_all": res["jax_reference"]["seconds"],
                 "lgssm3_vs_jax_reference_ratio": t_ours / t_ref,
                 "lgssm3_jax_reference_vs_particles_speedup": t_theirs / t_ref,
                 "lgssm3_jax_reference_logz_mean": _mean(res["jax_reference"]["log_evidence"])}
    return {**extra,
        "pf_vs_particles_speedup_lgssm3": t_theirs / t_ours,
        "pf_vs_particles_speedup_lgssm3_ci95": ratio_ci95(theirs["seconds"], ours["seconds"]),
        "pf_vs_particles_speedup_lgssm3_cpu": _median(theirs["cpu_seconds"]) / _median(ours["cpu_seconds"]),
        "lgssm3_ours_cpu_seconds": _median(ours["cpu_seconds"]),
        "lgssm3_particles_cpu_seconds": _median(theirs["cpu_seconds"]),
        "lgssm3_model": {"name": "lgssm3", "dx": 3, "dy": 3, "T": args.T, "N": args.N,
                         "written_with": "numpyro MultivariateNormal(loc, covariance_matrix)",
                         "resampling": "systematic", "ess_threshold": 0.5, "data_seed": args.seed},
        "lgssm3_ours_seconds": t_ours,
        "lgssm3_particles_seconds": t_theirs,
        "lgssm3_ours_seconds_all": ours["seconds"],
        "lgssm3_particles_seconds_all": theirs["seconds"],
        "lgssm3_ours_first_call_seconds": ours["first_call_seconds"],
        "lgssm3_kalman_logz": exact,
        "lgssm3_ours_logz_mean": _mean(ours["log_evidence"]),
        "lgssm3_ours_logz_std": _std(ours["log_evidence"]),
        "lgssm3_particles_logz_mean": _mean(theirs["log_evidence"]),
        "lgssm3_particles_logz_std": _std(theirs["log_evidence"]),
        "lgssm3_ours_logz_abs_err": abs(_mean(ours["log_evidence"]) - exact),
        "lgssm3_particles_logz_abs_err": abs(_mean(theirs["log_evidence"]) - exact),
    }


def compare_tempered(args) -> dict:
    X, y, _ = simulate_logistic(args.num_obs, args.dim, args.seed + 1)
    cfg = (args.tempered_particles, args.num_mcmc_steps, args.target_ess, args.seed)
    log(f"[tempered] logistic regression d={args.dim} n={args.num_obs}, {args.tempered_particles} "
        f"particles, {args.num_mcmc_steps} RWMH steps, target ESS {args.target_ess}")
    res = interleaved({"blackjax": make_blackjax_tempered(X, y, *cfg),
                       "ours": make_ours_tempered(X, y, *cfg)}, args.repeats)
    bj, ours = res["blackjax"], res["ours"]
    for name, r in res.items():
        log(f"[tempered] {name:9s} seconds {[round(s, 4) for s in r['seconds']]} (first call "
            f"{r['first_call_seconds']:.2f} s) steps {r['num_tempering_steps']} "
            f"log Z {[round(z, 2) for z in r['log_evidence']]}")
    ref = reference_log_evidence(X, y, seed=args.seed)
    t_bj, t_ours = _median(bj["seconds"]), _median(ours["seconds"])
    steps_bj, steps_ours = _mean(bj["num_tempering_steps"]), _mean(ours["num_tempering_steps"])
    out = {
        "tempered_vs_blackjax_speedup": t_bj / t_ours,
        "logz_abs_diff_vs_blackjax": abs(_mean(ours["log_evidence"]) - _mean(bj["log_evidence"])),
        "tempered_vs_blackjax_speedup_best": min(bj["seconds"]) / min(ours["seconds"]),
        "tempered_vs_blackjax_speedup_per_step": (t_bj / steps_bj) / (t_ours / steps_ours),
        "tempered_vs_blackjax_speedup_per_step_ci95": ratio_ci95(bj["seconds"], ours["seconds"],
                                                                 scale=steps_ours / steps_bj),
        "tempered_vs_blackjax_speedup_per_step_cpu": (_median(bj["cpu_seconds"]) / steps_bj)
        / (_median(ours["cpu_seconds"]) / steps_ours),
        "tempered_ours_cpu_seconds": _median(ours["cpu_seconds"]),
        "tempered_blackjax_cpu_seconds": _median(bj["cpu_seconds"]),
        "tempered_model": {"name": "logistic_regression", "dim": args.dim, "num_obs": args.num_obs,
                           "prior": "N(0,1)", "num_particles": args.tempered_particles,
                           "num_mcmc_steps": args.num_mcmc_steps, "target_ess": args.target_ess,
                           "kernel": "rwmh (diag, 2.38/sqrt(d) * particle std)",
                           "resampling": "systematic", "data_seed": args.seed + 1},
        "tempered_ours_seconds": t_ours,
        "tempered_blackjax_seconds": t_bj,
        "tempered_ours_first_call_seconds": ours["first_call_seconds"],
        "tempered_blackjax_first_call_seconds": bj["first_call_seconds"],
        "tempered_ours_seconds_all": ours["seconds"],
        "tempered_blackjax_seconds_all": bj["seconds"],
        "tempered_ours_num_steps": ours["num_tempering_steps"],
        "tempered_blackjax_num_steps": bj["num_tempering_steps"],
        "tempered_ours_logz_mean": _mean(ours["log_evidence"]),
        "tempered_ours_logz_std": _std(ours["log_evidence"]),
        "tempered_blackjax_logz_mean": _mean(bj["log_evidence"]),
        "tempered_blackjax_logz_std": _std(bj["log_evidence"]),
        "tempered_reference_logz": ref,
        "tempered_ours_logz_abs_err": abs(_mean(ours["log_evidence"]) - ref),
        "tempered_blackjax_logz_abs_err": abs(_mean(bj["log_evidence"]) - ref),
        "tempered_blackjax_acceptance_rate": bj["mean_acceptance_rate"],
        "tempered_posterior_mean_max_abs_diff": float(np.max(np.abs(
            np.mean(ours["posterior_mean"], axis=0) - np.mean(bj["posterior_mean"], axis=0)))),
    }
    if all(a is not None for a in ours["mean_acceptance_rate"]):
        out["tempered_ours_acceptance_rate"] = ours["mean_acceptance_rate"]
    return out


def main(argv=None) -> int:
    args = parse_args(argv)
    result: dict = {"benchmark": "smc_engine", "quick": bool(args.quick), "repeats": args.repeats,
                    "timing": "median of interleaved repeats after one warm-up (compiling) call"}
    load_start = _loadavg()
    if "filter" not in args.skip:
        result.update(compare_filter(args))
    if "lgssm3" not in args.skip:
        result.update(compare_lgssm(args))
    if "tempered" not in args.skip:
        result.update(compare_tempered(args))
    result["targets"] = {name: f"{op} {bound}" for name, (op, bound) in TARGETS.items()}
    result["versions"] = versions()
    result["platform"] = {**platform_info(), "loadavg_start": load_start, "loadavg_end": _loadavg()}
    problems = _finite_problems({k: v for k, v in result.items() if k != "platform"})
    missed = missed_targets(result)
    result["ok"] = not problems and not missed
    if problems:
        result["non_finite"] = problems
    if missed:
        result["missed_targets"] = missed
    line = json.dumps(result)
    if args.output is not None:
        args.output.write_text(line + "\n")
    print(line, flush=True)
    if problems:
        log(f"non-finite figures: {problems}")
        return 1
    if missed:
        log(f"missed targets: {missed}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
