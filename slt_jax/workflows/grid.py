"""`estimate_llc_grid`: checkpoints × ε × γ × nβ × chains as one compiled program.

validate → plan → run → label. The configurations are laid out checkpoint-major along the
chain axis of one program (or of a few programs of the same shape when memory requires,
all served by one compilation); every chain reads its own configuration as data.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import os
from typing import Any, Callable, Sequence

import jax
import numpy as np

from slt_jax import backends
from slt_jax.engine.cache import PROGRAM_CACHE
from slt_jax.engine.compile_log import count_compilations
from slt_jax.engine.config import make_config
from slt_jax.engine.driver import RunOutput, run_chains
from slt_jax.engine.plan import RunPlan, plan_segments
from slt_jax.engine.program import build_programs
from slt_jax.engine.sharding import chain_mesh, put, shardings
from slt_jax.engine.sinks import MemorySink, MomentsSink
from slt_jax.posterior import sampled_loss
from slt_jax.workflows import compile_cache
from slt_jax.workflows.label import label_grid
from slt_jax.workflows.options import DIAGNOSTICS, GridAxes, validate_axes, validate_run
from slt_jax.workflows.problem import Problem, checkpoint_list, num_evaluations, storage_mode, validate_problem

__all__ = ["estimate_llc_grid"]


def estimate_llc_grid(
    loss_fn: Callable,
    checkpoints: Any,
    data: Any,
    *,
    step_size: float | Sequence[float],
    localization: float | Sequence[float],
    nbeta: float | str | None | Sequence = None,
    num_chains: int,
    num_draws: int,
    num_burnin: int = 0,
    thin: int = 1,
    batch_size: int,
    sampler: Any = "sgld",
    sampler_kwargs: dict | None = None,
    seed: int = 0,
    mask: Any = None,
    eval_sets: dict | None = None,
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
    configs_per_program: int | str = "auto",
    memory_budget_bytes: int | None = None,
    components: dict | None = None,
):
    """λ̂ over a grid of checkpoints × step sizes × localizations × nβ, as one program.

    checkpoints: a list of params pytrees (labels 0..K-1) or a dict {label: params}, e.g.
      training step → params; all of one architecture.
    step_size, localization, nbeta: a scalar or a list each (nbeta entries may be rule names,
      see `estimate_llc`). The grid is their product with the checkpoints; every
      configuration runs `num_chains` chains.
    bounding_box: optional half-width b: every sampled coordinate is clamped to w* ± b after
      each step (devinterp's `bounding_box_size`); recorded.
    components: optional {name: mask} weight restrictions (see adapters.layer_masks,
      head_masks, mask_from_paths; None = all weights) as a fifth grid dim "component": every
      chain carries its own element mask, so all components run in one program (instead of
      `mask`). A component's chains draw the same noise stream whatever the other components,
      but not the stream of a separate `estimate_llc(mask=...)` run (the noise is drawn for
      every leaf any component samples).
    configs_per_program: configurations per compiled program; "auto" puts all of them in one
      unless the compiled program's memory analysis exceeds memory_budget_bytes (default 80% of
      the device memory where jax reports it, else half the host RAM), then halves.
    Everything else as in `estimate_llc`.

    Chain c of every configuration uses the key fold_in(key(seed), c): its draws depend only on
    the seed, c and its own configuration, never on the other configurations in the program
    or the device count, so each configuration equals a separate `estimate_llc` run.
    Returns a `GridResult` (dims checkpoint, step_size, localization, nbeta, chain, draw).
    """
    labels, ckpts = checkpoint_list(checkpoints)
    sampling, evals, execution, eval_sets, n = validate_run(
        loss_fn, data, num_chains=num_chains, num_draws=num_draws, num_burnin=num_burnin, thin=thin,
        batch_size=batch_size, sampler=sampler, sampler_kwargs=sampler_kwargs, seed=seed, eval_sets=eval_sets,
        eval_every=eval_every, diagnostics=diagnostics, eval_batching=eval_batching,
        draw_diagnostics=draw_diagnostics, chain_batch=chain_batch, per_sample_storage=per_sample_storage,
        max_per_sample_bytes=max_per_sample_bytes, eval_chunk=eval_chunk, batch_sampling=batch_sampling,
        segment_steps=segment_steps, devices=devices, progress=progress, bounding_box=bounding_box,
        configs_per_program=configs_per_program, memory_budget_bytes=memory_budget_bytes,
    )
    axes = validate_axes(step_size, localization, nbeta, labels, n, sampling.batch_size)
    if components is not None:
        axes = dataclasses.replace(axes, component_labels=_component_labels(components, mask))
    if sampling.sampler == "custom" and len(axes.step_size) > 1:
        raise ValueError("a custom Kernel carries its own step size; pass one step_size, or a sampler name for a grid.")
    _check_adapted_checkpoints(loss_fn, ckpts, mask)
    problem = validate_problem(loss_fn, ckpts, data, eval_sets, mask, sampling.batch_size, components)
    # ---- nothing above traced a program or compiled; from here on the run starts ----
    compile_cache.enable_default()
    choice = backends.choose(execution.devices)
    with backends.active(choice), count_compilations() as log:
        return _run(loss_fn, problem, axes, sampling, evals, execution, log, choice)


def _component_labels(components, mask) -> tuple:
    if mask is not None:
        raise ValueError("pass either mask= (one restriction) or components= ({name: mask}), not both.")
    if not isinstance(components, dict) or not components:
        raise TypeError(f"components must be a non-empty dict {{name: mask}}; got {components!r}.")
    bad = [k for k in components if not isinstance(k, str)]
    if bad:
        raise TypeError(f"component names must be strings; got {bad}.")
    return tuple(components)


def _check_adapted_checkpoints(loss_fn, ckpts, mask) -> None:
    from slt_jax.adapters import check_checkpoints

    check_checkpoints(loss_fn, ckpts, mask=mask)


def _run(loss_fn, problem: Problem, axes: GridAxes, sampling, evals, execution, log, choice):
    num_configs = axes.num_configs
    devices = execution.devices
    mesh = chain_mesh(devices)
    storage, planned = storage_mode(
        evals.per_sample_storage, sampling.num_chains * num_configs,
        num_evaluations(sampling.num_draws, evals.eval_every), problem.losses_per_eval, evals.max_per_sample_bytes,
    )
    per_chain_center = len(axes.checkpoint_labels) > 1
    setup = _Setup(loss_fn, problem, sampling, evals, execution, mesh, choice, per_chain_center)
    setup.per_chain_mask = bool(axes.component_labels)
    configs = list(itertools.product(*(range(s) for s in axes.shape)))
    per_program = _configs_per_program(setup, axes, configs, execution)
    entry, plan = setup.entry(per_program)
    init_losses = [setup.init_loss(entry, plan, c, f) for c, f in zip(problem.centers, problem.frozens)]
    for label, value in zip(axes.checkpoint_labels, init_losses):
        if not math.isfinite(value):
            raise ValueError(f"the full-data loss at w* (checkpoint {label!r}) is {value}; check loss_fn and params.")
    parts = []
    for first in range(0, num_configs, per_program):
        group = configs[first : first + per_program]
        sink = MemorySink() if storage == "memory" else MomentsSink()
        out = setup.run_group(entry, plan, group, axes, sink)
        parts.append((group, out, sink))
    attrs = setup.attrs(axes, storage, planned, per_program, plan, log)
    return label_grid(parts, axes, init_losses, sampling, problem, attrs, plan)


class _Setup:
    """Builds (or fetches from the cache) the program for a number of configurations, and the
    inputs of each group of configurations."""

    def __init__(self, loss_fn, problem, sampling, evals, execution, mesh, choice, per_chain_center):
        self.loss_fn, self.problem, self.sampling, self.evals = loss_fn, problem, sampling, evals
        self.execution, self.mesh, self.choice = execution, mesh, choice
        self.platform = choice.platform  # where the chains run, which need not be the default backend
        self.per_chain_center = per_chain_center
        self.per_chain_mask = False
        self.cache_hits: list[bool] = []
        self._inputs: dict = {}  # (chains in program, configurations) -> host inputs, built once

    def plan(self, configs: int) -> RunPlan:
        s, e, x = self.sampling, self.evals, self.execution
        total = s.num_chains * configs
        ndev = len(x.devices)
        return RunPlan(
            num_chains=math.ceil(total / ndev) * ndev,
            num_draws=s.num_draws, num_burnin=s.num_burnin, thin=s.thin, batch_size=s.batch_size,
            num_samples=self._n(), batch_sampling=s.batch_sampling, eval_every=e.eval_every,
            eval_chunk=e.eval_chunk,
            draw_blocks_per_segment=plan_segments(s.num_draws, s.num_burnin, s.thin, e.eval_every or 1, x.segment_steps),
            per_chain_center=self.per_chain_center, per_chain_mask=self.per_chain_mask,
            streaming=self.problem.streaming,
            eval_full_loss="full_loss" in e.diagnostics, eval_mala="mala" in e.diagnostics, num_devices=ndev,
            draw_diagnostics=e.draw_diagnostics,
            step_chain_group=backends.resolve_chain_batch(x.chain_batch, math.ceil(total / ndev), self.platform),
            eval_chain_group=backends.resolve_eval_batch(e.eval_batching, math.ceil(total / ndev), e.eval_chunk,
                                                         self.platform),
            cpu_dot_layout=self.choice.cpu_dot_layout, bounding_box=s.bounding_box is not None,
            loss_dtypes=self.problem.loss_dtypes if self._low_precision() else (),
        )

    def _n(self) -> int:
        data = self.problem.data
        return data.num_samples if self.problem.streaming else jax.tree.leaves(data)[0].shape[0]

    def _low_precision(self) -> bool:
        return any(d != "float32" for d in self.problem.loss_dtypes)

    def entry(self, configs: int):
        plan = self.plan(configs)
        s, p = self.sampling, self.problem
        sampler_key = (s.sampler, tuple(sorted(s.sampler_structural.items())), s.kernel)
        part = p.partition
        key = (self.loss_fn, part.treedef, part.sampled_index, part.frozen_index,
               tuple(m is None for m in part.element_mask), sampler_key, plan,
               tuple(d.id for d in self.execution.devices))

        def build():
            return build_programs(sampled_loss(self.loss_fn, part), _engine_sampler(s), plan, self.mesh,
                                  self.choice.grad_transform())

        entry, hit = PROGRAM_CACHE.entry(key, build)
        self.cache_hits.append(hit)
        return entry, plan

    def init_loss(self, entry, plan, center, frozen) -> float:
        """L_n(w*): on the device, or for streamed data chunk by chunk from the host."""
        programs = entry.programs
        # Placed like the program's inputs, so any input placement reuses one compiled loss.
        replicated = shardings(self.mesh)[2]
        center, frozen = put((list(center), list(frozen)), replicated)
        if not plan.streaming:
            return float(programs.full_loss(center, frozen, put(self.problem.data, replicated)))
        total = 0.0
        for rows, real in self.problem.data.chunks(plan.eval_chunk):
            per_sample = programs.chunk_losses(center, frozen, jax.tree.map(np.asarray, rows))
            total += float(np.sum(np.asarray(per_sample)[:real]))
        return total / plan.num_samples

    def group_inputs(self, plan: RunPlan, group: list, axes: GridAxes):
        """Host arrays for one program: each configuration's chains, padded to plan.num_chains
        (built once per group: the memory planner and the run share them)."""
        key = (plan.num_chains, tuple(group))
        if key not in self._inputs:
            self._inputs = {key: self._build_inputs(plan, group, axes)}  # keep only the latest
        return self._inputs[key]

    def _build_inputs(self, plan: RunPlan, group: list, axes: GridAxes):
        s, C = self.sampling, self.sampling.num_chains
        cfg = np.array([c for c in group for _ in range(C)])  # (chains, dims) configuration indices
        chain_index = np.tile(np.arange(C), len(group))
        pad = plan.num_chains - len(cfg)
        if pad:  # the padding repeats the last configuration with further chain indices
            cfg = np.concatenate([cfg, np.repeat(cfg[-1:], pad, axis=0)])
            chain_index = np.concatenate([chain_index, C + np.arange(pad)])
        hyper = {k: np.full(len(cfg), v) for k, v in s.sampler_numeric.items()}
        box = np.inf if s.bounding_box is None else s.bounding_box
        config = make_config(
            np.full(len(cfg), s.seed), chain_index, np.asarray(axes.step_size)[cfg[:, 1]],
            np.asarray(axes.nbeta)[cfg[:, 3]], np.asarray(axes.localization)[cfg[:, 2]],
            np.full(len(cfg), box), hyper,
        )
        f32 = lambda x: np.asarray(x, np.float32)  # noqa: E731
        if plan.per_chain_center:
            # Only this group's checkpoints are stacked, then gathered per chain.
            ks, index = np.unique(cfg[:, 0], return_inverse=True)
            center = [f32(np.stack([np.asarray(self.problem.centers[k][i]) for k in ks]))[index]
                      for i in range(len(self.problem.centers[0]))]
            frozen = [np.stack([np.asarray(self.problem.frozens[k][i]) for k in ks])[index]
                      for i in range(len(self.problem.frozens[0]))]
        else:
            center = [f32(x) for x in self.problem.centers[0]]
            frozen = list(self.problem.frozens[0])
        if self.per_chain_mask:
            masks = self.problem.component_masks
            element_mask = [np.stack([m[i] for m in masks])[cfg[:, 4]] for i in range(len(masks[0]))]
        else:
            element_mask = list(self.problem.partition.element_mask)
        return config, center, frozen, element_mask

    def run_group(self, entry, plan, group, axes, sink) -> RunOutput:
        config, center, frozen, element_mask = self.group_inputs(plan, group, axes)
        return run_chains(
            entry, plan, self.mesh, config=config, center=center, frozen=frozen, data=self.problem.data,
            eval_sets=self.problem.eval_sets, element_mask=element_mask,
            per_sample_sink=sink, progress=self.execution.progress,
        )

    def attrs(self, axes, storage, planned, per_program, plan, log) -> dict:
        from slt_jax.workflows.metadata import run_attrs

        return run_attrs(self, axes, storage, planned, per_program, plan, log)


def _engine_sampler(s):
    """(init(position, hyper), step(key, state, grad, posterior, hyper)) for the engine."""
    if s.kernel is not None:
        kernel = s.kernel
        return (lambda position, hyper: kernel.init(position),
                lambda key, state, grad, posterior, hyper: kernel.step(key, state, grad, posterior))
    from slt_jax.samplers import REGISTRY

    return REGISTRY[s.sampler].build(s.sampler_structural)


def _configs_per_program(setup: _Setup, axes: GridAxes, configs: list, execution) -> int:
    """All configurations in one program, unless the compiled program would not fit in memory.

    The memory analysis is read from the very program that will run (it stays in the cache),
    so planning compiles nothing extra unless a smaller program is needed."""
    requested = execution.configs_per_program
    if requested != "auto":
        return min(requested, len(configs))
    per_program = len(configs)
    if per_program == 1:
        return 1
    budget = execution.memory_budget_bytes or _agreed_budget(execution.devices)
    while per_program > 1:
        entry, plan = setup.entry(per_program)
        need = _program_bytes(entry, plan, setup, *setup.group_inputs(plan, configs[:per_program], axes))
        if need <= budget:
            break
        per_program = math.ceil(per_program / 2)
    return per_program


def _program_bytes(entry, plan, setup, config, center, frozen, element_mask) -> int:
    """Bytes the program needs, from its memory analysis; its inputs are described by shape
    only (nothing moves to the device for planning; the executable is cached for the run)."""
    # dtypes as the devices will hold them (float64 host data becomes float32 without x64).
    def abstract(tree):
        canonical = lambda d: jax.dtypes.canonicalize_dtype(d, allow_extended_dtype=True)  # noqa: E731
        return jax.tree.map(lambda x: jax.ShapeDtypeStruct(np.shape(x), canonical(x.dtype)), tree)

    config, center, frozen, mask = abstract((config, center, frozen, element_mask))
    data = None if plan.streaming else abstract(setup.problem.data)
    eval_sets = abstract(setup.problem.eval_sets)
    states = jax.eval_shape(entry.programs.init, center, config)
    if plan.streaming:  # the program sees one segment's minibatches, not the data
        lead = (plan.segment_draws * plan.thin, plan.num_chains, plan.batch_size)
        head = setup.problem.data.head(1)
        data = jax.tree.map(lambda x: jax.ShapeDtypeStruct(lead + np.shape(x)[1:], np.asarray(x).dtype), head)
    step = jax.ShapeDtypeStruct((), np.int32)
    compiled, _, _ = entry.draw_executable((states, config, step, center, frozen, data, eval_sets, mask))
    a = compiled.memory_analysis()
    return max(1, int(a.argument_size_in_bytes + a.output_size_in_bytes + a.temp_size_in_bytes
                      - getattr(a, "alias_size_in_bytes", 0)))


def _agreed_budget(devices) -> int:
    """The memory budget of this process's first device; under jax.distributed the smallest over
    the processes, so every process splits the grid alike (or they would run different programs
    and wait on each other forever). Another process's devices report no memory."""
    local = [d for d in devices if d.process_index == jax.process_index()]
    budget = device_memory_budget(local[0] if local else jax.local_devices()[0])
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        # In MiB, as int32 (the default without x64) holds MiB up to 2 PiB.
        mib = multihost_utils.process_allgather(np.asarray(budget >> 20, np.int32))
        budget = int(np.min(mib)) << 20
    return budget


def device_memory_budget(device=None) -> int:
    """80% of the device's memory limit where jax reports it (GPU/TPU), else half the RAM."""
    device = device or jax.devices()[0]
    stats = device.memory_stats() or {}
    if stats.get("bytes_limit"):
        return int(0.8 * stats["bytes_limit"])
    return int(0.5 * os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
