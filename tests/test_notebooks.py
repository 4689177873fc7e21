"""The research notebooks never rot (issue 11, item 2).

Every notebook in notebooks/ is committed with the outputs of a run at its documented
settings and that run's headline numbers in ``metadata["slt_jax"]["headline"]`` (written by
``notebooks/execute.py``). Here each one is re-executed by nbclient in a temporary directory
with ``SMALL = True`` injected after its ``parameters`` cell (fewer chains and draws, the
same ε, γ, nβ, model and burn-in: every notebook says next to its small settings why they
estimate the same quantities), and its new headline must reproduce the stored one:

* estimates (entries with "se"): |a − b| ≤ K·sqrt(se_a² + se_b²);
* entries with "tol": within that absolute tolerance (the notebook says why that tolerance);
* everything else (training facts, the calibrated cell): exactly.

K = 4: about 60 estimates are compared over all notebooks. For independent normal errors a
4σ deviation has probability 6e-5 each, so a false alarm somewhere in the suite has
probability below 0.5%. The error bars are conservative (the larger of the MCSE and the
standard error across chains), and the small runs share seeds, hence their first chains,
with the stored runs, which makes the difference smaller than independent runs would.

What this can catch is set by the small runs' error bars (``-s`` prints, per estimate, the
smallest shift it would flag): about 5-20% of the value for the λ̂'s of quickstart,
dln_validation, calibration and sampler_comparison, and for modular addition's ratio; 34% for
the DLN sweep's final λ̂ (2 chains); only shifts of 1.5-4× the value for the susceptibilities
(noisy covariances from 2 chains). Checked by hand: moving quickstart's stored RRR λ̂ by +20
stored se (+28%) fails the test, by +6 se (+8%) does not. ``test_compare_fails_on_a_perturbed_number``
checks the comparison itself.

Cost on the 2-core machine (``--durations=0``; cold and warm XLA compilation cache alike,
the whole file 147-161 s): quickstart 12-14 s (fast tier), calibration 10 s, dln_validation
26-31 s, susceptibilities_bif 28-29 s, sweep_and_stages 32-37 s, sampler_comparison 33-39 s
(the last five ``slow``, the tier CI still runs).
"""

import ast
import importlib.util
import math
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("notebooks_execute", ROOT / "notebooks" / "execute.py")
ex = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ex)

NOTEBOOKS = ex.notebooks()
EXPECTED = {"quickstart", "dln_validation", "calibration", "sweep_and_stages", "susceptibilities_bif",
            "sampler_comparison"}
K = 4.0  # see the module docstring
FAST = {"quickstart"}  # small run ~10 s; the others take 20-70 s each
CELL_TIMEOUT = 900  # seconds per cell; the slowest small cell takes well under a minute


def _param(path):
    marks = () if path.stem in FAST else (pytest.mark.slow,)
    return pytest.param(path, id=path.name, marks=marks)


# ---- what is committed (fast) ----------------------------------------------------------------


def test_the_six_notebooks_are_there():
    assert {p.stem for p in NOTEBOOKS} == EXPECTED


