"""A 2-process jax.distributed run on localhost (CPU, gloo) gives the single-process results."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np

SCRIPT = Path(__file__).parent / "scripts" / "multihost_run.py"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(devices: int) -> dict:
    return {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"}


def test_two_processes_match_one(tmp_path):
    port = _free_port()
    multi, single = tmp_path / "multi.json", tmp_path / "single.json"
    procs = [
        subprocess.Popen(
            [sys.executable, str(SCRIPT), str(port), "2", str(i), str(multi)],
            env=_env(2), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for i in range(2)
    ]
    ref = subprocess.run([sys.executable, str(SCRIPT), "0", "1", "0", str(single)], env=_env(1),
                         capture_output=True, text=True, timeout=600)
    assert ref.returncode == 0, ref.stderr[-3000:]
    for p in procs:
        _, err = p.communicate(timeout=600)
        assert p.returncode == 0, err[-3000:]
    a, b = json.loads(multi.read_text()), json.loads(single.read_text())
    assert (a["processes"], a["devices"], b["processes"], b["devices"]) == (2, 4, 1, 1)
    # Chain keys depend only on (seed, chain): 6 chains over 4 devices in 2 processes (padded
    # to 8) sample exactly what one device samples, to float32 rounding.
    np.testing.assert_allclose(a["llc_per_chain"], b["llc_per_chain"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(a["probe"], b["probe"], rtol=1e-5, atol=1e-6)
    for x, y in zip(a["checkpoints"], b["checkpoints"]):
        np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)
    # Only process 0 writes: one netCDF file, readable.
    assert (tmp_path / "multi.json.nc").exists()
