"""Execute the research notebooks and keep their headline numbers in their metadata.

    .venv/bin/python notebooks/execute.py                       # every notebook, documented settings
    .venv/bin/python notebooks/execute.py notebooks/quickstart.ipynb
    .venv/bin/python notebooks/execute.py --small --no-write notebooks/*.ipynb   # what the tests run

How the notebooks are built (tests/test_notebooks.py relies on it):

* Exactly one code cell is tagged ``parameters`` (cell metadata ``tags``). It holds the
  documented settings and ``SMALL = False``; the cell after it shrinks the settings when
  ``SMALL`` is true. ``--small`` (and the tests) inject a cell ``SMALL = True`` right after the
  parameters cell, so a small run executes the same code on fewer chains and draws.
* The last cell builds ``HEADLINE``, a JSON-able dict ``{name: {"value": ..., ...}}``, writes it
  to ``headline.json`` in the working directory and displays it. Entries with ``"se"`` are
  estimates (compared within error bars), entries with ``"tol"`` are compared within that
  absolute tolerance, anything else must be reproduced exactly (see ``compare``).

A documented run executes the notebook in a temporary directory (files the notebook writes
land there, not in notebooks/), saves it in place with its outputs, and copies the headline
into ``nb.metadata["slt_jax"]["headline"]`` together with the run's wall time, date and
library versions. The kernel is ``python3`` started with this interpreter (jupyter_client
replaces a kernelspec's ``python`` by ``sys.executable``); the run checks ``sys.executable``
inside the kernel and refuses a kernel from another environment.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

from slt_jax import atomic

HERE = Path(__file__).resolve().parent
HEADLINE_FILE = "headline.json"
SMALL_CELL = "SMALL = True  # injected by notebooks/execute.py (--small) / tests/test_notebooks.py"
_CHECK = "import sys as _sys; print(_sys.executable)"


def notebooks() -> list[Path]:
    return sorted(HERE.glob("*.ipynb"))


def parameters_index(nb) -> int:
    """Index of the one code cell tagged ``parameters``; ValueError otherwise."""
    found = [i for i, c in enumerate(nb.cells)
             if c.cell_type == "code" and "parameters" in c.get("metadata", {}).get("tags", [])]
    if len(found) != 1:
        raise ValueError(f"expected exactly one code cell tagged 'parameters', found {len(found)}")
    return found[0]


def kernel_env(single_device: bool = False) -> dict:
    """The kernel's environment: this process's, minus a forced XLA CPU device count (the test
    suite forces 1 device for its own process; the notebooks call
    ``slt_jax.hostdevices.expose_cpu_cores()`` like the library's scripts do)."""
    env = dict(os.environ)
    flags = [f for f in env.get("XLA_FLAGS", "").split() if "xla_force_host_platform_device_count" not in f]
    if single_device:
        flags.append("--xla_force_host_platform_device_count=1")
    if flags:
        env["XLA_FLAGS"] = " ".join(flags)
    else:
        env.pop("XLA_FLAGS", None)
    return env


def execute(path: str | Path, *, small: bool = False, workdir: str | Path | None = None,
            timeout: int = 1800, env: dict | None = None) -> tuple:
    """Run the notebook at ``path`` top to bottom in ``workdir`` (a fresh temporary directory
    if None). Returns (executed notebook, headline dict, wall seconds). With ``small`` the
    executed notebook contains the injected ``SMALL = True`` cell; otherwise it is the
    original notebook with fresh outputs. Raises nbclient's CellExecutionError on a failing cell."""
    path = Path(path)
    nb = nbformat.read(path, as_version=4)
    p = parameters_index(nb)
    if small:
        cell = nbformat.v4.new_code_cell(SMALL_CELL)
        cell.metadata["tags"] = ["injected-parameters"]
        nb.cells.insert(p + 1, cell)
    nb.cells.append(nbformat.v4.new_code_cell(_CHECK))  # removed again below
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(workdir) if workdir is not None else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        (work / HEADLINE_FILE).unlink(missing_ok=True)
        client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                                resources={"metadata": {"path": str(work)}})
        t0 = time.perf_counter()
        client.execute(env=kernel_env() if env is None else env)
        wall = time.perf_counter() - t0
        check = nb.cells.pop()
        exe = "".join(o.get("text", "") for o in check.outputs).strip()
        if Path(exe).resolve() != Path(sys.executable).resolve():
            raise RuntimeError(f"the kernel ran {exe!r}, not this interpreter {sys.executable!r}")
        headline_path = work / HEADLINE_FILE
        if not headline_path.exists():
            raise RuntimeError(f"{path.name} wrote no {HEADLINE_FILE}")
        headline = json.loads(headline_path.read_text())
    return nb, headline, wall


