"""Atomic file writes: every file slt_jax writes is either its old version or complete.

A writer fills a temporary file in the destination's folder (same filesystem, so the rename
is atomic); the temporary is fsynced, renamed over the destination with os.replace, and the
folder fsynced so the rename itself survives a crash. A failure midway deletes the temporary
and leaves any earlier file at the destination untouched; a SIGKILL leaves at most a hidden
`.tmp-*` file that no reader opens (`remove_temporaries` clears them).

    with atomic_path("out/result.nc") as tmp:   # tmp keeps the suffix: writers that infer
        dataset.to_netcdf(tmp)                   # the format from it (savefig, np.save) work
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

__all__ = ["TEMP_PREFIX", "atomic_path", "write_bytes", "write_text", "write_json",
    "remove_temporaries", "file_digest", "fsync_dir"]

TEMP_PREFIX = ".tmp-"


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a fresh temporary path beside `path`; on success move it onto `path` atomically.

    The temporary does not exist yet (the writer creates it, with the usual permissions);
    its name ends like `path`, e.g. `.tmp-3f9a1c2b-result.nc`. The parent folder is created.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{TEMP_PREFIX}{secrets.token_hex(4)}-{path.name}")
    try:
        yield tmp
        if not tmp.is_file():
            raise FileNotFoundError(f"atomic write of {path}: the writer created no file at {tmp}.")
        _fsync_file(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def write_bytes(path: str | Path, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        with open(tmp, "xb") as f:
            f.write(data)
    return Path(path)


def write_text(path: str | Path, text: str, encoding: str = "utf-8") -> Path:
    return write_bytes(path, text.encode(encoding))


def write_json(path: str | Path, obj: Any, **dumps_kwargs) -> Path:
    """JSON text with a trailing newline; dumps_kwargs go to json.dumps (default indent=2)."""
    dumps_kwargs.setdefault("indent", 2)
    return write_text(path, json.dumps(obj, **dumps_kwargs) + "\n")


def remove_temporaries(folder: str | Path) -> list[Path]:
    """Delete the `.tmp-*` leftovers of writes killed midway in `folder`; returns them."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    stale = [p for p in folder.iterdir() if p.name.startswith(TEMP_PREFIX) and p.is_file()]
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


def file_digest(path: str | Path) -> dict:
    """{"bytes": size, "sha256": hex digest}: lets a reader check a file is the one recorded."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return {"bytes": Path(path).stat().st_size, "sha256": h.hexdigest()}


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def fsync_dir(folder: str | Path) -> None:
    """Make a rename in `folder` durable. Folders cannot be opened for fsync on Windows."""
    if os.name != "posix":
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
