"""Throughput scaling of slt_jax against the machine's practical dense-matmul rate.

    .venv/bin/python benchmarks/scaling.py --out-md benchmarks/results_scaling.md
    .venv/bin/python benchmarks/scaling.py --quick          # seconds-long smoke run

Measures, in one process:
1. the practical float32 dense-matmul FLOP/s: a jitted `a @ b` for square sizes, timed with
   block_until_ready after warm-up (best of several), on one device and on all devices at
   once (one matmul per device via shard_map). Chain runs spread over all devices are
   compared with the all-device rate.
2. scaling with chains: the MLP workload of workload_mlp.py (1,012 params, batch 100) at
   1 ... 1024 chains with `eval_every=None` (pure sampling): chain-steps/s excluding compile,
   compile time, achieved FLOP/s and its fraction of the matmul rate.
3. scaling with model size: noise-free deep linear networks (truth.make_dln) from ~1e3 to
   ~1e7 parameters at batch 500 and a few chains, same columns.

FLOPs per chain-step are the dense-layer FLOPs of one SGLD step: forward 2·B·Σ d_in·d_out,
backward ≈ 2 × forward, so 6·B·Σ d_in·d_out (what a matmul-bound step must execute); the
compiled cost analysis of one single-chain step is printed next to it as a cross-check.

Two references run the same work outside slt_jax (same device split, one jitted scan of
vmapped steps): "grad only" (minibatch gather + value_and_grad; the floor an SGLD engine
cannot beat) and "minimal SGLD" (+ Gaussian noise and the Langevin update). Comparing them
with slt_jax shows where time goes beyond the matmuls.

On a CPU the cores are exposed as XLA devices (slt_jax.hostdevices.expose_cpu_cores) before
jax starts; on a GPU/TPU machine this is skipped.
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import os
import platform
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

MLP_CHAINS = (1, 4, 16, 64, 256, 1024)
# Deep linear networks with 4 layers of equal width H: 4·H² parameters.
DLN_WIDTHS = (16, 50, 160, 500, 1000, 1600)
TARGET_MLP_FRACTION, TARGET_MLP_CHAINS = 0.15, 256
TARGET_DLN_FRACTION, TARGET_DLN_PARAMS = 0.60, 100_000


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="seconds-long smoke run (few sizes, short timings)")
    p.add_argument("--out-md", type=Path, help="write the markdown section here")
    p.add_argument("--target-s", type=float, default=None,
                   help="sampling seconds to aim for per measurement (default 3; --quick 0.3)")
    p.add_argument("--matmul-sizes", type=int, nargs="+", default=None,
                   help="square matmul sizes (default CPU 256..2048, GPU 256..8192)")
    p.add_argument("--mlp-chains", type=int, nargs="+", default=None, help=f"default {MLP_CHAINS}")
    p.add_argument("--dln-widths", type=int, nargs="+", default=None,
                   help=f"hidden width H of a 4-layer DLN (H,H,H,H,H) (default {DLN_WIDTHS})")
    p.add_argument("--dln-chains", type=int, default=4)
    p.add_argument("--dln-batch", type=int, default=500)
    p.add_argument("--no-reference", action="store_true", help="skip the grad-only / minimal-SGLD reference scans")
    p.add_argument("--cpu-devices", type=int, default=-1,
                   help="CPU cores to expose as XLA devices: -1 = all usable cores, 0 = do not expose")
    return p.parse_args(argv)


def _accelerator_expected() -> bool:
    """Decide before jax starts whether the default backend will be an accelerator."""
    platforms = os.environ.get("JAX_PLATFORMS", "").lower()
    if platforms:
        return not platforms.startswith("cpu")
    return any(importlib.util.find_spec(m) is not None
               for m in ("jax_cuda12_plugin", "jax_cuda13_plugin", "jax_rocm60_plugin", "libtpu"))


ARGS = parse_args()
LOAD_BEFORE = os.getloadavg()
EXPOSED = None
if ARGS.cpu_devices != 0 and not _accelerator_expected():
    from slt_jax.hostdevices import expose_cpu_cores  # noqa: E402  (before jax starts)

    EXPOSED = expose_cpu_cores(None if ARGS.cpu_devices < 0 else ARGS.cpu_devices)

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from jax.sharding import NamedSharding, PartitionSpec as P  # noqa: E402

import slt_jax  # noqa: E402
import workload_mlp as W  # noqa: E402
from slt_jax.truth import make_dln  # noqa: E402


def log(*a):
    print(*a, flush=True)


# ------------------------------------------------------------------------------ matmul


def _best_time(fn, args, min_time: float, repeats: int) -> float:
    """Best seconds per call: warm-up, then `repeats` timings of k back-to-back calls."""
    jax.block_until_ready(fn(*args))
    t0 = time.perf_counter()
    jax.block_until_ready(fn(*args))
    one = max(time.perf_counter() - t0, 1e-6)
    k = max(1, math.ceil(min_time / one))
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = None
        for _ in range(k):
            out = fn(*args)
        jax.block_until_ready(out)
        best = min(best, (time.perf_counter() - t0) / k)
    return best


def measure_matmul(sizes, devices, min_time, repeats):
    """Rows (n, per-device FLOP/s, all-device FLOP/s). float32, default matmul precision."""
    rows = []
    mesh = jax.sharding.Mesh(np.array(devices), ("d",), axis_types=(jax.sharding.AxisType.Auto,))
    single = jax.jit(lambda a, b: a @ b)
    per_dev = jax.jit(jax.shard_map(lambda a, b: (a[0] @ b[0])[None], mesh=mesh,
                                    in_specs=(P("d"), P("d")), out_specs=P("d")))
    for n in sizes:
        key = jax.random.key(n)
        a = jax.device_put(jax.random.normal(key, (n, n), jnp.float32), devices[0])
        b = jax.device_put(jax.random.normal(jax.random.fold_in(key, 1), (n, n), jnp.float32), devices[0])
        t1 = _best_time(single, (a, b), min_time, repeats)
        flops = 2.0 * n**3
        if len(devices) > 1:
            sh = NamedSharding(mesh, P("d"))
            A = jax.device_put(jnp.broadcast_to(a, (len(devices), n, n)), sh)
            B = jax.device_put(jnp.broadcast_to(b, (len(devices), n, n)), sh)
            tall = _best_time(per_dev, (A, B), min_time, repeats)
            total = len(devices) * flops / tall
        else:
            total = flops / t1
        rows.append((n, flops / t1, total))
        log(f"  matmul {n:5d}: one device {flops / t1 / 1e9:8.1f} GFLOP/s   all {len(devices)} devices "
            f"{total / 1e9:8.1f} GFLOP/s")
    return rows


def measure_normal(devices, size, min_time, repeats):
    """Seconds per float32 standard normal from jax.random.normal (default key implementation):
    (one device, all devices at once). SGLD draws one per parameter per chain-step."""
    mesh = jax.sharding.Mesh(np.array(devices), ("d",), axis_types=(jax.sharding.AxisType.Auto,))
    single = jax.jit(lambda k: jax.random.normal(k, (size,), jnp.float32))
    key = jax.device_put(jax.random.key(0), devices[0])
    t1 = _best_time(single, (key,), min_time, repeats) / size
    if len(devices) == 1:
        return t1, t1
    per_dev = jax.jit(jax.shard_map(
        lambda k: jax.random.normal(jax.random.fold_in(k[0], jax.lax.axis_index("d")), (1, size), jnp.float32),
        mesh=mesh, in_specs=P("d"), out_specs=P("d")))
    keys = jax.device_put(jax.random.split(jax.random.key(0), len(devices)), NamedSharding(mesh, P("d")))
    tall = _best_time(per_dev, (keys,), min_time, repeats) / (size * len(devices))
    return t1, tall


# ------------------------------------------------------------------------------ FLOPs


def dense_flops(batch: int, shapes) -> float:
    """6·B·Σ d_in·d_out: forward 2·B·Σ, backward ≈ 2 × forward (dW and dX per layer)."""
    return 6.0 * batch * sum(a * b for a, b in shapes)


def cost_analysis_flops(loss_fn, params, data, batch):
    """FLOPs of ONE single-chain minimal SGLD step from XLA's cost analysis (None if unavailable)."""
    step = _one_chain_step(loss_fn, data, batch, "sgld", params)
    try:
        args = (params, jax.random.key(0), jnp.int32(0))
        ca = jax.jit(step).lower(*args).compile().cost_analysis()
        ca = ca[0] if isinstance(ca, (list, tuple)) else ca
        return float(ca["flops"]) if ca and "flops" in ca else None
    except Exception as e:  # noqa: BLE001 - a cross-check, not the measurement
        log(f"  (cost analysis unavailable: {type(e).__name__}: {e})")
        return None


