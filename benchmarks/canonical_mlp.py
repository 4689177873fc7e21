"""canonical-interp 0.1.5 (PyTorch, chains vmapped + torch.compile) side of the MLP LLC benchmark.

Run with its Python 3.12 venv (benchmarks/setup_peers.sh makes it):
    .venv-canonical/bin/python benchmarks/canonical_mlp.py --chains 16 --draws 2000 --calls 2

Same workload as devinterp_mlp.py / slt_jax_mlp.py (benchmarks/workload_mlp.py): same teacher
weights, data, ε, γ, nβ = n/log n, batch 100, SGLD, MSE (mean over samples and outputs), no
burn-in, every step a draw.

What canonical-interp does (read from canonical_interp/slt.py, 0.1.5):
  - `LLCEstimator(draws, chains, burnin_steps, steps_bw_draws, learning_rate, localization, nbeta)`
    `.estimate_llc(model, loader, criterion_fn, chain_batch="all", devices, seed, compile=True)`.
  - the chains' parameters are stacked with torch.func.stack_module_state; one step is
    vmap(grad_and_value(criterion ∘ functional_call)) over the chain axis, wrapped in a
    torch.compile built afresh inside every estimate_llc call; the SGLD update is a
    module-level @torch.compile function (compiled once per process).
  - every chain sees the same minibatch at each step (`itertools.cycle(loader)`: after the
    first epoch the cycle replays the cached first-epoch batches, it does not reshuffle).
  - init loss: mean over the loader's minibatches of the loss at w* (here 10 equal batches:
    the full-data L_n(w*)), computed by the same compiled grad function.
  - per draw it records only the pre-step minibatch loss of each chain; λ̂ = nβ (mean draw loss
    - init loss) per chain, averaged over chains. No full-data loss, no MALA, no norms.

Timing: `first_call_s` and `second_call_s` are wall times of two identical estimate_llc calls
(seeds --seed and --seed+1) in one process. canonical-interp compiles lazily inside the call, so
compilation is not separable from the outside; `sampling_s` is the time from the start of its
draw loop (its tqdm bar is created after the init-loss pass, which triggers the grad-function
compile) to its end, which on the first call still contains the one-time compile of sgld_step;
`compile_s` is torch.compile's own account (dynamo get_compilation_metrics, entire-frame
compile time) of what it compiled during that call.
"""

import time

_T0 = time.perf_counter()
_T0_EPOCH = time.time()

import argparse
import logging
import os
import sys
import warnings
from importlib.metadata import version

import numpy as np
import torch
import torch._dynamo.utils as dynamo_utils
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import canonical_interp.slt as cslt
from canonical_interp import LLCEstimator

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import workload_mlp as W  # noqa: E402
from bench_json import emit  # noqa: E402

IMPORT_S = time.perf_counter() - _T0


class _DrawLoopClock:
    """Stands in for the `tqdm` module inside canonical_interp.slt: its progress bar is created
    right before the burn-in/draw loop and closed right after it, so the bar's lifetime is the
    sampling time. The bar itself is the real tqdm (disabled when show_progress=False)."""

    def __init__(self, real_tqdm_module):
        self._real = real_tqdm_module
        self.windows = []  # [(start, end)] per _estimate_llc call (one per chain batch)
        clock = self

        class Bar(real_tqdm_module.tqdm):
            def __init__(self, *a, **k):
                super().__init__(*a, **k)
                self._t_start = time.perf_counter()

            def close(self):
                if getattr(self, "_t_start", None) is not None:
                    clock.windows.append((self._t_start, time.perf_counter()))
                    self._t_start = None
                super().close()

        self.tqdm = Bar

    def __getattr__(self, name):
        return getattr(self._real, name)


def build_model(params, activation):
    act = {"tanh": nn.Tanh, "relu": nn.ReLU}[activation]
    model = nn.Sequential(nn.Linear(W.D_IN, W.D_HIDDEN), act(), nn.Linear(W.D_HIDDEN, W.D_OUT))
    with torch.no_grad():  # nn.Linear stores weight as (out, in): transpose the x@W convention
        model[0].weight.copy_(torch.from_numpy(params["W1"].T.copy()))
        model[0].bias.copy_(torch.from_numpy(params["b1"]))
        model[2].weight.copy_(torch.from_numpy(params["W2"].T.copy()))
        model[2].bias.copy_(torch.from_numpy(params["b2"]))
    return model


def compile_seconds_since(n_before):
    """Seconds torch.compile spent on frames compiled after the first n_before records."""
    metrics = dynamo_utils.get_compilation_metrics()
    new = list(metrics)[n_before:]
    return (sum((m.entire_frame_compile_time_s or 0.0) for m in new), len(new),
            sum(1 for m in new if (m.inductor_fx_local_cache_hit_count or 0) > 0))


