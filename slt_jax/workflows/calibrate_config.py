"""`slt_jax.calibrate(config)`: calibration driven by a sweep config, writing the file the
sweep then reads for the settings its [sampler] table leaves out.

    slt_jax.calibrate("sweep.toml")   # -> <out>/calibration/calibration.json and plots
    slt_jax.sweep("sweep.toml")       # step_size / localization / nbeta from that file

`slt_jax.calibrate(loss_fn, checkpoints, data, ...)` (anything but a lone config) is
`slt_jax.calibration.calibrate`.
"""

from __future__ import annotations

import os
from typing import Any

from slt_jax.workflows.sweep_config import (
    TUNED, SweepConfigError, calibration_file, load_config, load_factory,
)

__all__ = ["calibrate", "calibrate_from_config", "calibration_steps"]

_GRID_KEYS = {"step_size": "step_sizes", "localization": "localizations", "nbeta": "nbetas"}


def calibration_steps(all_steps: list[int], wanted: Any = None) -> list[int]:
    """The steps to calibrate on: `wanted` (each must exist), else the first, middle and last."""
    if wanted is None or wanted == "first-middle-last":
        return sorted({all_steps[0], all_steps[len(all_steps) // 2], all_steps[-1]})
    if not isinstance(wanted, (list, tuple)) or not wanted or not all(isinstance(s, int) for s in wanted):
        raise SweepConfigError(f"sweep config [calibrate]: checkpoints must be a list of steps or "
                               f"'first-middle-last', got {wanted!r}")
    missing = sorted(set(wanted) - set(all_steps))
    if missing:
        raise SweepConfigError(f"sweep config [calibrate]: checkpoints {missing} are not among the steps found "
                               f"({all_steps[:5]}{'...' if len(all_steps) > 5 else ''})")
    return sorted(set(wanted))


def _grids(cfg: dict) -> dict:
    """Per tuned setting: the [calibrate] grid if given, else the [sampler] value if fixed there
    (the sweep uses it anyway), else None (the calibration's default grid)."""
    cal, sampler = cfg["calibrate"], cfg["sampler"]
    grids = {}
    for key in TUNED:
        grid_key = _GRID_KEYS[key]
        if grid_key in cal:
            grids[grid_key] = list(cal[grid_key])
        elif sampler[key] is not None:
            grids[grid_key] = [sampler[key]]
        else:
            grids[grid_key] = None
    return grids


def calibrate_from_config(config: dict | str | os.PathLike, *, progress: bool = True, plots: bool = True):
    """Run the [calibrate] grid of `config` on its chosen checkpoints; write the recommendation
    to the sweep's calibration file (and its plots beside it); return the Calibration."""
    import slt_jax
    from slt_jax.calibration import calibrate as run_calibration

    cfg = load_config(config)
    problem = load_factory(cfg["factory"], cfg["factory_args"])
    all_steps = slt_jax.checkpoints.steps(cfg["checkpoints"])
    chosen = calibration_steps(all_steps, cfg["calibrate"].get("checkpoints"))
    checkpoints = dict(slt_jax.checkpoints.open(cfg["checkpoints"], like=problem["params"], steps=chosen))
    s, c = cfg["sampler"], cfg["calibrate"]
    result = run_calibration(
        problem["loss_fn"], checkpoints, problem["data"], batch_size=int(s["batch_size"]),
        num_chains=int(c.get("num_chains", s["num_chains"])), num_draws=int(c.get("num_draws", s["num_draws"])),
        num_burnin=int(c.get("num_burnin", s["num_burnin"])), seed=int(s["seed"]), sampler=s["sampler"],
        which=chosen, eval_sets=problem.get("eval_sets"), progress=progress, **_grids(cfg),
    )
    path = calibration_file(cfg)
    result.write(path)
    if plots:
        result.plot(path.parent)
    return result


def calibrate(config_or_loss_fn, *args, **kwargs):
    """`calibrate(config)` runs a sweep config's calibration (calibrate_from_config);
    `calibrate(loss_fn, checkpoints, data, ...)` is slt_jax.calibration.calibrate."""
    if not args and isinstance(config_or_loss_fn, (dict, str, os.PathLike)):
        return calibrate_from_config(config_or_loss_fn, **kwargs)
    from slt_jax.calibration import calibrate as run_calibration

    return run_calibration(config_or_loss_fn, *args, **kwargs)
