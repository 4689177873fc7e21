"""`estimate_llc` and `estimate_llc_checkpoints`: the one-configuration fronts of the grid."""

from __future__ import annotations

from typing import Any, Callable, Sequence

import jax
import numpy as np

from slt_jax.results.llc_result import LLCResult
from slt_jax.samplers import Kernel
from slt_jax.workflows.grid import estimate_llc_grid
from slt_jax.workflows.options import DIAGNOSTICS

__all__ = ["estimate_llc", "estimate_llc_checkpoints"]


def estimate_llc(
    loss_fn: Callable,
    params: Any,
    data: Any,
    *,
    step_size: float,
    localization: float,
    nbeta: float | str | None = None,
    num_chains: int,
    num_draws: int,
    num_burnin: int = 0,
    thin: int = 1,
    batch_size: int,
    sampler: str | Kernel = "sgld",
    sampler_kwargs: dict | None = None,
    seed: int = 0,
    mask: Any = None,
    eval_sets: dict[str, Any] | None = None,
    eval_every: int | str | None = "auto",
    diagnostics: Sequence[str] = DIAGNOSTICS,
    eval_batching: str | int = "auto",
    draw_diagnostics: bool = True,
    chain_batch: int | str = "auto",
    per_sample_storage: str = "auto",
    max_per_sample_bytes: int = 2 * 1024**3,
    eval_chunk: int | None = None,
    batch_sampling: str = "with_replacement",
    segment_steps: int | None = None,
    devices: Any = None,
    progress: bool = True,
    bounding_box: float | None = None,
) -> LLCResult:
    """Estimate the local learning coefficient λ̂(w*) with many SGMCMC chains in one program.

    Args:
      loss_fn: `loss_fn(params, batch) -> losses`, per-sample losses of shape (B,) or per-token
        (B, T); a negative log-likelihood (squared error, cross-entropy, ...). See
        `slt_jax.adapters` for Flax models.
      params: w*, the trained parameters (any pytree of float arrays). Chains start here.
      data: pytree whose leaves share the leading sample axis n (placed on the device), or a
        `slt_jax.streaming.StreamingData` kept on the host (numpy arrays or memory-mapped files):
        each segment's minibatches are then gathered on the host and fed to the program,
        double-buffered; same minibatches and λ̂ as in memory, but no full-data evaluations
        (llc_var needs eval_sets, or in-memory data).
      step_size: ε in w ← w - ε/2 ∇U + sqrt(ε) ξ (estimators.md §2).
      localization: γ, the strength of the pull towards w*.
      nbeta: nβ. None (default) or "n_log_n": n / log n. "batch_log_batch": B / log B
        (devinterp v1's default). A number: used as is.
      num_chains: number of chains.
      num_draws: draws kept per chain after burn-in.
      num_burnin: steps discarded before the first draw.
      thin: steps per draw.
      batch_size: minibatch size B (1..n); B == n uses the full data every step.
      sampler: "sgld", "rmsprop_sgld", "rmsprop_sgld_devinterp", "adam_sgld", "sghmc",
        "sgnht" (see slt_jax.kernels), or a `Kernel`.
      sampler_kwargs: extra constants for the named sampler (e.g. beta2 for RMSProp-SGLD).
      seed: chain c uses fold_in(key(seed), c): same seed, same result.
      mask: optional pytree like params of bools / boolean arrays: what is sampled; the rest
        stays frozen at w* (weight-refined LLC). See `adapters.mask_from_paths`.
      eval_sets: named evaluation data sets {name: data pytree with its own leading axis m};
        their per-sample (or per-token) losses are computed inside the program at every
        evaluation and stored as `<name>_losses` with dims (chain, eval_draw, <name>_sample
        [, <name>_token]). Host memory: chains × evaluations × m (× T) × 4 bytes.
      eval_every: draws between evaluations (full-data loss for the variance-based estimate,
        MALA probe, eval sets). "auto": ceil(n / (B·thin)), which keeps evaluation at about a third of the
        sampling cost. None: never.
      diagnostics: what each evaluation computes besides the eval sets: "full_loss" (L_n(w) on
        the whole data: the variance-based λ̂ llc_var, the below-w* health check) and "mala"
        (MALA acceptance of an SGLD probe move, the step-size check). Both by default; () to
        evaluate the eval sets only (the cheapest way to record an observable at every draw).
      eval_batching: how an evaluation runs over each device's chains. "auto" (default): on
        CPU in vmapped batches of about 4k rows (chains × eval_chunk samples) run one after
        another, which keeps a small model's activations in cache (MLP workload, 256 chains:
        58.8k chain-steps/s with all chains at once, 76k in batches of 4); on GPU/TPU all at
        once. "vmap": all chains side by side; "map": one after another (lax.map; least memory,
        and on XLA CPU faster for attention models, see benchmarks/RESULTS.md); an int: chains
        per batch (must divide the chains per device).
      chain_batch: chains per vmapped batch within a step on each device; a device's batches
        run one after another. "auto" (default): on CPU, batches of 16 once a device holds
        more than 64 chains (keeps a step's working set in cache: +9% at 256 and 1,024 chains
        of the small-MLP benchmark), else all of a device's chains at once (always on GPU/TPU).
        An int must divide the chains per device.
      draw_diagnostics: record the gradient norm, the distance to w*, the weight norm and the
        injected noise's norm at every draw (default). False records the loss alone (the rest
        NaN): those reductions cost ~30% of a step for small models (benchmarks/RESULTS.md).
      per_sample_storage: "memory" keeps every evaluation's per-sample losses (needed for BIFs
        and susceptibilities); "moments" keeps per-chain running mean/variance/log-mean-exp per
        sample (enough for V_n, ν̂, WAIC; memory independent of the run length); "auto"
        (default) chooses "memory" unless it would exceed max_per_sample_bytes (2 GiB).
      eval_chunk: samples per chunk of the full-data loss (memory bound); default
        min(n, max(B, 2048)).
      batch_sampling: "with_replacement" (iid indices, cheapest) or "without_replacement"
        (distinct indices within each minibatch; costs a permutation of n per step).
      segment_steps: steps per compiled segment of the host loop (progress/NaN-check cadence).
      devices: devices to spread the chains over (default: all of jax.devices()). Chains are
        padded to a multiple of the device count and the padding dropped; chain c's result
        does not depend on the device count. On a multi-core CPU, expose the cores as devices
        with XLA_FLAGS=--xla_force_host_platform_device_count=<cores> (set before importing jax).
      progress: show a tqdm progress bar.
      bounding_box: optional half-width b: each sampled coordinate is clamped to w* ± b after every
        step (devinterp's `bounding_box_size`); recorded in the metadata.

    Returns:
      LLCResult with .llc_mean, .llc_std, .llc_se, .llc_per_chain, .llc_var, .rhat, .ess,
      .loss_trace, .init_loss, .healthy, .summary(), .to_netcdf(path).
    """
    kwargs = dict(locals())
    for name in ("loss_fn", "params", "data"):
        del kwargs[name]
    grid = estimate_llc_grid(loss_fn, [params], data, configs_per_program=1, **kwargs)
    return grid.sel()


