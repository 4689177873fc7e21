"""Throughput scaling of slt_jax against the machine's practical dense-matmul rate.

    .venv/bin/python benchmarks/scaling.py --out-md benchmarks/results_scaling.md
    .venv/bin/python benchmarks/scaling.py --quick          # smoke run (well under a minute)

Measures, in one process:
1. the practical float32 dense-matmul FLOP/s: a jitted `a @ b` for square sizes, timed with
   block_until_ready after warm-up (best of several), on one device and on all devices at
   once (one matmul per device via shard_map). Chain runs spread over all devices are
   compared with the all-device rate. Also the cost of Gaussian noise (jax.random.normal),
   which SGLD draws once per parameter per chain-step.
2. scaling with chains: the MLP workload of workload_mlp.py (1,012 params, batch 100) at
   1 ... 1024 chains with `eval_every=None` (pure sampling): chain-steps/s excluding compile,
   compile time, achieved FLOP/s and its fraction of the matmul rate.
3. scaling with model size: noise-free deep linear networks (truth.make_dln, rank 0) from
   ~1e3 to ~1e7 parameters at batch 500 and a few chains, same columns.

FLOPs per chain-step are the dense-layer FLOPs of one SGLD step: forward 2·B·Σ d_in·d_out,
backward ≈ 2 × forward, so 6·B·Σ d_in·d_out (what a matmul-bound step must execute); the
compiled cost analysis of ONE single-chain step is reported next to it as a cross-check (the
cost analysis of a whole scan would count its body once).

slt_jax runs are repeated (--repeats, each a fresh estimate_llc call with its own compile);
the table shows the best and the range. References, unless --no-reference:
- "loss only": estimate_llc(..., draw_diagnostics=False), which records the loss alone per draw
  instead of also the gradient, distance, weight and noise norms (best of 2 runs);
- "grad only": a bare jitted scan of vmapped steps, same chains and device split, doing the
  minibatch gather + value_and_grad only (the floor any SGLD engine sits above);
- "minimal SGLD": the same bare scan plus Gaussian noise and the Langevin update.

On a CPU the cores are exposed as XLA devices (slt_jax.hostdevices.expose_cpu_cores) before
jax starts; on a GPU/TPU machine this is skipped and the accelerators are used.
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
    p.add_argument("--quick", action="store_true", help="smoke run: one size per section, short timings")
    p.add_argument("--out-md", type=Path, help="write the markdown section here")
    p.add_argument("--target-s", type=float, default=None,
                   help="sampling seconds to aim for per measurement (default 2.5; --quick 0.2)")
    p.add_argument("--repeats", type=int, default=None,
                   help="estimate_llc runs per point, best reported (default 2; --quick 1)")
    p.add_argument("--matmul-sizes", type=int, nargs="+", default=None,
                   help="square matmul sizes (default CPU 256..2048, GPU 256..8192)")
    p.add_argument("--mlp-chains", type=int, nargs="+", default=None, help=f"default {MLP_CHAINS}")
    p.add_argument("--dln-widths", type=int, nargs="+", default=None,
                   help=f"hidden width H of a 4-layer DLN (H,H,H,H,H) (default {DLN_WIDTHS})")
    p.add_argument("--dln-chains", type=int, default=4)
    p.add_argument("--dln-batch", type=int, default=500)
    p.add_argument("--no-reference", action="store_true", help="skip the reference runs")
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


ARGS = parse_args() if __name__ == "__main__" else parse_args([])
LOAD_BEFORE = os.getloadavg()
EXPOSED = None
if __name__ == "__main__" and ARGS.cpu_devices != 0 and not _accelerator_expected():
    from slt_jax.hostdevices import expose_cpu_cores  # noqa: E402  (before jax starts)

    EXPOSED = expose_cpu_cores(None if ARGS.cpu_devices < 0 else ARGS.cpu_devices)

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from jax.sharding import NamedSharding, PartitionSpec as P  # noqa: E402

import slt_jax  # noqa: E402
from slt_jax import cpu_dots  # noqa: E402
import workload_mlp as W  # noqa: E402
from slt_jax.truth import make_dln  # noqa: E402


def log(*a):
    print(*a, flush=True)


def _mesh(devices, name):
    return jax.sharding.Mesh(np.array(devices), (name,), axis_types=(jax.sharding.AxisType.Auto,))


# ------------------------------------------------------------------------------ machine limits


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
    """Rows (n, one-device FLOP/s, all-device FLOP/s). float32, default matmul precision."""
    rows = []
    mesh = _mesh(devices, "d")
    single = jax.jit(lambda a, b: a @ b)
    per_dev = jax.jit(jax.shard_map(lambda a, b: (a[0] @ b[0])[None], mesh=mesh,
                                    in_specs=(P("d"), P("d")), out_specs=P("d")))
    for n in sizes:
        key = jax.random.key(n)
        a = jax.device_put(jax.random.normal(key, (n, n), jnp.float32), devices[0])
        b = jax.device_put(jax.random.normal(jax.random.fold_in(key, 1), (n, n), jnp.float32), devices[0])
        flops = 2.0 * n**3
        one = flops / _best_time(single, (a, b), min_time, repeats)
        if len(devices) > 1:
            sh = NamedSharding(mesh, P("d"))
            A = jax.device_put(jnp.broadcast_to(a, (len(devices), n, n)), sh)
            B = jax.device_put(jnp.broadcast_to(b, (len(devices), n, n)), sh)
            total = len(devices) * flops / _best_time(per_dev, (A, B), min_time, repeats)
        else:
            total = one
        rows.append((n, one, total))
        log(f"  matmul {n:5d}: one device {one / 1e9:8.1f} GFLOP/s   all {len(devices)} devices "
            f"{total / 1e9:8.1f} GFLOP/s")
    return rows


def measure_noise(devices, sizes, min_time, repeats):
    """Rows (values per device, one-device s/value, all-device s/value) of `w + 0.01·normal`
    (float32, default key implementation): the noise half of a Langevin update."""
    mesh = _mesh(devices, "d")
    rows = []
    for size in sizes:
        single = jax.jit(lambda k, w: w + 0.01 * jax.random.normal(k, w.shape, jnp.float32))
        w = jax.device_put(jnp.zeros((size,), jnp.float32), devices[0])
        key = jax.device_put(jax.random.key(0), devices[0])
        t1 = _best_time(single, (key, w), min_time, repeats) / size
        tall = t1
        if len(devices) > 1:
            per_dev = jax.jit(jax.shard_map(
                lambda k, w: w + 0.01 * jax.random.normal(jax.random.fold_in(k[0], jax.lax.axis_index("d")),
                                                          w.shape, jnp.float32),
                mesh=mesh, in_specs=(P("d"), P("d")), out_specs=P("d")))
            keys = jax.device_put(jax.random.split(jax.random.key(0), len(devices)), NamedSharding(mesh, P("d")))
            W_ = jax.device_put(jnp.zeros((len(devices), size), jnp.float32), NamedSharding(mesh, P("d")))
            tall = _best_time(per_dev, (keys, W_), min_time, repeats) / (size * len(devices))
        rows.append((size, t1, tall))
        log(f"  w + normal, {size:>10,} values/device: one device {t1 * 1e9:.2f} ns/value; all devices "
            f"{tall * 1e9:.2f} ns/value")
    return rows


# ------------------------------------------------------------------------------ FLOPs


def dense_flops(batch: int, shapes) -> float:
    """6·B·Σ d_in·d_out: forward 2·B·Σ, backward ≈ 2 × forward (dW and dX per layer)."""
    return 6.0 * batch * sum(a * b for a, b in shapes)


def cost_analysis_flops(loss_fn, params, data, batch):
    """FLOPs of ONE single-chain minimal SGLD step from XLA's cost analysis (None if unavailable)."""
    step = _one_chain_step(loss_fn, data, batch, "sgld", params)
    try:
        ca = jax.jit(step).lower(params, jax.random.key(0), jnp.int32(0)).compile().cost_analysis()
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
        grad = jax.value_and_grad(lambda p, b: jnp.mean(loss_fn(p, b)))
        if cpu_dots.enabled(jax.default_backend()):  # the matmul layout estimate_llc uses
            grad = cpu_dots.canonical_dots(grad)
        loss, g = grad(pos, mb)
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


