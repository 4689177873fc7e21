"""Shared pieces of the built-in examples: a jitted optax training loop that keeps the
parameters at chosen steps, log-spaced checkpoint steps, orbax saving, and the
calibrate → sweep → stages workflow every example's ``run`` goes through."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from slt_jax import atomic

__all__ = ["TrainRun", "calibrate_checkpoints", "checkpoint_steps", "fit", "joint_recommendation", "json_default",
           "load_factory", "quiet_orbax", "save_checkpoints", "sweep_and_detect", "workflow"]


def json_default(v):
    """json.dumps fallback for numpy scalars (and anything else, as its str)."""
    if isinstance(v, (np.integer, np.floating, np.bool_)):
        return v.item()
    return str(v)


def checkpoint_steps(num_steps: int, num: int, first: int = 1) -> list[int]:
    """Step 0 and about ``num - 1`` log-spaced steps from ``first`` to ``num_steps`` (distinct ints).

    Log spacing because stage detection works on log(1 + step): equal spacing there gives
    every decade of training the same resolution. ``first`` > 1 skips the earliest steps
    when nothing happens there (each checkpoint costs a λ̂ estimate).
    """
    if num_steps < first or first < 1 or num < 2:
        raise ValueError(f"need 1 <= first <= num_steps and num >= 2, got {first}, {num_steps}, {num}")
    steps = np.unique(np.round(np.geomspace(first, num_steps, num - 1)).astype(int))
    return [0] + [int(s) for s in steps]


@dataclasses.dataclass(frozen=True)
class TrainRun:
    """What ``fit`` returns: the parameters at each checkpoint step (host numpy pytrees),
    the full-data training loss at every step 0..num_steps (before that step's update),
    and ``records``: ``record(params)`` at every step, stacked (None without ``record``)."""

    checkpoints: dict[int, Any]
    loss: np.ndarray
    records: Any
    train_s: float


def fit(
    objective: Callable,
    params: Any,
    optimizer,
    *,
    num_steps: int,
    steps: Sequence[int],
    record: Callable | None = None,
) -> TrainRun:
    """Train ``params`` with ``optimizer`` (optax) on ``objective(params, t)`` (a scalar; ``t``
    the step, from which a minibatch objective draws its batch).

    One compiled ``lax.scan`` over all ``num_steps`` steps (a Python loop of jitted steps
    costs a dispatch per step, which dominates models this small). Parameters at ``steps``
    are written into a preallocated buffer inside the scan, so nothing leaves the device
    until the end. ``loss[t]`` is the objective at step t, before that step's update.
    """
    import optax

    ckpt = np.asarray(sorted({int(s) for s in steps}))
    if ckpt[0] < 0 or ckpt[-1] > num_steps:
        raise ValueError(f"checkpoint steps must lie in [0, {num_steps}], got {ckpt[0]}..{ckpt[-1]}")

    @jax.jit
    def run(params):
        buf = jax.tree.map(lambda x: jnp.zeros((len(ckpt),) + x.shape, x.dtype), params)
        ckpt_arr = jnp.asarray(ckpt)

        def body(carry, t):
            p, state, buf, k = carry
            hit = ckpt_arr[jnp.minimum(k, len(ckpt) - 1)] == t
            buf = jax.lax.cond(hit, lambda b: jax.tree.map(lambda bb, x: bb.at[k].set(x), b, p), lambda b: b, buf)
            loss, g = jax.value_and_grad(objective)(p, t)
            updates, state = optimizer.update(g, state, p)
            out = (loss, None if record is None else record(p))
            return (optax.apply_updates(p, updates), state, buf, k + hit.astype(k.dtype)), out

        init = (params, optimizer.init(params), buf, jnp.zeros((), jnp.int32))
        (_, _, buf, _), (loss, rec) = jax.lax.scan(body, init, jnp.arange(num_steps + 1))
        return buf, loss, rec

    t0 = time.perf_counter()
    buf, loss, rec = jax.device_get(run(params))
    train_s = time.perf_counter() - t0
    checkpoints = {int(s): jax.tree.map(lambda b, i=i: np.asarray(b[i]), buf) for i, s in enumerate(ckpt)}
    return TrainRun(checkpoints=checkpoints, loss=np.asarray(loss), records=rec, train_s=train_s)


def save_checkpoints(out_dir: str | Path, checkpoints: dict[int, Any]) -> Path:
    """Write ``{step: params}`` as one orbax CheckpointManager directory (replacing any old
    one: a manager refuses steps that are not after its latest, so a rerun starts clean)."""
    from slt_jax import checkpoints as ckpts

    out_dir = Path(out_dir)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    for step in sorted(checkpoints):
        ckpts.save(out_dir, step, checkpoints[step], format="orbax")
    return out_dir


# ---------------------------------------------------------------------------------------
# The whole workflow: calibrate -> sweep -> stages


@contextlib.contextmanager
def quiet_orbax():
    """Orbax logs three absl WARNING lines per read-only CheckpointManager it opens (one per
    checkpoint read); raise absl's level to ERROR while the examples read their own checkpoints."""
    logger = logging.getLogger("absl")
    level = logger.level
    logger.setLevel(max(level, logging.ERROR))
    try:
        yield
    finally:
        logger.setLevel(level)


def load_factory(factory: str) -> dict:
    """The problem a zero-argument ``module:function`` factory returns (as the sweep loads it)."""
    import importlib

    module, _, func = factory.rpartition(":")
    return getattr(importlib.import_module(module), func)()


def calibrate_checkpoints(problem: dict, ckpt_dir: Path, out: Path, settings: dict, progress: bool = True):
    """calibrate's recommendation on this run's checkpoints (``settings["calibrate_kwargs"]``
    may name ``which``; calibrate's default is first, middle and last), written to
    ``out/calibration.json``.

    Returns (recommended dict, Calibration).
    """
    from slt_jax import calibration
    from slt_jax import checkpoints as ckpts

    out.mkdir(parents=True, exist_ok=True)
    with quiet_orbax():
        ckpt = dict(ckpts.open(ckpt_dir, like=problem["params"]))
    cal = calibration.calibrate(
        problem["loss_fn"], ckpt, problem["data"], batch_size=settings["batch_size"],
        num_chains=settings["calibration_chains"], num_draws=settings["calibration_draws"],
        num_burnin=settings["calibration_burnin"], seed=settings.get("seed", 0), progress=progress,
        **settings.get("calibrate_kwargs", {}),
    )
    cal.write(out / calibration.CALIBRATION_FILE)
    return dict(cal.recommended), cal


_CELL = ("step_size", "localization", "nbeta")


def joint_recommendation(calibrations: list) -> dict:
    """One (ε, γ, nβ) for several runs calibrated on the same grid: the cell whose worst
    score over the runs is highest, ties broken by the smallest sum of calibrate's ranks.
    Runs compared at one setting differ only in what was trained, not in how it was sampled."""
    tables = [c.table.set_index(list(_CELL)) for c in calibrations]
    common = tables[0].index
    for t in tables[1:]:
        common = common.intersection(t.index)
    if len(common) == 0:
        raise ValueError("the calibrations share no grid cell")
    worst = np.min([t.loc[common, "score"].to_numpy(float) for t in tables], axis=0)
    ranks = np.sum([t.loc[common, "rank"].to_numpy(float) for t in tables], axis=0)
    best = common[np.lexsort((ranks, -worst))[0]]
    return dict(zip(_CELL, (float(v) for v in best)))


def sweep_and_detect(factory: str, ckpt_dir: Path, out: Path, settings: dict, recommended: dict,
                     progress: bool = True):
    """slt_jax.sweep over every checkpoint with ``recommended`` (ε, γ, nβ) into ``out/sweep``,
    then stages.detect (defaults) on λ̂(step) with the sweep's MCSE. Returns (table, stages)."""
    import slt_jax
    from slt_jax import stages

    sampler = {"step_size": float(recommended["step_size"]), "localization": float(recommended["localization"]),
               "nbeta": recommended.get("nbeta"), "num_chains": settings["num_chains"],
               "num_draws": settings["num_draws"], "num_burnin": settings["num_burnin"],
               "batch_size": settings["batch_size"], "seed": settings.get("seed", 0)}
    config = {"factory": factory, "checkpoints": str(ckpt_dir), "out": str(out / "sweep"), "sampler": sampler}
    # A rerun replaces this example's own earlier sweep (the sweep would refuse a changed
    # config, or with new=True keep every old copy beside it).
    shutil.rmtree(out / "sweep", ignore_errors=True)
    with quiet_orbax():
        table = slt_jax.sweep(config, progress=progress)
    sem = np.maximum(table["llc_mcse"].to_numpy(float), 1e-6)  # detect needs llc_sem > 0
    found = stages.detect(table["step"], table["llc"], sem)
    atomic.write_text(out / "workflow.json", json.dumps({"sampler": sampler, "boundaries": found.boundaries.tolist()},
                                                        default=json_default, indent=1))
    return table, found


def workflow(factory: str, ckpt_dir: Path, out: Path, settings: dict, *, progress: bool = True) -> dict:
    """calibrate on the checkpoints, sweep all of them with the recommended ε, γ, nβ, and
    detect stages in λ̂(step). ``factory`` is a zero-argument ``module:function`` (the sweep
    calls it to rebuild the problem and fingerprint its data). Returns {"recommended",
    "calibrated", "calibration", "table" (the sweep's summary DataFrame), "stages", "timings"}."""
    t0 = time.perf_counter()
    rec, cal = calibrate_checkpoints(load_factory(factory), ckpt_dir, out, settings, progress)
    t1 = time.perf_counter()
    table, found = sweep_and_detect(factory, ckpt_dir, out, settings, rec, progress)
    return {"recommended": rec, "calibrated": True, "calibration": cal, "table": table,
            "stages": found, "timings": {"calibrate_s": t1 - t0, "sweep_s": time.perf_counter() - t1}}