def estimate_llc_checkpoints(
    loss_fn: Callable,
    checkpoints: Any,
    data: Any,
    *,
    checkpoints_per_call: int | str = "auto",
    memory_budget_bytes: int | None = None,
    **kwargs,
) -> list[LLCResult]:
    """λ̂ for K checkpoints of one architecture, many checkpoints × chains per compiled program.

    checkpoints: a list of params pytrees (same structure and shapes), a dict {training step
      (int): params} (the steps label the results: attrs["checkpoint_label"]), or one pytree
      whose leaves have a leading checkpoint axis K.
    checkpoints_per_call: checkpoints sampled together in one program (their chains side by
      side on the chain axis, each chain localized at its own w*). "auto": as many as fit in
      memory_budget_bytes according to the compiled program's memory analysis (default budget:
      80% of the device's memory limit where jax reports one, else half the host's RAM).
    kwargs: everything `estimate_llc` takes (step_size, localization, num_chains, ...).

    Checkpoint k's chain c uses the same random stream as chain c of `estimate_llc` on that
    checkpoint alone, so the per-checkpoint results equal K separate runs (to float rounding).
    Returns one LLCResult per checkpoint, with `checkpoint` (its index) in the metadata.
    """
    labels = None
    # {training step: params} labels the checkpoints; any other dict is one params pytree
    # whose leaves carry a leading checkpoint axis (the stacked form).
    if isinstance(checkpoints, dict) and checkpoints and all(
        isinstance(k, (int, np.integer)) and not isinstance(k, bool) for k in checkpoints
    ):
        labels = list(checkpoints)
    ckpts = _as_checkpoint_list(checkpoints) if labels is None else list(checkpoints.values())
    for bad in ("step_size", "localization", "nbeta"):
        if isinstance(kwargs.get(bad), (list, tuple, np.ndarray)):
            raise TypeError(f"{bad} must be one value here; for a grid over it use estimate_llc_grid.")
    grid = estimate_llc_grid(
        loss_fn, ckpts if labels is None else dict(zip(labels, ckpts)), data,
        configs_per_program=checkpoints_per_call, memory_budget_bytes=memory_budget_bytes, **kwargs,
    )
    return [grid.sel(checkpoint=label) for label in grid.dataset["checkpoint"].values.tolist()]


def _as_checkpoint_list(checkpoints: Any) -> list:
    if isinstance(checkpoints, (list, tuple)):
        if not checkpoints:
            raise ValueError("checkpoints is empty; pass at least one params pytree.")
        return list(checkpoints)
    leaves = jax.tree.leaves(checkpoints)
    if not leaves or any(np.ndim(x) == 0 for x in leaves):
        raise ValueError(
            "checkpoints must be a list of params pytrees or a pytree whose leaves share a leading "
            "checkpoint axis; got leaves without one."
        )
    k = {np.shape(x)[0] for x in leaves}
    if len(k) != 1:
        raise ValueError(f"the leaves of checkpoints disagree on the checkpoint axis length: {sorted(k)}.")
    # numpy slices: indexing a device array would compile a gather before validation ran.
    return [jax.tree.map(lambda x, i=i: np.asarray(x)[i], checkpoints) for i in range(k.pop())]
