"""devinterp 1.3.2 (PyTorch) side of the MLP LLC benchmark (see workload_mlp.py).

Run with the torch venv:  .venv-bench/bin/python benchmarks/devinterp_mlp.py --chains 4
Times only the `estimate_learning_coeff_with_summary` call (torch is eager: no compile step).
With --calls 2 it runs two identical estimates in the process (seeds seed, seed+1) and reports
both wall times (first_call_s, second_call_s); the top-level fields describe the first call.
"""

import time

_T0 = time.perf_counter()
_T0_EPOCH = time.time()

import argparse
import os
import sys
import warnings
from importlib.metadata import version

import numpy as np
import torch
from devinterp.optim import SGLD, SGMCMC
from devinterp.slt.sampler import estimate_learning_coeff_with_summary
from devinterp.utils import evaluate_mse
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import workload_mlp as W  # noqa: E402
from bench_json import emit  # noqa: E402

# torch.optim.Optimizer.__init__ lazily imports torch._dynamo (~2 s, once per process). Pay it
# here so it counts as import time, not as sampling time of the first chain.
torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.0)
IMPORT_S = time.perf_counter() - _T0


def build_model(params, activation):
    act = {"tanh": nn.Tanh, "relu": nn.ReLU}[activation]
    model = nn.Sequential(nn.Linear(W.D_IN, W.D_HIDDEN), act(), nn.Linear(W.D_HIDDEN, W.D_OUT))
    with torch.no_grad():  # nn.Linear stores weight as (out, in): transpose the x@W convention
        model[0].weight.copy_(torch.from_numpy(params["W1"].T.copy()))
        model[0].bias.copy_(torch.from_numpy(params["b1"]))
        model[2].weight.copy_(torch.from_numpy(params["W2"].T.copy()))
        model[2].bias.copy_(torch.from_numpy(params["b2"]))
    return model


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--chains", type=int, default=W.CHAIN_COUNTS[0])
    p.add_argument("--draws", type=int, default=W.DRAWS)
    p.add_argument("--json-out", default=None)
    p.add_argument("--calls", type=int, default=1, help="identical estimates in this process (seeds seed, seed+1, ...)")
    p.add_argument("--seed", type=int, default=W.SEED)
    p.add_argument("--workload", default=None, help="optional .npz from workload_mlp.save_workload")
    p.add_argument("--init-loss", choices=["full", "devinterp"], default="full",
                   help="full: pass the exact full-data L_n(w*) (slt_jax's convention); "
                        "devinterp: let devinterp average the first min(chains, n/batch) minibatches")
    p.add_argument("--sampler", choices=["sgld", "sgmcmc"], default="sgld",
                   help="sgld: devinterp.optim.SGLD (the summary function's default); "
                        "sgmcmc: SGMCMC.sgld (the newer, non-deprecated class)")
    p.add_argument("--threads", type=int, default=os.cpu_count(), help="torch.set_num_threads (default: all cores)")
    p.add_argument("--verbose", action="store_true", help="devinterp's per-chain tqdm bars")
    args = p.parse_args()

    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", module=r"devinterp(\.|$)")  # deprecation/nbeta/seed notices

    wl = W.load_workload(args.workload) if args.workload else W.make_workload(W.SEED)
    model = build_model(wl["params"], wl["activation"])
    x, y = torch.from_numpy(wl["x"]), torch.from_numpy(wl["y"])
    with torch.no_grad():
        full_loss = float(nn.functional.mse_loss(model(x), y))
    assert abs(full_loss - wl["init_loss"]) < 1e-5 * max(1.0, wl["init_loss"]), (full_loss, wl["init_loss"])
    loader = DataLoader(TensorDataset(x, y), batch_size=W.BATCH, shuffle=True)

    load0 = os.getloadavg()[0]

    def one_call(seed):
        t, tc = time.perf_counter(), time.process_time()
        res = estimate_learning_coeff_with_summary(
            model,
            loader=loader,
            evaluate=evaluate_mse,
            sampling_method=SGLD if args.sampler == "sgld" else SGMCMC.sgld,
            optimizer_kwargs=dict(lr=W.EPS, localization=W.GAMMA, nbeta=W.NBETA),
            num_chains=args.chains,
            num_draws=args.draws,
            num_burnin_steps=W.NUM_BURNIN_STEPS,
            num_steps_bw_draws=W.NUM_STEPS_BW_DRAWS,
            init_loss=full_loss if args.init_loss == "full" else None,
            cores=1,
            seed=seed,
            device="cpu",
            verbose=args.verbose,
            online=False,  # LLC callback only (LLCEstimator)
        )
        wall = time.perf_counter() - t
        return res, wall, time.process_time() - tc, time.time()

    calls = [one_call(args.seed + i) for i in range(args.calls)]
    res, sampling_s, sampling_cpu_s, first_done = calls[0]  # cpu: all threads of this process

    per_chain = [res[f"llc-chain/{i}"] for i in range(args.chains)]
    losses = np.asarray(res["loss/trace"], dtype=np.float64)  # (chains, draws), pre-step minibatch losses
    # devinterp does not return init_loss; recover it from llc = nbeta * (mean loss - init_loss)
    init_loss_used = float(losses.mean() - np.mean(per_chain) / W.NBETA)
    out = {
        "framework": "devinterp",
        "version": version("devinterp"),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "sampler": "devinterp.optim.SGLD" if args.sampler == "sgld" else "devinterp.optim.SGMCMC.sgld",
        "chains": args.chains,
        "draws": args.draws,
        "import_s": IMPORT_S,
        "start_epoch": _T0_EPOCH,
        "first_result_epoch": first_done,
        "first_call_s": sampling_s,
        "second_call_s": calls[1][1] if len(calls) > 1 else None,
        "second_llc_mean": float(calls[1][0]["llc/mean"]) if len(calls) > 1 else None,
        "compile_s": 0.0,  # torch eager: nothing to compile
        "sampling_s": sampling_s,
        "chain_steps_per_s": args.chains * args.draws / sampling_s,
        "sampling_cpu_s": sampling_cpu_s,
        "loadavg_1min_before_after": [load0, os.getloadavg()[0]],
        "llc_mean": float(res["llc/mean"]),
        "llc_std": float(res["llc/std"]),  # torch std over chains, ddof=1
        "llc_per_chain": [float(v) for v in per_chain],
        "init_loss_mode": args.init_loss,
        "init_loss": init_loss_used,
        "full_data_init_loss": full_loss,
        "seed": args.seed,
        "workload": W.describe() | {"activation": wl["activation"]},
        "in_process_s": time.perf_counter() - _T0,
    }
    emit(out, args.json_out, indent=1)


if __name__ == "__main__":
    main()
