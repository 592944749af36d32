"""The ``particles`` side of ``benchmarks/smc_engine.py``: bootstrap filters.

Runs inside its own virtual environment (``particles`` 0.4 pins ``numpy < 2``, which breaks jax),
so it imports nothing from ``ppl`` or jax. Usage::

    python _particles_filter.py DATA.npz --N 4096 --repeats 3 --seed 0
    python _particles_filter.py DATA.npz --N 4096 --serve     # one run per "run SEED" line on stdin

``DATA.npz`` (written by ``smc_engine.py`` with ``np.savez``, read with ``allow_pickle=False``)
holds ``model`` (a string) and ``y`` (the observations, ``[T]`` or ``[T, dy]``), and the model's
parameters:

* ``model="stochastic_volatility"``: the scalars ``mu``, ``rho``, ``sigma``
  (``particles.state_space_models.StochVol``);
* ``model="lgssm"``: the arrays ``F``, ``G``, ``covX``, ``covY``, ``mu0``, ``cov0`` of a
  multivariate linear-Gaussian model (``particles.kalman.MVLinearGauss``).
The last line of stdout is one JSON object with the wall time and log-evidence of every repeat.
With ``--serve`` the filter is warmed up once, ``ready`` plus a JSON line of versions is printed,
and then every stdin line ``run SEED`` is answered by one JSON line
``{"seconds": ..., "cpu_seconds": ..., "log_evidence": ..., "num_resampling_steps": ...}`` (``quit`` or EOF ends it);
the caller can then interleave these runs with its own to share the machine's load fairly.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time

import numpy as np


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", help="npz file with model, y and the model's parameters")
    parser.add_argument("--N", type=int, default=4096, help="number of particles")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs")
    parser.add_argument("--seed", type=int, default=0, help="numpy seed of the first run")
    parser.add_argument("--ess-rmin", type=float, default=0.5, help="resample when ESS/N < this")
    parser.add_argument("--resampling", default="systematic")
    parser.add_argument("--serve", action="store_true", help="answer 'run SEED' lines on stdin")
    args = parser.parse_args(argv)

    import particles
    from particles import state_space_models as ssm

    with np.load(args.data, allow_pickle=False) as f:
        name = str(f["model"])
        y = np.asarray(f["y"], dtype=np.float64)
        if name == "stochastic_volatility":
            model = ssm.StochVol(mu=float(f["mu"]), rho=float(f["rho"]), sigma=float(f["sigma"]))
        elif name == "lgssm":
            from particles import kalman

            model = kalman.MVLinearGauss(**{k: np.asarray(f[k], dtype=np.float64)
                                            for k in ("F", "G", "covX", "covY", "mu0", "cov0")})
        else:
            raise SystemExit(f"unknown model {name!r} in {args.data}")

    fk = ssm.Bootstrap(ssm=model, data=y)

    def one_run(seed):
        np.random.seed(seed)
        pf = particles.SMC(fk=fk, N=args.N, resampling=args.resampling, ESSrmin=args.ess_rmin,
                           store_history=False)
        t0, c0 = time.perf_counter(), time.process_time()
        pf.run()
        elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
        return elapsed, cpu, float(pf.logLt), int(np.sum(pf.summaries.rs_flags))

    one_run(args.seed + 10_000)  # warm-up: numba-compiled resampling, imports, caches
    info = {
        "model": name,
        "T": int(y.shape[0]),
        "N": args.N,
        "resampling": args.resampling,
        "ess_rmin": args.ess_rmin,
        "versions": {
            "particles": _version("particles"),
            "numpy": np.__version__,
            "python": platform.python_version(),
        },
    }
    if args.serve:
        print("ready " + json.dumps(info), flush=True)
        for line in sys.stdin:
            cmd = line.split()
            if not cmd or cmd[0] == "quit":
                break
            if cmd[0] != "run" or len(cmd) != 2:
                print(json.dumps({"error": f"unknown command {line.strip()!r}"}), flush=True)
                continue
            s, c, lz, nr = one_run(int(cmd[1]))
            print(json.dumps({"seconds": s, "cpu_seconds": c, "log_evidence": lz,
                              "num_resampling_steps": nr}), flush=True)
        return 0

    seconds, log_z, resample_counts = [], [], []
    for r in range(args.repeats):
        s, _, lz, nr = one_run(args.seed + r)
        seconds.append(s)
        log_z.append(lz)
        resample_counts.append(nr)

    out = {"seconds": seconds, "log_evidence": log_z, "num_resampling_steps": resample_counts, **info}
    print(json.dumps(out))
    return 0


def _version(dist: str) -> str:
    try:
        from importlib.metadata import version

        return version(dist)
    except Exception:  # pragma: no cover - metadata missing
        return "unknown"


if __name__ == "__main__":
    sys.exit(main())
