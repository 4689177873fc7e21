"""`estimate_llc`: the public entry point that wires posterior, kernel, runner and result."""

from __future__ import annotations

import math
import warnings
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr

from slt_jax import _validate as check
from slt_jax import cpu_dots, cpu_rng
from slt_jax.chains import (
    BATCH_SAMPLING, MemorySink, MomentsSink, RunOutput, RunPlan, build_programs, chain_keys, chain_mesh,
    per_sample_bytes, plan_segments, run_chains,
)
from slt_jax.health import ChainHealth, assess_chains
from slt_jax.kernels import SAMPLERS, Kernel, make_kernel
from slt_jax.posterior import NBETA_RULES, Posterior, make_partition, resolve_nbeta, sampled_loss
from slt_jax.result import CONVENTIONS, LLCResult, encode_attrs
from slt_jax.streaming import StreamingData

# What each evaluation computes besides the eval sets (estimate_llc's `diagnostics`).
DIAGNOSTICS = ("full_loss", "mala")
EVAL_BATCHING = ("vmap", "map")


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
    eval_batching: str = "vmap",
    draw_diagnostics: bool = True,
    chain_batch: int | str = "auto",
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
      data: pytree whose leaves share the leading sample axis n (placed on the device), or a
        `slt_jax.streaming.StreamingData` kept on the host (numpy arrays or memory-mapped files):
        each segment's minibatches are then gathered on the host and fed to the program,
        double-buffered; same minibatches and λ̂ as in memory, but no full-data evaluations
        (llc_var needs eval_sets, or in-memory data).
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
      diagnostics: what each evaluation computes besides the eval sets: "full_loss" (L_n(w) on
        the whole data: the variance-based λ̂ llc_var, the below-w* health check) and "mala"
        (MALA acceptance of an SGLD probe move, the step-size check). Both by default; () to
        evaluate the eval sets only (the cheapest way to record an observable at every draw).
      eval_batching: "vmap" (default) evaluates all chains side by side; "map" runs them one
        after another on each device (lax.map): less memory per evaluation, and on XLA CPU
        faster for models whose vmapped form lowers badly (attention; see benchmarks/RESULTS.md).
      chain_batch: chains per vmapped batch within a step on each device; a device's batches
        run one after another. "auto" (default): on CPU, batches of 32–64 once a device holds
        more than 128 chains (keeps a step's working set in cache: +15% at 1,024 chains of the
        small-MLP benchmark), else all of a device's chains at once (always on GPU/TPU). An int
        must divide the chains per device.
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

    Returns:
      LLCResult with .llc_mean, .llc_std, .llc_se, .llc_per_chain, .llc_var, .rhat, .ess,
      .loss_trace, .init_loss, .healthy, .summary(), .to_netcdf(path).
    """
    return _estimate(
        loss_fn, [params], data, step_size=step_size, localization=localization, nbeta=nbeta,
        num_chains=num_chains, num_draws=num_draws, num_burnin=num_burnin, thin=thin,
        batch_size=batch_size, sampler=sampler, sampler_kwargs=sampler_kwargs, seed=seed, mask=mask,
        eval_sets=eval_sets, eval_every=eval_every, diagnostics=diagnostics, eval_batching=eval_batching,
        draw_diagnostics=draw_diagnostics, chain_batch=chain_batch,
        per_sample_storage=per_sample_storage,
        max_per_sample_bytes=max_per_sample_bytes, eval_chunk=eval_chunk,
        batch_sampling=batch_sampling, segment_steps=segment_steps, devices=devices,
        progress=progress, checkpoints_per_call=1,
    )[0]


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

    checkpoints: a list of params pytrees (same structure and shapes), or one pytree whose
      leaves have a leading checkpoint axis K.
    checkpoints_per_call: checkpoints sampled together in one program (their chains side by
      side on the chain axis, each chain localized at its own w*). "auto": as many as fit in
      memory_budget_bytes according to the compiled program's memory analysis (default budget:
      80% of the device's memory limit where jax reports one, else half the host's RAM).
    kwargs: everything `estimate_llc` takes (step_size, localization, num_chains, ...).

    Checkpoint k's chain c uses the same random stream as chain c of `estimate_llc` on that
    checkpoint alone, so the per-checkpoint results equal K separate runs (to float rounding).
    Returns one LLCResult per checkpoint, with `checkpoint` (its index) in the metadata.
    """
    ckpts = _as_checkpoint_list(checkpoints)
    return _estimate(
        loss_fn, ckpts, data, checkpoints_per_call=checkpoints_per_call,
        memory_budget_bytes=memory_budget_bytes, **kwargs,
    )


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
    return [jax.tree.map(lambda x, i=i: x[i], checkpoints) for i in range(k.pop())]


