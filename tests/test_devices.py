"""Chains spread over several devices: same results, no cross-device communication.

Runs in a subprocess with XLA_FLAGS=--xla_force_host_platform_device_count=8 (the flag must be
set before jax starts, so it cannot apply to this test process).
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).parent / "scripts" / "device_agreement.py"
COLLECTIVES = ("all-reduce", "all-gather", "all-to-all", "collective-permute", "reduce-scatter")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    dump = tmp_path_factory.mktemp("hlo")
    env = {
        **os.environ,
        "JAX_PLATFORMS": "cpu",
        "XLA_FLAGS": f"--xla_force_host_platform_device_count=8 --xla_dump_to={dump} --xla_dump_hlo_as_text",
    }
    proc = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1]), dump


def test_llc_per_chain_agrees_on_1_2_and_8_devices(run):
    """6 chains: 1 device runs 6, 2 devices 3 each, 8 devices 8 (2 padding chains dropped);
    "8map" evaluates chains one after another within each device (eval_batching="map"), "2seq"
    steps them one after another on each of 2 devices (chain_batch=1).
    Chain keys depend only on (seed, chain), so the draws are the same; XLA may vectorize a
    different number of chains per device, so agreement is to float32 rounding."""
    out, _ = run
    assert out["num_devices"] == 8
    assert [out[k][3] for k in ("1", "2", "8")] == [6, 6, 8]
    for k in ("2", "8", "8map", "2seq"):
        for i in range(3):
            np.testing.assert_allclose(np.array(out[k][i]), np.array(out["1"][i]), rtol=1e-5, atol=1e-7)


def test_grid_per_chain_results_agree_on_1_2_and_8_devices(run):
    """A checkpoint × ε grid: each chain's λ̂ is the same on 1, 2 and 8 devices (8 pads 12
    chains to 16), to float32 rounding as above."""
    out, _ = run
    for k in ("grid2", "grid8"):
        np.testing.assert_allclose(np.array(out[k]), np.array(out["grid1"]), rtol=1e-5, atol=1e-7)


def test_committed_checkpoints_with_auto_planner_on_two_devices(run):
    """Regression: checkpoints committed to one device (as orbax restores them) with
    checkpoints_per_call="auto" on 2 devices crashed with "Sharding passed to jit does not
    match ... SingleDeviceSharding"; now they run and equal the grid's ε = 1e-4 column."""
    out, _ = run
    grid = np.array(out["grid1"])  # (checkpoint, step_size, localization, nbeta, chain)
    for k, chains in enumerate(out["auto_committed"]):
        np.testing.assert_allclose(np.array(chains), grid[k, 0, 0, 0], rtol=1e-5, atol=1e-7)


def test_sharded_sampling_program_has_no_collectives(run):
    """The 8-device draw programs (jitted functions named `draws`; with vmapped and with
    lax.map-ped evaluations) communicate nothing."""
    _, dump = run
    texts = [p.read_text() for p in dump.glob("*draws*after_optimizations.txt")]
    assert texts, sorted(p.name for p in dump.iterdir())[:20]
    sharded = [t for t in texts if "num_partitions=8" in t or "devices=[8" in t]
    assert sharded, "expected an 8-way partitioned draw program"
    for text in sharded:
        for op in COLLECTIVES:
            assert f" {op}(" not in text and f" {op}-start(" not in text, op
