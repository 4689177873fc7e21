"""Resumable λ̂ sweeps over a training run's checkpoints (issue 10, items 2-3).

    import slt_jax
    table = slt_jax.sweep("sweep.toml")          # or a dict of the same keys

A config (TOML file or dict)::

    factory = "my_problem:make"        # module:function (or path/to/file.py:function), called with
                                       # no arguments; returns {loss_fn, params, data[, eval_sets]}
    checkpoints = "run/ckpt_*.npz"     # a path, directory or glob (slt_jax.checkpoints.open)
    out = "results/run1"               # the results directory

    [sampler]
    step_size = 1e-3                   # required
    localization = 100.0               # required
    num_chains = 8                     # required
    num_draws = 500                    # required
    batch_size = 64                    # required
    nbeta = 30.0                       # optional (a number or a rule name; default: estimate_llc's)
    num_burnin = 0                     # optional
    seed = 0                           # optional
    checkpoints_per_program = 4        # optional: checkpoints per estimate_llc_grid call
                                       # (default: all remaining in one call)

Relative `checkpoints` / `out` paths in a TOML file are taken relative to the file's folder;
in a dict, relative to the current directory.

The results directory holds

  fingerprint.json   sha256 over everything that changes the numbers (factory name, a hash of
                     the data and eval-set arrays, the sampler settings, seed, slt_jax version)
                     and those components one by one. A later sweep into the directory with a
                     different fingerprint is refused (SweepConfigError naming the changed
                     keys) unless ``new=True``, which moves the old directory aside to
                     ``<out>.old-<time>`` (reported in the returned table's ``attrs``).
                     `checkpoints` and `checkpoints_per_program` are not part of it: adding
                     checkpoints extends a sweep, and a checkpoint's λ̂ does not depend on which
                     other checkpoints share its program (chain c's key is fold_in(key(seed),
                     c) in every configuration).
  ckpt_<step>.nc     one LLCResult per checkpoint, written atomically as soon as its group's
                     estimate_llc_grid call returns. On start every step whose file exists,
                     loads and carries this fingerprint is skipped, so a sweep killed at any
                     point (SIGKILL included) resumes where it stopped; unreadable files are
                     redone.
  summary.csv        one row per checkpoint: SUMMARY_COLUMNS.
  summary.parquet    the same table, when pyarrow is importable (otherwise skipped, and the
                     returned table's ``attrs["parquet"]`` says so).
  complete           written last: the fingerprint and the steps of a finished sweep.

Every file is written through slt_jax.atomic (temporary name, fsync, rename).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import importlib
import importlib.util
import json
import os
import tomllib
from pathlib import Path
from typing import Any

import numpy as np

from slt_jax import atomic

__all__ = ["sweep", "load_config", "fingerprint", "SweepConfigError", "SUMMARY_COLUMNS", "SAMPLER_KEYS"]

SUMMARY_COLUMNS = ("step", "llc", "llc_mcse", "llc_std", "llc_var", "rhat", "ess", "mala_mean", "mala_min",
                   "chains_used", "chains_excluded", "init_loss")
_REQUIRED_SAMPLER = ("step_size", "localization", "num_chains", "num_draws", "batch_size")
_OPTIONAL_SAMPLER = {"nbeta": None, "num_burnin": 0, "seed": 0, "checkpoints_per_program": None}
SAMPLER_KEYS = _REQUIRED_SAMPLER + tuple(_OPTIONAL_SAMPLER)
_TOP_KEYS = ("factory", "checkpoints", "out", "sampler")
_NOT_FINGERPRINTED = ("checkpoints_per_program",)
FINGERPRINT_FILE, COMPLETE_FILE = "fingerprint.json", "complete"


class SweepConfigError(ValueError):
    """A bad sweep config, or a results directory made by a different config."""


# ---------------------------------------------------------------------------------------
# Config


def load_config(config: dict | str | os.PathLike) -> dict:
    """The validated config: {factory, checkpoints (str), out (Path), sampler: {all SAMPLER_KEYS}}."""
    base = Path.cwd()
    if not isinstance(config, dict):
        path = Path(config)
        try:
            with open(path, "rb") as f:
                config = tomllib.load(f)
        except FileNotFoundError:
            raise SweepConfigError(f"sweep config {path} does not exist") from None
        except tomllib.TOMLDecodeError as e:
            raise SweepConfigError(f"sweep config {path}: not valid TOML ({e})") from e
        base = path.resolve().parent
    unknown = sorted(set(config) - set(_TOP_KEYS))
    if unknown:
        raise SweepConfigError(f"sweep config: unknown key(s) {unknown}; the keys are {list(_TOP_KEYS)}")
    missing = [k for k in _TOP_KEYS if k not in config]
    if missing:
        raise SweepConfigError(f"sweep config: missing key(s) {missing}")
    sampler = dict(config["sampler"])
    unknown = sorted(set(sampler) - set(SAMPLER_KEYS))
    if unknown:
        raise SweepConfigError(f"sweep config [sampler]: unknown key(s) {unknown}; the keys are {list(SAMPLER_KEYS)}")
    missing = [k for k in _REQUIRED_SAMPLER if k not in sampler]
    if missing:
        raise SweepConfigError(f"sweep config [sampler]: missing key(s) {missing}")
    for k, v in _OPTIONAL_SAMPLER.items():
        sampler.setdefault(k, v)
    cpp = sampler["checkpoints_per_program"]
    if cpp is not None and (not isinstance(cpp, int) or isinstance(cpp, bool) or cpp < 1):
        raise SweepConfigError(f"sweep config [sampler]: checkpoints_per_program must be a positive integer, got {cpp!r}")
    factory = config["factory"]
    if not isinstance(factory, str) or ":" not in factory:
        raise SweepConfigError(f"sweep config: factory must look like 'module:function', got {factory!r}")

    def resolve(p: str) -> str:
        return p if os.path.isabs(p) else str(base / p)

    return {"factory": factory, "checkpoints": resolve(str(config["checkpoints"])),
            "out": Path(resolve(str(config["out"]))), "sampler": sampler}


def _load_factory(spec: str) -> dict:
    target, _, func = spec.rpartition(":")
    try:
        if target.endswith(".py"):
            module_spec = importlib.util.spec_from_file_location(Path(target).stem, target)
            module = importlib.util.module_from_spec(module_spec)
            module_spec.loader.exec_module(module)
        else:
            module = importlib.import_module(target)
    except Exception as e:
        raise SweepConfigError(f"factory {spec}: importing {target} failed ({type(e).__name__}: {e})") from e
    fn = getattr(module, func, None)
    if not callable(fn):
        raise SweepConfigError(f"factory {spec}: {target} has no function {func!r}")
    problem = fn()
    if not isinstance(problem, dict) or not {"loss_fn", "params", "data"} <= set(problem):
        raise SweepConfigError(f"factory {spec}: must return a dict with loss_fn, params, data[, eval_sets]")
    return problem


# ---------------------------------------------------------------------------------------
# Fingerprint


def _tree_digest(tree: Any) -> str:
    import jax

    leaves, treedef = jax.tree.flatten(tree)
    h = hashlib.sha256(str(treedef).encode())
    for leaf in leaves:
        a = np.ascontiguousarray(np.asarray(jax.device_get(leaf)))
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def fingerprint(config: dict, problem: dict) -> dict:
    """{"sha256": ..., "components": {name: value}} for a loaded config and its factory's problem."""
    import slt_jax

    components = {"factory": config["factory"], "data_sha256": _tree_digest(problem["data"]),
                  "eval_sets_sha256": _tree_digest(problem.get("eval_sets") or {}),
                  "slt_jax_version": slt_jax.__version__}
    for k, v in sorted(config["sampler"].items()):
        if k not in _NOT_FINGERPRINTED:
            components[f"sampler.{k}"] = v
    text = json.dumps(components, sort_keys=True, default=repr)
    return {"sha256": hashlib.sha256(text.encode()).hexdigest(), "components": json.loads(text)}


