r"""Sharded SMC: wall time on 1 device against D devices, and communication per resampling step.

Model: the linear-Gaussian state-space model (bootstrap filter, systematic resampling when
ESS/N < 0.5), each particle carrying a payload of ``--payload`` float32 values that is resampled
with it (a stand-in for an LM particle's token buffer and KV cache; it is updated every step so
XLA cannot drop it). Four timings, each the median of ``--repeats`` runs after compilation:

* ``global``: ``ppl.run_smc(fk, N)`` on one device, against
  ``ppl.smc.sharding.run_smc_sharded(fk, N, mode="global")`` on a D-device mesh (the same
  particles and log Z-hat, checked);
* ``island``: the same D islands of N/D particles run on one device
  (``ppl.run_smc(fk, N // D, key=jax.random.split(key, D))``), against ``mode="island"`` on D
  devices (one island per device);
* ``island_exchange``: ``mode="island"`` with island-level resampling every
  ``--exchange-every`` steps (timed on D devices; reported against plain islands).

Communication per resampling step (bytes), from :func:`ppl.smc.sharding.communication_per_resampling`
on the global run: the all-gather of the N incremental log-weights, the particles whose ancestor
lives on another device (minimum point-to-point volume, measured from the ancestors), and what
XLA's partitioned gather moves today (an all-gather of the state). Island mode: 0; with
exchange, per exchange step, the all-gathers of D scalars and of the island states.

On CPU the D devices are fake (``XLA_FLAGS=--xla_force_host_platform_device_count=D``, set by this
script before jax starts) and share the machine's cores, so the "speed-up" shows the overhead of
partitioning rather than a gain; on a multi-GPU host run it with ``--devices`` = the GPU count.

    python benchmarks/sharding.py            # N = 16384, T = 50, payload 64 floats
    python benchmarks/sharding.py --quick    # N = 2048, T = 20

The last line of stdout is one JSON object.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time


def _parse():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--devices", type=int, default=8, help="devices on the mesh (fake CPU devices)")
    p.add_argument("--N", type=int, default=16384, help="number of particles")
    p.add_argument("--T", type=int, default=50, help="number of time steps")
    p.add_argument("--payload", type=int, default=64, help="float32 values carried by each particle")
    p.add_argument("--exchange-every", type=int, default=5,
                   help="island mode with island exchange every this many steps (also timed)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--quick", action="store_true", help="N=2048, T=20, 2 repeats")
    args = p.parse_args()
    if args.quick:
        args.N, args.T, args.repeats = 2048, 20, 2
    return args


ARGS = _parse()
if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                               + f" --xla_force_host_platform_device_count={ARGS.devices}").strip()

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import ppl  # noqa: E402
from ppl_models.state_space import LinearGaussian  # noqa: E402
from ppl.smc import sharding as sh  # noqa: E402


@dataclasses.dataclass(frozen=True, eq=False)
class PayloadLG(ppl.FeynmanKac):
    """Bootstrap linear-Gaussian filter whose particles also carry ``payload`` floats."""

    payload: int = 0

    def static_key(self):
        return super().static_key() + (self.payload,)

    def init_batch(self, key, n, data_0):
        x, inc = super().init_batch(key, n, data_0)
        return {"x": x, "buf": jnp.zeros((n, self.payload), jnp.float32)}, inc

    def step_batch(self, key, state, t, data_t):
        x, inc = super().step_batch(key, state["x"], t, data_t)
        return {"x": x, "buf": state["buf"] * 0.5 + x[:, None]}, inc


def _time(fn, repeats):
    jax.block_until_ready(fn())  # compile
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def main():
    D, N = ARGS.devices, ARGS.N
    if jax.device_count() < D:
        sys.exit(f"--devices: {D} requested, {jax.device_count()} available")
    lg = LinearGaussian()
    ys = lg.simulate(ARGS.T, seed=0)
    base = lg.bootstrap(ys)
    fk = PayloadLG(init=base.init, transition=base.transition, log_potential=base.log_potential,
                   data=base.data, payload=ARGS.payload)
    mesh = sh.particle_mesh(jax.devices()[:D])
    key = jax.random.key(0)
    island_keys = jax.random.split(key, D)
    k = ARGS.exchange_every
    print(f"devices: {jax.devices()[:D]}", file=sys.stderr)

    t = {
        "global_1": _time(lambda: ppl.run_smc(fk, N, key=key).log_evidence, ARGS.repeats),
        "global_D": _time(lambda: sh.run_smc_sharded(fk, N, key=key, mesh=mesh).log_evidence, ARGS.repeats),
        "island_1": _time(lambda: ppl.run_smc(fk, N // D, key=island_keys).log_evidence, ARGS.repeats),
        "island_D": _time(lambda: sh.run_smc_sharded(fk, N, key=key, mesh=mesh, mode="island").log_evidence,
                          ARGS.repeats),
        "island_exchange_D": _time(lambda: sh.run_smc_sharded(fk, N, key=key, mesh=mesh, mode="island",
                                                              exchange_every=k).log_evidence, ARGS.repeats),
    }
    ref = ppl.run_smc(fk, N, key=key)
    glob = sh.run_smc_sharded(fk, N, key=key, mesh=mesh)
    isl = sh.run_smc_sharded(fk, N, key=key, mesh=mesh, mode="island")
    isl_ex = sh.run_smc_sharded(fk, N, key=key, mesh=mesh, mode="island", exchange_every=k)
    comm = sh.communication_per_resampling(glob, D)
    log_z = lg.kalman_filter(ys).log_evidence
    out = {
        "benchmark": "sharding",
        "platform": jax.devices()[0].platform,
        "devices": D,
        "N": N,
        "T": ARGS.T,
        "bytes_per_particle": comm["bytes_per_particle"],
        "wall_s": {k.replace("_D", f"_{D}"): round(v, 4) for k, v in t.items()},
        "speedup_global": round(t["global_1"] / t["global_D"], 3),
        "speedup_island": round(t["island_1"] / t["island_D"], 3),
        "island_over_global_time": round(t["island_D"] / t["global_D"], 3),
        "island_exchange_over_island_time": round(t["island_exchange_D"] / t["island_D"], 3),
        "exchange_every": k,
        "global_matches_one_device": bool(float(jnp.abs(ref.log_evidence - glob.log_evidence)) < 1e-4
                                          and np.array_equal(np.asarray(ref.ancestors), np.asarray(glob.ancestors))),
        "log_evidence": {"exact": round(log_z, 4), "global": round(float(glob.log_evidence), 4),
                         "island": round(float(isl.log_evidence), 4),
                         "island_exchange": round(float(isl_ex.log_evidence), 4)},
        "resampling_steps": comm["resampling_steps"],
        "cross_device_fraction": round(comm["cross_device_fraction"], 4),
        "comm_bytes_per_resampling": {
            "global_weights_allgather": comm["weights_bytes"],
            "global_particles_moved_min": round(comm["particle_bytes"], 1),
            "global_total_min": round(comm["total_bytes"], 1),
            "global_xla_state_allgather": comm["allgather_particle_bytes"],
            "island": 0,
        },
        # every exchange_every steps: all-gathers of the D log Z-hat_d and ESS values, and of
        # the island states with their log-weights (each device receives the D - 1 others).
        "comm_bytes_per_exchange": {
            "island_scalars_allgather": 2 * D * (D - 1) * 4,
            "island_state_allgather": (D - 1) * N * (comm["bytes_per_particle"] + 4),
        },
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
