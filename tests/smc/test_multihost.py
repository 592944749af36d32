"""Sharded SMC across processes: ``examples/scaling_out.py`` on 2 processes x 4 CPU devices.

The two processes join with ``jax.distributed.initialize`` on localhost and talk through gloo
(jax's CPU collectives); the mesh spans the 8 devices of both. The same script on one process
with 8 devices, and ``ppl.run_smc`` on one device (its ``--compare``), give the references.
"""

import json
import pathlib
import socket
import subprocess
import sys

import pytest

from tests.fake_devices import device_env

# two processes; the sharded modes are tested on fake devices in tests/smc/test_sharding.py.
pytestmark = pytest.mark.slow

ROOT = pathlib.Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "examples" / "scaling_out.py"
ARGS = ["--particles", "512", "--steps", "20", "--seed", "0", "--exchange-every", "4"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _json_line(stdout: str) -> dict:
    # gloo prints its connection messages to stdout; the script's result is the JSON line.
    lines = [line for line in stdout.splitlines() if line.startswith("{")]
    assert len(lines) == 1, stdout[-2000:]
    return json.loads(lines[0])


@pytest.fixture(scope="module")
def runs():
    port = _free_port()
    procs = []
    for pid in (0, 1):  # 2 processes x 4 devices, coordinated by process 0
        cmd = [sys.executable, str(SCRIPT), "--coordinator", f"127.0.0.1:{port}", "--num-processes", "2",
               "--process-id", str(pid), *ARGS]
        procs.append(subprocess.Popen(cmd, cwd=ROOT, env=device_env(4), stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True))
    # the references, started alongside: 1 process x 8 devices, and ppl.run_smc on one device
    procs.append(subprocess.Popen([sys.executable, str(SCRIPT), *ARGS, "--compare"], cwd=ROOT, env=device_env(8),
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outs = []
    try:
        for p in procs:
            outs.append(p.communicate(timeout=300))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err[-4000:]
    assert not [line for line in outs[1][0].splitlines() if line.startswith("{")]  # only process 0 prints
    return {"two_processes": _json_line(outs[0][0]), "one_process": _json_line(outs[2][0])}


def test_two_processes_span_eight_devices(runs):
    two, one = runs["two_processes"], runs["one_process"]
    assert two["process_count"] == 2 and two["local_device_count"] == 4
    assert two["device_count"] == 8 and two["mesh_devices"] == 8  # the particles live on both processes
    assert one["process_count"] == 1 and one["device_count"] == 8 and one["mesh_devices"] == 8
    # process_allgather brought every particle to process 0; the filtering mean is the same
    assert two["gathered_particles"] == one["gathered_particles"] == 512
    assert two["filtering_mean"] == one["filtering_mean"]
    assert abs(two["filtering_mean"] - two["exact_filtering_mean"]) < 0.2


def test_global_mode_across_processes_equals_one_process_and_one_device(runs):
    two, one = runs["two_processes"], runs["one_process"]
    assert two["log_evidence"] == one["log_evidence"]
    assert two["log_evidence"] == one["one_device_log_evidence"] and one["equal_to_one_device"]
    assert abs(two["log_evidence"] - two["exact_log_evidence"]) < 0.5  # and it is a sane estimate


def test_island_exchange_across_processes_equals_one_process(runs):
    # Collectives inside the SMC loop (all-gathers of log Z-hat_d and island states) over gloo.
    two, one = runs["two_processes"], runs["one_process"]
    assert two["island_log_evidence"] == one["island_log_evidence"]


def test_script_needs_a_coordinator_for_several_processes(capsys):
    import importlib.util

    spec = importlib.util.spec_from_file_location("scaling_out", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    with pytest.raises(SystemExit):
        module.parse_args(["--num-processes", "2"])
    assert "--coordinator" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        module.parse_args(["--num-processes", "2", "--process-id", "2", "--coordinator", "h:1"])
    assert "--process-id" in capsys.readouterr().err
