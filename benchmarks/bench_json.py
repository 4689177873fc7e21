"""How every benchmark script reports a run: JSON on stdout, and in a file when asked.

Standard library only, so the devinterp venvs can import it too."""

import json


def emit(out: dict, path=None, indent: int = 2) -> None:
    text = json.dumps(out, indent=indent)
    if path:
        with open(path, "w") as f:
            f.write(text)
    print(text)
