"""Resumable λ̂ sweeps over a training run's checkpoints (issue 10, items 2-4).

    import slt_jax
    table = slt_jax.sweep("sweep.toml")          # or a dict of the same keys

The config is described in `slt_jax.workflows.sweep_config`. The results directory holds

  fingerprint.json   sha256 over everything that changes the numbers (factory and its
                     arguments, a hash of the data and eval-set arrays, the resolved sampler
                     settings, observables, slt_jax version), and those components one by one.
                     A sweep into a directory with another fingerprint is refused
                     (SweepConfigError naming the changed keys) unless ``new=True``, which moves
                     the old directory aside to ``<out>.old-<time>``. The checkpoint list and
                     `checkpoints_per_program` are not in it: adding checkpoints extends a
                     sweep, and a checkpoint's draws do not depend on which others share its
                     program (chain c's key is fold_in(key(seed), c) in every configuration;
                     tests/test_sweep.py checks the numbers are bitwise equal).
  ckpt_<step>.nc     one LLCResult per checkpoint, written atomically as soon as its group's
                     program returns. On start every step whose file loads and carries this
                     fingerprint is skipped, so a sweep killed at any point (SIGKILL included)
                     resumes where it stopped; unreadable files are redone.
  summary.csv        one row per checkpoint (sweep_outputs.SUMMARY_COLUMNS, then the requested
  summary.parquet    observables); the parquet copy when pyarrow is importable.
  sweep.nc           every checkpoint's draws in one dataset with a `step` coordinate
                     (`read_combined(out)`).
  stages.csv/.json   slt_jax.stages.detect on λ̂(step) (with ≥ 6 checkpoints).
  llc_vs_step.png    λ̂ and L_n(w*) against step, log and linear step axes, stages marked.
  complete           written last, when every checkpoint is done: fingerprint and steps.
  calibration/       what `slt_jax.calibrate(config)` wrote, read for missing settings.

Every file is written through slt_jax.atomic (temporary name, fsync, rename).

Scale-out: ``shard=(i, N)`` (CLI ``--shard i/N``; else SLURM_ARRAY_TASK_ID / _COUNT / _MIN when
set) samples every N-th checkpoint from the i-th, into the same directory; whichever shard
finishes last writes the summary over all of them and `complete`. Under jax.distributed every
process runs the same sweep (one program over all their devices); process 0 writes, and the
results directory must be on a filesystem every process sees.
"""

from __future__ import annotations

import contextlib
import os
import time
from typing import Any

import numpy as np

from slt_jax import atomic
from slt_jax.workflows import sweep_dir
from slt_jax.workflows.sweep_config import (
    SAMPLER_KEYS, SweepConfigError, fingerprint, load_config, load_factory, resolve_settings,
)
from slt_jax.workflows.sweep_outputs import SUMMARY_COLUMNS, read_combined, summary_table, write_outputs

__all__ = ["sweep", "load_config", "fingerprint", "resolve_shard", "read_combined", "SweepConfigError",
           "SUMMARY_COLUMNS", "SAMPLER_KEYS", "MAX_AUTO_CHECKPOINTS_PER_PROGRAM"]

# "auto" groups: at most this many checkpoints per program, so a kill loses at most one group's
# work; the groups are padded to one size so one compilation serves the sweep.
MAX_AUTO_CHECKPOINTS_PER_PROGRAM = 8


def resolve_shard(shard: Any = None, environ: dict | None = None) -> tuple[int, int]:
    """(index, count) from `shard` ((i, N) or "i/N"), else from SLURM's job-array variables."""
    environ = os.environ if environ is None else environ
    where = f"shard {shard!r}"
    if shard is None:
        if "SLURM_ARRAY_TASK_ID" not in environ or "SLURM_ARRAY_TASK_COUNT" not in environ:
            return 0, 1
        where = "SLURM_ARRAY_TASK_ID/SLURM_ARRAY_TASK_COUNT/SLURM_ARRAY_TASK_MIN"
        try:
            shard = (int(environ["SLURM_ARRAY_TASK_ID"]) - int(environ.get("SLURM_ARRAY_TASK_MIN", 0)),
                     int(environ["SLURM_ARRAY_TASK_COUNT"]))
        except ValueError:
            raise SweepConfigError(f"{where}: not whole numbers") from None
    if isinstance(shard, str):
        i, _, n = shard.partition("/")
        try:
            shard = (int(i), int(n))
        except ValueError:
            raise SweepConfigError(f"{where}: expected 'i/N' with whole numbers, e.g. 0/4") from None
    if (not isinstance(shard, (tuple, list)) or len(shard) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) for v in shard)):
        raise SweepConfigError(f"{where}: expected (index, count) or 'i/N'")
    i, n = shard
    if not (n >= 1 and 0 <= i < n):
        raise SweepConfigError(f"{where}: need 0 ≤ index < count, got index {i}, count {n}")
    return i, n