def test_notebooks_folder_stays_small():
    total = sum(p.stat().st_size for p in (ROOT / "notebooks").rglob("*") if p.is_file())
    assert total < 3_000_000, f"notebooks/ holds {total / 1e6:.1f} MB (outputs should stay small: PNGs at low dpi)"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_committed_notebook_has_outputs_parameters_and_headline(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    p = ex.parameters_index(nb)  # exactly one code cell tagged "parameters"
    assert "SMALL = False" in nb.cells[p].source
    assert not any("injected-parameters" in c.get("metadata", {}).get("tags", []) for c in nb.cells)
    code = [c for c in nb.cells if c.cell_type == "code"]
    # Executed top to bottom in one kernel: every code cell has an execution count, in order.
    counts = [c.execution_count for c in code]
    assert all(isinstance(n, int) for n in counts) and counts == sorted(counts), counts
    assert not any(o.get("output_type") == "error" for c in code for o in c.outputs)
    assert any("image/png" in o.get("data", {}) for c in code for o in c.outputs), "no plot in the stored outputs"
    headline = ex.stored_headline(nb)
    assert headline, "empty headline"
    for name, entry in headline.items():
        assert "value" in entry, name
        if "se" in entry:
            assert math.isfinite(entry["value"]) and math.isfinite(entry["se"]) and entry["se"] > 0, (name, entry)
    # The metadata is what the last cell displayed (HEADLINE as a dict literal).
    last = code[-1].outputs[-1]["data"]["text/plain"]
    shown = ast.literal_eval(last)
    assert ex.compare(headline, shown, k=0.0) == [] and set(shown) == set(headline)
    assert nb.metadata["slt_jax"]["executed"]["wall_s"] > 0


def test_compare_fails_on_a_perturbed_number():
    stored = {"llc": {"value": 10.0, "se": 0.5}, "steps": {"value": [3, 7]}, "edges": {"value": [1.0, 2.0], "tol": 0.3}}
    same = {"llc": {"value": 10.4, "se": 0.6}, "steps": {"value": [3, 7]}, "edges": {"value": [1.2, 1.9], "tol": 0.3}}
    assert ex.compare(stored, same, K) == []
    off = dict(same, llc={"value": 10.0 + 4.1 * math.hypot(0.5, 0.6), "se": 0.6})
    assert [m.split(":")[0] for m in ex.compare(stored, off, K)] == ["llc"]
    assert ex.compare(stored, dict(same, steps={"value": [3, 8]}), K)
    assert ex.compare(stored, dict(same, edges={"value": [1.0, 2.31], "tol": 0.3}), K)
    assert ex.compare(stored, dict(same, edges={"value": [1.0], "tol": 0.3}), K)
    assert ex.compare(stored, {k: v for k, v in same.items() if k != "llc"}, K)  # missing
    assert ex.compare(stored, dict(same, llc={"value": float("nan"), "se": 0.6}), K)


def test_small_injection_lands_after_the_parameters_cell(tmp_path):
    """The injected cell follows the parameters cell, so the notebook's own SMALL branch sees it."""
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("SMALL = False\nN = 100"),
        nbformat.v4.new_code_cell("if SMALL:\n    N = 3"),
        nbformat.v4.new_code_cell("import json, sys\njson.dump({'n': {'value': N}, 'exe': {'value': sys.executable}}, "
                                  "open('headline.json', 'w'))"),
    ])
    nb.cells[0].metadata["tags"] = ["parameters"]
    path = tmp_path / "tiny.ipynb"
    nbformat.write(nb, path)
    executed, headline, _ = ex.execute(path, small=True, workdir=tmp_path / "run", timeout=120)
    assert headline["n"]["value"] == 3
    assert Path(headline["exe"]["value"]).resolve() == Path(sys.executable).resolve()  # the venv's kernel
    assert executed.cells[1].source == ex.SMALL_CELL
    assert ex.execute(path, workdir=tmp_path / "run2", timeout=120)[1]["n"]["value"] == 100


# ---- re-execution with small settings ------------------------------------------------------------


@pytest.mark.parametrize("path", [_param(p) for p in NOTEBOOKS])
def test_notebook_reproduces_its_headline(path, tmp_path):
    stored = ex.stored_headline(nbformat.read(path, as_version=4))
    _, new, wall = ex.execute(path, small=True, workdir=tmp_path, timeout=CELL_TIMEOUT)
    bad = ex.compare(stored, new, K)
    for name, s in stored.items():  # how large a shift of each estimate this check would catch
        if "se" in s and name in new:
            bound = K * math.hypot(s["se"], new[name].get("se", 0.0))
            print(f"{path.stem}/{name}: |Δ| = {abs(s['value'] - new[name]['value']):.3g}, catches shifts > "
                  f"{bound:.3g} ({bound / max(abs(s['value']), 1e-12):.0%} of the value)")
    assert not bad, f"{path.name} (small run, {wall:.0f} s) does not reproduce its stored headline:\n" + "\n".join(bad)