def reference_rate(loss_fn, params, data, batch, chains, steps, mode, devices, repeats=2):
    """Best chain-steps/s of a bare jitted scan of vmapped steps (chains split over `devices`)."""
    padded = math.ceil(chains / len(devices)) * len(devices)
    step = jax.vmap(_one_chain_step(loss_fn, data, batch, mode, params), in_axes=(0, 0, None))

    def run(pos, keys, first):
        pos, losses = jax.lax.scan(lambda p, s: step(p, keys, s), pos, first + jnp.arange(steps))
        return pos, losses[-1]

    pos = jax.tree.map(lambda x: jnp.broadcast_to(x, (padded,) + x.shape), params)
    keys = jax.vmap(lambda c: jax.random.fold_in(jax.random.key(0), c))(jnp.arange(padded, dtype=jnp.uint32))
    if len(devices) > 1:
        mesh = _mesh(devices, "chain")
        ch, rep = NamedSharding(mesh, P("chain")), NamedSharding(mesh, P())
        pos, keys = jax.device_put((pos, keys), ch)
        run_j = jax.jit(run, in_shardings=(ch, ch, rep), out_shardings=(ch, ch), donate_argnums=0)
    else:
        pos, keys = jax.device_put((pos, keys), devices[0])
        run_j = jax.jit(run, donate_argnums=0)
    pos = jax.tree.map(jnp.copy, pos)
    exe = run_j.lower(pos, keys, jnp.int32(0)).compile()
    best = 0.0
    for r in range(max(1, repeats)):  # like slt_jax's sampling time, the first call is timed too
        t0 = time.perf_counter()
        pos, _ = exe(pos, keys, jnp.int32(r * steps))
        jax.block_until_ready(pos)
        best = max(best, chains * steps / (time.perf_counter() - t0))
    return best