def one_call(model, loader, args, seed, clock):
    est = LLCEstimator(
        draws=args.draws, chains=args.chains, burnin_steps=W.NUM_BURNIN_STEPS,
        steps_bw_draws=W.NUM_STEPS_BW_DRAWS, learning_rate=W.EPS, localization=W.GAMMA,
        nbeta=W.NBETA, dtype=torch.float32,
    )
    n_metrics = len(list(dynamo_utils.get_compilation_metrics()))
    n_windows = len(clock.windows)
    t = time.perf_counter()
    mean_llc = est.estimate_llc(
        model, loader, criterion_fn=nn.functional.mse_loss, chain_batch=args.chain_batch,
        devices=torch.device("cpu"), seed=seed, compile=not args.no_compile, show_progress=args.verbose,
    )
    wall = time.perf_counter() - t
    t_done = time.time()
    windows = clock.windows[n_windows:]
    # chain batches may run in threads (several devices); on one CPU device they run one by one
    sampling_s = (max(e for _, e in windows) - min(s for s, _ in windows)) if windows else float("nan")
    compile_s, frames, fx_cache_hits = compile_seconds_since(n_metrics)
    m = est.get_metrics()
    llcs = m["llcs"].detach().double().numpy()
    return {
        "wall_s": wall,
        "done_epoch": t_done,
        "sampling_s": sampling_s,
        "compile_s": compile_s,
        "compiled_frames": frames,
        "inductor_fx_cache_hit_frames": fx_cache_hits,
        "chain_steps_per_s": args.chains * args.draws / sampling_s,
        "llc_mean": float(mean_llc.detach()),
        "llc_std": float(llcs.std(ddof=1)) if llcs.size > 1 else 0.0,
        "llc_per_chain": [float(v) for v in llcs],
        "init_loss": float(est.original_loss.detach().double().mean()),
        "init_loss_requires_grad": bool(est.original_loss.requires_grad),
        "seed": seed,
    }


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--chains", type=int, default=16)
    p.add_argument("--draws", type=int, default=W.DRAWS)
    p.add_argument("--calls", type=int, default=2, help="identical estimates in this process (seeds seed, seed+1, ...)")
    p.add_argument("--json-out", default=None)
    p.add_argument("--seed", type=int, default=W.SEED)
    p.add_argument("--workload", default=None, help="optional .npz from workload_mlp.save_workload")
    p.add_argument("--threads", type=int, default=os.cpu_count(), help="torch.set_num_threads (default: all cores)")
    p.add_argument("--chain-batch", default="all", help='"all" (default: every chain in one vmap) or an int')
    p.add_argument("--no-compile", action="store_true", help="estimate_llc(compile=False): torch eager")
    p.add_argument("--verbose", action="store_true", help="canonical-interp's tqdm bar and warnings")
    args = p.parse_args()
    if args.chain_batch != "all":
        args.chain_batch = int(args.chain_batch)

    torch.set_num_threads(args.threads)
    if not args.verbose:  # burn-in < draws, pin_memory=False and num_workers=0 notices
        logging.getLogger("canonical_interp").setLevel(logging.ERROR)
        warnings.filterwarnings("ignore", module=r"torch(\.|$)")
    clock = _DrawLoopClock(cslt.tqdm)
    cslt.tqdm = clock

    wl = W.load_workload(args.workload) if args.workload else W.make_workload(W.SEED)
    model = build_model(wl["params"], wl["activation"])
    x, y = torch.from_numpy(wl["x"]), torch.from_numpy(wl["y"])
    with torch.no_grad():
        full_loss = float(nn.functional.mse_loss(model(x), y))
    assert abs(full_loss - wl["init_loss"]) < 1e-5 * max(1.0, wl["init_loss"]), (full_loss, wl["init_loss"])
    # num_workers=0, no pinned memory: the right choice for an in-memory CPU data set on 2 cores
    loader = DataLoader(TensorDataset(x, y), batch_size=W.BATCH, shuffle=True)

    load0 = os.getloadavg()[0]
    tc = time.process_time()
    calls = [one_call(model, loader, args, args.seed + i, clock) for i in range(args.calls)]
    cpu_s = time.process_time() - tc
    first = calls[0]
    out = {
        "framework": "canonical-interp",
        "version": version("canonical-interp"),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "python": sys.version.split()[0],
        "compile": not args.no_compile,
        "chain_batch": args.chain_batch,
        "chains": args.chains,
        "draws": args.draws,
        "import_s": IMPORT_S,
        "start_epoch": _T0_EPOCH,
        "first_result_epoch": first["done_epoch"],
        "first_call_s": first["wall_s"],
        "second_call_s": calls[1]["wall_s"] if len(calls) > 1 else None,
        "compile_s": first["compile_s"],
        "sampling_s": first["sampling_s"],
        "chain_steps_per_s": first["chain_steps_per_s"],
        "second_sampling_s": calls[1]["sampling_s"] if len(calls) > 1 else None,
        "second_compile_s": calls[1]["compile_s"] if len(calls) > 1 else None,
        "calls": calls,
        "cpu_s_all_calls": cpu_s,
        "loadavg_1min_before_after": [load0, os.getloadavg()[0]],
        "llc_mean": first["llc_mean"],
        "llc_std": first["llc_std"],
        "init_loss": first["init_loss"],
        "full_data_init_loss": full_loss,
        "inductor_cache_dir": os.environ.get("TORCHINDUCTOR_CACHE_DIR", "default"),
        "workload": W.describe() | {"activation": wl["activation"]},
        "in_process_s": time.perf_counter() - _T0,
    }
    emit(out, args.json_out, indent=1)


if __name__ == "__main__":
    main()