def _changed(old: dict, new: dict) -> list[str]:
    keys = sorted(set(old) | set(new))
    return [f"{k} ({old.get(k, '<absent>')!r} -> {new.get(k, '<absent>')!r})" for k in keys if old.get(k) != new.get(k)]


def _prepare_dir(out: Path, fp: dict, new: bool) -> str | None:
    """Check (or write) the fingerprint; returns where old results were moved, if they were."""
    moved = None
    fp_file = out / FINGERPRINT_FILE
    if out.exists() and any(out.iterdir()):
        old = None
        try:
            old = json.loads(fp_file.read_text())
        except (OSError, ValueError):
            pass
        same = old is not None and old.get("sha256") == fp["sha256"]
        if not same:
            if not new:
                if old is None:
                    why = f"it has files but no readable {FINGERPRINT_FILE}"
                else:
                    why = "the config changed: " + "; ".join(_changed(old.get("components", {}), fp["components"]))
                raise SweepConfigError(
                    f"results directory {out} was not made by this config ({why}). Pass new=True "
                    f"(slt-jax sweep --new) to start a new sweep; the old results are moved to {out}.old-<time>."
                )
            stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
            aside = out.with_name(f"{out.name}.old-{stamp}")
            n = 1
            while aside.exists():
                aside, n = out.with_name(f"{out.name}.old-{stamp}-{n}"), n + 1
            os.replace(out, aside)
            moved = str(aside)
    out.mkdir(parents=True, exist_ok=True)
    atomic.remove_temporaries(out)
    if not fp_file.is_file():
        atomic.write_json(fp_file, fp)
    return moved


