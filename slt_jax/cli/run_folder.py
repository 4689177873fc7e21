"""Run folders: status.json says whether the files beside it are one complete run.

A run folder (--out) holds one run at a time, and status.json says whether that run
finished. Once sampling is done (so an input error or a kill while sampling leaves an
older run's files untouched), status.json is set to "running" and the outputs of any
older run there are removed. Every file is then written atomically (slt_jax.atomic), and
status.json becomes "complete", with the size and SHA-256 of every output, only after
the last one. `verify_run(folder)` checks all that before you trust a folder.
"""

from __future__ import annotations

import math
import sys
from contextlib import contextmanager
from pathlib import Path

__all__ = [
    "STATUS_FILE",
    "_OUTPUTS",
    "RunFolder",
    "RunFolderError",
    "_json_safe",
    "_now",
    "_read_status",
    "_save_npy",
    "_write_summary",
    "run_folder",
    "verify_run",
]


class RunFolderError(ValueError):
    """A --out folder that does not hold one complete run (unfinished, failed or altered)."""


def _save_npy(path: Path, array) -> Path:
    import numpy as np

    from slt_jax.atomic import atomic_path

    with atomic_path(path) as tmp:  # tmp ends in .npy, so np.save adds no suffix
        np.save(tmp, np.asarray(array), allow_pickle=False)
    return path


def _write_summary(out: Path, summary: dict, run: "RunFolder") -> None:
    from slt_jax.atomic import write_json

    if run.errors:
        summary["errors"] = dict(run.errors)
    # Strict JSON (NaN is not JSON): a non-finite value is written as null.
    write_json(out / "summary.json", _json_safe(summary), allow_nan=False)


def _json_safe(value):
    """Plain JSON values: numpy scalars to Python numbers, NaN/±inf to None, tuples to lists."""
    import numpy as np

    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_json_safe(v) for v in value]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    return value if value is None or isinstance(value, str) else str(value)


# =========================================================================================


# =========================================================================================

STATUS_FILE = "status.json"
# What the commands write (globs). All are cleared when a run starts in a folder, so the
# outputs of an older run, of any command, never sit beside a newer run's.
_OUTPUTS = (
    "result.nc", "summary.json", "bif_*.npy", "bif_*.png", "trace.png", "mala.png", "loss_histograms.png",
    "diagnostics.png", "susceptibilities.nc", "susceptibility_pca.png", "dln.nc", "mlp.nc", "dln_trace.png",
    "mlp_trace.png",
)


class RunFolder:
    """One run's bookkeeping in its --out folder (see the module docstring)."""

    def __init__(self, folder: Path, command: str):
        import uuid

        self.folder, self.command = Path(folder), command
        self.run_id = uuid.uuid4().hex
        self.errors: dict[str, str] = {}
        self.files: list[str] = []
        self.status: dict = {}

    def start(self, argv: list[str]) -> None:
        """Mark the folder "running" first, then remove what an older run left there."""
        from slt_jax.atomic import fsync_dir, remove_temporaries

        import slt_jax

        stale = self._outputs() + self._listed_in_old_status()
        self.status = dict(status="running", run_id=self.run_id, command=self.command, argv=list(argv),
                           started=_now(), slt_jax_version=slt_jax.__version__)
        self._write_status()
        for p in stale:
            p.unlink(missing_ok=True)
        remove_temporaries(self.folder)
        fsync_dir(self.folder)

    def attempt(self, name: str, fn):
        """fn(), or None when it raises: the error is recorded and the run goes on."""
        try:
            return fn()
        except Exception as e:
            self.errors[name] = f"{type(e).__name__}: {e}"
            print(f"warning: {name} failed ({self.errors[name]}); the run's other outputs are still written",
                  file=sys.stderr)
            return None

    def finish(self) -> None:
        """Written last: every output's size and SHA-256, so a reader can check the set."""
        from slt_jax.atomic import file_digest

        self.files = sorted(p.name for p in self._outputs())
        self.status.update(status="complete", finished=_now(), errors=dict(self.errors),
                           files={name: file_digest(self.folder / name) for name in self.files})
        self._write_status()

    def fail(self, error: BaseException) -> None:
        self.status.update(status="failed", finished=_now(), error=f"{type(error).__name__}: {error}")
        self._write_status()

    def _outputs(self) -> list[Path]:
        found = {p for pattern in _OUTPUTS for p in self.folder.glob(pattern) if p.is_file()}
        return sorted(found)

    def _listed_in_old_status(self) -> list[Path]:
        try:
            old = _read_status(self.folder) or {}
        except RunFolderError:
            return []
        names = old.get("files") or {}
        return [self.folder / name for name in names if isinstance(name, str) and Path(name).name == name
                and name != STATUS_FILE]

    def _write_status(self) -> None:
        from slt_jax.atomic import write_json

        write_json(self.folder / STATUS_FILE, self.status)


@contextmanager
def run_folder(folder: str | Path, command: str, argv: list[str]):
    """Open a run in `folder` (status "running"); "complete" on success, "failed" on an error.

    Under jax.distributed only process 0 writes results, so only it keeps the status.
    """
    import jax

    run = RunFolder(Path(folder), command)
    if jax.process_index() != 0:
        yield run
        return
    run.start(argv)
    try:
        yield run
    except BaseException as e:
        run.fail(e)
        raise
    run.finish()


def verify_run(folder: str | Path) -> dict:
    """The status of the complete run in `folder`; RunFolderError when the run did not finish
    (killed or failed), or when an output is missing or differs from the one the run wrote."""
    folder = Path(folder)
    status = _read_status(folder)
    if status is None:
        raise RunFolderError(f"{folder} has no {STATUS_FILE}: no slt-jax run finished there (or it predates run status).")
    if status.get("status") != "complete":
        why = f" ({status['error']})" if status.get("error") else ""
        raise RunFolderError(
            f"{folder}: the {status.get('command')} run {status.get('run_id')} is {status.get('status')!r}, "
            f"not complete{why}; its files are partial. Rerun it."
        )
    from slt_jax.atomic import file_digest

    for name, recorded in status.get("files", {}).items():
        path = folder / name
        if not path.is_file():
            raise RunFolderError(f"{path} is missing; the run {status['run_id']} wrote it. Rerun or restore it.")
        if file_digest(path) != recorded:
            raise RunFolderError(f"{path} is not the file run {status['run_id']} wrote (size or SHA-256 differ).")
    return status


def _read_status(folder: Path) -> dict | None:
    import json

    path = folder / STATUS_FILE
    if not path.is_file():
        return None
    try:
        status = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise RunFolderError(f"{path} is not valid JSON ({e}); the folder's state is unknown. Rerun.") from e
    if not isinstance(status, dict):
        raise RunFolderError(f"{path} holds a {type(status).__name__}, not a run status. Rerun.")
    return status


def _now() -> str:
    from datetime import datetime, timezone

    return datetime.now(timezone.utc).isoformat(timespec="seconds")
