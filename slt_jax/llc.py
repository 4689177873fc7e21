"""`estimate_llc`: the public entry point that wires posterior, kernel, runner and result."""

from __future__ import annotations

import math
import warnings
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr

from slt_jax import _validate as check
from slt_jax.chains import (
    BATCH_SAMPLING, MemorySink, MomentsSink, RunOutput, RunPlan, build_programs, chain_mesh,
    per_sample_bytes, plan_segments, run_chains,
)
from slt_jax.health import ChainHealth, assess_chains
from slt_jax.kernels import SAMPLERS, Kernel, make_kernel
from slt_jax.posterior import NBETA_RULES, Posterior, make_partition, resolve_nbeta, sampled_loss
from slt_jax.result import CONVENTIONS, LLCResult, encode_attrs


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
    per_sample_storage: str = "auto",
    max_per_sample_bytes: int = 2 * 1024**3,
    eval_chunk: int | None = None,
    batch_sampling: str = "with_replacement",
    segment_steps: int | None = None,
    devices: Any = None,
    progress: bool = True,
) -> LLCResult:
    """Estimate the local learning coefficient λ̂(w*) with many SGMCMC chains in one program.

    Args:
      loss_fn: `loss_fn(params, batch) -> losses`, per-sample losses of shape (B,) or per-token
        (B, T); a negative log-likelihood (squared error, cross-entropy, ...). See
        `slt_jax.adapters` for Flax models.
      params: w*, the trained parameters (any pytree of float arrays). Chains start here.
      data: pytree whose leaves share the leading sample axis n.
      step_size: ε in w ← w - ε/2 ∇U + sqrt(ε) ξ (estimators.md §2).
      localization: γ, the strength of the pull towards w*.
      nbeta: nβ. None (default) or "n_log_n": n / log n. "batch_log_batch": B / log B
        (devinterp v1's default). A number: used as is.
      num_chains, num_draws: chains, and draws kept per chain after burn-in.
      num_burnin: steps discarded before the first draw. thin: steps per draw.
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

    Returns:
      LLCResult with .llc_mean, .llc_std, .llc_se, .llc_per_chain, .llc_var, .rhat, .ess,
      .loss_trace, .init_loss, .healthy, .summary(), .to_netcdf(path).
    """
    # ---- validate everything before anything is traced or compiled ----
    if not callable(loss_fn):
        raise TypeError(f"loss_fn must be callable as loss_fn(params, batch); got {type(loss_fn).__name__}.")
    step_size = check.positive_number("step_size", step_size)
    localization = check.positive_number("localization", localization, allow_zero=True)
    num_chains = check.integer("num_chains", num_chains, minimum=1)
    num_draws = check.integer("num_draws", num_draws, minimum=1)
    num_burnin = check.integer("num_burnin", num_burnin, minimum=0)
    thin = check.integer("thin", thin, minimum=1)
    seed = check.integer("seed", seed, minimum=0)
    n = check.data_size(data)
    batch_size = check.integer(
        "batch_size", batch_size, minimum=1, maximum=n,
        hint=f"The data has n = {n} samples; use batch_size ≤ n (batch_size = n for full-batch).",
    )
    batch_sampling = check.choice("batch_sampling", batch_sampling, BATCH_SAMPLING)
    if isinstance(sampler, Kernel):
        kernel, sampler_name = sampler, "custom"
    else:
        sampler_name = check.choice("sampler", sampler, SAMPLERS)
        kernel = None
    if isinstance(nbeta, str):
        check.choice("nbeta", nbeta, NBETA_RULES)
    elif nbeta is not None:
        check.positive_number("nbeta", nbeta)
    if n == 1 and nbeta in (None, "n_log_n"):
        raise ValueError("nbeta defaults to n / log n, which is undefined for n = 1; pass nbeta explicitly.")
    if batch_size == 1 and nbeta == "batch_log_batch":
        raise ValueError("nbeta='batch_log_batch' is undefined for batch_size = 1; pass nbeta explicitly.")
    if eval_every == "auto":
        eval_every = max(1, math.ceil(n / (batch_size * thin)))
    elif eval_every is not None:
        eval_every = check.integer("eval_every", eval_every, minimum=1)
    eval_chunk = check.integer(
        "eval_chunk", eval_chunk if eval_chunk is not None else min(n, max(batch_size, 2048)), minimum=1
    )
    if segment_steps is not None:
        segment_steps = check.integer("segment_steps", segment_steps, minimum=1)
    eval_sets = dict(eval_sets or {})
    for name, es in eval_sets.items():
        if not isinstance(name, str) or not name.isidentifier():
            raise ValueError(f"eval_sets keys must be identifiers (they name result variables); got {name!r}.")
        check.data_size(es, name=f"eval_sets[{name!r}]")
    if eval_sets and eval_every is None:
        raise ValueError("eval_sets need evaluations: set eval_every to an integer (or 'auto'), not None.")
    check.mask_matches(mask, params)
    check.finite_params(params)
    params = jax.tree.map(jnp.asarray, params)
    data = jax.tree.map(jnp.asarray, data)
    check.loss_output(loss_fn, params, data, batch_size)
    eval_sets = {k: jax.tree.map(jnp.asarray, v) for k, v in eval_sets.items()}
    losses_per_eval = {}
    for name, es in eval_sets.items():
        m = check.data_size(es)
        check.loss_output(loss_fn, params, es, min(batch_size, m), name=f"eval_sets[{name!r}]")
        losses_per_eval[name] = int(np.prod(jax.eval_shape(loss_fn, params, es).shape))
    check.choice("per_sample_storage", per_sample_storage, ("auto", "memory", "moments"))
    num_evals = math.ceil(num_draws / eval_every) if eval_every else 0
    planned = per_sample_bytes(num_chains, num_evals, losses_per_eval)
    if per_sample_storage == "auto":
        per_sample_storage = "memory" if planned <= max_per_sample_bytes else "moments"

    if kernel is None:
        kernel = make_kernel(sampler_name, step_size, **(sampler_kwargs or {}))
    nbeta_value, nbeta_rule = resolve_nbeta(nbeta, n, batch_size)

    # ---- build ----
    partition = make_partition(params, mask)
    center, frozen = partition.split(params)
    posterior = Posterior(
        nbeta=jnp.asarray(nbeta_value, jnp.float32),
        localization=jnp.asarray(localization, jnp.float32),
        center=center,
        element_mask=list(partition.element_mask),
    )
    blocks = plan_segments(num_draws, num_burnin, thin, eval_every or 1, segment_steps)
    devices = list(jax.devices() if devices is None else devices)
    if not devices:
        raise ValueError("devices is empty; pass None (all devices) or a list of jax devices.")
    mesh = chain_mesh(devices)
    padded_chains = math.ceil(num_chains / len(devices)) * len(devices)
    plan = RunPlan(
        num_chains=padded_chains,
        num_draws=num_draws,
        num_burnin=num_burnin,
        thin=thin,
        batch_size=batch_size,
        num_samples=n,
        batch_sampling=batch_sampling,
        eval_every=eval_every,
        eval_chunk=min(eval_chunk, n),
        draw_blocks_per_segment=blocks,
    )
    programs = build_programs(sampled_loss(loss_fn, partition), kernel, plan, step_size, mesh)
    init_loss = float(programs.full_loss(center, frozen, data))
    if not math.isfinite(init_loss):
        raise ValueError(f"the full-data loss at w* is {init_loss}; check loss_fn and params.")

    # ---- run ----
    sink = MemorySink() if per_sample_storage == "memory" else MomentsSink()
    out = run_chains(
        programs, plan, center=center, frozen=frozen, data=data, eval_sets=eval_sets,
        posterior=posterior, seed=seed, per_sample_sink=sink, mesh=mesh, progress=progress,
    )
    if padded_chains > num_chains:  # drop the padding chains that filled the last device
        out = out.take_chains(num_chains)
        sink.take_chains(num_chains)

    # ---- label ----
    health = assess_chains(
        out.draws.loss, out.burnin.loss, out.blocks.full_loss, init_loss, nbeta_value,
        out.first_bad_draw, num_burnin, thin,
    )
    attrs = dict(
        init_loss=init_loss,
        nbeta=nbeta_value,
        nbeta_rule=nbeta_rule,
        localization=localization,
        step_size=step_size,
        sampler=sampler_name,
        sampler_kwargs=sampler_kwargs or {},
        num_chains=num_chains,
        num_draws=num_draws,
        num_burnin=num_burnin,
        thin=thin,
        batch_size=batch_size,
        batch_sampling=batch_sampling,
        num_samples=n,
        num_params=partition.num_sampled(params),
        num_params_total=int(sum(np.size(x) for x in jax.tree.leaves(params))),
        masked=mask is not None,
        seed=seed,
        eval_every=eval_every,
        eval_sets=sorted(eval_sets),
        per_sample_storage=per_sample_storage,
        per_sample_bytes=planned,
        key_derivation="chain c, step s: fold_in(fold_in(key(seed), c), s)",
        mala="acceptance of one SGLD probe move (ε = step_size, same minibatch) at each evaluation; not taken",
        conventions=CONVENTIONS,
        compile_s=out.compile_s,
        sampling_s=out.sampling_s,
        chain_steps_per_s=num_chains * plan.total_steps / max(out.sampling_s, 1e-12),
        padded_chains=padded_chains,
        slt_jax_version=_version(),
        jax_version=jax.__version__,
        backend=jax.default_backend(),
        num_devices=len(devices),
    )
    result = LLCResult(build_dataset(out, sink, health, attrs))
    excluded = [str(h) for h in health if not h.healthy]
    if excluded:
        warnings.warn(
            f"{len(excluded)} of {num_chains} chains were unhealthy and are excluded from every "
            f"summary: {excluded}",
            RuntimeWarning,
            stacklevel=2,
        )
    return result