def _groups(todo: list[int], per_program) -> tuple[list[list[int]], int]:
    """The steps in program-sized groups, and the size every group is padded to."""
    if not todo:
        return [], 0
    size = min(MAX_AUTO_CHECKPOINTS_PER_PROGRAM if per_program == "auto" else per_program, len(todo))
    return [todo[i : i + size] for i in range(0, len(todo), size)], size


def _is_primary() -> bool:
    import jax

    return jax.process_index() == 0


def _agree(steps: list[int], done: dict) -> list[int]:
    """The steps still to do, as process 0 sees them (every process must run the same groups)."""
    import jax

    mask = np.asarray([s in done for s in steps], dtype=np.int32)
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        mask = np.asarray(multihost_utils.broadcast_one_to_all(mask))
    return [s for s, d in zip(steps, mask) if not d]


def _barrier(name: str) -> None:
    import jax

    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


def _engine_kwargs(sampler: dict, problem: dict, progress: bool) -> dict:
    kw = dict(step_size=float(sampler["step_size"]), localization=float(sampler["localization"]),
              nbeta=sampler["nbeta"], num_chains=int(sampler["num_chains"]), num_draws=int(sampler["num_draws"]),
              num_burnin=int(sampler["num_burnin"]), batch_size=int(sampler["batch_size"]),
              seed=int(sampler["seed"]), sampler=sampler["sampler"], progress=progress)
    if problem.get("eval_sets"):
        kw["eval_sets"] = problem["eval_sets"]
    return kw


def _check_observables(cfg: dict, problem: dict) -> None:
    needs = [o for o in cfg["observables"] if o in ("waic", "nu")]
    if needs and not problem.get("eval_sets"):
        raise SweepConfigError(
            f"sweep config: observables {needs} are per-sample quantities and need eval sets; have the "
            f"factory {cfg['factory']} return eval_sets={{name: data}} (e.g. a slice of the training data)."
        )


def _run_group(problem, source, group, size, engine_kw, fp, out, stats):
    """Sample one group (padded to `size` with copies of its first checkpoint) and write each
    checkpoint's result; returns {step: LLCResult}."""
    import slt_jax

    params = dict(slt_jax.checkpoints.open(source, like=problem["params"], steps=group))
    batch = {step: params[step] for step in group}
    for k in range(size - len(group)):  # negative labels: never a training step
        batch[-1 - k] = params[group[0]]
    grid = slt_jax.estimate_llc_grid(problem["loss_fn"], batch, problem["data"], **engine_kw)
    stats["compilations"] += int(grid.attrs.get("compilations", 0))
    stats["compilations_per_group"].append(int(grid.attrs.get("compilations", 0)))
    stats["compile_s"] += float(grid.attrs.get("compile_s", 0.0))
    stats["sampling_s"] += float(grid.attrs.get("sampling_s", 0.0))
    written = {}
    for step in group:
        r = grid.sel(checkpoint=step)
        r.dataset.attrs.update(sweep_fingerprint=fp["sha256"], sweep_step=int(step))
        r.to_netcdf(sweep_dir.result_file(out, step))
        written[step] = r
    return written


def _start(out, fp: dict, new: bool, mine: list[int], shard_count: int) -> tuple[str | None, dict]:
    """Check or create the results directory (process 0, under its lock); (moved_aside, {step:
    result} of this job's steps already done)."""
    moved, done = None, {}
    if _is_primary():
        with sweep_dir.locked(out):
            moved = sweep_dir.prepare(out, fp, new)
            sweep_dir.remove_stale_temporaries(out, 0.0 if shard_count == 1 else sweep_dir.STALE_TEMPORARY_S)
            (out / sweep_dir.COMPLETE_FILE).unlink(missing_ok=True)
            done = sweep_dir.done_steps(out, mine, fp["sha256"])
    _barrier("slt_jax.sweep.prepared")
    return moved, done


