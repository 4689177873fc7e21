"""Harness: slt_jax vs canonical-interp 0.1.5 vs devinterp 1.3.2, first and second call (issue #9).

Set up the peers' venvs first (benchmarks/setup_peers.sh), then, on a quiet machine:
    .venv/bin/python benchmarks/run_peer_comparison.py --repeats 5 --out-md benchmarks/RESULTS.md
    .venv/bin/python benchmarks/run_peer_comparison.py --quick          # ~2 min: checks the plumbing
The full default run (3 repeats, devinterp at 16 chains only) takes roughly 10–15 min on the
2-core VM; --devinterp-configs all adds ~6 min per repeat.

Workload: benchmarks/workload_mlp.py (MLP 16->48->4, n=1000, batch 100, SGLD, same weights,
data, ε, γ, nβ in every tool). Default configurations: 16 chains × 2,000 draws and
256 chains × 1,000 draws.

Every run is a fresh process doing two identical estimates (seeds s, s+1) one after the other:
  - to first λ̂: from launching the process to the first result (interpreter, imports,
    compilation, sampling) — what a user waits for in a fresh script;
  - first call: wall time of the first estimate call alone;
  - second call: wall time of the second, identical call in the same process.
Tools run alternately (slt_jax default, slt_jax peer-work, canonical-interp at each of
--canonical-threads, devinterp, slt_jax, ...) for --repeats rounds; the tables give medians (and
the min–max range over repeats). canonical-interp runs at 1 thread and at all cores by default
(on the 2-core VM 2 torch threads collapse when other work shares the cores); the ratio table
takes it at its best setting per column.

slt_jax runs twice per round: with its defaults (full-data evaluations, MALA probe, per-draw
diagnostics) and with the peers' work only (--peer-work: diagnostics=(), draw_diagnostics=False,
eval_every=None). devinterp runs only at the configurations in --devinterp-configs (default: 16
chains; at 256 × 1,000 it needs ~3 min per call at ~1.5k chain-steps/s).

Compilation caches (--caches). Both libraries keep compiled code on disk by default: torch
inductor's FX-graph/kernel caches, and (in the rewritten engine) slt_jax's jax persistent
compilation cache (SLT_JAX_COMPILATION_CACHE, default ~/.cache/slt_jax/xla). The runner points
both at folders of its own, removed at the end, so that earlier runs never leak in:
  default  each library as it comes, as a user's second script finds it: the default caches,
           warmed by one untimed run of each canonical-interp and slt_jax variant per
           configuration before timing (a no-op for an slt_jax without a default cache).
  cold     a user's first-ever run: a fresh, empty inductor cache for every canonical-interp
           process; slt_jax with SLT_JAX_COMPILATION_CACHE=off.
  warm     as default, and slt_jax's persistent cache forced on (--compile-cache), for an slt_jax
           that does not turn it on by itself.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
import workload_mlp as W  # noqa: E402

TOOLS = ("slt_jax", "slt_jax_peer", "canonical", "devinterp")
LABEL = {"slt_jax": "slt_jax (defaults)", "slt_jax_peer": "slt_jax (peer work)",
         "canonical": "canonical-interp", "devinterp": "devinterp"}


def label(tool):
    """'canonical@2' -> 'canonical-interp, 2 threads'."""
    if tool.startswith("canonical@"):
        n = int(tool.split("@")[1])
        return f"canonical-interp, {n} thread{'s' if n != 1 else ''}"
    return LABEL[tool]


def cpu_model():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def mem_gib():
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 1024**2
    except OSError:
        pass
    return float("nan")


def pkg_version(name):
    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


def parse_config(s):
    c, d = s.lower().split("x")
    return int(c), int(d)


def run_one(tag, cmd, env, json_out, timeout):
    launch = time.time()
    t = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    except subprocess.TimeoutExpired:
        print(f"TIMEOUT after {timeout} s: {tag}: {' '.join(cmd)}", file=sys.stderr)
        return None
    wall = time.perf_counter() - t
    if proc.returncode != 0 or not Path(json_out).exists():
        print(f"FAILED ({proc.returncode}): {tag}: {' '.join(cmd)}\n{proc.stderr[-3000:]}", file=sys.stderr)
        return None
    r = json.loads(Path(json_out).read_text())
    r["process_wall_s"] = wall
    r["to_first_result_s"] = r["first_result_epoch"] - launch
    return r


class Runner:
    def __init__(self, args, json_dir):
        self.args = args
        self.json_dir = Path(json_dir)
        self.cache_root = Path(tempfile.mkdtemp(prefix="peer_caches_"))
        self.inductor_dir = self.cache_root / "inductor"  # default/warm: shared by all canonical runs
        self.jax_cache = self.cache_root / "jax"  # slt_jax's persistent XLA cache (default/warm)
        self.count = 0

    def command(self, tool, chains, draws, json_out):
        a = self.args
        common = ["--chains", str(chains), "--draws", str(draws), "--json-out", str(json_out), "--calls", "2"]
        env = dict(os.environ)
        if tool in ("slt_jax", "slt_jax_peer"):
            cmd = [sys.executable, str(HERE / "slt_jax_mlp.py"), *common]
            if tool == "slt_jax_peer":
                cmd.append("--peer-work")
            env.pop("JAX_COMPILATION_CACHE_DIR", None)
            if a.caches == "cold":  # slt_jax turns jax's persistent cache on by default: not here
                env["SLT_JAX_COMPILATION_CACHE"] = "off"
            else:  # its default cache, in a folder of this run (warmed before timing)
                env["SLT_JAX_COMPILATION_CACHE"] = str(self.jax_cache)
            if a.caches == "warm":  # on even where the installed slt_jax does not default to it
                cmd += ["--compile-cache", str(self.jax_cache)]
        elif tool.startswith("canonical@"):
            cmd = [a.canonical_python, str(HERE / "canonical_mlp.py"), *common,
                   "--threads", tool.split("@")[1]]
            if a.caches == "cold":
                fresh = Path(tempfile.mkdtemp(prefix="inductor_cold_", dir=self.cache_root))
                env["TORCHINDUCTOR_CACHE_DIR"] = str(fresh / "inductor")
                env["TRITON_CACHE_DIR"] = str(fresh / "triton")
            else:
                env["TORCHINDUCTOR_CACHE_DIR"] = str(self.inductor_dir)
                env["TRITON_CACHE_DIR"] = str(self.cache_root / "triton")
        elif tool == "devinterp":
            cmd = [a.devinterp_python, str(HERE / "devinterp_mlp.py"), *common,
                   "--threads", str(a.devinterp_threads)]
            cmd[cmd.index("--calls") + 1] = str(a.devinterp_calls)
        else:
            raise ValueError(tool)
        return cmd, env

    def run(self, tool, chains, draws, tag):
        self.count += 1
        out = self.json_dir / f"{self.count:03d}_{tool}_c{chains}_d{draws}_{tag}.json"
        cmd, env = self.command(tool, chains, draws, out)
        print(f"[{self.count}] {tag}: {label(tool)} {chains} chains x {draws} draws ...", file=sys.stderr, flush=True)
        r = run_one(f"{tool} {chains}x{draws} {tag}", cmd, env, out, self.args.timeout)
        if r is not None:
            print(f"    to first λ̂ {r['to_first_result_s']:.2f} s, first call {r['first_call_s']:.2f} s, "
                  f"second call {r['second_call_s'] if r.get('second_call_s') is not None else float('nan'):.2f} s, "
                  f"λ̂ {r['llc_mean']:.2f}", file=sys.stderr, flush=True)
        return r


def med(rows, key):
    vals = [r[key] for r in rows if r.get(key) is not None]
    return (statistics.median(vals), min(vals), max(vals)) if vals else None


def fmt_med(m, digits=2):
    if m is None:
        return "—"
    v, lo, hi = m
    if lo == hi:
        return f"{v:.{digits}f}"
    return f"{v:.{digits}f} ({lo:.{digits}f}–{hi:.{digits}f})"


def ratio(peer, slt):
    return "—" if peer is None or slt is None or slt[0] <= 0 else f"{peer[0] / slt[0]:.2f}×"


METRICS = (("to_first_result_s", "to first λ̂"), ("first_call_s", "first call"), ("second_call_s", "second call"))


def add_second_rate(r):
    c, d = r["chains"], r["draws"]
    if r.get("second_sampling_s"):
        r["second_chain_steps_per_s"] = c * d / r["second_sampling_s"]
    elif r["framework"] == "devinterp" and r.get("second_call_s"):
        r["second_chain_steps_per_s"] = c * d / r["second_call_s"]


def best_variant(results, variants, c, d, key):
    """(median triple, tool) of the variant with the smallest median `key` (the peer at its best)."""
    best = None
    for v in variants:
        m = med(results.get((v, c, d), []), key)
        if m is not None and (best is None or m[0] < best[0][0]):
            best = (m, v)
    return best


def first_of(results, framework):
    return next((r for rs in results.values() for r in rs if r["framework"] == framework), None)


def report(args, results, configs, tools, load_before, load_after, elapsed_s, warmup_note):
    wd = W.describe()
    rc, rd, rs_ = first_of(results, "canonical-interp"), first_of(results, "devinterp"), first_of(results, "slt_jax")
    canon_variants = [t for t in tools if t.startswith("canonical@")]
    lines = [
        "### MLP LLC: slt_jax vs canonical-interp 0.1.5 vs devinterp 1.3.2, first and second call",
        "",
        f"Command: `{' '.join(['.venv/bin/python', 'benchmarks/run_peer_comparison.py', *sys.argv[1:]])}`",
        "",
        f"Workload: {wd['model']}, {wd['num_params']:,} params, n={wd['n']}, batch={wd['batch']}, "
        f"γ={wd['gamma']:g}, ε={wd['eps']:g}, nβ=n/log n={wd['nbeta']:.2f}, SGLD, MSE, no burn-in, "
        "every step a draw, init loss L_n(w*); every process runs two identical estimates (seeds 0, 1).",
        f"Machine: {cpu_model()}, {os.cpu_count()} cores, {mem_gib():.0f} GiB; {platform.platform()}. "
        f"slt_jax {pkg_version('slt_jax')}, jax {pkg_version('jax')}, python {platform.python_version()} "
        f"({rs_['devices'] if rs_ else 'n/a'} XLA CPU devices, chains sharded across them); "
        f"canonical-interp {rc['version'] if rc else 'n/a'}, torch {rc['torch'] if rc else 'n/a'}, "
        f"python {rc['python'] if rc else 'n/a'} (torch.compile on; torch threads as labelled); "
        f"devinterp {rd['version'] if rd else 'n/a'}, torch {rd['torch'] if rd else 'n/a'} "
        f"({args.devinterp_threads} torch thread{'s' if args.devinterp_threads != 1 else ''}). "
        f"Compilation caches: {args.caches}{warmup_note}. {args.repeats} repeat(s), tools alternating; "
        f"1-min load average before/after {load_before[0]:.2f}/{load_after[0]:.2f}; "
        f"{elapsed_s / 60:.1f} min in all.",
        "",
        "Times in seconds, median over repeats (min–max). To first λ̂: process launch → first result "
        "(interpreter, imports, compilation, sampling). Compile: slt_jax's attrs; canonical-interp: "
        "torch.compile's own account (dynamo compilation metrics); devinterp: none (eager). "
        "chain-steps/s: sampling only (slt_jax's attrs; canonical-interp: its draw loop; devinterp: "
        "the whole call), first and second call.",
        "",
        "| chains × draws | tool | to first λ̂ | first call | of which compile | second call | "
        "chain-steps/s (1st, 2nd) | λ̂ (1st call) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for c, d in configs:
        for t in tools:
            rs = results.get((t, c, d), [])
            if not rs:
                if t == "devinterp" and (c, d) not in args.devinterp_cfgs:
                    lines.append(f"| {c} × {d} | {label(t)} | not run (--devinterp-configs) | | | | | |")
                continue
            for r in rs:
                add_second_rate(r)
            sps1, sps2 = med(rs, "chain_steps_per_s"), med(rs, "second_chain_steps_per_s")
            sps = ", ".join(f"{m[0]:,.0f}" for m in (sps1, sps2) if m) or "—"
            lines.append(
                f"| {c} × {d} | {label(t)} | {fmt_med(med(rs, 'to_first_result_s'))} | "
                f"{fmt_med(med(rs, 'first_call_s'))} | {fmt_med(med(rs, 'compile_s'))} | "
                f"{fmt_med(med(rs, 'second_call_s'))} | {sps} | {fmt_med(med(rs, 'llc_mean'))} |")
    lines += [
        "",
        "slt_jax speedup over each peer (the peer's median time / slt_jax's median time; > 1: slt_jax "
        "is faster). canonical-interp is taken at its best thread setting for each column (named in "
        "brackets).",
        "",
        "| chains × draws | slt_jax settings | over | " + " | ".join(h for _, h in METRICS) + " |",
        "|---|---|---|" + "---|" * len(METRICS),
    ]
    for c, d in configs:
        for s in ("slt_jax", "slt_jax_peer"):
            srs = results.get((s, c, d), [])
            if not srs:
                continue
            setting = "defaults" if s == "slt_jax" else "peer work"
            if canon_variants and any(results.get((v, c, d)) for v in canon_variants):
                cells = []
                for key, _ in METRICS:
                    b = best_variant(results, canon_variants, c, d, key)
                    threads = b[1].split("@")[1] if b else "?"
                    cells.append(f"{ratio(b[0] if b else None, med(srs, key))} [{threads}t]"
                                 if len(canon_variants) > 1 else ratio(b[0] if b else None, med(srs, key)))
                lines.append(f"| {c} × {d} | {setting} | canonical-interp | " + " | ".join(cells) + " |")
            prs = results.get(("devinterp", c, d), [])
            if prs:
                lines.append(f"| {c} × {d} | {setting} | devinterp | " + " | ".join(
                    ratio(med(prs, key), med(srs, key)) for key, _ in METRICS) + " |")
    lines += [
        "",
        "Work per step: canonical-interp and devinterp record the pre-step minibatch loss of each chain "
        "and nothing else; slt_jax 'peer work' does the same (diagnostics=(), draw_diagnostics=False, "
        "eval_every=None); slt_jax 'defaults' adds the full-data loss every ceil(n/B) draws, a MALA "
        "probe and per-draw gradient/distance/weight/noise norms. canonical-interp compiles its vmapped "
        "grad function with torch.compile inside each call (within one process the second call reuses "
        "dynamo's cache); its SGLD update (`sgld_step`, @torch.compile) graph-breaks on `Tensor.set_` "
        "and runs eagerly. devinterp is torch eager, chains one after another.",
    ]
    if "devinterp" in tools and any((c, d) not in args.devinterp_cfgs for c, d in configs):
        lines.append(f"devinterp ran only at {', '.join(f'{c} × {d}' for c, d in args.devinterp_cfgs) or 'none'} "
                     "(its chains run one after another in Python: ~3 min per call at 256 × 1,000 at its "
                     "~1.5k chain-steps/s; --devinterp-configs all runs it everywhere).")
    if load_before[0] > 0.5 * (os.cpu_count() or 1) or load_after[0] > 1.5 * (os.cpu_count() or 1):
        lines.append("WARNING: the machine was busy (1-min load average above half the cores before, or "
                     "well above the core count after, the runs); timings are unreliable.")
    return "\n".join(lines) + "\n"


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--configs", nargs="+", default=None, help="CHAINSxDRAWS ... (default: 16x2000 256x1000)")
    p.add_argument("--repeats", type=int, default=None, help="rounds of all tools (default 3)")
    p.add_argument("--tools", nargs="+", choices=TOOLS, default=list(TOOLS))
    p.add_argument("--devinterp-configs", nargs="*", default=None,
                   help="configurations devinterp runs at (default: those with ≤ 16 chains); 'all' for every one")
    p.add_argument("--devinterp-calls", type=int, default=2, help="estimates per devinterp process (eager: "
                   "the second costs the same as the first)")
    p.add_argument("--canonical-python", default=str(REPO / ".venv-canonical" / "bin" / "python"))
    p.add_argument("--devinterp-python", default=str(REPO / ".venv-bench" / "bin" / "python"))
    p.add_argument("--canonical-threads", type=int, nargs="+", default=None,
                   help="torch.set_num_threads for canonical-interp; several values run it once per value "
                        "(default: 1 and all cores; on the 2-core VM 2 threads collapse when the machine is busy)")
    p.add_argument("--devinterp-threads", type=int, default=1,
                   help="torch threads for devinterp (default 1: its fastest setting on this model)")
    p.add_argument("--caches", choices=["default", "cold", "warm"], default="default")
    p.add_argument("--timeout", type=int, default=3600, help="seconds per process")
    p.add_argument("--quick", action="store_true",
                   help="tiny settings to check the plumbing: 4x50 and 8x20, 1 repeat, devinterp everywhere "
                        "(~2 min with warm-ups)")
    p.add_argument("--out-md", default=None, help="append the markdown report to this file")
    p.add_argument("--json-dir", default=None, help="keep the per-run JSONs here (default: a temp dir)")
    args = p.parse_args()
    if args.quick:  # explicit --configs / --repeats still win
        args.configs = args.configs or ["4x50", "8x20"]
        args.repeats = args.repeats or 1
        if args.devinterp_configs is None:
            args.devinterp_configs = ["all"]
    args.configs = args.configs or ["16x2000", "256x1000"]
    args.repeats = args.repeats or 3
    configs = [parse_config(s) for s in args.configs]
    if args.devinterp_configs is None:
        args.devinterp_cfgs = [cd for cd in configs if cd[0] <= 16]
    elif args.devinterp_configs == ["all"]:
        args.devinterp_cfgs = list(configs)
    else:
        args.devinterp_cfgs = [parse_config(s) for s in args.devinterp_configs]
    threads = args.canonical_threads or sorted({1, os.cpu_count() or 1})

    tools = []
    for t in args.tools:
        py = {"canonical": args.canonical_python, "devinterp": args.devinterp_python}.get(t)
        if py and not Path(py).exists():
            print(f"{t}: {py} missing (run benchmarks/setup_peers.sh): skipping {t}", file=sys.stderr)
            continue
        tools += [f"canonical@{n}" for n in threads] if t == "canonical" else [t]

    json_dir = Path(args.json_dir or tempfile.mkdtemp(prefix="peer_bench_"))
    json_dir.mkdir(parents=True, exist_ok=True)
    runner = Runner(args, json_dir)
    t_all = time.perf_counter()
    load_before = os.getloadavg()

    warmup_note = ""
    if args.caches in ("default", "warm"):  # fill the persistent caches before timing anything
        warm_tools = [t for t in tools if t.startswith(("canonical@", "slt_jax"))]
        for c, d in configs:
            for t in warm_tools:
                runner.run(t, c, d, "warmup")
        if warm_tools:
            warmup_note = (" (persistent caches warmed by one untimed run of "
                           f"{', '.join(label(t) for t in warm_tools)} per configuration)")

    results = {}
    for rep in range(args.repeats):
        for c, d in configs:
            for t in tools:
                if t == "devinterp" and (c, d) not in args.devinterp_cfgs:
                    continue
                r = runner.run(t, c, d, f"rep{rep}")
                if r is not None:
                    results.setdefault((t, c, d), []).append(r)
    load_after = os.getloadavg()
    elapsed = time.perf_counter() - t_all

    md = report(args, results, configs, tools, load_before, load_after, elapsed, warmup_note)
    print(md)
    summary = {f"{t}_c{c}_d{d}": rs for (t, c, d), rs in results.items()}
    (json_dir / "summary.json").write_text(json.dumps(summary, indent=1))
    print(f"(per-run JSONs and summary.json in {json_dir})", file=sys.stderr)
    shutil.rmtree(runner.cache_root, ignore_errors=True)
    if args.out_md:
        with open(args.out_md, "a") as f:
            f.write(md + "\n")


if __name__ == "__main__":
    main()