def stored_headline(nb) -> dict:
    return nb.metadata["slt_jax"]["headline"]


def compare(stored: dict, new: dict, k: float) -> list[str]:
    """What in ``new`` does not reproduce ``stored`` (empty list: everything does).

    Per entry (matched by name; a missing name is a failure):
    * ``"se"`` in the stored entry: an estimate, |a - b| <= k·sqrt(se_a² + se_b²);
    * ``"tol"``: |a - b| <= tol (lists elementwise, same length);
    * otherwise the values must be equal (floats to 1e-9 relative).
    """
    bad = []
    for name, s in stored.items():
        if name not in new:
            bad.append(f"{name}: missing from the re-execution")
            continue
        n = new[name]
        a, b = s["value"], n["value"]
        if "se" in s:
            if a is None or b is None or not (math.isfinite(a) and math.isfinite(b)):
                bad.append(f"{name}: non-finite {a} vs {b}")
                continue
            bound = k * math.hypot(s["se"], n.get("se", 0.0))
            if not abs(a - b) <= bound:
                bad.append(f"{name}: {b:.4g} ± {n.get('se', 0):.2g} vs stored {a:.4g} ± {s['se']:.2g} "
                           f"(|Δ| = {abs(a - b):.3g} > {k}·σ = {bound:.3g})")
        elif "tol" in s:
            av, bv = (list(v) if isinstance(v, (list, tuple)) else [v] for v in (a, b))
            if len(av) != len(bv) or not all(abs(x - y) <= s["tol"] for x, y in zip(av, bv)):
                bad.append(f"{name}: {b} vs stored {a} (tolerance {s['tol']})")
        elif not _equal(a, b):
            bad.append(f"{name}: {b!r} vs stored {a!r} (must be equal)")
    return bad


def _equal(a, b) -> bool:
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b))
    if isinstance(a, float) or isinstance(b, float):
        return isinstance(b, (int, float)) and math.isclose(a, b, rel_tol=1e-9, abs_tol=0.0)
    return a == b


def record(path: Path, nb, headline: dict, wall: float) -> None:
    """Store the headline and the run's facts in the notebook's metadata and write it in place."""
    import jax

    import slt_jax

    nb.metadata["slt_jax"] = {
        "headline": headline,
        "executed": {"wall_s": round(wall, 1), "date": datetime.date.today().isoformat(),
                     "slt_jax": slt_jax.__version__, "jax": jax.__version__,
                     "python": ".".join(map(str, sys.version_info[:3])), "cpu_cores": os.cpu_count()},
    }
    nbformat.validate(nb)
    atomic.write_text(path, _notebook_text(nb))  # a killed run keeps the committed notebook


def _notebook_text(nb) -> str:
    text = nbformat.writes(nb)  # what nbformat.write puts in a file, newline-terminated
    return text if text.endswith("\n") else text + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("paths", nargs="*", type=Path, help="notebooks (default: every notebooks/*.ipynb)")
    ap.add_argument("--small", action="store_true", help="inject SMALL = True (the tests' settings)")
    ap.add_argument("--no-write", action="store_true", help="execute and compare, do not save")
    ap.add_argument("--timeout", type=int, default=1800, help="seconds per cell")
    ap.add_argument("--out", type=Path, help="with --no-write: save the executed notebooks into this folder")
    args = ap.parse_args(argv)
    if args.small and not args.no_write:
        ap.error("--small runs are checks, not stored outputs: add --no-write")
    status = 0
    for path in args.paths or notebooks():
        nb, headline, wall = execute(path, small=args.small, timeout=args.timeout)
        print(f"{path.name}: {wall:.0f} s")
        old = nbformat.read(path, as_version=4).metadata.get("slt_jax", {}).get("headline")
        if old:
            diff = compare(old, headline, k=4)
            print("  reproduces the stored headline" if not diff else "  differs from the stored headline:\n    "
                  + "\n    ".join(diff))
        if not args.no_write:
            record(path, nb, headline, wall)
            print(f"  written with outputs and metadata.slt_jax.headline ({len(headline)} numbers)")
        else:
            print("  " + json.dumps(headline))
            if args.out:
                args.out.mkdir(parents=True, exist_ok=True)
                atomic.write_text(args.out / path.name, _notebook_text(nb))
    return status


if __name__ == "__main__":
    sys.exit(main())
