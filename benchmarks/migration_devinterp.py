"""The migration guide's workload in devinterp 1.3.2 and in slt_jax: do the two λ̂ agree?

    .venv/bin/python benchmarks/migration_devinterp.py [--out-md benchmarks/results_migration.md]

The code is the guide's own: the python blocks of docs/migration.md whose first line is
`# workload`, `# devinterp 1.3.2` and `# slt_jax` are run as they stand, so the page shows what
was measured. The workload and slt_jax blocks run in this interpreter; the devinterp block runs
in devinterp's virtualenv (--devinterp-python, default .venv-bench/bin/python, made by
benchmarks/setup_peers.sh, as run_mlp_comparison.py uses it), in the same temporary folder,
and leaves its per-chain λ̂ in devinterp_llc.json.

Error bars: for both, std over chains (ddof = 1) / sqrt(chains). The check: |Δλ̂| ≤ 2 combined
SE. devinterp's default init loss is a minibatch average, not L_n(w*); the shift this causes,
nβ·(init loss − L_n(w*)) for every chain, is reported, and the comparison is repeated with it
removed.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
from bench_json import emit  # noqa: E402

from slt_jax import atomic  # noqa: E402

GUIDE = REPO / "docs" / "migration.md"
LABELS = ("# workload", "# devinterp 1.3.2", "# slt_jax")


def guide_blocks(path: Path = GUIDE) -> dict[str, str]:
    """{label: code} for the guide's python blocks that start with one of LABELS."""
    found = {}
    for code in re.findall(r"^```python\n(.*?)^```", path.read_text(), flags=re.S | re.M):
        first = code.splitlines()[0].strip() if code.strip() else ""
        if first in LABELS:
            if first in found:
                raise SystemExit(f"{path}: two python blocks start with {first!r}")
            found[first] = code
    missing = [label for label in LABELS if label not in found]
    if missing:
        raise SystemExit(f"{path}: no python block starts with {missing}")
    return found


def mean_se(values) -> tuple[float, float]:
    m = sum(values) / len(values)
    var = sum((v - m) ** 2 for v in values) / (len(values) - 1)
    return m, math.sqrt(var / len(values))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--devinterp-python", default=str(REPO / ".venv-bench" / "bin" / "python"))
    p.add_argument("--json-out", default=None)
    p.add_argument("--out-md", default=None, help="write the result as a markdown section")
    p.add_argument("--timeout", type=float, default=1800)
    args = p.parse_args()
    if not Path(args.devinterp_python).exists():
        sys.exit(f"devinterp's python is missing ({args.devinterp_python}): run bash benchmarks/setup_peers.sh")

    # the run happens in a temporary folder: make the output paths absolute first
    json_out = Path(args.json_out).resolve() if args.json_out else None
    out_md = Path(args.out_md).resolve() if args.out_md else None
    blocks = guide_blocks()
    folder = Path(tempfile.mkdtemp(prefix="migration_"))
    os.chdir(folder)
    namespace: dict = {"__name__": "__migration__"}
    exec(compile(blocks["# workload"], "migration.md[workload]", "exec"), namespace)  # noqa: S102

    script = folder / "devinterp_block.py"
    script.write_text(blocks["# devinterp 1.3.2"])
    t = time.perf_counter()
    proc = subprocess.run([args.devinterp_python, str(script)], cwd=folder, capture_output=True, text=True,
                          timeout=args.timeout)
    devinterp_s = time.perf_counter() - t
    if proc.returncode != 0:
        sys.exit(f"the devinterp block failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    di = json.loads((folder / "devinterp_llc.json").read_text())

    t = time.perf_counter()
    exec(compile(blocks["# slt_jax"], "migration.md[slt_jax]", "exec"), namespace)  # noqa: S102
    slt_s = time.perf_counter() - t
    result = namespace["result"]

    import numpy as np
    from importlib.metadata import version

    slt_chains = [float(v) for v in np.asarray(result.llc_per_chain)[result.healthy]]
    slt_mean, slt_se = mean_se(slt_chains)
    di_mean, di_se = mean_se(di["llc_per_chain"])
    combined = math.hypot(slt_se, di_se)
    shift = di["nbeta"] * (di["init_loss"] - result.init_loss)  # devinterp's λ̂ minus its full-data-init value
    z_raw = (di_mean - slt_mean) / combined
    z_same_init = (di_mean + shift - slt_mean) / combined
    out = {
        "devinterp": {"version": subprocess.run([args.devinterp_python, "-c",
                                                 "import importlib.metadata as m; print(m.version('devinterp'))"],
                                                capture_output=True, text=True).stdout.strip(),
                      "llc_mean": di_mean, "se": di_se, "llc_per_chain": di["llc_per_chain"],
                      "init_loss": di["init_loss"], "nbeta": di["nbeta"], "wall_s": devinterp_s},
        "slt_jax": {"version": version("slt_jax"), "llc_mean": slt_mean, "se": slt_se, "mcse": float(result.llc_se),
                    "llc_per_chain": slt_chains, "init_loss": float(result.init_loss), "nbeta": float(result.nbeta),
                    "wall_s": slt_s},
        "combined_se": combined,
        "init_loss_shift": shift,
        "z": z_raw,
        "z_same_init_loss": z_same_init,
        "agree": abs(z_raw) <= 2.0,
        "agree_same_init_loss": abs(z_same_init) <= 2.0,
        "loadavg_1min_after": os.getloadavg()[0],
        "cpu_count": os.cpu_count(),
    }
    emit(out, json_out, indent=1)
    text = markdown(out)
    print(text)
    if out_md:
        atomic.write_text(out_md, text)
    if not out["agree"]:
        sys.exit("the two λ̂ differ by more than 2 combined SE")


def markdown(o: dict) -> str:
    d, s = o["devinterp"], o["slt_jax"]
    return "\n".join([
        "Command: `.venv/bin/python benchmarks/migration_devinterp.py --out-md benchmarks/results_migration.md`",
        "",
        "| | λ̂ ± SE (std over 8 chains / √8) | init loss used | wall time |",
        "|---|---|---|---|",
        f"| devinterp {d['version']} | {d['llc_mean']:.3f} ± {d['se']:.3f} | {d['init_loss']:.6f} (minibatch average) "
        f"| {d['wall_s']:.1f} s (process) |",
        f"| slt_jax {s['version']} | {s['llc_mean']:.3f} ± {s['se']:.3f} (MCSE {s['mcse']:.3f}) "
        f"| {s['init_loss']:.6f} (L_n(w*), full data) | {s['wall_s']:.1f} s (call, with compilation) |",
        "",
        f"Difference devinterp − slt_jax: {d['llc_mean'] - s['llc_mean']:+.3f}, {o['z']:+.2f} combined SE "
        f"({o['combined_se']:.3f}): {'agree' if o['agree'] else 'DISAGREE'} (|z| ≤ 2). The init-loss convention "
        f"accounts for {-o['init_loss_shift']:+.4f} of it (nβ·(L_n(w*) − devinterp's init loss), nβ = "
        f"{d['nbeta']:.2f}); with it removed the difference is {o['z_same_init_loss']:+.2f} combined SE.",
        f"Wall times are indicative only: 1-min load average {o['loadavg_1min_after']:.1f} on {o['cpu_count']} cores "
        "after the run (benchmarks/RESULTS.md has the timed comparison).",
        "",
    ])


if __name__ == "__main__":
    main()
