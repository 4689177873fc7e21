"""The documentation site builds with warnings as errors, and every code block in docs/ runs.

Blocks of one page run in order, in one namespace, in a temporary folder (files a page writes
land there), with matplotlib's Agg backend. A block that cannot run here carries an HTML
comment on the line before its fence:

    <!-- not-run: why -->           never run (a reason is required and checked)
    <!-- write-file: NAME -->       written to NAME in the page's folder instead of run (a
                                    factory module or a config that later blocks use)
    <!-- run-in: .venv-bench -->    run as a script by that virtualenv's python, in the same
                                    folder; skipped, with the reason, when it does not exist

Python blocks run in-process; bash blocks run with `bash -e` and the test interpreter's
`bin/` first on PATH (so `slt-jax` is this checkout's). Other languages (text, toml) are shown,
not run, unless marked write-file.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PAGES = sorted(p for p in DOCS.rglob("*.md"))
RUN_LANGUAGES = ("python", "bash")
MARKER = re.compile(r"^<!--\s*(not-run|write-file|run-in)\s*:(.*?)-->\s*$")
FENCE = re.compile(r"^(`{3,})\s*([\w+-]*)\s*$")
# Pages whose blocks take more than a few seconds run in the slow tier (CI runs it).
SLOW_PAGES = {"getting-started.md", "workflow.md", "migration.md", "choosing.md"}


@dataclass
class Block:
    page: str
    line: int  # 1-based line of the opening fence
    language: str
    code: str
    marker: str | None = None  # "not-run" | "write-file" | "run-in"
    argument: str = ""

    @property
    def label(self) -> str:
        return f"{self.page}:{self.line}"


def blocks(path: Path) -> list[Block]:
    """The fenced blocks of a page with their markers; a marker must sit on the line right
    before a fence (a marker anywhere else is an error, so none is silently ignored)."""
    lines = path.read_text().splitlines()
    out, pending, i = [], None, 0
    name = str(path.relative_to(DOCS))
    while i < len(lines):
        m = MARKER.match(lines[i].strip())
        if m:
            if pending is not None:
                raise AssertionError(f"{name}:{pending[2]}: marker not followed by a code fence")
            pending = (m.group(1), m.group(2).strip(), i + 1)
            i += 1
            continue
        f = FENCE.match(lines[i].strip())
        if f:
            ticks, language, start = f.group(1), f.group(2).lower(), i
            body = []
            i += 1
            while i < len(lines) and lines[i].strip() != ticks:
                body.append(lines[i])
                i += 1
            block = Block(name, start + 1, language, "\n".join(body) + "\n")
            if pending is not None:
                if pending[2] != start:  # the marker must be the line right above the fence
                    raise AssertionError(f"{name}:{pending[2]}: marker not directly above a code fence")
                block.marker, block.argument = pending[0], pending[1]
                pending = None
            out.append(block)
        elif pending is not None and lines[i].strip():
            raise AssertionError(f"{name}:{pending[2]}: marker not followed by a code fence")
        i += 1
    if pending is not None:
        raise AssertionError(f"{name}:{pending[2]}: marker at the end of the page")
    return out


def test_mkdocs_build_strict(tmp_path):
    """`mkdocs build --strict`: broken links, unknown pages in nav, and docstrings griffe
    cannot parse are all warnings, and warnings fail the build."""
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT, capture_output=True, text=True, env=env, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert "WARNING" not in proc.stderr, proc.stderr[-4000:]
    for page in ("index.html", "conventions/index.html", "migration/index.html", "api/slt_jax/index.html"):
        assert (tmp_path / "site" / page).exists(), page


def test_every_page_is_in_the_nav():
    nav = (ROOT / "mkdocs.yml").read_text()
    missing = [str(p.relative_to(DOCS)) for p in PAGES if str(p.relative_to(DOCS)) not in nav]
    assert not missing, f"pages not in mkdocs.yml's nav: {missing}"


def test_markers_carry_reasons():
    """Every block is run, written, or marked not-run with a reason."""
    problems = []
    for path in PAGES:
        for b in blocks(path):
            if b.marker in ("not-run", "write-file", "run-in") and not b.argument:
                problems.append(f"{b.label}: {b.marker} needs an argument (a reason, a file name, a venv)")
            if b.marker == "not-run" and len(b.argument.split()) < 3:
                problems.append(f"{b.label}: not-run reason too short to say why: {b.argument!r}")
            if b.marker == "run-in" and b.language != "python":
                problems.append(f"{b.label}: run-in applies to python blocks")
            if b.marker is None and b.language not in RUN_LANGUAGES + ("text", "toml", ""):
                problems.append(f"{b.label}: language {b.language!r} is neither run nor shown as text")
    assert not problems, "\n".join(problems)


def _page_params():
    out = []
    for path in PAGES:
        runnable = [b for b in blocks(path) if b.marker != "not-run" and (b.language in RUN_LANGUAGES or b.marker)]
        if not runnable:
            continue
        name = str(path.relative_to(DOCS))
        marks = [pytest.mark.slow] if name in SLOW_PAGES else []
        out.append(pytest.param(path, id=name, marks=marks))
    return out


def _bash_env() -> dict:
    env = {**os.environ, "MPLBACKEND": "Agg", "NO_MKDOCS_2_WARNING": "1"}
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    return env


def run_block(b: Block, namespace: dict, folder: Path) -> None:
    if b.marker == "not-run":
        return
    if b.marker == "write-file":
        target = folder / b.argument
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(b.code)
        return
    if b.marker == "run-in":
        python = ROOT / b.argument / "bin" / "python"
        if not python.exists():
            print(f"{b.label}: skipped, {python} does not exist (see benchmarks/setup_peers.sh)")
            return
        script = folder / f"_block_{b.line}.py"
        script.write_text(b.code)
        proc = subprocess.run([str(python), str(script)], cwd=folder, capture_output=True, text=True,
                              env=_bash_env(), timeout=900)
        assert proc.returncode == 0, f"{b.label} under {b.argument}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        print(proc.stdout)
        return
    if b.language == "python":
        exec(compile(b.code, b.label, "exec"), namespace)  # noqa: S102
    elif b.language == "bash":
        proc = subprocess.run(["bash", "-e", "-c", b.code], cwd=folder, capture_output=True, text=True,
                              env=_bash_env(), timeout=600)
        assert proc.returncode == 0, f"{b.label}:\n{b.code}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"


@pytest.mark.parametrize("path", _page_params())
def test_page_code_runs(path, tmp_path, monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    monkeypatch.chdir(tmp_path)  # files the page writes land in a temporary folder
    monkeypatch.syspath_prepend(str(tmp_path))  # factories written by write-file blocks import
    namespace: dict = {"__name__": "__docs__"}
    for b in blocks(path):
        run_block(b, namespace, tmp_path)


def test_the_migration_guide_quotes_its_recorded_comparison():
    """The guide's devinterp numbers come from benchmarks/results_migration.json (written by
    benchmarks/migration_devinterp.py, which runs the guide's own blocks). Where .venv-bench is
    missing the devinterp block cannot run here, so this is what stands in for it: the recorded
    run must say the libraries agree, that verdict must follow from its numbers, and the guide
    must quote exactly those numbers."""
    import json
    import math

    missing = sorted({b.argument for p in PAGES for b in blocks(p)
                      if b.marker == "run-in" and not (ROOT / b.argument / "bin" / "python").exists()})
    if missing:
        print(f"blocks marked run-in were not run: {missing} missing (benchmarks/setup_peers.sh)")
    record = json.loads((ROOT / "benchmarks" / "results_migration.json").read_text())
    d, s = record["devinterp"], record["slt_jax"]
    assert d["version"] == "1.3.2"
    z = (d["llc_mean"] - s["llc_mean"]) / math.hypot(d["se"], s["se"])
    assert z == pytest.approx(record["z"], rel=1e-6) and abs(z) <= 2 and record["agree"]
    guide = (ROOT / "docs" / "migration.md").read_text()
    for side in (d, s):
        assert f"{side['llc_mean']:.3f} ± {side['se']:.3f}" in guide