def _estimate(
    loss_fn: Callable,
    checkpoints: list,
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
    eval_batching: str = "vmap",
    draw_diagnostics: bool = True,
    chain_batch: int | str = "auto",
    per_sample_storage: str = "auto",
    max_per_sample_bytes: int = 2 * 1024**3,
    eval_chunk: int | None = None,
    batch_sampling: str = "with_replacement",
    segment_steps: int | None = None,
    devices: Any = None,
    progress: bool = True,
    checkpoints_per_call: int | str = 1,
    memory_budget_bytes: int | None = None,
) -> list[LLCResult]:
    """Validate, then run the checkpoints in groups of `checkpoints_per_call` programs."""
    cpu_rng.install()  # same random bits, ~10× cheaper on CPU (see slt_jax.cpu_rng)
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
    streaming = isinstance(data, StreamingData)
    n = data.num_samples if streaming else check.data_size(data)
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
    if checkpoints_per_call != "auto":
        checkpoints_per_call = check.integer("checkpoints_per_call", checkpoints_per_call, minimum=1)
    if isinstance(diagnostics, str):
        diagnostics = (diagnostics,)
    if not isinstance(diagnostics, (tuple, list, set, frozenset)):
        raise TypeError(
            f"diagnostics must be a tuple of names from {list(DIAGNOSTICS)} (() for none); got {diagnostics!r}."
        )
    diagnostics = tuple(check.choice("diagnostics", d, DIAGNOSTICS) for d in diagnostics)
    eval_batching = check.choice("eval_batching", eval_batching, EVAL_BATCHING)
    if chain_batch != "auto":
        chain_batch = check.integer("chain_batch", chain_batch, minimum=1)
    if not isinstance(draw_diagnostics, (bool, np.bool_)):
        raise TypeError(f"draw_diagnostics must be True or False; got {draw_diagnostics!r}.")
    eval_sets = dict(eval_sets or {})
    for name, es in eval_sets.items():
        if not isinstance(name, str) or not name.isidentifier():
            raise ValueError(f"eval_sets keys must be identifiers (they name result variables); got {name!r}.")
        check.data_size(es, name=f"eval_sets[{name!r}]")
    if eval_sets and eval_every is None:
        raise ValueError("eval_sets need evaluations: set eval_every to an integer (or 'auto'), not None.")
    params = checkpoints[0]
    for k, ckpt in enumerate(checkpoints):
        name = "params" if len(checkpoints) == 1 else f"checkpoints[{k}]"
        check.mask_matches(mask, ckpt)
        check.finite_params(ckpt, name=name)
        check.same_structure(params, ckpt, name)
    checkpoints = [jax.tree.map(jnp.asarray, c) for c in checkpoints]
    params = checkpoints[0]
    if streaming:  # trace the loss on the first rows; the data stays on the host
        check.loss_output(loss_fn, params, jax.tree.map(jnp.asarray, data.head(batch_size)), batch_size)
    else:
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
    planned = per_sample_bytes(num_chains * len(checkpoints), num_evals, losses_per_eval)
    if per_sample_storage == "auto":
        per_sample_storage = "memory" if planned <= max_per_sample_bytes else "moments"

    if kernel is None:
        kernel = make_kernel(sampler_name, step_size, **(sampler_kwargs or {}))
    nbeta_value, nbeta_rule = resolve_nbeta(nbeta, n, batch_size)

    # ---- build ----
    partition = make_partition(params, mask)
    devices = list(jax.devices() if devices is None else devices)
    if not devices:
        raise ValueError("devices is empty; pass None (all devices) or a list of jax devices.")
    mesh = chain_mesh(devices)
    platform = devices[0].platform  # where the chains run, which need not be the default backend
    num_ckpt = len(checkpoints)
    blocks = plan_segments(num_draws, num_burnin, thin, eval_every or 1, segment_steps)
    raw_loss = sampled_loss(loss_fn, partition)

    def plan_for(group: int) -> RunPlan:
        total = num_chains * group
        return RunPlan(
            num_chains=math.ceil(total / len(devices)) * len(devices),
            num_draws=num_draws,
            num_burnin=num_burnin,
            thin=thin,
            batch_size=batch_size,
            num_samples=n,
            batch_sampling=batch_sampling,
            eval_every=eval_every,
            eval_chunk=min(eval_chunk, n),
            draw_blocks_per_segment=blocks,
            per_chain_center=group > 1 or num_ckpt > 1,
            streaming=streaming,
            eval_full_loss="full_loss" in diagnostics,
            eval_mala="mala" in diagnostics,
            eval_chain_group=1 if eval_batching == "map" else 0,
            num_devices=len(devices),
            step_chain_group=resolve_chain_batch(chain_batch, math.ceil(total / len(devices)), platform),
            draw_diagnostics=bool(draw_diagnostics),
            cpu_dot_layout=cpu_dots.enabled(platform),
        )

    common = dict(
        nbeta=nbeta_value, nbeta_rule=nbeta_rule, localization=localization, step_size=step_size,
        sampler=sampler_name, sampler_kwargs=sampler_kwargs or {}, num_chains=num_chains,
        num_draws=num_draws, num_burnin=num_burnin, thin=thin, batch_size=batch_size,
        batch_sampling=batch_sampling, num_samples=n, num_params=partition.num_sampled(params),
        num_params_total=int(sum(np.size(x) for x in jax.tree.leaves(params))),
        masked=mask is not None, seed=seed, eval_every=eval_every, eval_sets=sorted(eval_sets),
        diagnostics=list(diagnostics), eval_batching=eval_batching, draw_diagnostics=bool(draw_diagnostics),
        chain_batch=chain_batch, cpu_dot_layout=cpu_dots.enabled(platform),
        per_sample_storage=per_sample_storage, per_sample_bytes=planned,
        key_derivation="chain c, step s: fold_in(fold_in(key(seed), c), s)",
        mala="acceptance of one SGLD probe move (ε = step_size, same minibatch) at each evaluation; not taken",
        conventions=CONVENTIONS, slt_jax_version=_version(), jax_version=jax.__version__,
        backend=platform, num_devices=len(devices), streaming=streaming,
    )
    if checkpoints_per_call == "auto":
        checkpoints_per_call = 1 if num_ckpt == 1 else plan_checkpoints_per_call(
            raw_loss, kernel, plan_for(1), step_size, mesh, partition, checkpoints[0], data, eval_sets,
            nbeta_value, localization, num_ckpt, memory_budget_bytes,
        )
    results = []
    # One plan, one program for every group: the last group is padded to full size.
    plan = plan_for(checkpoints_per_call if num_ckpt > 1 else 1)
    programs = build_programs(raw_loss, kernel, plan, step_size, mesh)
    for first in range(0, num_ckpt, checkpoints_per_call):
        group = checkpoints[first : first + checkpoints_per_call]
        results += _run_group(
            programs, plan, group, first, partition, data, eval_sets, nbeta_value, localization,
            seed, num_chains, per_sample_storage, mesh, progress, common,
        )
    return results