def slt_once(loss_fn, params, data, batch, chains, draws, **kw):
    r = slt_jax.estimate_llc(loss_fn, params, data, batch_size=batch, num_chains=chains, num_draws=draws,
                             eval_every=None, progress=False, seed=0, **kw)
    a = r.attrs
    return {"draws": draws, "compile_s": float(a["compile_s"]), "sampling_s": float(a["sampling_s"]),
            "rate": float(a["chain_steps_per_s"]), "padded": int(a["padded_chains"])}


def slt_rate(loss_fn, params, data, batch, chains, target_s, guess_rate, repeats, **kw):
    """estimate_llc(eval_every=None) sized for about target_s of sampling, `repeats` times.
    Returns the best run's numbers plus rate_min / compile range."""
    rate = guess_rate
    for _attempt in range(3):  # size the run
        draws = int(min(max(math.ceil(target_s * rate / chains), 3), 1_000_000))
        first = slt_once(loss_fn, params, data, batch, chains, draws, **kw)
        if first["sampling_s"] >= 0.4 * target_s or draws >= 1_000_000:
            break
        rate = first["rate"] * 1.1  # too short to trust: rerun sized from what we just saw
    runs = [first] + [slt_once(loss_fn, params, data, batch, chains, draws, **kw) for _ in range(repeats - 1)]
    best = max(runs, key=lambda r: r["rate"])
    return dict(best, rate_min=min(r["rate"] for r in runs), runs=len(runs),
                compile_min=min(r["compile_s"] for r in runs), compile_max=max(r["compile_s"] for r in runs))


def mlp_loss(params, batch):
    x, y = batch
    pred = jnp.tanh(x @ params["W1"] + params["b1"]) @ params["W2"] + params["b2"]
    return jnp.mean((pred - y) ** 2, axis=-1)


def references(loss_fn, params, data, batch, chains, steps, devices, step_size, slt_kw):
    nn = max(slt_once(loss_fn, params, data, batch, chains, steps, draw_diagnostics=False,
                      step_size=step_size, **slt_kw)["rate"] for _ in range(2))
    g = reference_rate(loss_fn, params, data, batch, chains, steps, "grad", devices)
    s = reference_rate(loss_fn, params, data, batch, chains, steps, "sgld", devices)
    return {"ref_nonorm": nn, "ref_grad": g, "ref_sgld": s}


# ------------------------------------------------------------------------------ main