# ------------------------------------------------------------------------------ runs


def _one_chain_step(loss_fn, data, batch, mode, center, eps=1e-6, nbeta=100.0, gamma=100.0):
    n = jax.tree.leaves(data)[0].shape[0]

    def step(pos, key, s):
        k_batch, k_noise = jax.random.split(jax.random.fold_in(key, s))
        idx = jax.random.randint(k_batch, (batch,), 0, n)
        mb = jax.tree.map(lambda x: x[idx], data)
        loss, g = jax.value_and_grad(lambda p: jnp.mean(loss_fn(p, mb)))(pos)
        if mode == "grad":  # keep the gradient live, nothing else
            new = jax.tree.map(lambda w, gi: w - 1e-30 * gi, pos, g)
        else:
            leaves, tdef = jax.tree.flatten(pos)
            keys = jax.random.split(k_noise, len(leaves))
            noise = tdef.unflatten([jax.random.normal(kk, x.shape, x.dtype) for kk, x in zip(keys, leaves)])
            new = jax.tree.map(
                lambda w, gi, c, xi: w - 0.5 * eps * (nbeta * gi + gamma * (w - c)) + math.sqrt(eps) * xi,
                pos, g, center, noise,
            )
        return new, loss

    return step


def reference_rate(loss_fn, params, data, batch, chains, steps, mode, devices):
    """chain-steps/s of a bare jitted scan of vmapped steps (chains split over `devices`)."""
    padded = math.ceil(chains / len(devices)) * len(devices)
    step = jax.vmap(_one_chain_step(loss_fn, data, batch, mode, params), in_axes=(0, 0, None))

    def run(pos, keys, first):
        def body(p, s):
            return step(p, keys, s)

        pos, losses = jax.lax.scan(body, pos, first + jnp.arange(steps))
        return pos, losses[-1]

    pos = jax.tree.map(lambda x: jnp.broadcast_to(x, (padded,) + x.shape), params)
    keys = jax.vmap(lambda c: jax.random.fold_in(jax.random.key(0), c))(jnp.arange(padded, dtype=jnp.uint32))
    if len(devices) > 1:
        mesh = jax.sharding.Mesh(np.array(devices), ("chain",), axis_types=(jax.sharding.AxisType.Auto,))
        ch, rep = NamedSharding(mesh, P("chain")), NamedSharding(mesh, P())
        pos, keys = jax.device_put((pos, keys), ch)
        run_j = jax.jit(run, in_shardings=(ch, ch, rep), out_shardings=(ch, ch), donate_argnums=0)
    else:
        pos, keys = jax.device_put((pos, keys), devices[0])
        run_j = jax.jit(run, donate_argnums=0)
    pos = jax.tree.map(jnp.copy, pos)
    exe = run_j.lower(pos, keys, jnp.int32(0)).compile()
    pos, _ = exe(pos, keys, jnp.int32(0))  # warm-up
    jax.block_until_ready(pos)
    t0 = time.perf_counter()
    pos, _ = exe(pos, keys, jnp.int32(steps))
    jax.block_until_ready(pos)
    return chains * steps / (time.perf_counter() - t0)


