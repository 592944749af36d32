"""Sharded SMC on one host or many: the "Several hosts" recipe of docs/scaling-out.md, runnable.

    python examples/scaling_out.py                        # one process, all its devices
    python examples/scaling_out.py --cpu-devices 8        # try it on a CPU with 8 fake devices

    # several processes (one per host, or several on one host to try it): the same command on
    # every process, only the process id changes
    python examples/scaling_out.py --coordinator host0:1234 --num-processes 2 --process-id 0
    python examples/scaling_out.py --coordinator host0:1234 --num-processes 2 --process-id 1

The coordinates can also come from the environment (``PPL_COORDINATOR``,
``PPL_NUM_PROCESSES``, ``PPL_PROCESS_ID``); the flags win. With more than one process,
``jax.distributed.initialize`` joins them before any other JAX call, and ``jax.devices()`` then
lists the devices of every process, so the mesh below spans all hosts. On CPU the processes
talk through gloo (``jax_cpu_collectives_implementation``, the default in jax 0.10).

Every process builds the same linear-Gaussian state-space model (data simulated from
``--seed``, so identical everywhere) and runs ``ppl.smc.sharding.run_smc_sharded`` in global
mode with the particles split over every device of every process, with the same key. With
``--exchange-every K`` it also runs island mode (one island per device) with island exchange
every ``K`` steps, whose collectives then cross processes too. With ``--compare`` each process
also runs ``ppl.run_smc`` on one local device: global mode must give the same log Z-hat.

Process 0 prints one JSON line: ``log_evidence`` (global mode), ``exact_log_evidence``
(Kalman filter), ``filtering_mean`` (the final weighted particle mean, computed from the
particles gathered from every process) and ``exact_filtering_mean``, ``island_log_evidence``
(with ``--exchange-every``), ``one_device_log_evidence`` (with ``--compare``),
``process_count``, ``device_count``, ``local_device_count``, ``mesh_devices`` (devices holding
the particles), ``gathered_particles`` and the configuration.
"""

from __future__ import annotations

import argparse
import json
import os


def parse_args(argv=None) -> argparse.Namespace:
    env = os.environ
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--coordinator", default=env.get("PPL_COORDINATOR"),
                   help="host:port of process 0 (env PPL_COORDINATOR)")
    p.add_argument("--num-processes", type=int, default=int(env.get("PPL_NUM_PROCESSES", 1)),
                   help="number of processes (env PPL_NUM_PROCESSES; default 1: no initialisation)")
    p.add_argument("--process-id", type=int, default=int(env.get("PPL_PROCESS_ID", 0)),
                   help="this process's id in [0, num_processes) (env PPL_PROCESS_ID)")
    p.add_argument("--cpu-devices", type=int, default=None,
                   help="fake this many CPU devices per process (jax_num_cpu_devices)")
    p.add_argument("--particles", type=int, default=8192, help="particles N (a multiple of the devices)")
    p.add_argument("--steps", type=int, default=50, help="time steps T")
    p.add_argument("--seed", type=int, default=0, help="data and key seed (the same on every process)")
    p.add_argument("--exchange-every", type=int, default=None,
                   help="also run island mode with island exchange every K steps")
    p.add_argument("--compare", action="store_true", help="also run ppl.run_smc on one local device")
    args = p.parse_args(argv)
    if args.num_processes < 1:
        p.error(f"--num-processes: expected a positive integer, got {args.num_processes}")
    if not 0 <= args.process_id < args.num_processes:
        p.error(f"--process-id: expected an integer in [0, {args.num_processes}), got {args.process_id}")
    if args.num_processes > 1 and not args.coordinator:
        p.error("--coordinator: needed with more than one process (host:port of process 0, "
                "or set PPL_COORDINATOR)")
    return args


def init_distributed(args) -> None:
    """Join the processes; call before any other JAX computation. One process: nothing to do."""
    import jax

    if args.cpu_devices is not None:
        jax.config.update("jax_num_cpu_devices", args.cpu_devices)
    if args.num_processes > 1:
        jax.config.update("jax_cpu_collectives_implementation", "gloo")  # CPU only; the 0.10 default
        jax.distributed.initialize(coordinator_address=args.coordinator,
                                   num_processes=args.num_processes, process_id=args.process_id)


def main(argv=None) -> int:
    args = parse_args(argv)
    init_distributed(args)

    import jax
    import numpy as np
    from jax.experimental import multihost_utils

    import ppl
    from ppl_models.state_space import LinearGaussian
    from ppl.smc.sharding import particle_mesh, run_smc_sharded

    model = LinearGaussian(a=0.9, q=1.0, r=0.5, m0=0.0, p0=2.0)
    ys = model.simulate(args.steps, seed=args.seed)  # numpy: identical on every process
    fk = model.bootstrap(ys)
    key = jax.random.key(args.seed)

    mesh = particle_mesh()  # every device of every process, one axis "particles"
    res = run_smc_sharded(fk, args.particles, key=key, mesh=mesh, mode="global")
    # Arrays sharded across processes are not readable whole from one process: gather them
    # (a collective: every process calls it; tiled=True keeps the shape [N] on one process too).
    # Scalars such as log Z-hat are replicated, readable everywhere.
    particles = np.asarray(multihost_utils.process_allgather(res.particles, tiled=True))
    log_w = np.asarray(multihost_utils.process_allgather(res.log_weights, tiled=True), np.float64)
    kalman = model.kalman_filter(ys)
    out = dict(
        log_evidence=float(res.log_evidence),  # a replicated scalar: readable on every process
        exact_log_evidence=float(kalman.log_evidence),
        process_count=jax.process_count(),
        device_count=jax.device_count(),
        local_device_count=jax.local_device_count(),
        mesh_devices=len(res.particles.sharding.device_set),
        gathered_particles=int(particles.shape[0]),
        filtering_mean=float(np.exp(log_w) @ particles),  # E[x_{T-1} | y_{0:T-1}]
        exact_filtering_mean=float(kalman.means[-1]),
        particles=args.particles,
        steps=args.steps,
        seed=args.seed,
    )
    if args.exchange_every is not None:
        isl = run_smc_sharded(fk, args.particles, key=key, mesh=mesh, mode="island",
                              exchange_every=args.exchange_every)
        out["island_log_evidence"] = float(isl.log_evidence)
        out["exchange_every"] = args.exchange_every
    if args.compare:
        one = ppl.run_smc(fk, args.particles, key=key)  # this process's first local device
        out["one_device_log_evidence"] = float(one.log_evidence)
        out["equal_to_one_device"] = bool(np.float32(one.log_evidence) == np.float32(res.log_evidence))
    if jax.process_index() == 0:
        print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