def main():
    args = ARGS
    quick = args.quick
    backend = jax.default_backend()
    devices = jax.devices()
    on_cpu = backend == "cpu"
    target_s = args.target_s or (0.2 if quick else 2.5)
    repeats = args.repeats or (1 if quick else 2)
    mm_sizes = args.matmul_sizes or (
        ([512] if quick else [256, 512, 1024, 1536, 2048]) if on_cpu
        else ([4096] if quick else [256, 512, 1024, 2048, 4096, 8192])
    )
    noise_sizes = (1 << 16,) if quick else ((1 << 16, 1 << 20, 1 << 22) if on_cpu else (1 << 20, 1 << 24, 1 << 26))
    mlp_chains = args.mlp_chains or ((16,) if quick else MLP_CHAINS)
    dln_widths = args.dln_widths or ((64,) if quick else DLN_WIDTHS)
    command = "python " + " ".join([os.path.relpath(__file__, Path.cwd())] + sys.argv[1:])
    t_start = time.perf_counter()
    min_time, reps = (0.05, 3) if quick else (0.3, 5)

    log(f"backend {backend}, {len(devices)} devices ({devices[0].device_kind}); jax {jax.__version__}; "
        f"load average {LOAD_BEFORE[0]:.2f}")

    # 1. machine limits
    log("1. practical float32 matmul rate")
    mm = measure_matmul(mm_sizes, devices, min_time, reps)
    best_one = max(r[1] for r in mm)
    limit = max(r[2] for r in mm)  # chain runs use every device
    log(f"  limit (all {len(devices)} devices): {limit / 1e9:.1f} GFLOP/s; one device {best_one / 1e9:.1f} GFLOP/s")
    # What estimate_llc runs with (installed by its first call anyway): jax's threefry bits,
    # lowered unrolled on CPU.
    slt_jax.cpu_rng.install()
    noise = measure_noise(devices, noise_sizes, min_time, reps)

    # 2. chains: MLP workload
    log("2. scaling with chains: MLP workload")
    w = W.make_workload()
    mlp_params = {k: jnp.asarray(v) for k, v in w["params"].items()}
    mlp_data = (jnp.asarray(w["x"]), jnp.asarray(w["y"]))
    mlp_step_flops = dense_flops(W.BATCH, [(W.D_IN, W.D_HIDDEN), (W.D_HIDDEN, W.D_OUT)])
    mlp_ca = cost_analysis_flops(mlp_loss, mlp_params, mlp_data, W.BATCH)
    log(f"  FLOPs/chain-step: formula {mlp_step_flops:,.0f}; cost analysis of one step "
        f"{f'{mlp_ca:,.0f}' if mlp_ca else 'n/a'}")
    mlp_kw = dict(localization=W.GAMMA, nbeta=W.NBETA)
    mlp_rows, guess = [], 3000.0
    for c in mlp_chains:
        res = slt_rate(mlp_loss, mlp_params, mlp_data, W.BATCH, c, target_s, guess, repeats, step_size=W.EPS, **mlp_kw)
        guess = max(guess, res["rate"])
        ref = {} if args.no_reference else references(mlp_loss, mlp_params, mlp_data, W.BATCH, c, res["draws"],
                                                      devices, W.EPS, mlp_kw)
        achieved = res["rate"] * mlp_step_flops
        mlp_rows.append(dict(chains=c, **res, **ref, flops=achieved, frac=achieved / limit))
        log(f"  {c:5d} chains: {res['rate']:10,.0f} chain-steps/s (min {res['rate_min']:,.0f})  compile "
            f"{res['compile_s']:.2f} s  sampling {res['sampling_s']:.2f} s ({res['draws']} steps)  "
            f"{achieved / 1e9:.1f} GFLOP/s = {achieved / limit:.1%}"
            + (f"  [loss only {ref['ref_nonorm']:,.0f}, grad-only {ref['ref_grad']:,.0f}, minimal SGLD "
               f"{ref['ref_sgld']:,.0f}]" if ref else ""))

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
        kw = dict(localization=100.0)
        res = slt_rate(prob.loss_fn, prob.params, prob.data, args.dln_batch, args.dln_chains, target_s,
                       0.4 * limit / step_flops, repeats, step_size=1e-7, **kw)
        ref = {} if args.no_reference else references(prob.loss_fn, prob.params, prob.data, args.dln_batch,
                                                      args.dln_chains, res["draws"], devices, 1e-7, kw)
        achieved = res["rate"] * step_flops
        dln_rows.append(dict(widths=widths, params=nparams, step_flops=step_flops, ca_flops=ca, **res, **ref,
                             flops=achieved, frac=achieved / limit))
        pct = lambda r: f"{r * step_flops / limit:.1%}"  # noqa: E731
        log(f"  H={h:5d} ({nparams:>10,} params): {res['rate']:10.2f} chain-steps/s (min {res['rate_min']:.2f})  "
            f"compile {res['compile_s']:.2f} s  sampling {res['sampling_s']:.2f} s ({res['draws']} steps)  "
            f"{achieved / 1e9:.1f} GFLOP/s = {achieved / limit:.1%}"
            + (f"  [loss only {pct(ref['ref_nonorm'])}, grad-only {pct(ref['ref_grad'])}, minimal SGLD "
               f"{pct(ref['ref_sgld'])}]" if ref else "")
            + (f"  cost analysis {ca / step_flops:.3f}× formula" if ca else ""))

    load_after = os.getloadavg()
    total_s = time.perf_counter() - t_start
    log(f"done in {total_s:.0f} s; load average after {load_after[0]:.2f}")
    md = render_markdown(
        command=command, backend=backend, devices=devices, mm=mm, best_one=best_one, limit=limit, noise=noise,
        mlp_rows=mlp_rows, mlp_step_flops=mlp_step_flops, mlp_ca=mlp_ca, dln_rows=dln_rows,
        dln_chains=args.dln_chains, dln_batch=args.dln_batch, target_s=target_s, repeats=repeats,
        total_s=total_s, load_after=load_after, quick=quick,
    )
    print()
    print(md)
    if args.out_md:
        args.out_md.write_text(md)
        log(f"wrote {args.out_md}")