def _sample(problem, source: str, sampler: dict, todo: list[int], num_mine: int, fp, out, progress: bool) -> tuple[dict, dict]:
    """Sample the steps still to do, group by group, one progress bar over checkpoints;
    ({step: result}, timing and compilation stats)."""
    from tqdm.auto import tqdm

    groups, size = _groups(todo, sampler["checkpoints_per_program"])
    engine_kw = _engine_kwargs(sampler, problem, progress=False)
    stats = {"compilations": 0, "compilations_per_group": [], "compile_s": 0.0, "sampling_s": 0.0}
    sampled: dict = {}
    bar = tqdm(total=num_mine, initial=num_mine - len(todo), unit="ckpt", desc=f"sweep {out.name}",
               disable=not progress or not _is_primary(), dynamic_ncols=True)
    try:
        for group in groups:
            bar.set_postfix_str(f"steps {group[0]}..{group[-1]}")
            sampled.update(_run_group(problem, source, group, size, engine_kw, fp, out, stats))
            bar.update(len(group))
    finally:
        bar.close()
    _barrier("slt_jax.sweep.sampled")
    return sampled, stats


def _finish(out, fp: dict, observables, all_steps: list[int], known: dict, plots: bool):
    """The summary over every finished step, and the directory-wide outputs (process 0, under
    the lock, so the last shard to finish writes them over all shards); (table, pending, notes).

    Rows of other jobs (and earlier runs) come from their files; a result read back from its
    file equals the one in memory bitwise (tests/test_sweep.py), so the table does not depend
    on which job sampled which rows."""
    with sweep_dir.locked(out) if _is_primary() else contextlib.nullcontext():
        results = dict(known)
        results.update(sweep_dir.done_steps(out, [s for s in all_steps if s not in results], fp["sha256"]))
        table = summary_table(results, observables)
        pending = [s for s in all_steps if s not in results]
        notes = {}
        if _is_primary() and results:
            notes = write_outputs(out, results, table, plots=plots)
            if not pending:
                atomic.write_json(out / sweep_dir.COMPLETE_FILE, {"fingerprint": fp["sha256"], "steps": all_steps})
    return table, pending, notes


def sweep(config: dict | str | os.PathLike, *, new: bool = False, progress: bool = True, shard: Any = None,
          plots: bool = True):
    """Estimate λ̂ at every checkpoint of `config` (see the module docstring), resuming any
    earlier run into the same results directory; returns the summary as a pandas DataFrame
    (one row per finished step), with ``attrs``: out, fingerprint, settings (the resolved
    sampler settings) and settings_source, shard, computed (steps sampled now), skipped (found
    done), pending (steps other shards have not finished), compilations (and
    compilations_per_group: XLA compilations in each program call, 0 after the first), compile_s, sampling_s
    (this job's), wall_s, parquet, stages (boundaries or why none), plot, moved_aside."""
    import slt_jax

    start = time.perf_counter()
    cfg = load_config(config)
    shard_index, shard_count = resolve_shard(shard)
    if new and shard_count > 1:
        raise SweepConfigError("new=True (--new) with shards: start the new sweep once unsharded (or delete the "
                               "directory), then run the shards; otherwise each shard would start it again.")
    problem = load_factory(cfg["factory"], cfg["factory_args"])
    _check_observables(cfg, problem)
    sampler, source = resolve_settings(cfg)
    fp = fingerprint(cfg, problem, sampler)
    out = cfg["out"]
    all_steps = slt_jax.checkpoints.steps(cfg["checkpoints"])
    mine = all_steps[shard_index::shard_count]

    moved, done = _start(out, fp, new, mine, shard_count)
    todo = _agree(mine, done)
    sampled, stats = _sample(problem, cfg["checkpoints"], sampler, todo, len(mine), fp, out, progress)
    table, pending, notes = _finish(out, fp, cfg["observables"], all_steps, {**done, **sampled}, plots)
    stages = notes.get("stages")
    table.attrs.update(
        out=str(out), fingerprint=fp["sha256"], settings={k: sampler[k] for k in ("step_size", "localization", "nbeta")},
        settings_source=source, shard=[shard_index, shard_count], computed=todo,
        skipped=[s for s in mine if s not in todo], pending=pending, wall_s=time.perf_counter() - start,
        parquet=notes.get("parquet"), plot=notes.get("plot"), moved_aside=moved,
        stages=list(map(float, stages.boundaries)) if hasattr(stages, "boundaries") else stages, **stats,
    )
    return table

