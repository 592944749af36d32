r"""Benchmark of LM programs: what the particle filter costs beside the LM, and what the KV cache buys.

Three figures, each timed *after compilation* (a first call compiles; the median of interleaved
repeats is reported), with a small random transformer from :mod:`ppl_models.lm` (default 4 layers,
width 128, 4 heads, vocabulary 64, rotary positions, no end-of-sequence token):

1. ``pf_overhead_ratio`` — wall time of a particle filter (:func:`ppl.run_smc` on a
   :class:`ppl.lm.LMProgram` with a cheap potential and ``ess_threshold=1.0``: systematic
   resampling of the whole state, KV cache included, at every step boundary) divided by plain
   batched sampling of the same number of sequences and tokens with the same LM: one jitted
   ``lax.scan`` of :func:`ppl.lm.sample_step` over the same steps with the same key splits, no
   weights, no resampling. Steps have a fixed length (no delimiter, no EOS, ``max_step_tokens``
   tokens each, a buffer that never fills), so both sides generate exactly the same tokens;
   both count them. Target: a paired median of at most 1.05.

2. ``kv_cache_speedup`` — the same particle filter on :class:`NoCacheLM`, an LM wrapper with no
   KV cache: it keeps only the token history and at every token recomputes the full prefix
   (one forward pass of the model without a cache over the history, the logits read at the
   query positions), as simple SMC-steering code does; its wall time divided by ours, at a
   sequence length of at least 256. The prefix is recomputed up to the longest live position
   rounded up to ``--nocache-bucket`` tokens (a ``lax.switch`` over prefix lengths), not over
   the whole buffer, so the baseline is not handicapped by padding. The wrapper follows the
   ``ppl.lm`` protocol, and the benchmark asserts that it gives the cached model's logits.
   Target: at least 5.

3. ``decode_tokens_per_s`` — batched decoding throughput of the LM: tokens per second of the
   plain sampling baseline of 1.

4. ``reward_flops_per_step_ratio`` — a particle filter weighted by a reward model
   (:func:`ppl.lm.potentials.from_reward` of a random PRM of width 64 that reads this LM's token
   features, :class:`ppl_models.rewards.ProcessRewardModel`): the reward FLOPs per particle step
   when it re-reads every prefix (``incremental=False``) divided by those of the incremental
   reward, which carries its own and the features LM's KV caches in the particle and reads only
   each step's new tokens; both counted by :func:`ppl.lm.compute.counter` (tokens read
   times the reward's FLOPs per token). Target: at least 5. Beside it, the wall times of the two
   filters (``reward_time_ratio``) and the largest difference of their log-evidences (the scores
   agree to float tolerance).

5. ``cache_bytes_per_particle`` — bytes of KV cache each particle carries (the LM's): the
   positions after the prompt's first ``P - 1``, whose keys and values are computed once and
   stored once for all particles (``prompt_cache_bytes_shared``; ``shared_prefix`` of
   :class:`ppl.lm.LMProgram`). ``cache_bytes_per_particle_whole`` is what a particle would carry
   with its own copy of the prompt's entries; ``prompt_cache_shared`` checks that the two
   differ by exactly the shared cache. The plain-sampling baseline of 1 shares the prompt too.

6. ``resample_copy_ratio`` — one resampling of the filter's final particles (KV caches included)
   with systematic ancestors from its final weights: every row gathered
   (:func:`ppl.smc.resampling.gather`, what the engine did before) against only the rows of
   the particles that died, the ancestors in stable order
   (:func:`~ppl.smc.resampling.gather_changed`, what it does now), both jitted with the
   particles donated; median of interleaved repeats, with ``resample_rows_copied_fraction``;
   ``*_half_dead``: the same with half the particles at weight 0.

``ok`` is false when a figure is not finite or a target is missed (``missed_targets``):
``pf_overhead_ratio_paired_median`` <= 1.05 (the median over repeats of the paired ratio of
interleaved runs; wall time, with the CPU-time ratio beside it), ``kv_cache_speedup`` >= 5,
``reward_flops_per_step_ratio`` >= 5, and ``prompt_cache_shared``.

Run from the repository root::

    python benchmarks/lm_smc.py            # full run: 64 particles, prompt 32 + 8 steps x 32 tokens
    python benchmarks/lm_smc.py --quick    # smoke run (< 1 min)

Progress goes to stderr; the last line of stdout is one JSON object (see ``benchmarks/README.md``);
the exit status is 1 when a figure is not finite.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
if str(REPO) not in sys.path:  # `ppl` from the checkout; `ppl_models` (the models/ folder) needs `pip install -e .`
    sys.path.insert(0, str(REPO))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import ppl  # noqa: E402
import ppl.lm  # noqa: E402
from ppl.lm.sampling import StepConfig, sample_step  # noqa: E402
from ppl.lm.state import prefill  # noqa: E402
from ppl_models.lm import LMConfig, random_lm  # noqa: E402


def log(msg: str) -> None:
    print(f"[lm_smc] {msg}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------------
# The LM without a KV cache


class NoCacheLM:
    """An LM with no KV cache: the "cache" is the token history ``int32[B, max_length]``.

    ``apply(params, tokens[B, S], positions[B, S], history)`` writes the tokens into the history
    at their positions, then runs the wrapped model *without a cache* on the history's first
    ``P`` tokens — ``P`` the longest query position + 1, rounded up to a multiple of ``bucket``
    (one branch of a ``lax.switch`` per multiple) — and returns the logits at the query
    positions. Causal attention makes them equal to the cached model's: a query at position
    ``p`` sees exactly the tokens at positions ``<= p``, all of which the history holds.
    Follows the ``ppl.lm`` protocol (``vocab_size``, ``eos_token_id``, ``params``,
    ``init_cache``, ``apply``); resampling gathers the history like any cache.
    """

    def __init__(self, lm, bucket: int = 32):
        self.lm = lm
        self.bucket = int(bucket)
        self.params = lm.params
        inner = lm.apply
        step = self.bucket

        def apply(params, tokens, positions, history):
            b, length = history.shape
            rows = jnp.arange(b)[:, None]
            history = history.at[rows, positions].set(tokens.astype(history.dtype), mode="drop")
            sizes = sorted({min(length, k * step) for k in range(1, -(-length // step) + 1)})

            def branch(size):
                def run(hist):
                    pos = jnp.broadcast_to(jnp.arange(size, dtype=jnp.int32), (b, size))
                    logits, _ = inner(params, hist[:, :size], pos, None)
                    return logits[rows, jnp.clip(positions, 0, size - 1)]

                return run

            need = jnp.max(positions) + 1
            idx = jnp.clip((need + step - 1) // step - 1, 0, len(sizes) - 1)
            logits = jax.lax.switch(idx, [branch(s) for s in sizes], history)
            return logits, history

        self.apply = apply  # one function object: `lm.apply is lm.apply`

    @property
    def vocab_size(self):
        return self.lm.vocab_size

    @property
    def eos_token_id(self):
        return self.lm.eos_token_id

    def init_cache(self, batch_size: int, max_length: int):
        return jnp.zeros((batch_size, max_length), jnp.int32)


def check_nocache_logits(lm, nocache, *, prompt_len=8, decode=12, chunk=4, batch=3, seed=0):
    """Max |logit difference| between the cached model and :class:`NoCacheLM` on a small case:
    prefill, ``decode`` one-token steps (rows at different lengths), then one chunk of ``chunk``
    tokens (as ``score_step`` calls it)."""
    rng = np.random.default_rng(seed)
    max_len = prompt_len + decode + chunk + 4
    apply_c = jax.jit(lm.apply)
    apply_n = jax.jit(nocache.apply)
    params = lm.params
    cache = lm.init_cache(batch, max_len)
    hist = nocache.init_cache(batch, max_len)
    toks = jnp.asarray(rng.integers(0, lm.vocab_size, (batch, max_len)), jnp.int32)
    offset = jnp.arange(batch, dtype=jnp.int32)  # rows at different positions
    worst = 0.0
    pos = jnp.broadcast_to(jnp.arange(prompt_len, dtype=jnp.int32), (batch, prompt_len))
    lc, cache = apply_c(params, toks[:, :prompt_len], pos, cache)
    ln, hist = apply_n(params, toks[:, :prompt_len], pos, hist)
    worst = max(worst, float(jnp.max(jnp.abs(lc - ln))))
    for i in range(decode):
        p = (prompt_len - offset + i)[:, None]  # row r restarts at prompt_len - r (overwrites)
        t = jnp.take_along_axis(toks, p, axis=1)
        lc, cache = apply_c(params, t, p, cache)
        ln, hist = apply_n(params, t, p, hist)
        worst = max(worst, float(jnp.max(jnp.abs(lc - ln))))
    p = (prompt_len - offset + decode)[:, None] + jnp.arange(chunk, dtype=jnp.int32)[None]
    t = jnp.take_along_axis(toks, p, axis=1)
    lc, _ = apply_c(params, t, p, cache)
    ln, _ = apply_n(params, t, p, hist)
    worst = max(worst, float(jnp.max(jnp.abs(lc - ln))))
    return worst


# ------------------------------------------------------------------------------------------
# The two sides


def make_baseline(lm, cfg: StepConfig, num_particles: int, num_steps: int, max_length: int, shared: int):
    """Plain batched sampling: prefill, then a ``lax.scan`` of ``sample_step`` over the steps, with
    the particle filter's key splits (``key, _, k0 = split(key, 3)``; per step ``key, _, k_move =
    split(key, 3)``). No weights, no resampling. The sequences read the prompt's first ``shared``
    positions from one shared cache, as the filter's particles do. Returns the final state (cache
    included, as ``run_smc`` does) and the summed log-probability."""

    @jax.jit
    def run(params, prompt, prompt_length, prefix, key):
        one = prefill(lm, params, prompt, prompt_length, max_length, prefix, shared)
        x = jax.tree_util.tree_map(lambda a: jnp.broadcast_to(a, (num_particles,) + a.shape), one)
        key, _, k0 = jax.random.split(key, 3)
        x, log_p, _ = sample_step(lm, params, k0, x, cfg, prefix)

        def body(c, _):
            x, key = c
            key, _k_res, k_move = jax.random.split(key, 3)
            x, lp, _ = sample_step(lm, params, k_move, x, cfg, prefix)
            return (x, key), lp

        (x, _), lps = jax.lax.scan(body, (x, key), None, length=num_steps - 1)
        return x, log_p + jnp.sum(lps, axis=0)

    return run


def cheap_potential():
    """A cheap potential: -0.05 per occurrence of token 7 in the latest step (O(L) per particle)."""

    def score(state):
        idx = jnp.arange(state.tokens.shape[0])
        in_step = (idx >= state.step_start) & (idx < state.length)
        return -0.05 * jnp.sum(in_step & (state.tokens == 7)).astype(jnp.float32)

    return ppl.lm.on_prefix(score)


def tokens_generated(tokens_length, prompt_length):
    return int(np.sum(np.asarray(tokens_length) - int(prompt_length)))


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    jax.block_until_ready(out)
    return time.perf_counter() - t0, out


def cpu_timed(fn):
    """``(wall seconds, CPU seconds of this process, output)``."""
    c0, t0 = time.process_time(), time.perf_counter()
    out = fn()
    jax.block_until_ready(out)
    return time.perf_counter() - t0, time.process_time() - c0, out


def resample_copy(res, key, repeats: int) -> dict:
    """Seconds of one resampling of ``res.particles``: a gather of every row against a copy of
    the dead particles' rows only (stable order), interleaved, the particles donated; with
    systematic ancestors from the filter's final weights, and with half the particles dead (the
    odd slots at weight 0)."""
    from ppl.smc import resampling as rs

    n = res.log_weights.shape[0]
    fresh = lambda: jax.block_until_ready(jax.tree_util.tree_map(jnp.copy, res.particles))  # noqa: E731
    jit_gather, jit_changed = jax.jit(rs.gather, donate_argnums=0), jax.jit(rs.gather_changed, donate_argnums=0)
    out = {}
    half_dead = jnp.where(jnp.arange(n) % 2 == 0, 0.0, -jnp.inf)
    for suffix, log_w in (("", res.log_weights), ("_half_dead", half_dead)):
        anc = rs.systematic(key, log_w, n)
        stable = rs.stable_order(anc)
        fns = {"gather": (jit_gather, anc), "changed": (jit_changed, stable)}
        times = {k: [] for k in fns}
        for r in range(max(3, 3 * repeats) + 1):
            for name, (fn, a) in fns.items():
                x = fresh()
                dt, y = timed(lambda: fn(x, a))
                if r:  # the first call compiles
                    times[name].append(dt)
                del y
        med = {k: statistics.median(v) for k, v in times.items()}
        out.update({f"resample_copy_ratio{suffix}": med["gather"] / med["changed"],
                    f"resample_gather_seconds{suffix}": med["gather"],
                    f"resample_changed_seconds{suffix}": med["changed"],
                    f"resample_rows_copied_fraction{suffix}": float(np.mean(np.asarray(stable) != np.arange(n)))})
    return out


def reward_filters(lm, program, N: int):
    """Two compiled particle filters weighted by the same random PRM (reading ``lm``'s token
    features): the reward re-reading every prefix, and the incremental one."""
    from ppl.lm.potentials import from_reward
    from ppl.lm.compute import counter
    from ppl.smc import base
    from ppl.smc.loop import build_filter
    from ppl.smc.resampling import systematic
    from ppl_models.rewards import PRMConfig, random_prm

    prm = random_prm(PRMConfig(vocab_size=lm.vocab_size, hidden_size=64, num_layers=2, num_heads=4,
                               intermediate_size=192, max_length=program.max_length, newline_token_id=0,
                               lm_features=True), seed=1, lm=lm)
    runs = {}
    for inc in (False, True):
        model = program.with_potential(from_reward(prm, incremental=inc), correct_proposal=False)
        runs[inc] = jax.jit(build_filter(model, N, systematic, 1.0, finished=base.absorbing, collect=counter()))
    return prm, runs


# ------------------------------------------------------------------------------------------


def versions():
    out = {"python": platform.python_version()}
    for name in ("jax", "jaxlib", "numpy", "flax", "numpyro"):
        try:
            mod = __import__(name)
            out[name] = getattr(mod, "__version__", "?")
        except Exception:  # pragma: no cover
            out[name] = None
    try:
        out["ppl"] = getattr(ppl, "__version__", None)
    except Exception:  # pragma: no cover
        out["ppl"] = None
    return out


def platform_info():
    try:
        load = os.getloadavg()
    except OSError:  # pragma: no cover
        load = None
    return {"machine": platform.machine(), "system": platform.system(), "cpu_count": os.cpu_count(),
            "jax_backend": jax.default_backend(), "jax_devices": [str(d) for d in jax.devices()],
            "loadavg": load}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smoke run (< 1 min): fewer particles, steps, repeats")
    ap.add_argument("--particles", type=int, default=None, help="N (default 64; quick 16)")
    ap.add_argument("--prompt-length", type=int, default=32)
    ap.add_argument("--steps", type=int, default=None, help="reasoning steps T (default 8; quick 4)")
    ap.add_argument("--step-tokens", type=int, default=None, help="tokens per step (default 32; quick 8)")
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--vocab", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=None, help="interleaved repeats (default 5; quick 2)")
    ap.add_argument("--nocache-repeats", type=int, default=None,
                    help="repeats of the no-cache filter (default 2; quick 1)")
    ap.add_argument("--nocache-bucket", type=int, default=None,
                    help="the no-cache LM recomputes prefixes rounded up to this many tokens (default 32; quick 64)")
    ap.add_argument("--skip-nocache", action="store_true", help="skip the no-cache filter (kv_cache_speedup)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--output", type=str, default=None, help="also write the JSON object to this file")
    args = ap.parse_args(argv)

    q = args.quick
    N = args.particles or (16 if q else 64)
    T = args.steps or (4 if q else 8)
    S = args.step_tokens or (8 if q else 32)
    bucket = args.nocache_bucket or (64 if q else 32)
    repeats = args.repeats or (2 if q else 5)
    nc_repeats = args.nocache_repeats or (1 if q else 2)
    P = int(args.prompt_length)
    seq_len = P + T * S

    t_start = time.perf_counter()
    load0 = platform_info()["loadavg"]
    config = LMConfig(vocab_size=args.vocab, hidden_size=args.hidden, num_layers=args.layers,
                      num_heads=args.heads, max_position_embeddings=max(2048, seq_len + 1), eos_token_id=None)
    lm = random_lm(config, seed=args.seed)
    nocache = NoCacheLM(lm, bucket=bucket)
    log(f"{lm!r}; N={N}, prompt {P} + {T} steps x {S} tokens = {seq_len}; repeats {repeats}")

    prompt = jnp.asarray(np.random.default_rng(args.seed).integers(0, args.vocab, P), jnp.int32)
    potential = cheap_potential()
    kw = dict(max_steps=T, step_delimiter=(), max_step_tokens=S, temperature=1.0)
    # The prompt's first P - 1 positions are cached once and shared by the particles (the last
    # prompt token is fed at the first step); the no-cache LM keeps whole histories.
    program = ppl.lm.LMProgram(lm, prompt, potential, shared_prefix=P - 1, **kw)
    max_length = program.max_length
    cfg = program.config
    assert max_length > seq_len, "the buffer must never fill (fixed token counts)"

    baseline = make_baseline(lm, cfg, N, T, max_length, program.shared_prefix)
    data = program.data

    def run_base(key):
        return baseline(data["params"], data["prompt"], data["prompt_length"], data["prefix"], key)

    def run_pf(prog, key):
        return ppl.run_smc(prog, num_particles=N, key=key, resampling="systematic", ess_threshold=1.0)

    # ---- correctness of the no-cache wrapper
    result = {}
    if not args.skip_nocache:
        worst = check_nocache_logits(lm, nocache)
        log(f"no-cache LM vs cached LM: max |logit diff| = {worst:.2e}")
        assert worst < 1e-4, f"NoCacheLM logits differ from the cached model's by {worst}"
        result["nocache_max_abs_logit_diff"] = worst
        nc_program = ppl.lm.LMProgram(nocache, prompt, potential, shared_prefix=0, **kw)

    # ---- first calls (compilation)
    keys = iter(jax.random.split(jax.random.key(args.seed + 1), 3 * (repeats + nc_repeats) + 8))
    first = {}
    first["baseline"], (xb, _) = timed(lambda: run_base(next(keys)))
    key_pf = next(keys)
    first["pf"], res = timed(lambda: run_pf(program, key_pf))
    log(f"first calls (compile + run): baseline {first['baseline']:.2f}s, pf {first['pf']:.2f}s")
    if not args.skip_nocache:
        # Same key as the cached filter: with equal logits both filters draw the same tokens.
        first["nocache_pf"], res_nc = timed(lambda: run_pf(nc_program, key_pf))
        agree = float(np.mean(np.asarray(res.particles.tokens) == np.asarray(res_nc.particles.tokens)))
        result["nocache_pf_token_agreement"] = agree
        result["nocache_pf_log_evidence_diff"] = abs(float(res.log_evidence) - float(res_nc.log_evidence))
        log(f"first call no-cache pf: {first['nocache_pf']:.2f}s; same key as ours: token agreement "
            f"{agree:.4f}, |log Z diff| {result['nocache_pf_log_evidence_diff']:.2e}")

    tok_base = tokens_generated(xb.length, P)
    tok_pf = tokens_generated(res.particles.length, P)
    expected = N * T * S
    assert tok_base == expected and tok_pf == expected, (tok_base, tok_pf, expected)
    assert int(res.num_steps) == T and bool(np.all(np.asarray(res.resampled)[1:])), "pf must resample every step"
    if not args.skip_nocache:
        tok_nc = tokens_generated(res_nc.particles.length, P)
        assert tok_nc == expected, (tok_nc, expected)

    # ---- the reward filters (compile, then check that both score alike and count what they read)
    from ppl.lm.compute import flops_per_token

    prm, rfilters = reward_filters(lm, program, N)
    key_r = next(keys)
    first["reward_full"], (r_full, _, _) = timed(lambda: rfilters[False](data, key_r))
    first["reward_incremental"], (r_inc, _, _) = timed(lambda: rfilters[True](data, key_r))
    _, calls, read_full = (int(v) for v in np.asarray(r_full.aux))
    _, calls_inc, read_inc = (int(v) for v in np.asarray(r_inc.aux))
    assert calls == calls_inc == N * T, (calls, calls_inc)
    fpt = flops_per_token(prm)
    result.update({
        "reward_flops_per_step_full": fpt * read_full / calls,
        "reward_flops_per_step_incremental": fpt * read_inc / calls,
        "reward_flops_per_step_ratio": read_full / read_inc,
        "reward_log_evidence_diff": abs(float(r_full.log_evidence) - float(r_inc.log_evidence)),
        "reward_same_tokens": bool(np.array_equal(np.asarray(r_full.particles.tokens), np.asarray(r_inc.particles.tokens))),
        "reward_flops_per_token": fpt,
    })
    log(f"reward FLOPs per particle step: full prefix {result['reward_flops_per_step_full']:.3g}, incremental "
        f"{result['reward_flops_per_step_incremental']:.3g} (ratio {result['reward_flops_per_step_ratio']:.2f}); "
        f"|log Z diff| {result['reward_log_evidence_diff']:.2e}")
    nbytes = lambda tree: int(sum(a.size * a.dtype.itemsize for a in jax.tree_util.tree_leaves(tree)))  # noqa: E731
    result["cache_bytes_per_particle"] = nbytes(res.particles.cache) // N
    result["cache_bytes_per_particle_whole"] = nbytes(lm.init_cache(1, max_length))  # prompt not shared
    result["prompt_cache_bytes_shared"] = nbytes(data["prefix"])  # once for all particles
    result["prompt_positions_shared"] = program.shared_prefix
    # Shared: the particles' caches lack exactly the prompt positions that the one shared cache holds.
    result["prompt_cache_shared"] = bool(
        program.shared_prefix == P - 1
        and result["cache_bytes_per_particle"] + result["prompt_cache_bytes_shared"]
        == result["cache_bytes_per_particle_whole"])
    result.update(resample_copy(res, next(keys), repeats))
    log(f"resampling copy: every row / dead rows only = {result['resample_copy_ratio']:.2f} "
        f"({result['resample_rows_copied_fraction']:.2f} of the rows copied); half the particles dead: "
        f"{result['resample_copy_ratio_half_dead']:.2f}")

    # ---- timed, interleaved repeats
    times = {"baseline": [], "pf": [], "nocache_pf": [], "reward_full": [], "reward_incremental": []}
    cpu = {"baseline": [], "pf": []}
    logz = []
    for r in range(repeats):
        dt, ct, _ = cpu_timed(lambda: run_base(next(keys)))
        times["baseline"].append(dt)
        cpu["baseline"].append(ct)
        dt, ct, res = cpu_timed(lambda: run_pf(program, next(keys)))
        times["pf"].append(dt)
        cpu["pf"].append(ct)
        logz.append(float(res.log_evidence))
        k = next(keys)
        for inc, name in ((False, "reward_full"), (True, "reward_incremental")):
            dt, _ = timed(lambda: rfilters[inc](data, k))
            times[name].append(dt)
        msg = f"repeat {r + 1}/{repeats}: baseline {times['baseline'][-1]:.3f}s, pf {times['pf'][-1]:.3f}s"
        if not args.skip_nocache and r < nc_repeats:
            dt, _ = timed(lambda: run_pf(nc_program, next(keys)))
            times["nocache_pf"].append(dt)
            msg += f", no-cache pf {dt:.3f}s"
        log(msg)

    med = {k: (statistics.median(v) if v else float("nan")) for k, v in times.items()}
    result.update({
        "pf_overhead_ratio": med["pf"] / med["baseline"],
        "kv_cache_speedup": (med["nocache_pf"] / med["pf"]) if not args.skip_nocache else None,
        "decode_tokens_per_s": expected / med["baseline"],
        "pf_overhead_ratio_best": min(times["pf"]) / min(times["baseline"]),
        "kv_cache_speedup_best": (min(times["nocache_pf"]) / min(times["pf"])) if times["nocache_pf"] else None,
        "pf_overhead_ratio_paired_median": statistics.median(p / b for p, b in zip(times["pf"], times["baseline"])),
        "pf_overhead_cpu_ratio_paired_median": statistics.median(p / b for p, b in zip(cpu["pf"], cpu["baseline"])),
        "baseline_cpu_seconds_all": cpu["baseline"],
        "pf_cpu_seconds_all": cpu["pf"],
        "reward_time_ratio": med["reward_full"] / med["reward_incremental"],
        "reward_full_seconds_all": times["reward_full"],
        "reward_incremental_seconds_all": times["reward_incremental"],
        "pf_tokens_per_s": expected / med["pf"],
        "num_particles": N,
        "prompt_length": P,
        "num_steps": T,
        "step_tokens": S,
        "sequence_length": seq_len,
        "buffer_length": max_length,
        "tokens_generated_baseline": tok_base,
        "tokens_generated_pf": tok_pf,
        "tokens_generated_nocache_pf": tok_nc if not args.skip_nocache else None,
        "pf_resampled_steps": int(np.sum(np.asarray(res.resampled))),
        "pf_log_evidence_mean": float(np.mean(logz)),
        "baseline_seconds": med["baseline"],
        "pf_seconds": med["pf"],
        "nocache_pf_seconds": med["nocache_pf"] if times["nocache_pf"] else None,
        "baseline_seconds_all": times["baseline"],
        "pf_seconds_all": times["pf"],
        "nocache_pf_seconds_all": times["nocache_pf"],
        "first_call_seconds": first,
        "nocache_bucket": bucket,
        "model": {"layers": args.layers, "hidden": args.hidden, "heads": args.heads, "vocab": args.vocab,
                  "params": int(lm.config.num_params), "position": lm.config.position},
        "repeats": repeats,
        "nocache_repeats": len(times["nocache_pf"]),
        "quick": bool(q),
        "versions": versions(),
        "platform": dict(platform_info(), loadavg_start=load0),
        "total_seconds": time.perf_counter() - t_start,
    })
    headline = ["pf_overhead_ratio", "decode_tokens_per_s", "reward_flops_per_step_ratio"] + (
        [] if args.skip_nocache else ["kv_cache_speedup"])
    bad = [k for k in headline if not (isinstance(result[k], float) and math.isfinite(result[k]) and result[k] > 0)]
    targets = {"pf_overhead_ratio_paired_median": ("<=", 1.05), "reward_flops_per_step_ratio": (">=", 5.0),
               "prompt_cache_shared": ("==", True)}
    if not args.skip_nocache:
        targets["kv_cache_speedup"] = (">=", 5.0)
    missed = [k for k, (op, v) in targets.items()
              if not {"<=": result[k] <= v, ">=": result[k] >= v, "==": result[k] == v}[op]]
    result["targets"] = {k: f"{op} {v}" for k, (op, v) in targets.items()}
    result["missed_targets"] = missed
    result["ok"] = not bad and not missed
    if bad:
        result["non_finite"] = bad
    log(f"pf_overhead_ratio paired median {result['pf_overhead_ratio_paired_median']:.3f} (CPU "
        f"{result['pf_overhead_cpu_ratio_paired_median']:.3f}; target <= 1.05), kv_cache_speedup "
        f"{result['kv_cache_speedup']}, reward_flops_per_step_ratio {result['reward_flops_per_step_ratio']:.2f}, "
        f"decode {result['decode_tokens_per_s']:.0f} tok/s; missed: {missed or 'none'}")
    line = json.dumps(result)
    if args.output:
        Path(args.output).write_text(line + "\n")
    print(line, flush=True)
    return 0 if not bad else 1


if __name__ == "__main__":
    sys.exit(main())