# ------------------------------------------------------------------------------ report


def machine_description(backend, devices):
    if backend != "cpu":
        return f"{len(devices)} × {', '.join(sorted({d.device_kind for d in devices}))} ({backend})"
    model = "unknown CPU"
    try:
        model = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                     if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    mem = ""
    try:
        kb = int(next(l for l in Path("/proc/meminfo").read_text().splitlines() if l.startswith("MemTotal")).split()[1])
        mem = f", {kb / 2**20:.0f} GiB RAM"
    except (OSError, StopIteration, ValueError):
        pass
    return f"{model}, {cores} cores{mem}; {len(devices)} XLA CPU devices"


def _g(x):
    return f"{x / 1e9:,.1f}"


def _pct(x):
    return f"{100 * x:.1f}%"


def _rate(x, small):
    return f"{x:,.2f}" if small else f"{x:,.0f}"


def _table_head(first_columns, has_ref):
    """Header and separator rows of a scaling table: its own columns, the shared rate
    columns, and the reference columns when measured."""
    cols = first_columns + ["chain-steps/s (best)", "range", "compile s", "sampling s", "achieved GFLOP/s",
                            "fraction of matmul"]
    if has_ref:
        cols += ["slt_jax, loss only", "ref: grad only", "ref: minimal SGLD"]
    return ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]


