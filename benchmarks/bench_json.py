"""How every benchmark script reports a run: JSON on stdout, and in a file when asked.

Standard library only, so the devinterp venvs can import it too."""

import json
import os
import tempfile


def emit(out: dict, path=None, indent: int = 2) -> None:
    text = json.dumps(out, indent=indent)
    if path:
        _write_atomically(path, text)
    print(text)


def _write_atomically(path, text: str) -> None:
    # slt_jax.atomic does this for the package; the peers' venvs cannot import slt_jax, so the
    # same temp-file + fsync + rename is spelled out here with the standard library.
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=folder)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
