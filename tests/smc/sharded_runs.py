"""Multi-device checks of :mod:`ppl.smc.sharding` (global and island modes, island exchange) and
of NUTS chains across devices, run in a subprocess by ``test_sharding.py``.

The device count is fixed when jax starts, so this script sets
``XLA_FLAGS=--xla_force_host_platform_device_count=8`` before importing jax and prints one JSON
line of measurements; the test asserts on them.
"""

import os

os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8").strip()

import json  # noqa: E402
import math  # noqa: E402

import jax  # noqa: E402
import numpy as np  # noqa: E402

import ppl  # noqa: E402
from ppl.smc import sharding as sh  # noqa: E402
from tests.smc import models as m  # noqa: E402

D = 8


def _diff(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)))


def compare_global(fk, n, key, mesh, **kw):
    ref = ppl.run_smc(fk, n, key=key, **kw)
    res = sh.run_smc_sharded(fk, n, key=key, mesh=mesh, mode="global", **kw)
    out = dict(
        particles=_diff(ref.particles, res.particles),
        log_weights=_diff(ref.log_weights, res.log_weights),
        log_evidence=_diff(ref.log_evidence, res.log_evidence),
        ancestors_differ=int(np.sum(np.asarray(ref.ancestors) != np.asarray(res.ancestors))),
        resampling_steps=int(np.sum(np.asarray(ref.resampled))),
        devices=len(res.particles.sharding.device_set),
        spec=str(res.particles.sharding.spec),
        log_evidence_value=float(np.ravel(np.asarray(res.log_evidence))[0]),
    )
    if kw.get("keep_history"):
        out["history"] = _diff(ref.history, res.history)
    return out


def exchange_checks(boot, ys, log_z, mesh, key):
    """Island-level resampling every k steps (``exchange_every``)."""
    out = {}
    T, N, k = len(ys), 1024, 4
    n = N // D

    # a. Exchange every k steps: islands copy other islands at steps t = k, 2k, ... and only then.
    isl = sh.run_islands(boot, N, key=key, mesh=mesh, keep_history=True, exchange_every=k)
    anc = np.asarray(isl.ancestors)  # [D, T, n], counted from each island's first slot
    source = (np.arange(D)[:, None, None] * n + anc) // n  # island each slot's ancestor lives on
    uniform = bool(np.all(source.min(-1) == source.max(-1)))  # an island copies one island whole
    src = source[:, :, 0].T  # [T, D]: B_d at every step
    moved = src != np.arange(D)[None]
    exchange_steps = [t for t in range(1, T) if t % k == 0]
    out["copied_islands"] = int(moved.sum())
    out["moves_outside_exchange_steps"] = int(moved[[t for t in range(T) if t not in exchange_steps]].sum())
    out["source_uniform_within_island"] = uniform
    out["islands_devices"] = len(isl.particles.sharding.device_set)

    # b. The island ancestors are systematic resampling of the running estimates Z-hat_{d,t-1}
    #    with the documented shared key, and the same on every device.
    cum = np.cumsum(np.asarray(isl.log_evidence_increments, np.float64), axis=1)  # [D, T]
    ex_key = jax.random.split(key, D + 1)[D]
    redraw = []
    for t in exchange_steps:
        log_v = jax.numpy.asarray(cum[:, t - 1] - np.logaddexp.reduce(cum[:, t - 1]), jax.numpy.float32)
        redraw.append(np.asarray(ppl.smc.resampling.systematic(jax.random.fold_in(ex_key, t), log_v, D)))
    out["island_ancestors_redrawn_differ"] = int(sum(np.sum(r != src[t])
                                                     for r, t in zip(redraw, exchange_steps)))

    # c. Every log-evidence increment recomputed from the history: island d at step t weights
    #    its particles x_t with W_{t-1} (uniform after its own resampling, else the weights of the
    #    ancestor slot — on island B_d at an exchange step) times G_t = N(y_t; x_t, r); at an
    #    exchange step the running estimate first restarts at logsumexp_d log Z_{d,t-1} - log D.
    hist = np.asarray(isl.history, np.float64)  # [D, T, n]
    hist_w = np.asarray(isl.history_log_weights, np.float64)  # [D, T, n]
    res_flags = np.asarray(isl.resampled)
    sd_r = math.sqrt(m.LG.r)
    worst = 0.0
    for t in range(1, T):
        log_g = -0.5 * ((float(ys[t]) - hist[:, t]) / sd_r) ** 2 - math.log(sd_r * math.sqrt(2 * math.pi))
        glob = (np.arange(D)[:, None] * n + anc[:, t]).reshape(-1)  # global ancestor slots
        w_prev = hist_w[:, t - 1].reshape(-1)[glob].reshape(D, n)
        w_prev = np.where(res_flags[:, t][:, None], -math.log(n), w_prev)
        inc = np.logaddexp.reduce(w_prev + log_g, axis=1)
        start = cum[:, t - 1]
        if t in exchange_steps:
            start = np.full(D, np.logaddexp.reduce(cum[:, t - 1]) - math.log(D))
        worst = max(worst, float(np.max(np.abs(start + inc - cum[:, t]))))
    out["increments_recomputed"] = worst
    comb = sh.combine_islands(isl)
    incs = np.asarray(comb.log_evidence_increments, np.float64)
    out["combined_increments_sum"] = float(abs(float(np.sum(incs)) - float(comb.log_evidence)))
    out["combined_trajectory_end"] = _diff(ppl.smc.trajectories(comb)[:, -1], comb.particles)
    out["combined_weights_normalised"] = float(abs(np.logaddexp.reduce(np.asarray(comb.log_weights,
                                                                                  np.float64))))

    # d. Bootstrap filter, 8 islands x 16 particles, 1000 runs: without exchange, with
    #    exchange_every >= T (no exchange happens: the hooked loop must equal the plain islands
    #    exactly) and every 2 steps (unbiased, and less variance than independent islands).
    runs = 1000
    keys = jax.random.split(jax.random.key(5), runs)
    none = sh.run_islands(boot, 128, key=keys, mesh=mesh)
    same = sh.run_islands(boot, 128, key=keys, mesh=mesh, exchange_every=T)
    out["no_exchange_max_diff"] = max(_diff(a, b) for a, b in zip(jax.tree_util.tree_leaves(none),
                                                                  jax.tree_util.tree_leaves(same)))
    ex = sh.run_islands(boot, 128, key=keys, mesh=mesh, exchange_every=2)
    stats = {}
    for name, r in (("none", none), ("every_2", ex)):
        lz = np.asarray(sh.combine_islands(r).log_evidence, np.float64)
        ratio = np.exp(lz - log_z)
        stats[name] = dict(mean=float(ratio.mean()), se=float(ratio.std(ddof=1) / math.sqrt(runs)),
                           sd_log=float(lz.std()))
    src_b = (np.arange(D)[None, :, None] * 16 + np.asarray(ex.ancestors)[:, :, :, 0]) // 16  # [B, D, T]
    stats["copied_fraction"] = float(np.mean(src_b[:, :, 2::2] != np.arange(D)[None, :, None]))
    out["bootstrap_runs"] = stats
    return out