def slt_rate(loss_fn, params, data, batch, chains, target_s, guess_rate, **kw):
    """Run estimate_llc (eval_every=None) for about target_s of sampling. Returns attrs dict."""
    rate = guess_rate
    for _attempt in range(3):
        draws = int(min(max(math.ceil(target_s * rate / chains), 3), 1_000_000))
        r = slt_jax.estimate_llc(
            loss_fn, params, data, batch_size=batch, num_chains=chains, num_draws=draws,
            eval_every=None, progress=False, seed=0, **kw,
        )
        a = r.attrs
        out = {"draws": draws, "compile_s": float(a["compile_s"]), "sampling_s": float(a["sampling_s"]),
               "rate": float(a["chain_steps_per_s"]), "devices": int(a["num_devices"]),
               "padded": int(a["padded_chains"]), "llc": float(r.llc_mean)}
        if out["sampling_s"] >= 0.4 * target_s or draws >= 1_000_000:
            return out
        rate = out["rate"] * 1.1  # too short to trust: rerun sized from what we just saw
    return out


# ------------------------------------------------------------------------------ main


def mlp_loss(params, batch):
    x, y = batch
    pred = jnp.tanh(x @ params["W1"] + params["b1"]) @ params["W2"] + params["b2"]
    return jnp.mean((pred - y) ** 2, axis=-1)


