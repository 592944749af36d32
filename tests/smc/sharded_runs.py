"""Multi-device checks of :mod:`ppl.smc.sharding`, run in a subprocess by ``test_sharding.py``.

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

    # 4. Errors name the argument.
    errors = {}
    for name, call in {
        "num_particles": lambda: sh.run_smc_sharded(boot, 1020, key=key, mesh=mesh),
        "num_particles_island": lambda: sh.run_islands(boot, 12, key=key, mesh=mesh),
        "mode": lambda: sh.run_smc_sharded(boot, 1024, key=key, mesh=mesh, mode="ring"),
        "axis_name": lambda: sh.run_smc_sharded(boot, 1024, key=key, mesh=mesh, axis_name="batch"),
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