def nuts_checks():
    """4 NUTS chains of a small Bradley–Terry model: parallel (4 devices), sequential, vectorized."""
    import importlib

    from numpyro.diagnostics import effective_sample_size

    from ppl_models import judges

    bt = importlib.import_module("ppl_models.judges.bradley_terry")
    recs = bt.simulate_battles(np.random.default_rng(0), np.array([0.0, 0.5, 1.0, -0.5, -1.0]), 300)
    comps = judges.aggregate(judges.battles_from_records(recs))
    opts = dict(key=jax.random.key(0), num_chains=4, num_warmup=150, num_samples=150, ties="none")
    par = ppl.infer(judges.bradley_terry, comps, method="nuts", chain_method="parallel", **opts)
    seq = ppl.nuts(judges.bradley_terry, comps, chain_method="sequential", **opts)
    vec = ppl.nuts(judges.bradley_terry, comps, chain_method="vectorized", **opts)
    r_par, r_seq, r_vec = (np.asarray(r.samples["rating"], np.float64) for r in (par, seq, vec))

    def mean_se(x):  # [chains, draws, k]
        ess = np.asarray(effective_sample_size(x))
        return x.mean((0, 1)), x.reshape(-1, x.shape[-1]).std(0) / np.sqrt(ess)

    m_par, se_par = mean_se(r_par)
    m_vec, se_vec = mean_se(r_vec)
    return dict(
        parallel_devices=len(par.samples["rating"].sharding.device_set),
        vectorized_devices=len(vec.samples["rating"].sharding.device_set),
        parallel_vs_sequential=_diff(r_par, r_seq),
        parallel_vs_vectorized_max=_diff(r_par, r_vec),
        mean_diff_in_se=float(np.max(np.abs(m_par - m_vec) / np.sqrt(se_par ** 2 + se_vec ** 2))),
        shape=list(r_par.shape),
        divergences=int(np.sum(np.asarray(par.diagnostics["divergences"]))),
    )


