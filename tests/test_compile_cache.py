"""jax's persistent compilation cache is on by default for the Python API: a new process
skips XLA compilation of programs it compiled before; SLT_JAX_COMPILATION_CACHE=off opts out.

Runs fresh processes (the cache is decided once per process), without the test session's
JAX_COMPILATION_CACHE_DIR, and with HOME pointed at a temporary folder so the default
location ~/.cache/slt_jax/xla is the test's own."""

import json
import os
import subprocess
import sys
from pathlib import Path

SCRIPT = r"""
import json, sys
sys.path.insert(0, {scripts!r})
import slt_jax
from linear_problem import least_squares, linear_data, linear_loss
x, y = linear_data(256)
r = slt_jax.estimate_llc(linear_loss, least_squares(x, y), (x, y), step_size=1e-3, localization=10.0,
                         num_chains=4, num_draws=50, batch_size=32, progress=False)
print(json.dumps({{k: r.attrs[k] for k in ("compilations", "persistent_cache_hits", "compilation_cache_dir")}}))
"""


def _run(home: Path, **env_extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JAX_COMPILATION_CACHE", "SLT_JAX_COMPILATION"))}
    env.update(HOME=str(home), JAX_PLATFORMS="cpu", **env_extra)
    script = SCRIPT.format(scripts=str(Path(__file__).parent / "scripts"))
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_second_process_reads_compiled_programs_from_the_default_cache(tmp_path):
    first = _run(tmp_path)
    where = tmp_path / ".cache" / "slt_jax" / "xla"
    assert first["compilation_cache_dir"] == str(where) and any(where.iterdir())
    assert first["compilations"] > 0 and first["persistent_cache_hits"] == 0
    second = _run(tmp_path)
    # Every executable of the run comes from disk: compiled again by nobody.
    assert second["persistent_cache_hits"] == second["compilations"] > 0


def test_opt_out(tmp_path):
    out = _run(tmp_path, SLT_JAX_COMPILATION_CACHE="off")
    assert out["compilation_cache_dir"] is None and out["persistent_cache_hits"] == 0
    assert not (tmp_path / ".cache" / "slt_jax").exists()