def _run_group(
    programs, plan, group, first_index, partition, data, eval_sets, nbeta_value, localization,
    seed, num_chains, per_sample_storage, mesh, progress, common,
) -> list[LLCResult]:
    """Sample one program's worth of checkpoints and label each checkpoint's chains."""
    splits = [partition.split(c) for c in group]
    init_losses = [full_data_loss(programs, plan, center, frozen, data) for center, frozen in splits]
    for k, value in enumerate(init_losses):
        if not math.isfinite(value):
            raise ValueError(f"the full-data loss at w* (checkpoint {first_index + k}) is {value}; check loss_fn and params.")
    if plan.per_chain_center:
        # Chain axis = checkpoint-major blocks of num_chains; the padding repeats the last one.
        reps = [num_chains] * len(splits)
        reps[-1] += plan.num_chains - num_chains * len(splits)
        stack = lambda trees: jax.tree.map(  # noqa: E731
            lambda *xs: jnp.concatenate([jnp.broadcast_to(x, (r,) + x.shape) for x, r in zip(xs, reps)]), *trees
        )
        center = stack([c for c, _ in splits])
        frozen = stack([f for _, f in splits])
        base = chain_keys(seed, num_chains)
        pad = plan.num_chains - num_chains * len(splits)
        keys = jnp.concatenate([base] * len(splits) + ([chain_keys(seed, pad, num_chains)] if pad else []))
    else:
        center, frozen = splits[0]
        keys = None
    posterior = Posterior(
        nbeta=jnp.asarray(nbeta_value, jnp.float32),
        localization=jnp.asarray(localization, jnp.float32),
        center=center,
        element_mask=list(partition.element_mask),
    )
    sink = MemorySink() if per_sample_storage == "memory" else MomentsSink()
    out = run_chains(
        programs, plan, center=center, frozen=frozen, data=data, eval_sets=eval_sets,
        posterior=posterior, seed=seed, per_sample_sink=sink, mesh=mesh, keys=keys, progress=progress,
    )
    results = []
    for k, init_loss in enumerate(init_losses):
        chains = slice(k * num_chains, (k + 1) * num_chains)
        part, part_sink = out.select_chains(chains), sink.select_chains(chains)
        health = assess_chains(
            part.draws.loss, part.burnin.loss, part.blocks.full_loss, init_loss, nbeta_value,
            part.first_bad_draw, common["num_burnin"], common["thin"],
        )
        attrs = dict(
            init_loss=init_loss,
            **common,
            checkpoint=first_index + k,
            checkpoints_in_program=len(group),
            padded_chains=plan.num_chains,
            compile_s=out.compile_s,
            sampling_s=out.sampling_s,
            chain_steps_per_s=num_chains * len(group) * plan.total_steps / max(out.sampling_s, 1e-12),
        )
        results.append(LLCResult(build_dataset(part, part_sink, health, attrs)))
        excluded = [str(h) for h in health if not h.healthy]
        if excluded:
            where = f" (checkpoint {first_index + k})" if plan.per_chain_center else ""
            warnings.warn(
                f"{len(excluded)} of {num_chains} chains{where} were unhealthy and are excluded from "
                f"every summary: {excluded}",
                RuntimeWarning,
                stacklevel=3,
            )
    return results


