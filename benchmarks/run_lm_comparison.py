"""Harness: slt_jax vs devinterp 2.0.1 on the tiny-GPT-2 LLC workload (benchmarks/workload_lm.py).

Run with the core (torch-free) venv:
    .venv/bin/python benchmarks/run_lm_comparison.py [--draws 500] [--chains 4] [--out-md F]

Each framework's script runs in a fresh subprocess, one at a time, so the end-to-end wall time
includes interpreter start, imports, workload construction and (for slt_jax) compilation.
slt_jax runs with this interpreter (sys.executable); devinterp with --devinterp-python (the
devinterp 2 venv, .venv-bench2).

Two comparisons, both measured in this one run:
  observable   the issue's workload: per-token losses of one observable data set (OBS_N
               sequences) recorded at every draw. devinterp: sample() with one observable,
               once with 1 torch thread and once with 2 (the faster one is used for the ratio).
               slt_jax: eval_sets={"obs": ...}, eval_every=1, diagnostics=() (the observable
               only: the same work as devinterp).
  (variants)   slt_jax's observable run with eval_batching="map"; with the default diagnostics
               (also the full-data loss L_n(w) on all N sequences and a MALA probe at every
               draw: more work than devinterp); with --more-chains chains (same chain-steps);
               with eval_every="auto" (every n/B = 10 draws, default diagnostics).
  sampling     no observable: devinterp sample(observables={}) (it still writes the per-token
               minibatch losses and input ids of every step to zarr); slt_jax eval_every=None.
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
import workload_lm as W  # noqa: E402


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


def run_one(tag, python, script, chains, draws, json_dir, extra=()):
    out = Path(json_dir) / f"{tag}.json"
    cmd = [python, str(script), "--chains", str(chains), "--draws", str(draws), "--json-out", str(out), *extra]
    print(f"running {tag}: {' '.join(cmd[1:])}", file=sys.stderr, flush=True)
    load = os.getloadavg()[0]
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if proc.returncode != 0 or not out.exists():
        print(f"FAILED ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr[-3000:]}", file=sys.stderr)
        return None
    res = json.loads(out.read_text())
    res["end_to_end_s"] = wall
    res["loadavg_1min_at_start"] = load
    res["tag"] = tag
    print(f"  {res['chain_steps_per_s']:,.1f} chain-steps/s, end-to-end {wall:.1f} s", file=sys.stderr, flush=True)
    return res


def settings(r):
    if r["framework"] == "slt_jax":
        ev = r.get("eval_every")
        diag = r.get("diagnostics", ["full_loss", "mala"])
        what = "obs per-token losses" + (" + full-data L_n" if "full_loss" in diag else "") + (
            " + MALA probe" if "mala" in diag else "")
        how = "" if r.get("eval_batching", "vmap") == "vmap" else "; eval_batching='map'"
        return (f"eval_every=1: {what} every draw{how}" if ev == 1
                else f"eval_every={ev} ('auto'): {what}, every {ev} draws{how}" if ev
                else "eval_every=None (sampling only)")
    threads = f"{r['torch_threads']} torch thread{'s' if r['torch_threads'] != 1 else ''}"
    return f"{'obs per-token losses every draw' if r.get('observable') else 'observables={}'}; {threads}"


def fmt_row(r):
    return (f"| {r['framework']} | {settings(r)} | {r['chains']} | {r['draws']} | "
            f"{r['chain_steps_per_s']:,.1f} | {r.get('compile_s', 0.0):.1f} | {r['end_to_end_s']:.1f} | "
            f"{r['llc_mean']:.1f} ± {r['llc_std']:.1f} |")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--devinterp-python", default=str(HERE.parent / ".venv-bench2" / "bin" / "python"))
    p.add_argument("--draws", type=int, default=W.DRAWS)
    p.add_argument("--chains", type=int, default=W.NUM_CHAINS)
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2],
                   help="torch thread counts to try for devinterp's observable run (fastest is used)")
    p.add_argument("--skip-sampling-only", action="store_true", help="only the observable comparison")
    p.add_argument("--skip-auto", action="store_true",
                   help="skip the extra slt_jax run with eval_every='auto' (every n/B = 10 draws)")
    p.add_argument("--skip-variants", action="store_true",
                   help="skip the extra slt_jax observable runs (eval_batching='map'; with the full-data "
                        "loss and MALA probe too; more chains)")
    p.add_argument("--more-chains", type=int, default=16,
                   help="also run slt_jax's observable configuration with this many chains (same total "
                        "chain-steps); 0 to skip")
    p.add_argument("--skip-bound", action="store_true",
                   help="skip the bare-JAX grad-only ceiling (lm_grad_bound.py)")
    p.add_argument("--out-md", default=None, help="append the markdown report to this file")
    p.add_argument("--json-dir", default=None, help="keep the per-run JSONs here (default: a temp dir)")
    args = p.parse_args()

    json_dir = args.json_dir or tempfile.mkdtemp(prefix="lm_bench_")
    os.makedirs(json_dir, exist_ok=True)
    slt_script, di_script = HERE / "slt_jax_lm.py", HERE / "devinterp2_lm.py"
    if not Path(args.devinterp_python).exists():
        sys.exit(f"devinterp python missing ({args.devinterp_python}); see the module docstring")
    c, d = args.chains, args.draws

    load_before = os.getloadavg()
    t_all = time.perf_counter()
    res = {}
    # Headline: the same work as devinterp (the observable's per-token losses at every draw).
    obs_only = ("--eval-every", "1", "--diagnostics", "none")
    res["slt_obs"] = run_one("slt_obs", sys.executable, slt_script, c, d, json_dir, obs_only)
    if not args.skip_variants:
        res["slt_obs_map"] = run_one("slt_obs_map", sys.executable, slt_script, c, d, json_dir,
                                     obs_only + ("--eval-batching", "map"))
        res["slt_obs_full"] = run_one("slt_obs_full", sys.executable, slt_script, c, d, json_dir, ("--eval-every", "1"))
        if args.more_chains:
            res["slt_obs_more"] = run_one("slt_obs_more", sys.executable, slt_script, args.more_chains,
                                          max(1, d * c // args.more_chains), json_dir, obs_only)
    for th in args.threads:
        res[f"di_obs_t{th}"] = run_one(f"di_obs_t{th}", args.devinterp_python, di_script, c, d, json_dir,
                                       ("--threads", str(th)))
    di_obs = [res[f"di_obs_t{th}"] for th in args.threads if res[f"di_obs_t{th}"]]
    best = max(di_obs, key=lambda r: r["chain_steps_per_s"]) if di_obs else None
    if not args.skip_auto:
        res["slt_auto"] = run_one("slt_auto", sys.executable, slt_script, c, d, json_dir, ("--eval-every", "auto"))
    if not args.skip_sampling_only:
        res["slt_samp"] = run_one("slt_samp", sys.executable, slt_script, c, d, json_dir, ("--eval-every", "none"))
        th = best["torch_threads"] if best else 1
        res["di_samp"] = run_one("di_samp", args.devinterp_python, di_script, c, d, json_dir,
                                 ("--threads", str(th), "--no-obs"))
    bound = None
    if not args.skip_bound:
        out = Path(json_dir) / "grad_bound.json"
        cmd = [sys.executable, str(HERE / "lm_grad_bound.py"), "--chains", str(c), "--json-out", str(out)]
        print(f"running grad_bound: {' '.join(cmd[1:])}", file=sys.stderr, flush=True)
        if subprocess.run(cmd, capture_output=True, text=True).returncode == 0 and out.exists():
            bound = json.loads(out.read_text())
        total_s = time.perf_counter() - t_all
    load_after = os.getloadavg()

    any_di = next((r for r in res.values() if r and r["framework"] == "devinterp"), None)
    wd = W.describe()
    lines = [
        f"### Tiny GPT-2 LLC benchmark: slt_jax vs devinterp {any_di['version'] if any_di else 'n/a'}",
        "",
        f"Workload: {wd['model']}, {wd['num_params']:,} params; n={wd['n']} training sequences of "
        f"{W.CONTEXT} tokens (15 per-token losses each), observable data set of {wd['obs_n']} sequences; "
        f"batch={wd['batch']}, γ={wd['gamma']:g}, ε={wd['eps']:g}, nβ=n/log n={wd['nbeta']:.2f}, SGLD, "
        f"{c} chains × {d} draws (no burn-in, every step a draw), same numpy weights and tokens in both "
        f"(loss at w* on the same batch checked equal to 1e-5 against a float64 numpy reference).",
        f"Machine: {cpu_model()}, {os.cpu_count()} cores; python {platform.python_version()}; "
        f"jax {pkg_version('jax')}; slt_jax {pkg_version('slt_jax')}; "
        f"torch {any_di['torch'] if any_di else 'n/a'}; 1-min load average before/after "
        f"{load_before[0]:.2f}/{load_after[0]:.2f} (per run at start: "
        + ", ".join(f"{k} {r['loadavg_1min_at_start']:.2f}" for k, r in res.items() if r) + f"); total {total_s:.0f} s.",
        "",
        "| framework | settings | chains | draws | chain-steps/s (excl. compile) | compile s | end-to-end wall s | LLC mean ± std |",
        "|---|---|---|---|---|---|---|---|",
    ]
    lines += [fmt_row(r) for r in res.values() if r]
    lines += [
        "",
        "devinterp (torch eager) has no compile step; its chain-steps/s is timed around `sample()` "
        "(which includes its init-loss pass and zarr writes). slt_jax's excludes compilation. "
        "End-to-end = fresh subprocess (interpreter + imports + workload + compile + sampling + output). "
        "LLC std: slt_jax ddof=1, devinterp's `compute_llc` ddof=0.",
    ]
    s = res.get("slt_obs")
    for th in args.threads:
        r = res.get(f"di_obs_t{th}")
        if s and r:
            lines.append(f"- observable, devinterp with {th} torch thread{'s' if th != 1 else ''}: slt_jax/devinterp = "
                         f"**{s['chain_steps_per_s'] / r['chain_steps_per_s']:.1f}×** (sampling, excl. compile), "
                         f"{r['end_to_end_s'] / s['end_to_end_s']:.2f}× (end-to-end wall).")
    if s and best:
        lines.append(f"- observable, vs devinterp's faster setting ({best['torch_threads']} thread"
                     f"{'s' if best['torch_threads'] != 1 else ''}): "
                     f"**{s['chain_steps_per_s'] / best['chain_steps_per_s']:.1f}×** (sampling), "
                     f"{best['end_to_end_s'] / s['end_to_end_s']:.2f}× (end-to-end).")
    for tag, label in (("slt_obs_map", "eval_batching='map'"), ("slt_obs_full", "+ full-data L_n + MALA probe"),
                       ("slt_obs_more", "more chains")):
        v = res.get(tag)
        if v and best:
            lines.append(f"- observable, slt_jax {label} ({v['chains']} chains) vs devinterp's faster setting: "
                         f"{v['chain_steps_per_s'] / best['chain_steps_per_s']:.1f}× (sampling).")
    sa = res.get("slt_auto")
    if sa and best:
        lines.append(f"- slt_jax eval_every='auto' (obs + full-data + MALA every {sa['eval_every']} draws) vs devinterp "
                     f"observable every draw ({best['torch_threads']} thread{'s' if best['torch_threads'] != 1 else ''}): "
                     f"{sa['chain_steps_per_s'] / best['chain_steps_per_s']:.1f}× (sampling; not the same work).")
    s2, r2 = res.get("slt_samp"), res.get("di_samp")
    if s2 and r2:
        lines.append(f"- sampling only (no observable): slt_jax/devinterp = "
                     f"**{s2['chain_steps_per_s'] / r2['chain_steps_per_s']:.1f}×** (sampling), "
                     f"{r2['end_to_end_s'] / s2['end_to_end_s']:.2f}× (end-to-end).")
    if bound and best:
        layout = " (with slt_jax's CPU matmul layout, as estimate_llc runs it)" if bound.get("cpu_dot_rewrite") else ""
        lines.append(f"- ceiling: a bare jitted scan doing only minibatch + `value_and_grad` of this model{layout} "
                     f"({bound['chains']} chains, same device split; lm_grad_bound.py) runs "
                     f"{bound['chain_steps_per_s']:,.1f} chain-steps/s = "
                     f"**{bound['chain_steps_per_s'] / best['chain_steps_per_s']:.1f}×** devinterp's observable run: "
                     "an engine that takes one XLA gradient of this model per chain-step cannot beat that ratio on this machine.")
    if load_before[0] > 0.6:
        lines.append(f"- WARNING: the 1-min load average was {load_before[0]:.2f} before the runs "
                     "(above 0.6 on 2 cores): timings are unreliable.")
    report = "\n".join(lines) + "\n"
    print(report)
    print(f"(per-run JSONs in {json_dir})", file=sys.stderr)
    if args.out_md:
        with open(args.out_md, "a") as f:
            f.write(report + "\n")


if __name__ == "__main__":
    main()
