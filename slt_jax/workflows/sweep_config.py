"""A sweep's config: loading and validating it, its factory, its sampler settings (given, or
read from a calibration file), and the fingerprint of everything that changes the numbers.

The keys (TOML file or dict)::

    factory = "my_problem:make"        # module:function or path/to/file.py:function, returning
                                       # {loss_fn, params, data[, eval_sets]}
    checkpoints = "run/checkpoints"    # a path, directory or glob (slt_jax.checkpoints.open)
    out = "results/run1"               # the results directory
    observables = ["wbic", "waic"]     # optional extra summary columns (OBSERVABLES)

    [factory_args]                     # optional keyword arguments for the factory
    p = 23

    [sampler]
    num_chains = 8                     # required
    num_draws = 500                    # required
    batch_size = 64                    # required
    step_size = 1e-3                   # these three: given here, or read from the calibration
    localization = 100.0               #   file (`calibration`, default
    nbeta = 30.0                       #   <out>/calibration/calibration.json) that
                                       #   `slt_jax.calibrate(config)` / `slt-jax calibrate` writes
    sampler = "sgld"                   # optional: a sampler name (slt_jax.SAMPLERS)
    num_burnin = 0                     # optional
    seed = 0                           # optional
    checkpoints_per_program = 8        # optional: checkpoints per compiled program ("auto": ≤ 8)
    calibration = "cal.json"           # optional: where the calibrated settings are

    [calibrate]                        # optional: the grid `slt_jax.calibrate(config)` runs
    step_sizes = [1e-4, 1e-3]          # each optional (slt_jax.calibration's defaults)
    localizations = [10.0, 100.0]
    nbetas = [30.0]
    checkpoints = [0, 500, 5000]       # steps to calibrate on (default: first, middle, last)
    num_chains = 4                     # default: [sampler]'s
    num_draws = 300                    # default: [sampler]'s
    num_burnin = 0

Relative paths in a TOML file are taken relative to its folder; in a dict, relative to the
current directory.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import json
import math
import os
import sys
import tomllib
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["load_config", "load_factory", "fingerprint", "resolve_settings", "SweepConfigError",
           "SAMPLER_KEYS", "CALIBRATE_KEYS", "OBSERVABLES", "CALIBRATION_DIR", "TUNED"]

TUNED = ("step_size", "localization", "nbeta")  # what calibration chooses
_REQUIRED_SAMPLER = ("num_chains", "num_draws", "batch_size")
_OPTIONAL_SAMPLER = {"step_size": None, "localization": None, "nbeta": None, "sampler": "sgld", "num_burnin": 0,
                     "seed": 0, "checkpoints_per_program": "auto", "calibration": None}
SAMPLER_KEYS = _REQUIRED_SAMPLER + tuple(_OPTIONAL_SAMPLER)
CALIBRATE_KEYS = ("step_sizes", "localizations", "nbetas", "checkpoints", "num_chains", "num_draws", "num_burnin")
_TOP_REQUIRED = ("factory", "checkpoints", "out", "sampler")
_TOP_KEYS = _TOP_REQUIRED + ("factory_args", "observables", "calibrate")
# Summary columns on request: name -> what it needs. "waic" and "nu" give one column per eval set.
OBSERVABLES = {"wbic": None, "free_energy": None, "llc_var_se": None, "waic": "eval_sets", "nu": "eval_sets"}
# Not part of the fingerprint: how checkpoints are grouped into programs does not change a
# checkpoint's draws (tests/test_sweep.py checks bitwise), nor does where the settings came from.
_NOT_FINGERPRINTED = ("checkpoints_per_program", "calibration")
CALIBRATION_DIR = "calibration"


class SweepConfigError(ValueError):
    """A bad sweep config, or a results directory made by a different config."""


def _read(config) -> tuple[dict, Path]:
    if isinstance(config, dict):
        return config, Path.cwd()
    path = Path(config)
    try:
        with open(path, "rb") as f:
            return tomllib.load(f), path.resolve().parent
    except FileNotFoundError:
        raise SweepConfigError(f"sweep config {path} does not exist") from None
    except tomllib.TOMLDecodeError as e:
        raise SweepConfigError(f"sweep config {path}: not valid TOML ({e})") from e


def _check_keys(where: str, table: Any, allowed, required=()) -> dict:
    if not isinstance(table, dict):
        raise SweepConfigError(f"sweep config {where}: must be a table (dict), got {table!r}")
    unknown = sorted(set(table) - set(allowed))
    if unknown:
        raise SweepConfigError(f"sweep config {where}: unknown key(s) {unknown}; the keys are {list(allowed)}")
    missing = [k for k in required if k not in table]
    if missing:
        raise SweepConfigError(f"sweep config {where}: missing key(s) {missing}")
    return dict(table)


def _positive_int(where: str, key: str, value) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise SweepConfigError(f"sweep config {where}: {key} must be a positive integer, got {value!r}")


def _check_sampler(sampler: dict) -> None:
    for k in _REQUIRED_SAMPLER:
        _positive_int("[sampler]", k, sampler[k])
    for k in ("num_burnin", "seed"):
        v = sampler[k]
        if not isinstance(v, int) or isinstance(v, bool) or v < 0:
            raise SweepConfigError(f"sweep config [sampler]: {k} must be a non-negative integer, got {v!r}")
    for k in ("step_size", "localization"):
        v = sampler[k]
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0):
            raise SweepConfigError(f"sweep config [sampler]: {k} must be a positive number, got {v!r}")
    cpp = sampler["checkpoints_per_program"]
    if cpp != "auto":
        _positive_int("[sampler]", "checkpoints_per_program", cpp)
    if not isinstance(sampler["sampler"], str):
        raise SweepConfigError(f"sweep config [sampler]: sampler must be a sampler name, got {sampler['sampler']!r}")


def _check_observables(observables) -> list[str]:
    if not isinstance(observables, (list, tuple)) or not all(isinstance(o, str) for o in observables):
        raise SweepConfigError(f"sweep config: observables must be a list of names, got {observables!r}")
    unknown = sorted(set(observables) - set(OBSERVABLES))
    if unknown:
        raise SweepConfigError(f"sweep config: unknown observable(s) {unknown}; choose from {list(OBSERVABLES)}")
    return list(dict.fromkeys(observables))


def load_config(config: dict | str | os.PathLike) -> dict:
    """The validated config: {factory, factory_args, checkpoints (str), out (Path), observables,
    sampler: {every SAMPLER_KEYS}, calibrate: {given CALIBRATE_KEYS}}."""
    config, base = _read(config)
    config = _check_keys("", config, _TOP_KEYS, _TOP_REQUIRED)
    sampler = _check_keys("[sampler]", config["sampler"], SAMPLER_KEYS, _REQUIRED_SAMPLER)
    for k, v in _OPTIONAL_SAMPLER.items():
        sampler.setdefault(k, v)
    _check_sampler(sampler)
    factory = config["factory"]
    if not isinstance(factory, str) or ":" not in factory:
        raise SweepConfigError(f"sweep config: factory must look like 'module:function', got {factory!r}")
    factory_args = _check_keys("[factory_args]", config.get("factory_args", {}), config.get("factory_args", {}))
    calibrate = _check_keys("[calibrate]", config.get("calibrate", {}), CALIBRATE_KEYS)

    def resolve(p) -> str:
        return str(p) if os.path.isabs(str(p)) else str(base / str(p))

    out = Path(resolve(config["out"]))
    sampler["calibration"] = resolve(sampler["calibration"]) if sampler["calibration"] else None
    return {"factory": factory, "factory_args": factory_args, "checkpoints": resolve(config["checkpoints"]),
            "out": out, "observables": _check_observables(config.get("observables", [])), "sampler": sampler,
            "calibrate": calibrate}


def calibration_file(cfg: dict) -> Path:
    from slt_jax.calibration import CALIBRATION_FILE

    given = cfg["sampler"]["calibration"]
    return Path(given) if given else cfg["out"] / CALIBRATION_DIR / CALIBRATION_FILE


def resolve_settings(cfg: dict) -> tuple[dict, str]:
    """(sampler settings with step_size, localization and nbeta filled in, where they came from).

    Settings in [sampler] win; missing ones come from the calibration file. nbeta may stay None
    (the estimator's default) only when the config gives neither it nor a calibration."""
    sampler = dict(cfg["sampler"])
    missing = [k for k in TUNED if sampler[k] is None]
    if not missing:
        return sampler, "config"
    path = calibration_file(cfg)
    if not path.is_file():
        if missing == ["nbeta"]:
            return sampler, "config"
        raise SweepConfigError(
            f"sweep config [sampler]: {', '.join(m for m in missing if m != 'nbeta')} not given and no calibration "
            f"file at {path}. Run `slt-jax calibrate CONFIG` (slt_jax.calibrate(config)) first, or set them in [sampler]."
        )
    from slt_jax.calibration import load_calibration, load_recommendation

    recommended = load_recommendation(path)
    for k in missing:
        sampler[k] = recommended[k]
    _warn_if_run_differs(path, load_calibration(path), sampler)
    return sampler, f"calibration file {path} ({', '.join(missing)})"


def _warn_if_run_differs(path: Path, calibration: dict, sampler: dict) -> None:
    """The calibration rules vouch for the run they scored (plateau within num_draws, the
    step-size bias at that batch size and sampler); say so when the sweep runs another."""
    import warnings

    differ = [f"{k} {calibration[k]!r} there, {sampler[k]!r} here" for k in ("sampler", "num_draws", "num_burnin",
              "batch_size") if k in calibration and calibration[k] != sampler[k]]
    if differ:
        warnings.warn(f"the settings from {path} were calibrated for another run ({'; '.join(differ)}): its plateau "
                      "and step-size checks do not cover this sweep; recalibrate with the sweep's run length "
                      "([calibrate] num_draws / num_burnin) or check the sweep's verdicts.", RuntimeWarning, stacklevel=3)


def _import_from_cwd(name: str):
    # `slt-jax sweep` is a console script: unlike `python -m`, its sys.path lacks the working
    # directory, so `factory = "my_model:make"` beside the config would not import.
    cwd = os.getcwd()
    added = cwd not in sys.path
    if added:
        sys.path.insert(0, cwd)
    try:
        return importlib.import_module(name)
    finally:
        if added and cwd in sys.path:
            sys.path.remove(cwd)


def load_factory(spec: str, kwargs: dict | None = None) -> dict:
    """Import `module:function` (or `file.py:function`) and call it with kwargs."""
    target, _, func = spec.rpartition(":")
    try:
        if target.endswith(".py"):
            module_spec = importlib.util.spec_from_file_location(Path(target).stem, target)
            module = importlib.util.module_from_spec(module_spec)
            module_spec.loader.exec_module(module)
        else:
            module = _import_from_cwd(target)
    except Exception as e:
        raise SweepConfigError(f"factory {spec}: importing {target} failed ({type(e).__name__}: {e})") from e
    fn = getattr(module, func, None)
    if not callable(fn):
        raise SweepConfigError(f"factory {spec}: {target} has no function {func!r}")
    try:
        problem = fn(**(kwargs or {}))
    except TypeError as e:
        raise SweepConfigError(f"factory {spec}: calling it with [factory_args] {kwargs} failed ({e})") from e
    if not isinstance(problem, dict) or not {"loss_fn", "params", "data"} <= set(problem):
        raise SweepConfigError(f"factory {spec}: must return a dict with loss_fn, params, data[, eval_sets]")
    return problem


def _tree_digest(tree: Any) -> str:
    import jax

    leaves, treedef = jax.tree.flatten(tree)
    h = hashlib.sha256(str(treedef).encode())
    for leaf in leaves:
        a = np.ascontiguousarray(np.asarray(jax.device_get(leaf)))
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def fingerprint(cfg: dict, problem: dict, sampler: dict | None = None) -> dict:
    """{"sha256": ..., "components": {name: value}}: everything that changes the numbers (the
    factory and its arguments, a hash of the data and eval-set arrays, the resolved sampler
    settings, the observables, the slt_jax version)."""
    import slt_jax

    components = {"factory": cfg["factory"], "factory_args": cfg["factory_args"],
                  "data_sha256": _tree_digest(problem["data"]),
                  "eval_sets_sha256": _tree_digest(problem.get("eval_sets") or {}),
                  "observables": cfg["observables"], "slt_jax_version": slt_jax.__version__}
    for k, v in sorted((sampler or cfg["sampler"]).items()):
        if k not in _NOT_FINGERPRINTED:
            components[f"sampler.{k}"] = v
    text = json.dumps(components, sort_keys=True, default=repr)
    return {"sha256": hashlib.sha256(text.encode()).hexdigest(), "components": json.loads(text)}


def changed(old: dict, new: dict) -> list[str]:
    keys = sorted(set(old) | set(new))
    return [f"{k} ({old.get(k, '<absent>')!r} -> {new.get(k, '<absent>')!r})" for k in keys if old.get(k) != new.get(k)]