def resolve_chain_batch(chain_batch: int | str, per_device: int, platform: str = "cpu") -> int:
    """Chains per vmapped batch in a step (0 = all of a device's chains in one vmap)."""
    if chain_batch == "auto":
        if platform != "cpu" or per_device <= 128:
            return 0
        fits = [g for g in range(64, 31, -1) if per_device % g == 0]
        return fits[0] if fits else 0
    if per_device % chain_batch:
        raise ValueError(
            f"chain_batch={chain_batch} must divide the {per_device} chains per device "
            f"(num_chains × checkpoints per call, padded to a multiple of the device count)."
        )
    return 0 if chain_batch >= per_device else chain_batch


def full_data_loss(programs, plan: RunPlan, center, frozen, data) -> float:
    """L_n(w*): on the device, or for streamed data chunk by chunk from the host."""
    if not plan.streaming:
        return float(programs.full_loss(center, frozen, data))
    total = 0.0
    for rows, real in data.chunks(plan.eval_chunk):
        per_sample = programs.chunk_losses(center, frozen, jax.tree.map(jnp.asarray, rows))
        total += float(jnp.sum(per_sample[:real]))
    return total / plan.num_samples


def plan_checkpoints_per_call(
    raw_loss, kernel, plan1, step_size, mesh, partition, params, data, eval_sets, nbeta_value,
    localization, num_ckpt, memory_budget_bytes,
) -> int:
    """How many checkpoints fit in one program: compile the one-checkpoint program (per-chain
    w*), read its memory analysis, divide the budget by it. Conservative: the fixed part
    (data, compiled code) is counted once per checkpoint."""
    programs = build_programs(raw_loss, kernel, plan1, step_size, mesh)
    center, frozen = partition.split(params)
    per_chain = lambda t: jax.tree.map(lambda x: jnp.broadcast_to(x, (plan1.num_chains,) + x.shape), t)  # noqa: E731
    posterior = Posterior(jnp.float32(nbeta_value), jnp.float32(localization), per_chain(center),
                          list(partition.element_mask))
    states = jax.eval_shape(programs.init, per_chain(center), plan1.num_chains)
    keys = chain_keys(0, plan1.num_chains)
    if plan1.streaming:  # the program sees one segment's minibatches, not the data
        lead = (plan1.segment_draws * plan1.thin, plan1.num_chains, plan1.batch_size)
        data = jax.tree.map(lambda x: jax.ShapeDtypeStruct(lead + x.shape[1:], x.dtype), data.head(1))
    compiled = programs.draws.lower(
        states, keys, jnp.int32(0), per_chain(frozen), data, eval_sets, posterior
    ).compile()
    analysis = compiled.memory_analysis()
    need = max(1, int(analysis.argument_size_in_bytes + analysis.output_size_in_bytes
                      + analysis.temp_size_in_bytes - getattr(analysis, "alias_size_in_bytes", 0)))
    budget = memory_budget_bytes or device_memory_budget()
    return max(1, min(num_ckpt, budget // need))


def device_memory_budget() -> int:
    """80% of the first device's memory limit where jax reports it (GPU/TPU), else half the RAM."""
    stats = jax.devices()[0].memory_stats() or {}
    if stats.get("bytes_limit"):
        return int(0.8 * stats["bytes_limit"])
    import os

    return int(0.5 * os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))


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
