"""Harness: slt_jax vs devinterp 1.3.2 on the MLP LLC workload (benchmarks/workload_mlp.py).

Run with the core (torch-free) venv:
    .venv/bin/python benchmarks/run_mlp_comparison.py [--chains 4 16] [--draws 2000] [--out-md F]
Each framework's script runs in a fresh subprocess, one at a time, so the end-to-end wall time
includes interpreter start, imports and (for slt_jax) compilation. slt_jax runs with this
interpreter (sys.executable); devinterp with --devinterp-python (the torch venv).
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import workload_mlp as W  # noqa: E402


def cpu_model():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def pkg_version(name):
    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


def run_one(python, script, chains, draws, json_dir, extra=()):
    out = Path(json_dir) / f"{Path(script).stem}_c{chains}_d{draws}.json"
    cmd = [python, str(script), "--chains", str(chains), "--draws", str(draws), "--json-out", str(out), *extra]
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if proc.returncode != 0 or not out.exists():
        print(f"FAILED ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr[-3000:]}", file=sys.stderr)
        return None
    res = json.loads(out.read_text())
    res["end_to_end_s"] = wall
    return res


def fmt_row(r):
    return (f"| {r['framework']} | {r['chains']} | {r['draws']} | {r['chain_steps_per_s']:,.0f} | "
            f"{r.get('compile_s', 0.0):.2f} | {r['end_to_end_s']:.1f} | "
            f"{r['llc_mean']:.2f} ± {r['llc_std']:.2f} |")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--devinterp-python", default=str(HERE.parent / ".venv-bench" / "bin" / "python"))
    p.add_argument("--devinterp-threads", type=int, default=1,
                   help="torch.set_num_threads for devinterp (default 1: fastest for this 1k-param "
                        "model; 2 threads on 2 cores is slower, and collapses when the machine is busy)")
    p.add_argument("--draws", type=int, default=W.DRAWS)
    p.add_argument("--chains", type=int, nargs="+", default=list(W.CHAIN_COUNTS))
    p.add_argument("--out-md", default=None, help="append the markdown report to this file")
    p.add_argument("--json-dir", default=None, help="keep the per-run JSONs here (default: a temp dir)")
    p.add_argument("--slt-extra", default="", help="extra arguments for slt_jax_mlp.py, e.g. '--no-eval'")
    args = p.parse_args()

    json_dir = args.json_dir or tempfile.mkdtemp(prefix="mlp_bench_")
    os.makedirs(json_dir, exist_ok=True)
    slt_script, di_script = HERE / "slt_jax_mlp.py", HERE / "devinterp_mlp.py"
    have_slt = slt_script.exists()
    have_di = Path(args.devinterp_python).exists()
    if not have_slt:
        print(f"slt_jax side missing ({slt_script} does not exist): running devinterp alone", file=sys.stderr)
    if not have_di:
        print(f"devinterp python missing ({args.devinterp_python}): skipping devinterp", file=sys.stderr)

    load_before = os.getloadavg()
    results = {}  # (framework, chains) -> result
    for c in args.chains:
        di_extra = ("--threads", str(args.devinterp_threads))
        for name, python, script, ok, extra in (
                ("slt_jax", sys.executable, slt_script, have_slt, tuple(args.slt_extra.split())),
                ("devinterp", args.devinterp_python, di_script, have_di, di_extra)):
            if not ok:
                continue
            print(f"running {name}: {c} chains x {args.draws} draws ...", file=sys.stderr, flush=True)
            r = run_one(python, script, c, args.draws, json_dir, extra)
            if r is not None:
                results[(name, c)] = r
    load_after = os.getloadavg()

    torch_v = next((r["torch"] for r in results.values() if r["framework"] == "devinterp"), "n/a")
    di_v = next((r["version"] for r in results.values() if r["framework"] == "devinterp"), "n/a")
    threads = next((r.get("torch_threads") for r in results.values() if r["framework"] == "devinterp"), None)
    wd = W.describe()
    lines = [
        f"### MLP LLC benchmark: slt_jax vs devinterp {di_v}",
        "",
        f"Workload: {wd['model']}, {wd['num_params']:,} params, n={wd['n']}, batch={wd['batch']}, "
        f"γ={wd['gamma']:g}, ε={wd['eps']:g}, nβ=n/log n={wd['nbeta']:.2f}, SGLD, MSE, "
        f"{args.draws} draws/chain (no burn-in, every step a draw), init loss = full-data L_n(w*); "
        f"slt_jax options: {args.slt_extra or 'defaults (full-data evaluations + MALA probe every 10 draws)'}.",
        f"Machine: {cpu_model()}, {os.cpu_count()} cores; python {platform.python_version()}; "
        f"jax {pkg_version('jax')}; slt_jax {pkg_version('slt_jax')}; torch {torch_v}"
        + (f" ({threads} torch thread{'s' if threads != 1 else ''})" if threads else "")
        + f"; load average before/after {load_before[0]:.2f}/{load_after[0]:.2f}.",
        "",
        "| framework | chains | draws | chain-steps/s (excl. compile) | compile s | end-to-end wall s | LLC mean ± std |",
        "|---|---|---|---|---|---|---|",
    ]
    lines += [fmt_row(r) for r in results.values()]
    lines.append("")
    lines.append("devinterp (torch eager) has no compile step; its steps/s is timed around "
                 "`estimate_learning_coeff_with_summary` only. End-to-end = fresh subprocess "
                 "(interpreter + imports + compile + sampling + output).")
    if not have_slt:
        lines.append("slt_jax: missing (benchmarks/slt_jax_mlp.py not found), devinterp only.")
    for c in args.chains:
        s, d = results.get(("slt_jax", c)), results.get(("devinterp", c))
        if s and d:
            lines.append(f"- {c} chains: slt_jax/devinterp speed = "
                         f"{s['chain_steps_per_s'] / d['chain_steps_per_s']:.1f}× (sampling, excl. compile), "
                         f"{d['end_to_end_s'] / s['end_to_end_s']:.1f}× (end-to-end wall).")
    if load_before[0] > 0.5 * (os.cpu_count() or 1):  # "after" includes our own runs
        lines.append("- WARNING: the machine was busy before the runs (1-min load average above half "
                     "the cores); timings are unreliable.")
    report = "\n".join(lines) + "\n"
    print(report)
    print(f"(per-run JSONs in {json_dir})", file=sys.stderr)
    if args.out_md:
        with open(args.out_md, "a") as f:
            f.write(report + "\n")


if __name__ == "__main__":
    main()