def machine_description(backend, devices):
    if backend == "cpu":
        model = "unknown CPU"
        try:
            for line in Path("/proc/cpuinfo").read_text().splitlines():
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
        except OSError:
            pass
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        mem = ""
        try:
            kb = int(next(l for l in Path("/proc/meminfo").read_text().splitlines() if l.startswith("MemTotal")).split()[1])
            mem = f", {kb / 2**20:.0f} GiB RAM"
        except (OSError, StopIteration, ValueError):
            pass
        return f"{model}, {cores} cores{mem}; {len(devices)} XLA CPU devices"
    kinds = sorted({d.device_kind for d in devices})
    return f"{len(devices)} × {', '.join(kinds)} ({backend})"


def fmt_int(x):
    return f"{x:,.0f}"


def fmt_g(x):
    return f"{x / 1e9:,.1f}"


def fmt_pct(x):
    return f"{100 * x:.1f}%"


def main():
    args = ARGS
    quick = args.quick
    backend = jax.default_backend()
    devices = jax.devices()
    on_cpu = backend == "cpu"
    target_s = args.target_s or (0.2 if quick else 3.0)
    mm_sizes = args.matmul_sizes or (
        ([512] if quick else [256, 512, 1024, 1536, 2048]) if on_cpu
        else ([1024, 4096] if quick else [256, 512, 1024, 2048, 4096, 8192])
    )
    mlp_chains = args.mlp_chains or ((16,) if quick else MLP_CHAINS)
    dln_widths = args.dln_widths or ((64,) if quick else DLN_WIDTHS)
    command = "python " + " ".join([os.path.relpath(__file__, HERE.parent)] + sys.argv[1:])
    t_start = time.perf_counter()

    log(f"backend {backend}, {len(devices)} devices ({devices[0].device_kind}); jax {jax.__version__}; "
        f"load average {LOAD_BEFORE[0]:.2f}")

    # 1. matmul
    log("1. practical float32 matmul rate")
    mm = measure_matmul(mm_sizes, devices, 0.05 if quick else 0.3, 3 if quick else 5)
    best_one = max(r[1] for r in mm)
    best_all = max(r[2] for r in mm)
    limit = best_all  # chain runs use every device
    log(f"  limit (all {len(devices)} devices): {fmt_g(limit)} GFLOP/s; one device {fmt_g(best_one)} GFLOP/s")
    normal_one, normal_all = measure_normal(devices, 1 << (20 if quick else (22 if on_cpu else 26)),
                                            0.05 if quick else 0.3, 3 if quick else 5)
    log(f"  jax.random.normal: one device {normal_one * 1e9:.2f} ns/value; all devices {normal_all * 1e9:.2f} ns/value")

    # 2. chains: MLP workload
    log("2. scaling with chains: MLP workload")
    w = W.make_workload()
    mlp_params = {k: jnp.asarray(v) for k, v in w["params"].items()}
    mlp_data = (jnp.asarray(w["x"]), jnp.asarray(w["y"]))
    mlp_shapes = [(W.D_IN, W.D_HIDDEN), (W.D_HIDDEN, W.D_OUT)]
    mlp_step_flops = dense_flops(W.BATCH, mlp_shapes)
    mlp_ca = cost_analysis_flops(mlp_loss, mlp_params, mlp_data, W.BATCH)
    log(f"  FLOPs/chain-step: formula {fmt_int(mlp_step_flops)}; cost analysis of one step "
        f"{fmt_int(mlp_ca) if mlp_ca else 'n/a'}")
    mlp_rows = []
    mlp_bound = (mlp_step_flops / limit) / (mlp_step_flops / limit + W.NUM_PARAMS * normal_all)
    guess = 3000.0
    for c in mlp_chains:
        res = slt_rate(mlp_loss, mlp_params, mlp_data, W.BATCH, c, target_s, guess,
                       step_size=W.EPS, localization=W.GAMMA, nbeta=W.NBETA)
        guess = max(guess, res["rate"])
        steps = res["draws"]
        ref_g = ref_s = None
        if not args.no_reference:
            ref_g = reference_rate(mlp_loss, mlp_params, mlp_data, W.BATCH, c, steps, "grad", devices)
            ref_s = reference_rate(mlp_loss, mlp_params, mlp_data, W.BATCH, c, steps, "sgld", devices)
        achieved = res["rate"] * mlp_step_flops
        row = dict(chains=c, **res, flops=achieved, frac=achieved / limit, ref_grad=ref_g, ref_sgld=ref_s)
        mlp_rows.append(row)
        log(f"  {c:5d} chains: {fmt_int(res['rate']):>10} chain-steps/s  compile {res['compile_s']:.2f} s  "
            f"sampling {res['sampling_s']:.2f} s ({steps} steps)  {fmt_g(achieved)} GFLOP/s = "
            f"{fmt_pct(achieved / limit)}" + (f"  [grad-only {fmt_int(ref_g)}, minimal SGLD {fmt_int(ref_s)}]"
                                              if ref_g else ""))

    # 3. model size: DLN
    log("3. scaling with model size: deep linear networks")
    dln_rows = []
    for h in dln_widths:
        widths = (h,) * 5
        prob = make_dln(0, widths, 0, num_samples=max(1000, args.dln_batch), noise_std=0.0)
        shapes = list(zip(widths[:-1], widths[1:]))
        nparams = sum(a * b for a, b in shapes)
        step_flops = dense_flops(args.dln_batch, shapes)
        ca = cost_analysis_flops(prob.loss_fn, prob.params, prob.data, args.dln_batch)
        guess_rate = 0.3 * limit / step_flops
        res = slt_rate(prob.loss_fn, prob.params, prob.data, args.dln_batch, args.dln_chains, target_s,
                       guess_rate, step_size=1e-7, localization=100.0)
        ref_g = ref_s = None
        if not args.no_reference:
            ref_g = reference_rate(prob.loss_fn, prob.params, prob.data, args.dln_batch, args.dln_chains,
                                   res["draws"], "grad", devices)
            ref_s = reference_rate(prob.loss_fn, prob.params, prob.data, args.dln_batch, args.dln_chains,
                                   res["draws"], "sgld", devices)
        achieved = res["rate"] * step_flops
        # Time per chain-step if the machine did only the matmuls at the limit and the noise at the
        # measured normal rate: the best an SGLD step built from these two can do.
        bound = (step_flops / limit) / (step_flops / limit + nparams * normal_all)
        row = dict(widths=widths, params=nparams, step_flops=step_flops, ca_flops=ca, **res, flops=achieved,
                   frac=achieved / limit, ref_grad=ref_g, ref_sgld=ref_s, bound=bound)
        dln_rows.append(row)
        log(f"  H={h:5d} ({fmt_int(nparams):>10} params): {res['rate']:10.1f} chain-steps/s  compile "
            f"{res['compile_s']:.2f} s  sampling {res['sampling_s']:.2f} s ({res['draws']} steps)  "
            f"{fmt_g(achieved)} GFLOP/s = {fmt_pct(achieved / limit)}"
            + (f"  [grad-only {ref_g:.1f} ({fmt_pct(ref_g * step_flops / limit)}), minimal SGLD {ref_s:.1f} "
               f"({fmt_pct(ref_s * step_flops / limit)})]" if ref_g else "")
            + f"  matmul+noise bound {fmt_pct(bound)}"
            + (f"  cost analysis {ca / step_flops:.3f}× formula" if ca else ""))

    load_after = os.getloadavg()
    total_s = time.perf_counter() - t_start
    log(f"done in {total_s:.0f} s; load average after {load_after[0]:.2f}")

    md = render_markdown(
        command=command, backend=backend, devices=devices, mm=mm, best_one=best_one, best_all=best_all,
        limit=limit, normal=(normal_one, normal_all), mlp_rows=mlp_rows, mlp_bound=mlp_bound, mlp_step_flops=mlp_step_flops, mlp_ca=mlp_ca, dln_rows=dln_rows,
        dln_chains=args.dln_chains, dln_batch=args.dln_batch, target_s=target_s, total_s=total_s,
        load_after=load_after, quick=quick,
    )
    print()
    print(md)
    if args.out_md:
        args.out_md.write_text(md)
        log(f"wrote {args.out_md}")