def main():
    out = {"num_devices": jax.device_count(), "threefry_partitionable": bool(jax.config.jax_threefry_partitionable)}
    mesh = sh.particle_mesh()
    ys = m.simulate_lg(0)
    log_z = m.LG.kalman_filter(ys).log_evidence
    boot, guided = m.lg_bootstrap(ys), m.lg_guided(ys)
    key = jax.random.key(3)

    # 1. Global mode equals one device: adaptive resampling (lax.cond), history; a batch of keys.
    out["global"] = compare_global(boot, 1024, key, mesh, keep_history=True)
    out["global_batch"] = compare_global(boot, 256, jax.random.split(key, 4), mesh, resampling="multinomial",
                                         ess_threshold=1.0)
    # ... also with the legacy (non-partitionable) threefry.
    jax.config.update("jax_threefry_partitionable", False)
    out["global_legacy_threefry"] = compare_global(boot, 1024, key, mesh)
    jax.config.update("jax_threefry_partitionable", True)

    # 2. Island mode: island d is run_smc on N/D particles with key split(key, D)[d]; combination.
    isl = sh.run_islands(boot, 1024, key=key, mesh=mesh, keep_history=True)
    ref = ppl.run_smc(boot, 1024 // D, key=jax.random.split(key, D), keep_history=True)
    comb = sh.combine_islands(isl)
    res = sh.run_smc_sharded(boot, 1024, key=key, mesh=mesh, mode="island", keep_history=True)
    lz_d = np.asarray(isl.log_evidence, np.float64)
    traj = ppl.smc.trajectories(comb)  # [N, T]
    out["island"] = dict(
        per_island_log_evidence=_diff(isl.log_evidence, ref.log_evidence),
        per_island_particles=_diff(isl.particles, ref.particles),
        island_devices=len(isl.particles.sharding.device_set),
        log_evidence_formula=float(abs(float(comb.log_evidence) - (np.logaddexp.reduce(lz_d) - math.log(D)))),
        increments_sum=float(abs(float(np.sum(np.asarray(comb.log_evidence_increments, np.float64)))
                                 - float(comb.log_evidence))),
        weights_normalised=float(abs(np.logaddexp.reduce(np.asarray(comb.log_weights, np.float64)))),
        last_history_weights=_diff(comb.history_log_weights[-1], comb.log_weights),
        trajectory_end=_diff(traj[:, -1], comb.particles),
        run_smc_sharded_vs_combine=_diff(res.log_weights, comb.log_weights),
        ess_range=[float(np.nanmin(comb.ess)), float(np.nanmax(comb.ess))],
        shape=list(np.shape(comb.particles)),
    )

    # 3. Island mode is unbiased in Z: 400 repetitions of 8 islands x 8 particles (guided filter).
    runs = 400
    batch = sh.run_smc_sharded(guided, 64, key=jax.random.split(jax.random.key(5), runs), mesh=mesh,
                               mode="island")
    ratio = np.exp(np.asarray(batch.log_evidence, np.float64) - log_z)
    out["island_unbiased"] = dict(mean=float(ratio.mean()), se=float(ratio.std(ddof=1) / math.sqrt(runs)),
                                  mean_log=float(np.mean(np.asarray(batch.log_evidence, np.float64))),
                                  log_z=float(log_z))

    # 4. Island exchange (island particle model).
    out["exchange"] = exchange_checks(boot, ys, log_z, mesh, key)

    # 4b. Island exchange when particles finish at different times (state 2 absorbing): islands of
    # 4 particles are often all done while others are not, so every island must agree on when to
    # stop (the exchange's collectives). Unbiased against the enumerated evidence.
    from tests import exact

    log_z_abs, _, _ = exact.enumerate_chain(m.LOG_P0, m.LOG_TRANS, m.LOG_G0, m.LOG_G, m.T_D, absorbing=2)
    runs = 2000
    absorbing = m.discrete_fk(done=lambda x: x == 2)
    res = sh.run_smc_sharded(absorbing, 4 * D, key=jax.random.split(jax.random.key(9), runs), mesh=mesh,
                             mode="island", exchange_every=1)
    ratio = np.exp(np.asarray(res.log_evidence, np.float64) - log_z_abs)
    steps = np.asarray(res.num_steps)
    isl = sh.run_islands(absorbing, 4 * D, key=jax.random.split(jax.random.key(9), 200), mesh=mesh,
                         exchange_every=1)
    island_done = np.all(np.asarray(isl.particles) == 2, axis=-1)  # [runs, D] at the end
    out["exchange_absorbing"] = dict(mean=float(ratio.mean()), se=float(ratio.std(ddof=1) / math.sqrt(runs)),
                                     stopped_early=float(np.mean(steps < m.T_D)),
                                     runs_with_done_and_live_islands=float(np.mean(
                                         island_done.any(-1) & ~island_done.all(-1))))

    # 5. NUTS chains across devices: chain_method="parallel" (pmap, one chain per device).
    out["nuts"] = nuts_checks()

    # 6. Errors name the argument.
    errors = {}
    for name, call in {
        "num_particles": lambda: sh.run_smc_sharded(boot, 1020, key=key, mesh=mesh),
        "num_particles_island": lambda: sh.run_islands(boot, 12, key=key, mesh=mesh),
        "mode": lambda: sh.run_smc_sharded(boot, 1024, key=key, mesh=mesh, mode="ring"),
        "axis_name": lambda: sh.run_smc_sharded(boot, 1024, key=key, mesh=mesh, axis_name="batch"),
        "exchange_every": lambda: sh.run_islands(boot, 1024, key=key, mesh=mesh, exchange_every=0),
        "exchange_every_bool": lambda: sh.run_smc_sharded(boot, 1024, key=key, mesh=mesh, mode="island",
                                                          exchange_every=True),
        "exchange_every_global": lambda: sh.run_smc_sharded(boot, 1024, key=key, mesh=mesh,
                                                            exchange_every=2),
    }.items():
        try:
            call()
            errors[name] = None
        except (ValueError, TypeError) as e:  # noqa: PERF203
            errors[name] = str(e)
    out["errors"] = errors
    print(json.dumps(out))


if __name__ == "__main__":
    main()
