"""devinterp 2.0.1 (PyTorch) side of the tiny-GPT-2 LLC benchmark (see workload_lm.py).

Run with the devinterp 2 venv (.venv-bench2: torch==2.13.0 CPU build + devinterp==2.0.1):
    .venv-bench2/bin/python benchmarks/devinterp2_lm.py --draws 500 --threads 1 --json-out r.json

Uses devinterp 2's language-model API as installed (devinterp/slt/sampling.py, llc.py):
`sample(model, dataset, observables, lr=, n_beta=, localization=, num_chains=, num_draws=,
batch_size=, sampling_method="sgmcmc_sgld", output_path=)` with a HuggingFace `Dataset` that
has an "input_ids" column (torch format), one observable data set whose per-token losses are
written to zarr at every draw, then `compute_llc(samples)` (what `llc()` returns). The model is
a plain nn.Module returning logits (devinterp's `lm_forward_logits` fallback), written by hand
with the workload's numpy weights copied in exactly. Timed: the `sample()` call (torch is eager:
no compile step); `compute_llc` is timed separately.
"""

import time

_T0 = time.perf_counter()

import argparse
import os
import shutil
import sys
import tempfile
import warnings
from importlib.metadata import version

import numpy as np
import torch
import torch.nn.functional as F
from datasets import Dataset
from devinterp.slt.lm_loss import compute_per_token_loss
from devinterp.slt.llc import compute_llc
from devinterp.slt.sampling import sample
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import workload_lm as W  # noqa: E402
from bench_json import emit  # noqa: E402

