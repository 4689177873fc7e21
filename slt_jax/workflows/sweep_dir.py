"""A sweep's results directory: its fingerprint, its lock, and which checkpoints are done.

Several jobs (shards of a job array) write into one directory. Each result file is written
atomically by the one job that owns its checkpoint; what spans jobs (the fingerprint check, the
summary, the combined dataset, the `complete` marker) is done holding an exclusive lock on
`<out>/.lock` (fcntl.flock: local filesystems and NFSv4; on filesystems without locking, run
the shards' final `slt-jax sweep` once more after all finished to rebuild the summary).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import shutil
import time
from pathlib import Path
from typing import Iterator

from slt_jax import atomic
from slt_jax.workflows.sweep_config import CALIBRATION_DIR, SweepConfigError, changed

__all__ = ["FINGERPRINT_FILE", "COMPLETE_FILE", "LOCK_FILE", "locked", "prepare", "result_file", "load_done",
           "remove_stale_temporaries", "done_steps"]

FINGERPRINT_FILE, COMPLETE_FILE, LOCK_FILE = "fingerprint.json", "complete", ".lock"
# Files in a results directory that do not say it holds results of some config.
_NOT_RESULTS = (LOCK_FILE, CALIBRATION_DIR)
# A temporary this old belongs to a killed writer, not to another shard writing now (a result
# file is written in well under a minute).
STALE_TEMPORARY_S = 600.0


@contextlib.contextmanager
def locked(out: Path) -> Iterator[None]:
    """Hold the directory's exclusive lock (blocking); a no-op where fcntl does not exist."""
    out.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # Windows: one job per directory
        yield
        return
    with open(out / LOCK_FILE, "a+") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def _move_aside(out: Path) -> Path:
    """Move `out` to `<out>.old-<time>`, keeping a copy of its calibration in the new directory."""
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    aside = out.with_name(f"{out.name}.old-{stamp}")
    n = 1
    while aside.exists():
        aside, n = out.with_name(f"{out.name}.old-{stamp}-{n}"), n + 1
    os.replace(out, aside)
    if (aside / CALIBRATION_DIR).is_dir():  # the settings the new sweep may have been resolved from
        shutil.copytree(aside / CALIBRATION_DIR, out / CALIBRATION_DIR)
    return aside


def prepare(out: Path, fp: dict, new: bool) -> str | None:
    """Check the fingerprint of `out` (or write it); returns where old results were moved.

    Call holding `locked(out)`: the second shard to arrive then finds the fingerprint the first
    wrote (or, with new=True, the fresh directory the first made) and goes on."""
    fp_file = out / FINGERPRINT_FILE
    # A kill while the fingerprint itself was being written leaves only its temporary.
    has_results = out.exists() and any(p.name not in _NOT_RESULTS and not p.name.startswith(atomic.TEMP_PREFIX)
                                       for p in out.iterdir())
    moved = None
    if has_results:
        try:
            old = json.loads(fp_file.read_text())
        except (OSError, ValueError):
            old = None
        if old is None or old.get("sha256") != fp["sha256"]:
            if not new:
                if old is None:
                    why = f"it has files but no readable {FINGERPRINT_FILE}"
                else:
                    why = "the config changed: " + "; ".join(changed(old.get("components", {}), fp["components"]))
                raise SweepConfigError(
                    f"results directory {out} was not made by this config ({why}). Pass new=True "
                    f"(slt-jax sweep --new) to start a new sweep; the old results are moved to {out}.old-<time>."
                )
            moved = str(_move_aside(out))
    out.mkdir(parents=True, exist_ok=True)
    if not fp_file.is_file():
        atomic.write_json(fp_file, fp)
    return moved


def remove_stale_temporaries(out: Path, older_than_s: float = STALE_TEMPORARY_S) -> list[Path]:
    """Delete leftovers of killed writes, but not a temporary another job may be writing now."""
    now = time.time()
    stale = []
    for p in out.iterdir():
        if p.name.startswith(atomic.TEMP_PREFIX) and p.is_file():
            try:
                if now - p.stat().st_mtime >= older_than_s:
                    p.unlink(missing_ok=True)
                    stale.append(p)
            except FileNotFoundError:  # renamed or removed by its writer meanwhile
                pass
    return stale


def result_file(out: Path, step: int) -> Path:
    return out / f"ckpt_{step}.nc"


def load_done(path: Path, sha: str):
    """The LLCResult at `path` when it is complete and of this fingerprint, else None."""
    from slt_jax.results.llc_result import LLCResult

    if not path.is_file():
        return None
    try:
        result = LLCResult.from_netcdf(path)
    except Exception:  # unreadable or incomplete: redone, and the file replaced atomically
        return None
    return result if result.dataset.attrs.get("sweep_fingerprint") == sha else None


def done_steps(out: Path, steps: list[int], sha: str) -> dict:
    """{step: LLCResult} of the steps whose results are on disk."""
    found = {}
    for step in steps:
        r = load_done(result_file(out, step), sha)
        if r is not None:
            found[step] = r
    return found
