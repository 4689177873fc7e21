"""Validated options of an LLC run, grouped into small frozen objects, built in one place.

Every public entry point funnels its keyword arguments through `validate_run`, which checks
everything before anything is traced or compiled and names the argument, the value and the
fix. Internals trust what comes out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from slt_jax import _validate as check
from slt_jax.engine.plan import BATCH_SAMPLING
from slt_jax.posterior import NBETA_RULES
from slt_jax.samplers import REGISTRY, Kernel
from slt_jax.streaming import StreamingData

__all__ = ["DIAGNOSTICS", "EVAL_BATCHING", "SamplingOptions", "EvalOptions", "ExecutionOptions", "GridAxes",
           "validate_axes", "validate_run"]

# What each evaluation computes besides the eval sets (estimate_llc's `diagnostics`).
DIAGNOSTICS = ("full_loss", "mala")
EVAL_BATCHING = ("auto", "vmap", "map")


@dataclass(frozen=True)
class SamplingOptions:
    """How each chain moves: the sampler, run length and minibatching."""

    sampler: str  # a registered name, or "custom" for a user Kernel
    kernel: Kernel | None  # the user's Kernel when sampler == "custom"
    sampler_numeric: dict  # traced constants (defaults filled in)
    sampler_structural: dict  # static choices (defaults filled in)
    num_chains: int
    num_draws: int
    num_burnin: int
    thin: int
    batch_size: int
    batch_sampling: str
    seed: int
    bounding_box: float | None
    sampler_kwargs: dict  # as the user passed them (sampler_numeric/structural add the defaults)


@dataclass(frozen=True)
class EvalOptions:
    """What is recorded: evaluations every `eval_every` draws and per-draw diagnostics."""

    eval_every: int | None
    eval_chunk: int
    diagnostics: tuple
    eval_batching: str | int  # "auto" | "vmap" | "map" | chains per evaluation batch
    draw_diagnostics: bool
    per_sample_storage: str  # "auto" | "memory" | "moments"
    max_per_sample_bytes: int


@dataclass(frozen=True)
class ExecutionOptions:
    """Where and how the program runs."""

    devices: tuple
    chain_batch: int | str
    segment_steps: int | None
    progress: bool
    configs_per_program: int | str
    memory_budget_bytes: int | None


@dataclass(frozen=True)
class GridAxes:
    """The configuration axes of a run; the chain axis of the programs is their product × chains."""

    checkpoint_labels: tuple
    step_size: tuple
    localization: tuple
    nbeta: tuple  # values
    nbeta_rule: tuple  # per value: "n_log_n" | "batch_log_batch" | "explicit"
    component_labels: tuple = ()  # weight restrictions (masks) as a fifth dim; () when none

    @property
    def dims(self) -> tuple:
        base = ("checkpoint", "step_size", "localization", "nbeta")
        return base + (("component",) if self.component_labels else ())

    @property
    def shape(self) -> tuple:
        base = (len(self.checkpoint_labels), len(self.step_size), len(self.localization), len(self.nbeta))
        return base + ((len(self.component_labels),) if self.component_labels else ())

    @property
    def num_configs(self) -> int:
        return math.prod(self.shape)


def _as_values(name: str, value: Any) -> list:
    if isinstance(value, (list, tuple, np.ndarray)):
        values = list(np.asarray(value, dtype=object).ravel()) if isinstance(value, np.ndarray) else list(value)
        if not values:
            raise ValueError(f"{name} is an empty list; pass a number or a non-empty list of numbers.")
        return values
    return [value]


def _unique(name: str, values: list) -> tuple:
    if len(set(values)) != len(values):
        dupes = sorted({v for v in values if values.count(v) > 1}, key=str)
        raise ValueError(f"{name} has repeated values {dupes}; each grid value must be distinct.")
    return tuple(values)


def validate_axes(step_size, localization, nbeta, labels: Sequence, n: int, batch_size: int) -> GridAxes:
    """ε, γ, nβ as scalars or lists, resolved to numbers (nβ rule names included)."""
    from slt_jax.posterior import resolve_nbeta

    eps = [check.positive_number("step_size", v) for v in _as_values("step_size", step_size)]
    gamma = [check.positive_number("localization", v, allow_zero=True) for v in _as_values("localization", localization)]
    values, rules = [], []
    for v in _as_values("nbeta", nbeta):
        if isinstance(v, str):
            check.choice("nbeta", v, NBETA_RULES)
        elif v is not None:
            check.positive_number("nbeta", v)
        if n == 1 and v in (None, "n_log_n"):
            raise ValueError("nbeta defaults to n / log n, which is undefined for n = 1; pass nbeta explicitly.")
        if batch_size == 1 and v == "batch_log_batch":
            raise ValueError("nbeta='batch_log_batch' is undefined for batch_size = 1; pass nbeta explicitly.")
        value, rule = resolve_nbeta(v, n, batch_size)
        values.append(value)
        rules.append(rule)
    return GridAxes(tuple(labels), _unique("step_size", eps), _unique("localization", gamma),
                    _unique("nbeta", values), tuple(rules))


def validate_run(
    loss_fn: Callable, data: Any, *, num_chains, num_draws, num_burnin, thin, batch_size, sampler,
    sampler_kwargs, seed, eval_sets, eval_every, diagnostics, eval_batching, draw_diagnostics, chain_batch,
    per_sample_storage, max_per_sample_bytes, eval_chunk, batch_sampling, segment_steps, devices, progress,
    bounding_box, configs_per_program, memory_budget_bytes,
) -> tuple[SamplingOptions, EvalOptions, ExecutionOptions, dict, int]:
    """Check every option that does not depend on the params. Returns the option groups, the
    eval sets as a dict and n (the number of samples)."""
    if not callable(loss_fn):
        raise TypeError(f"loss_fn must be callable as loss_fn(params, batch); got {type(loss_fn).__name__}.")
    num_chains = check.integer("num_chains", num_chains, minimum=1)
    num_draws = check.integer("num_draws", num_draws, minimum=1)
    num_burnin = check.integer("num_burnin", num_burnin, minimum=0)
    thin = check.integer("thin", thin, minimum=1)
    seed = check.seed(seed)
    streaming = isinstance(data, StreamingData)
    n = data.num_samples if streaming else check.data_size(data)
    batch_size = check.integer(
        "batch_size", batch_size, minimum=1, maximum=n,
        hint=f"The data has n = {n} samples; use batch_size ≤ n (batch_size = n for full-batch).",
    )
    batch_sampling = check.choice("batch_sampling", batch_sampling, BATCH_SAMPLING)
    sampling = _sampling_options(
        sampler, sampler_kwargs, num_chains=num_chains, num_draws=num_draws, num_burnin=num_burnin, thin=thin,
        batch_size=batch_size, batch_sampling=batch_sampling, seed=seed, bounding_box=bounding_box,
    )
    evals, eval_sets = _eval_options(
        eval_sets, eval_every, diagnostics, eval_batching, draw_diagnostics, per_sample_storage,
        max_per_sample_bytes, eval_chunk, n, batch_size, thin,
    )
    if segment_steps is not None:
        segment_steps = check.integer("segment_steps", segment_steps, minimum=1)
    if configs_per_program != "auto":
        configs_per_program = check.integer(
            "configs_per_program (estimate_llc_checkpoints: checkpoints_per_call)", configs_per_program, minimum=1
        )
    if chain_batch != "auto":
        chain_batch = check.integer("chain_batch", chain_batch, minimum=1)
    if memory_budget_bytes is not None:
        memory_budget_bytes = check.integer("memory_budget_bytes", memory_budget_bytes, minimum=1)
    devices = tuple(check.devices(devices))
    execution = ExecutionOptions(devices, chain_batch, segment_steps, check.boolean("progress", progress), configs_per_program,
                                 memory_budget_bytes)
    return sampling, evals, execution, eval_sets, n


def _sampling_options(sampler, sampler_kwargs, *, bounding_box, **fields) -> SamplingOptions:
    if isinstance(sampler, Kernel):
        if sampler_kwargs:
            raise ValueError("sampler_kwargs apply to named samplers; a Kernel already carries its constants.")
        name, kernel, numeric, structural, kwargs = "custom", sampler, {}, {}, {}
    else:
        name = check.choice("sampler", sampler, tuple(REGISTRY))
        kwargs = dict(sampler_kwargs or {})
        kwargs = check.sampler_constants(name, kwargs)
        numeric, structural = REGISTRY[name].constants(kwargs)
        kernel = None
    if bounding_box is not None:
        bounding_box = check.positive_number("bounding_box", bounding_box)
    return SamplingOptions(name, kernel, numeric, structural, bounding_box=bounding_box,
                           sampler_kwargs=dict(kwargs), **fields)


def _eval_options(eval_sets, eval_every, diagnostics, eval_batching, draw_diagnostics, per_sample_storage,
                  max_per_sample_bytes, eval_chunk, n, batch_size, thin) -> tuple[EvalOptions, dict]:
    if eval_every == "auto":
        eval_every = max(1, math.ceil(n / (batch_size * thin)))
    elif eval_every is not None:
        eval_every = check.integer("eval_every", eval_every, minimum=1)
    eval_chunk = check.integer(
        "eval_chunk", eval_chunk if eval_chunk is not None else min(n, max(batch_size, 2048)), minimum=1
    )
    if isinstance(diagnostics, str):
        diagnostics = (diagnostics,)
    if not isinstance(diagnostics, (tuple, list, set, frozenset)):
        raise TypeError(
            f"diagnostics must be a tuple of names from {list(DIAGNOSTICS)} (() for none); got {diagnostics!r}."
        )
    diagnostics = tuple(check.choice("diagnostics", d, DIAGNOSTICS) for d in diagnostics)
    if isinstance(eval_batching, str) or eval_batching is None:
        eval_batching = check.choice("eval_batching", eval_batching, EVAL_BATCHING)
    else:
        eval_batching = check.integer("eval_batching", eval_batching, minimum=1)
    draw_diagnostics = check.boolean("draw_diagnostics", draw_diagnostics)
    eval_sets = check.eval_sets(eval_sets)
    if eval_sets and eval_every is None:
        raise ValueError("eval_sets need evaluations: set eval_every to an integer (or 'auto'), not None.")
    check.choice("per_sample_storage", per_sample_storage, ("auto", "memory", "moments"))
    max_per_sample_bytes = check.integer("max_per_sample_bytes", max_per_sample_bytes, minimum=0)
    options = EvalOptions(eval_every, min(eval_chunk, n), diagnostics, eval_batching, bool(draw_diagnostics),
                          per_sample_storage, max_per_sample_bytes)
    return options, eval_sets