# torch.optim.Optimizer.__init__ lazily imports torch._dynamo (~2 s, once per process). Pay it
# here so it counts as import time, not as sampling time of the first chain.
torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.0)
IMPORT_S = time.perf_counter() - _T0


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        d = W.D_MODEL
        self.ln1 = nn.LayerNorm(d, eps=W.LN_EPS)
        self.attn = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.ln2 = nn.LayerNorm(d, eps=W.LN_EPS)
        self.fc = nn.Linear(d, W.D_MLP)
        self.fc2 = nn.Linear(W.D_MLP, d)

    def forward(self, h):
        b, t, d = h.shape
        q, k, v = self.attn(self.ln1(h)).split(d, dim=-1)
        q, k, v = (z.view(b, t, W.N_HEADS, W.D_HEAD).transpose(1, 2) for z in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # scale 1/sqrt(D_HEAD)
        h = h + self.proj(y.transpose(1, 2).reshape(b, t, d))
        return h + self.fc2(F.gelu(self.fc(self.ln2(h)), approximate="tanh"))


class TinyGPT2(nn.Module):
    """GPT-2-style decoder; forward(input_ids) -> logits (B, T, VOCAB). Tied unembedding."""

    def __init__(self):
        super().__init__()
        self.wte = nn.Embedding(W.VOCAB, W.D_MODEL)
        self.wpe = nn.Embedding(W.CONTEXT, W.D_MODEL)
        self.blocks = nn.ModuleList(Block() for _ in range(W.N_LAYERS))
        self.lnf = nn.LayerNorm(W.D_MODEL, eps=W.LN_EPS)

    def forward(self, input_ids):
        t = input_ids.shape[1]
        h = self.wte(input_ids) + self.wpe.weight[:t]
        for blk in self.blocks:
            h = blk(h)
        return F.linear(self.lnf(h), self.wte.weight)


def build_model(params):
    model = TinyGPT2()
    t = lambda a: torch.from_numpy(np.ascontiguousarray(a))  # noqa: E731
    with torch.no_grad():  # nn.Linear stores weight as (out, in): transpose the x@W convention
        model.wte.weight.copy_(t(params["wte"]))
        model.wpe.weight.copy_(t(params["wpe"]))
        for i, blk in enumerate(model.blocks):
            p = lambda k: params[f"h{i}_{k}"]  # noqa: E731
            blk.ln1.weight.copy_(t(p("ln1_g"))); blk.ln1.bias.copy_(t(p("ln1_b")))  # noqa: E702
            blk.ln2.weight.copy_(t(p("ln2_g"))); blk.ln2.bias.copy_(t(p("ln2_b")))  # noqa: E702
            for lin, k in ((blk.attn, "attn"), (blk.proj, "proj"), (blk.fc, "fc"), (blk.fc2, "fc2")):
                lin.weight.copy_(t(p(f"{k}_w").T))
                lin.bias.copy_(t(p(f"{k}_b")))
        model.lnf.weight.copy_(t(params["lnf_g"]))
        model.lnf.bias.copy_(t(params["lnf_b"]))
    n = sum(p.numel() for p in model.parameters())
    assert n == W.NUM_PARAMS, (n, W.NUM_PARAMS)
    return model


def hf_dataset(tokens):
    ds = Dataset.from_dict({"input_ids": tokens.astype(np.int64)})
    ds.set_format("torch", columns=["input_ids"])  # DataLoader collates to (B, T) int64 tensors
    return ds


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--chains", type=int, default=W.NUM_CHAINS)
    p.add_argument("--draws", type=int, default=W.DRAWS)
    p.add_argument("--threads", type=int, default=1, help="torch.set_num_threads")
    p.add_argument("--json-out", default=None)
    p.add_argument("--output-path", default=None,
                   help="zarr output directory (default: a fresh temp dir, deleted afterwards)")
    p.add_argument("--no-obs", action="store_true",
                   help="no observable data set (observables={}): sampling and devinterp's own "
                        "per-step records only")
    p.add_argument("--verbose", action="store_true", help="devinterp's per-chain tqdm bars")
    args = p.parse_args()

    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", module=r"devinterp(\.|$)")
    if not args.verbose:  # devinterp 2 always opens a tqdm bar per chain; silence it (stderr)
        os.environ["TQDM_DISABLE"] = "1"

    t_setup = time.perf_counter()
    wl = W.make_workload()
    model = build_model(wl["params"])
    train_ds, obs_ds = hf_dataset(wl["tokens"]), hf_dataset(wl["obs_tokens"])
    workload_s = time.perf_counter() - t_setup

    # Same loss at w* as the numpy reference and (in slt_jax_lm.py) JAX, on the same batch:
    # proves the weights were copied into the same architecture.
    batch = torch.from_numpy(W.check_batch())
    with torch.no_grad():
        check_loss = float(compute_per_token_loss(model, batch).mean())
        full_loss = float(compute_per_token_loss(model, torch.from_numpy(wl["tokens"])).mean())
    ref = float(W.per_token_loss(wl["params"], W.check_batch()).mean())
    assert abs(check_loss - ref) < 1e-5, (check_loss, ref)
    assert abs(full_loss - wl["init_loss"]) < 1e-5, (full_loss, wl["init_loss"])

    out_dir = args.output_path or os.path.join(tempfile.mkdtemp(prefix="di2_lm_"), "samples.zarr")
    load0 = os.getloadavg()[0]
    t, tc = time.perf_counter(), time.process_time()
    samples = sample(
        model,
        train_ds,
        {} if args.no_obs else {"obs": (obs_ds, W.OBS_N // W.BATCH)},  # (dataset, batches_per_draw)
        lr=W.EPS,
        n_beta=W.NBETA,
        localization=W.GAMMA,
        num_chains=args.chains,
        num_draws=args.draws,
        batch_size=W.BATCH,
        num_burnin_steps=W.NUM_BURNIN_STEPS,
        num_steps_bw_draws=W.NUM_STEPS_BW_DRAWS,
        # one shuffled epoch (drop_last, N divisible by BATCH): init_loss = exact L_n(w*)
        num_init_loss_batches=W.N // W.BATCH,
        sampling_method="sgmcmc_sgld",
        device="cpu",
        output_path=out_dir,
    )
    sampling_s = time.perf_counter() - t
    sampling_cpu_s = time.process_time() - tc
    t = time.perf_counter()
    res = compute_llc(samples)
    llc_s = time.perf_counter() - t
    load1 = os.getloadavg()[0]

    ds = samples.dataset
    obs_losses = None if args.no_obs else ds["loss_obs"].values  # (chain, draw, sample, token_pos)
    per_chain = [float(v) for v in res["llc_per_chain"].values]
    init_loss = float(res["init_loss"].values)
    out = {
        "framework": "devinterp",
        "version": version("devinterp"),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "sampler": "devinterp.slt.sampling.sample(sampling_method='sgmcmc_sgld')",
        "chains": args.chains,
        "draws": args.draws,
        "import_s": IMPORT_S,
        "workload_s": workload_s,
        "compile_s": 0.0,  # torch eager: nothing to compile
        "sampling_s": sampling_s,
        "chain_steps_per_s": args.chains * args.draws / sampling_s,
        "sampling_cpu_s": sampling_cpu_s,
        "compute_llc_s": llc_s,
        "loadavg_1min_before_after": [load0, load1],
        "llc_mean": float(res["llc_mean"].values),
        "llc_std": float(res["llc_std"].values),  # xarray std: ddof=0
        "llc_std_ddof1": float(np.std(per_chain, ddof=1)) if len(per_chain) > 1 else float("nan"),
        "llc_per_chain": per_chain,
        "init_loss": init_loss,
        "full_data_init_loss": full_loss,
        "check_batch_loss": check_loss,
        "check_batch_loss_numpy64": ref,
        "observable": not args.no_obs,
        "obs_losses_shape": None if obs_losses is None else list(obs_losses.shape),
        "obs_losses_finite": None if obs_losses is None else bool(np.isfinite(obs_losses).all()),
        "obs_mean_loss": None if obs_losses is None else float(np.nanmean(obs_losses)),
        "workload": W.describe(),
    }
    if args.output_path is None:
        shutil.rmtree(os.path.dirname(out_dir), ignore_errors=True)
    emit(out, args.json_out, indent=1)


if __name__ == "__main__":
    main()