def build_dataset(out: RunOutput, sink, health: list[ChainHealth], attrs: dict) -> xr.Dataset:
    """Label the run's arrays: dims chain/draw/burnin_draw/eval_draw (+ per eval set sample axes)."""
    chain_draw, chain_burn, chain_eval = ("chain", "draw"), ("chain", "burnin_draw"), ("chain", "eval_draw")
    variables = {
        "loss": (chain_draw, out.draws.loss),
        "grad_norm": (chain_draw, out.draws.grad_norm),
        "distance": (chain_draw, out.draws.distance),
        "weight_norm": (chain_draw, out.draws.weight_norm),
        "noise_norm": (chain_draw, out.draws.noise_norm),
        "burnin_loss": (chain_burn, out.burnin.loss),
        "burnin_distance": (chain_burn, out.burnin.distance),
        "eval_loss": (chain_eval, out.blocks.full_loss),
        "mala_acceptance": (chain_eval, out.blocks.mala),
        "healthy": (("chain",), np.array([h.healthy for h in health])),
        "health_reason": (("chain",), np.array([h.reason for h in health], dtype=object).astype(str)),
        "health_warnings": (("chain",), np.array(["; ".join(h.warnings) for h in health], dtype=object).astype(str)),
    }
    if sink.mode == "memory":
        for name, losses in sink.arrays().items():
            extra = tuple(f"{name}_{axis}" for axis in ("sample", "token", "position")[: losses.ndim - 2])
            variables[f"{name}_losses"] = (chain_eval + extra, losses)
    else:
        for name, accs in sink.acc.items():
            dims = ("chain", f"{name}_sample")
            variables[f"{name}_moment_count"] = (("chain",), np.array([a.count for a in accs]))
            variables[f"{name}_moment_mean"] = (dims, np.stack([a.mean for a in accs]))
            variables[f"{name}_moment_m2"] = (dims, np.stack([a.m2 for a in accs]))
            variables[f"{name}_moment_lse"] = (dims, np.stack([a.logsumexp_neg for a in accs]))
    return xr.Dataset(
        variables,
        coords={
            "chain": np.arange(out.draws.loss.shape[0]),
            "draw": np.arange(out.draws.loss.shape[1]),
            "burnin_draw": np.arange(out.burnin.loss.shape[1]),
            "eval_draw": out.eval_draws,
        },
        attrs=encode_attrs(attrs),
    )


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("slt_jax")
    except PackageNotFoundError:
        return "unknown"