# ---------------------------------------------------------------------------------------
# The sweep


def _result_file(out: Path, step: int) -> Path:
    return out / f"ckpt_{step}.nc"


def _load_done(path: Path, sha: str):
    from slt_jax.results.llc_result import LLCResult

    if not path.is_file():
        return None
    try:
        result = LLCResult.from_netcdf(path)
    except Exception:  # unreadable or incomplete: redone, and the file replaced atomically
        return None
    return result if result.dataset.attrs.get("sweep_fingerprint") == sha else None


def _summary_row(step: int, r) -> dict:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        mala = np.asarray(r.mala_acceptance, dtype=float)[r.healthy]
        mala = mala[np.isfinite(mala)]
        return {"step": int(step), "llc": r.llc_mean, "llc_mcse": float(r.llc_se), "llc_std": r.llc_std,
                "llc_var": r.llc_var, "rhat": float(r.rhat), "ess": float(r.ess),
                "mala_mean": float(mala.mean()) if mala.size else float("nan"),
                "mala_min": float(mala.min()) if mala.size else float("nan"),
                "chains_used": int(r._summarized.sum()), "chains_excluded": int(len(r.healthy) - r._summarized.sum()),
                "init_loss": r.init_loss}


def sweep(config: dict | str | os.PathLike, *, new: bool = False, progress: bool = False):
    """Estimate λ̂ at every checkpoint of `config` (see the module docstring), resuming any
    earlier run into the same results directory; returns the summary as a pandas DataFrame
    (one row per step, SUMMARY_COLUMNS), with ``attrs``: out, fingerprint, computed (steps
    sampled now), skipped (steps found done), parquet ("written" or why not), moved_aside."""
    import pandas as pd

    import slt_jax

    cfg = load_config(config)
    problem = _load_factory(cfg["factory"])
    fp = fingerprint(cfg, problem)
    out = cfg["out"]
    moved = _prepare_dir(out, fp, new)
    (out / COMPLETE_FILE).unlink(missing_ok=True)

    s = cfg["sampler"]
    per_program = s["checkpoints_per_program"]
    engine_kw = dict(step_size=float(s["step_size"]), localization=float(s["localization"]), nbeta=s["nbeta"],
                     num_chains=int(s["num_chains"]), num_draws=int(s["num_draws"]),
                     num_burnin=int(s["num_burnin"]), batch_size=int(s["batch_size"]), seed=int(s["seed"]))
    if problem.get("eval_sets"):
        engine_kw["eval_sets"] = problem["eval_sets"]

    results: dict[int, Any] = {}
    computed: list[int] = []
    skipped: list[int] = []
    group: dict[int, Any] = {}

    def run_group():
        grid = slt_jax.estimate_llc_grid(problem["loss_fn"], dict(group), problem["data"], progress=progress,
                                         **engine_kw)
        for step in group:
            r = grid.sel(checkpoint=step)
            r.dataset.attrs["sweep_fingerprint"] = fp["sha256"]
            r.dataset.attrs["sweep_step"] = int(step)
            r.to_netcdf(_result_file(out, step))
            results[step] = r
            computed.append(step)
        group.clear()

    # The checkpoints are listed now and read lazily: a done step's params are read but dropped.
    for step, params in slt_jax.checkpoints.open(cfg["checkpoints"], like=problem["params"]):
        done = _load_done(_result_file(out, step), fp["sha256"])
        if done is not None:
            results[step] = done
            skipped.append(step)
            continue
        group[step] = params
        if per_program is not None and len(group) >= per_program:
            run_group()
    if group:
        run_group()

    table = pd.DataFrame([_summary_row(step, results[step]) for step in sorted(results)], columns=list(SUMMARY_COLUMNS))
    with atomic.atomic_path(out / "summary.csv") as tmp:
        table.to_csv(tmp, index=False)
    if importlib.util.find_spec("pyarrow") is not None:
        with atomic.atomic_path(out / "summary.parquet") as tmp:
            table.to_parquet(tmp, index=False)
        parquet = "written"
    else:
        (out / "summary.parquet").unlink(missing_ok=True)
        parquet = "skipped: pyarrow is not importable (pip install pyarrow); summary.csv has the same table"
    atomic.write_json(out / COMPLETE_FILE, {"fingerprint": fp["sha256"], "steps": sorted(results)})
    table.attrs.update(out=str(out), fingerprint=fp["sha256"], computed=computed, skipped=skipped,
                       parquet=parquet, moved_aside=moved)
    return table
