"""Label a grid run: per-configuration health verdicts and one xarray Dataset."""

from __future__ import annotations

import warnings

import numpy as np
import xarray as xr

from slt_jax.health import assess_chains
from slt_jax.results.schema import encode_attrs

__all__ = ["CONFIG_DIMS", "label_grid"]

CONFIG_DIMS = ("checkpoint", "step_size", "localization", "nbeta")
_DRAW_VARS = ("loss", "grad_norm", "distance", "weight_norm", "noise_norm")


def label_grid(parts: list, axes, init_losses: list, sampling, problem, attrs: dict, plan):
    """parts: [(configurations, RunOutput, sink)] per program, in configuration order."""
    from slt_jax.results.grid_result import GridResult

    C = sampling.num_chains
    columns: dict[str, list] = {}
    unhealthy = []
    for group, out, sink in parts:
        ckpts_in_program = len({c[0] for c in group})
        arrays = sink.arrays() if sink.mode == "memory" else None
        for j, cfg in enumerate(group):
            chains = slice(j * C, (j + 1) * C)
            part = out.select_chains(chains)
            d = problem.component_num_params[cfg[4]] if axes.component_labels else problem.num_params
            health = _health(part, init_losses[cfg[0]], axes.nbeta[cfg[3]], sampling, d)
            for name, value in _per_chain_columns(part, health, sink, arrays, chains).items():
                columns.setdefault(name, []).append(value)
            columns.setdefault("sampling_s", []).append(out.sampling_s)
            columns.setdefault("checkpoints_in_program", []).append(ckpts_in_program)
            bad = [str(h) for h in health if not h.healthy]
            if bad:
                unhealthy.append((cfg, bad))
    _warn_unhealthy(unhealthy, axes, C)
    sampling_s = sum(out.sampling_s for _, out, _ in parts)
    attrs = dict(attrs, sampling_s=sampling_s,
                 chain_steps_per_s=C * axes.num_configs * plan.total_steps / max(sampling_s, 1e-12))
    return GridResult(_dataset(columns, axes, init_losses, attrs, parts[0][1].eval_draws,
                               problem.component_num_params))


def _health(part, init_loss, nbeta, sampling, num_params):
    return assess_chains(
        part.draws.loss, part.burnin.loss, part.blocks.full_loss, init_loss, nbeta,
        part.first_bad_draw, sampling.num_burnin, sampling.thin, num_params=num_params,
    )


def _per_chain_columns(part, health, sink, arrays, chains) -> dict:
    """name -> (dims after the configuration dims, array) for one configuration's chains."""
    chain_draw, chain_burn, chain_eval = ("chain", "draw"), ("chain", "burnin_draw"), ("chain", "eval_draw")
    cols = {name: (chain_draw, getattr(part.draws, name)) for name in _DRAW_VARS}
    cols.update(
        burnin_loss=(chain_burn, part.burnin.loss),
        burnin_distance=(chain_burn, part.burnin.distance),
        eval_loss=(chain_eval, part.blocks.full_loss),
        mala_acceptance=(chain_eval, part.blocks.mala),
        healthy=(("chain",), np.array([h.healthy for h in health])),
        health_reason=(("chain",), np.array([h.reason for h in health], dtype=object).astype(str)),
        health_warnings=(("chain",), np.array(["; ".join(h.warnings) for h in health], dtype=object).astype(str)),
    )
    if arrays is not None:
        for name, losses in arrays.items():
            extra = tuple(f"{name}_{axis}" for axis in ("sample", "token", "position")[: losses.ndim - 2])
            cols[f"{name}_losses"] = (chain_eval + extra, losses[chains])
    else:
        for name, accs in sink.acc.items():
            accs = accs[chains]
            dims = ("chain", f"{name}_sample")
            cols[f"{name}_moment_count"] = (("chain",), np.array([a.count for a in accs]))
            cols[f"{name}_moment_mean"] = (dims, np.stack([a.mean for a in accs]))
            cols[f"{name}_moment_m2"] = (dims, np.stack([a.m2 for a in accs]))
            cols[f"{name}_moment_lse"] = (dims, np.stack([a.logsumexp_neg for a in accs]))
    return cols


def _dataset(columns: dict, axes, init_losses, attrs, eval_draws, problem_d=()) -> xr.Dataset:
    shape, config_dims = axes.shape, axes.dims
    variables = {}
    for name, values in columns.items():
        if name in ("sampling_s", "checkpoints_in_program"):
            variables[name] = (config_dims, np.asarray(values).reshape(shape))
            continue
        dims = values[0][0]
        stacked = np.stack([v[1] for v in values])
        variables[name] = (config_dims + dims, stacked.reshape(shape + stacked.shape[1:]))
    variables["init_loss"] = (("checkpoint",), np.asarray(init_losses, np.float64))
    variables["nbeta_rule"] = (("nbeta",), np.asarray(axes.nbeta_rule, dtype=object).astype(str))
    coords = {
        "checkpoint": list(axes.checkpoint_labels),
        "step_size": np.asarray(axes.step_size, np.float64),
        "localization": np.asarray(axes.localization, np.float64),
        "nbeta": np.asarray(axes.nbeta, np.float64),
        "chain": np.arange(variables["healthy"][1].shape[-1]),
        "draw": np.arange(variables["loss"][1].shape[-1]),
        "burnin_draw": np.arange(variables["burnin_loss"][1].shape[-1]),
        "eval_draw": np.asarray(eval_draws),
    }
    if axes.component_labels:
        coords["component"] = list(axes.component_labels)
        variables["num_params"] = (("component",), np.asarray(problem_d, np.int64))
    return xr.Dataset(variables, coords=coords, attrs=encode_attrs(attrs))


def _warn_unhealthy(unhealthy: list, axes, num_chains: int) -> None:
    for cfg, bad in unhealthy:
        where = _config_name(cfg, axes)
        warnings.warn(
            f"{len(bad)} of {num_chains} chains{where} were unhealthy and are excluded from every "
            f"summary: {bad}",
            RuntimeWarning,
            stacklevel=4,
        )


def _config_name(cfg, axes) -> str:
    parts = []
    if len(axes.checkpoint_labels) > 1:
        parts.append(f"checkpoint {axes.checkpoint_labels[cfg[0]]!r}")
    for name, values, i in (("ε", axes.step_size, cfg[1]), ("γ", axes.localization, cfg[2]), ("nβ", axes.nbeta, cfg[3])):
        if len(values) > 1:
            parts.append(f"{name}={values[i]:g}")
    if axes.component_labels:
        parts.append(f"component {axes.component_labels[cfg[4]]!r}")
    return f" ({', '.join(parts)})" if parts else ""