def render_markdown(*, command, backend, devices, mm, best_one, best_all, limit, normal, mlp_rows, mlp_bound, mlp_step_flops,
                    mlp_ca, dln_rows, dln_chains, dln_batch, target_s, total_s, load_after, quick):
    nd = len(devices)
    L = []
    L.append("## Scaling: chains and model size against the measured matmul rate" + (" (--quick)" if quick else ""))
    L.append("")
    L.append("Command:")
    L.append("")
    L.append(f"    {command}")
    L.append("")
    L.append(f"Machine: {machine_description(backend, devices)}; python {platform.python_version()}; "
             f"jax {jax.__version__}; slt_jax {slt_jax.__version__}; backend {backend}"
             + (f" (cores exposed as devices: {EXPOSED})" if EXPOSED else "") + ". "
             f"Load average (1 min) before/after: {LOAD_BEFORE[0]:.2f}/{load_after[0]:.2f}. "
             f"Whole run: {total_s:.0f} s. Date: {time.strftime('%Y-%m-%d')}.")
    L.append("")
    L.append("### 1. Practical float32 matmul rate")
    L.append("")
    L.append("Jitted `a @ b` (n×n, float32, default precision), warm, block_until_ready, best of several "
             "timings of back-to-back calls. \"All devices\": one n×n matmul on every device at once "
             "(shard_map), total rate.")
    L.append("")
    L.append(f"| n | one device GFLOP/s | all {nd} devices GFLOP/s |")
    L.append("|---|---|---|")
    for n, one, alld in mm:
        L.append(f"| {n} | {fmt_g(one)} | {fmt_g(alld)} |")
    L.append("")
    L.append(f"Practical limit used below: **{fmt_g(limit)} GFLOP/s**, the best all-{nd}-device rate "
             f"(every chain run spreads its chains over all {nd} devices). Best one-device rate: "
             f"{fmt_g(best_one)} GFLOP/s.")
    L.append("")
    L.append(f"Gaussian noise (`jax.random.normal`, float32, default key implementation "
             f"{jax.config.jax_default_prng_impl}): {normal[0] * 1e9:.2f} ns/value on one device, "
             f"{normal[1] * 1e9:.2f} ns/value with all {nd} devices generating at once. SGLD draws one per "
             f"parameter per chain-step; a matmul-bound step does 6·B FLOPs per parameter "
             f"({6 * 500 / limit * 1e9:.1f} ns per parameter at B = 500 and the limit above).")
    L.append("")
    L.append("### 2. Scaling with chains: MLP workload (workload_mlp.py)")
    L.append("")
    L.append(f"MLP 16→48→4 (tanh), 1,012 params, n = 1,000, batch {W.BATCH}, SGLD, ε = {W.EPS}, "
             f"γ = {W.GAMMA}, nβ = {W.NBETA:.2f}; `estimate_llc(..., eval_every=None)` (no full-data "
             f"evaluations: pure sampling), chains over all {nd} devices, draws chosen for ≈ {target_s:g} s "
             f"of sampling. FLOPs per chain-step = 6·B·(16·48 + 48·4) = {fmt_int(mlp_step_flops)} "
             f"(forward 2·B·Σ d_in·d_out, backward ≈ 2× forward); XLA's cost analysis of one single-chain "
             f"step (gather, value_and_grad, noise, update) gives "
             f"{fmt_int(mlp_ca) if mlp_ca else 'n/a'}. Fraction = achieved FLOP/s ÷ {fmt_g(limit)} GFLOP/s. "
             f"Matmul+noise bound (a step costing only its matmul FLOPs at the limit plus 1,012 normals at the "
             f"measured rate): {fmt_pct(mlp_bound)}.")
    L.append("")
    has_ref = any(r["ref_grad"] for r in mlp_rows)
    head = "| chains | steps/chain | chain-steps/s | compile s | sampling s | achieved GFLOP/s | fraction of matmul |"
    sep = "|---|---|---|---|---|---|---|"
    if has_ref:
        head += " grad-only ref chain-steps/s | minimal-SGLD ref chain-steps/s |"
        sep += "---|---|"
    L.append(head)
    L.append(sep)
    for r in mlp_rows:
        line = (f"| {r['chains']} | {r['draws']} | {fmt_int(r['rate'])} | {r['compile_s']:.2f} | "
                f"{r['sampling_s']:.2f} | {r['flops'] / 1e9:.2f} | {fmt_pct(r['frac'])} |")
        if has_ref:
            line += f" {fmt_int(r['ref_grad'])} | {fmt_int(r['ref_sgld'])} |"
        L.append(line)
    L.append("")
    if any(r["padded"] != r["chains"] for r in mlp_rows):
        L.append(f"(Chain counts below a multiple of {nd} are padded to one; the padding chains are computed "
                 "but not counted.)")
        L.append("")
    L.append("### 3. Scaling with model size: deep linear networks")
    L.append("")
    L.append(f"`truth.make_dln(0, (H,)*5, rank=0, noise_std=0.0)`: 4 layers H×H (4·H² params), n = "
             f"{max(1000, dln_batch)}, batch {dln_batch}, {dln_chains} chains over {nd} devices, "
             f"`estimate_llc(..., eval_every=None)`, steps chosen for ≈ {target_s:g} s of sampling. "
             f"FLOPs per chain-step = 6·B·Σ H_(i-1)·H_i (exact backward needs 2·B·H_0·H_1 less, −1/12 here); "
             f"the cost-analysis column is XLA's count for one single-chain SGLD step ÷ the formula.")
    L.append("")
    has_ref = any(r["ref_grad"] for r in dln_rows)
    head = ("| widths | params | FLOPs/chain-step | cost analysis ÷ formula | steps | chain-steps/s | compile s | "
            "sampling s | achieved GFLOP/s | fraction of matmul | matmul+noise bound |")
    sep = "|---|---|---|---|---|---|---|---|---|---|---|"
    if has_ref:
        head += " grad-only ref (fraction) | minimal-SGLD ref (fraction) |"
        sep += "---|---|"
    L.append(head)
    L.append(sep)
    for r in dln_rows:
        ca = f"{r['ca_flops'] / r['step_flops']:.3f}" if r["ca_flops"] else "n/a"
        line = (f"| {'×'.join(map(str, r['widths']))} | {fmt_int(r['params'])} | {r['step_flops']:.3g} | {ca} | "
                f"{r['draws']} | {r['rate']:,.1f} | {r['compile_s']:.2f} | {r['sampling_s']:.2f} | "
                f"{r['flops'] / 1e9:.1f} | {fmt_pct(r['frac'])} | {fmt_pct(r['bound'])} |")
        if has_ref:
            line += (f" {r['ref_grad']:,.1f} ({fmt_pct(r['ref_grad'] * r['step_flops'] / limit)}) |"
                     f" {r['ref_sgld']:,.1f} ({fmt_pct(r['ref_sgld'] * r['step_flops'] / limit)}) |")
        L.append(line)
    L.append("")
    L.append("References (same chains, same device split, same number of steps, one jitted `lax.scan` of a "
             "vmapped step, outside slt_jax): *grad-only* = minibatch gather + value_and_grad; *minimal SGLD* = "
             "that + Gaussian noise (`jax.random.normal`) + the Langevin update. *matmul+noise bound*: the "
             "fraction of the matmul limit a step reaches if it costs exactly its matmul FLOPs at the limit plus "
             "one normal per parameter at the measured all-device rate (nothing else).")
    L.append("")
    L.append("### Targets")
    L.append("")
    big = [r for r in mlp_rows if r["chains"] >= TARGET_MLP_CHAINS]
    if big:
        best = max(r["frac"] for r in big)
        ok = all(r["frac"] >= TARGET_MLP_FRACTION for r in big)
        L.append(f"- MLP workload at ≥ {TARGET_MLP_CHAINS} chains: ≥ {fmt_pct(TARGET_MLP_FRACTION)} of the "
                 f"matmul rate wanted; measured " + ", ".join(f"{fmt_pct(r['frac'])} ({r['chains']} chains)" for r in big)
                 + f" → **{'met' if ok else 'not met'}** (best {fmt_pct(best)}).")
    else:
        L.append(f"- MLP workload at ≥ {TARGET_MLP_CHAINS} chains: not measured in this run.")
    big = [r for r in dln_rows if r["params"] >= TARGET_DLN_PARAMS]
    if big:
        ok = all(r["frac"] >= TARGET_DLN_FRACTION for r in big)
        L.append(f"- DLNs with ≥ {TARGET_DLN_PARAMS:,} params: ≥ {fmt_pct(TARGET_DLN_FRACTION)} wanted; measured "
                 + ", ".join(f"{fmt_pct(r['frac'])} ({fmt_int(r['params'])})" for r in big)
                 + f" → **{'met' if ok else 'not met'}**"
                 + ("" if ok else f" (met for {sum(r['frac'] >= TARGET_DLN_FRACTION for r in big)} of {len(big)} sizes)")
                 + ".")
    else:
        L.append(f"- DLNs with ≥ {TARGET_DLN_PARAMS:,} params: not measured in this run.")
    L.append("")
    return "\n".join(L)


if __name__ == "__main__":
    main()
