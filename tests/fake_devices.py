"""Run a test module's multi-device checks in a subprocess with fake CPU devices.

The number of CPU devices is fixed when jax starts (``XLA_FLAGS``), and the rest of the suite
must keep its single device, so multi-device checks run as ``python -m <module>`` in a child
process that prints its findings as one JSON line.
"""

import json
import os
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]


def device_env(devices: int) -> dict:
    """The environment of a child process that sees ``devices`` CPU devices."""
    env = dict(os.environ)
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    env["JAX_PLATFORMS"] = "cpu"
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    for name in ("PPL_COORDINATOR", "PPL_NUM_PROCESSES", "PPL_PROCESS_ID"):
        env.pop(name, None)
    return env


def run_module(module: str, devices: int = 8, timeout: float = 600) -> dict:
    """``python -m module`` with ``devices`` fake CPU devices; its last stdout line, as JSON."""
    proc = subprocess.run([sys.executable, "-m", module], cwd=ROOT, env=device_env(devices),
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])