def render_markdown(*, command, backend, devices, mm, best_one, limit, noise, mlp_rows, mlp_step_flops, mlp_ca,
                    dln_rows, dln_chains, dln_batch, target_s, repeats, total_s, load_after, quick):
    nd = len(devices)
    L = []
    add = L.append
    add("## Scaling: chains and model size against the measured matmul rate" + (" (--quick)" if quick else ""))
    add("")
    add("Command:")
    add("")
    add(f"    {command}")
    add("")
    add(f"Machine: {machine_description(backend, devices)}; python {platform.python_version()}; jax {jax.__version__}; "
        f"slt_jax {slt_jax.__version__}; backend {backend}" + (f" (cores exposed as {EXPOSED} devices)" if EXPOSED else "")
        + f". Load average (1 min) before/after: {LOAD_BEFORE[0]:.2f}/{load_after[0]:.2f} (the run itself keeps "
        f"{nd if backend == 'cpu' else 1} core(s) busy). Whole run: {total_s:.0f} s. Date: {time.strftime('%Y-%m-%d')}.")
    add("")
    add("### 1. Practical limits")
    add("")
    add("Jitted `a @ b` (n×n, float32, default precision), warm, `block_until_ready`, best of 5 timings of "
        "back-to-back calls. \"All devices\": one n×n matmul on every device at once (shard_map), total rate.")
    add("")
    add(f"| n | one device GFLOP/s | all {nd} devices GFLOP/s |")
    add("|---|---|---|")
    for n, one, alld in mm:
        add(f"| {n} | {_g(one)} | {_g(alld)} |")
    add("")
    add(f"**Practical limit used below: {_g(limit)} GFLOP/s**, the best all-{nd}-device rate (every chain run "
        f"spreads its chains over all {nd} devices). Best one-device rate: {_g(best_one)} GFLOP/s.")
    add("")
    add(f"Gaussian noise, `w + 0.01·jax.random.normal(key, w.shape)` (float32, {jax.config.jax_default_prng_impl}"
        + (", CPU lowering from slt_jax.cpu_rng" if backend == "cpu" else "") + "), "
        "per value: " + "; ".join(f"{s:,} values/device: {t1 * 1e9:.2f} ns (one device), {ta * 1e9:.2f} ns (all "
                                  f"{nd} devices)" for s, t1, ta in noise)
        + f". SGLD draws one normal per parameter per chain-step; at the limit, the 6·B FLOPs per parameter of "
        f"a batch-{dln_batch} step take {6 * dln_batch / limit * 1e9:.1f} ns, a batch-{W.BATCH} step "
        f"{6 * W.BATCH / limit * 1e9:.1f} ns.")
    add("")

    def ref_cols(r, flops):
        return (f" {_pct(r['ref_nonorm'] * flops / limit)} | {_pct(r['ref_grad'] * flops / limit)} | "
                f"{_pct(r['ref_sgld'] * flops / limit)} |")

    add("### 2. Scaling with chains: MLP workload (workload_mlp.py)")
    add("")
    add(f"MLP 16→48→4 (tanh), 1,012 params, n = 1,000, batch {W.BATCH}, SGLD, ε = {W.EPS}, γ = {W.GAMMA}, "
        f"nβ = {W.NBETA:.2f}; `estimate_llc(..., eval_every=None)` (no full-data evaluations: pure sampling), "
        f"chains over all {nd} devices, draws chosen for ≈ {target_s:g} s of sampling, best of {repeats} runs "
        f"(each with its own compile; \"range\" = worst–best). FLOPs per chain-step = 6·B·(16·48 + 48·4) = "
        f"{mlp_step_flops:,.0f} (forward 2·B·Σ d_in·d_out, backward ≈ 2× forward: the usual model-FLOPs count; "
        f"the products actually executed skip the first layer's input gradient, since x is data: "
        f"{mlp_step_flops - 2 * W.BATCH * W.D_IN * W.D_HIDDEN:,.0f}, "
        f"{(mlp_step_flops - 2 * W.BATCH * W.D_IN * W.D_HIDDEN) / mlp_step_flops:.2f}× the formula); XLA's cost analysis of one "
        f"single-chain step (gather, value_and_grad, noise, update) counts "
        f"{f'{mlp_ca:,.0f}' if mlp_ca else 'n/a'}. Fraction = achieved FLOP/s ÷ {_g(limit)} GFLOP/s.")
    add("")
    has_ref = any("ref_grad" in r for r in mlp_rows)
    L.extend(_table_head(["chains", "steps/chain"], has_ref))
    for r in mlp_rows:
        line = (f"| {r['chains']} | {r['draws']} | {r['rate']:,.0f} | {r['rate_min']:,.0f}–{r['rate']:,.0f} | "
                f"{r['compile_s']:.2f} | {r['sampling_s']:.2f} | {r['flops'] / 1e9:.1f} | **{_pct(r['frac'])}** |")
        if has_ref:
            line += ref_cols(r, mlp_step_flops)
        add(line)
    add("")
    if any(r["padded"] != r["chains"] for r in mlp_rows):
        add(f"Chain counts that are not a multiple of {nd} are padded to one; padding chains are computed but "
            "not counted.")
        add("")
    add("### 3. Scaling with model size: deep linear networks")
    add("")
    add(f"`truth.make_dln(0, (H,)*5, rank=0, noise_std=0.0)`: 4 layers H×H (4·H² params), n = {max(1000, dln_batch)}, "
        f"batch {dln_batch}, {dln_chains} chains over {nd} devices, SGLD ε = 1e-7, γ = 100, "
        f"`estimate_llc(..., eval_every=None)`, steps chosen for ≈ {target_s:g} s of sampling, best of {repeats} "
        f"runs. FLOPs per chain-step = 6·B·Σ H_(i-1)·H_i (the exact backward skips dX of the first layer, "
        f"−1/12 here); \"cost analysis\" = XLA's count for one single-chain SGLD step ÷ the formula.")
    add("")
    has_ref = any("ref_grad" in r for r in dln_rows)
    L.extend(_table_head(["widths", "params", "FLOPs/chain-step", "cost analysis ÷ formula", "steps"], has_ref))
    for r in dln_rows:
        ca = f"{r['ca_flops'] / r['step_flops']:.3f}" if r["ca_flops"] else "n/a"
        line = (f"| {'×'.join(map(str, r['widths']))} | {r['params']:,} | {r['step_flops']:.3g} | {ca} | {r['draws']} | "
                f"{r['rate']:,.2f} | {r['rate_min']:,.2f}–{r['rate']:,.2f} | {r['compile_s']:.2f} | "
                f"{r['sampling_s']:.2f} | {r['flops'] / 1e9:.1f} | **{_pct(r['frac'])}** |")
        if has_ref:
            line += ref_cols(r, r["step_flops"])
        add(line)
    add("")
    if has_ref or any("ref_grad" in r for r in mlp_rows):
        add("Reference columns (fraction of the matmul limit; one run each, same chains, device split and steps): "
            "*slt_jax, loss only* = `estimate_llc(..., draw_diagnostics=False)` (records the loss alone per "
            "draw, not the gradient/distance/weight/noise norms; best of 2 runs); *grad only* = a bare jitted `lax.scan` of a vmapped step doing the "
            "minibatch gather + `value_and_grad` only (with `slt_jax.cpu_dots`' CPU matmul layout, as "
            "`estimate_llc` runs it; parameters in their own shapes, not flat); *minimal SGLD* = that + `jax.random.normal` noise + the "
            "Langevin update (no records, no `lax.cond`).")
        add("")
    add("### Targets")
    add("")
    big = [r for r in mlp_rows if r["chains"] >= TARGET_MLP_CHAINS]
    if big:
        ok = all(r["frac"] >= TARGET_MLP_FRACTION for r in big)
        add(f"- MLP workload at ≥ {TARGET_MLP_CHAINS} chains: ≥ {_pct(TARGET_MLP_FRACTION)} of the matmul rate "
            "wanted; measured " + ", ".join(f"{_pct(r['frac'])} ({r['chains']} chains)" for r in big)
            + f" → **{'met' if ok else 'not met'}**.")
        lean = [r for r in big if "ref_nonorm" in r]
        if lean:
            ok_lean = all(r["ref_nonorm"] * mlp_step_flops / limit >= TARGET_MLP_FRACTION for r in lean)
            add("  With `draw_diagnostics=False` (loss-only records): " + ", ".join(
                f"{_pct(r['ref_nonorm'] * mlp_step_flops / limit)} ({r['chains']} chains)" for r in lean)
                + f" → **{'met' if ok_lean else 'not met'}**.")
    else:
        add(f"- MLP workload at ≥ {TARGET_MLP_CHAINS} chains: not measured in this run.")
    big = [r for r in dln_rows if r["params"] >= TARGET_DLN_PARAMS]
    if big:
        n_ok = sum(r["frac"] >= TARGET_DLN_FRACTION for r in big)
        add(f"- DLNs with ≥ {TARGET_DLN_PARAMS:,} params: ≥ {_pct(TARGET_DLN_FRACTION)} wanted; measured "
            + ", ".join(f"{_pct(r['frac'])} ({r['params']:,})" for r in big)
            + f" → **{'met' if n_ok == len(big) else 'not met'}**"
            + ("" if n_ok == len(big) else f" (met for {n_ok} of {len(big)} sizes)") + ".")
    else:
        add(f"- DLNs with ≥ {TARGET_DLN_PARAMS:,} params: not measured in this run.")
    add("")
    return "\n".join(L)


if __name__ == "__main__":
    main()
