"""The command line: help for every command, exact λ, and the demo end to end."""

import pytest

import slt_jax
from slt_jax.cli import build_parser, main


def test_help_documents_every_command(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    text = capsys.readouterr().out
    for command in ("demo", "llc", "susceptibilities", "truth"):
        assert command in text
    for command in ("demo", "llc", "susceptibilities", "truth"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        assert "usage: slt-jax " + command in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv,expected",
    [
        (["truth", "dln", "--widths", "5", "3", "5", "--rank", "0"], "13/2"),
        (["truth", "rrr", "--widths", "5", "3", "5", "--rank", "3"], "21/2"),
        (["truth", "normal-crossing", "--powers", "1", "3"], "1/6"),
        (["truth", "regular", "--num-params", "12"], "6 "),
    ],
)
def test_truth(argv, expected, capsys):
    assert main(argv) == 0
    assert capsys.readouterr().out.startswith(expected)


def test_truth_needs_its_arguments(capsys):
    with pytest.raises(SystemExit):
        main(["truth", "dln"])
    assert "--widths" in capsys.readouterr().err


@pytest.mark.slow
def test_demo_runs_the_dln_workflow(tmp_path, capsys):
    """`slt-jax demo`: train → calibrate → sweep → stages on the small DLN example; its stage and
    accuracy claims are tested in tests/test_examples.py, here that the command runs and writes."""
    assert main(["demo", "--no-progress", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "final λ̂ =" in out and "Aoyagi λ = 16" in out and "stages:" in out
    for name in ("summary.json", "sweep/summary.csv", "sweep/sweep.nc", "sweep/llc_vs_step.png", "sweep/complete"):
        assert (tmp_path / name).stat().st_size > 0
    assert len(slt_jax.checkpoints.steps(tmp_path / "checkpoints")) == 40


def test_parser_builds():
    assert build_parser().prog == "slt-jax"


def test_llc_on_a_toy_with_observables(tmp_path, capsys):
    import json

    argv = [
        "llc", "--toy", "rrr", "--widths", "5", "3", "5", "--rank", "3", "--num-samples", "2000",
        "--chains", "3", "--draws", "200", "--burnin", "100", "--batch-size", "200", "--eval-every", "10",
        "--observables", "llc,llc_var,wbic,free_energy,reweighting,mala,nu,waic,bif,health",
        "--out", str(tmp_path), "--no-progress", "--no-plots",
    ]
    assert main(argv) == 0
    assert "exact λ = 21/2" in capsys.readouterr().out
    summary = json.loads((tmp_path / "summary.json").read_text())
    for key in ("llc", "llc_var", "wbic", "free_energy", "reweighting", "mala", "nu", "waic", "bif", "health"):
        assert key in summary
    assert summary["exact_llc"] == 10.5 and len(summary["mala"]) == 3 and "train" in summary["nu"]
    assert (tmp_path / "bif_train.npy").stat().st_size > 0
    assert slt_jax.LLCResult.from_netcdf(tmp_path / "result.nc").loss_trace.shape == (3, 200)


def test_llc_on_a_user_problem_file(tmp_path, capsys):
    problem = tmp_path / "my_problem.py"
    problem.write_text(
        "import jax.numpy as jnp, numpy as np\n"
        "def make():\n"
        "    x = np.random.default_rng(0).normal(size=(256, 3)).astype(np.float32)\n"
        "    y = x @ np.ones((3, 1), np.float32)\n"
        "    loss = lambda p, b: 0.5 * jnp.sum((b[1] - b[0] @ p['W']) ** 2, axis=-1)\n"
        "    return {'loss_fn': loss, 'params': {'W': jnp.ones((3, 1))}, 'data': (x, y),\n"
        "            'eval_sets': {'probe': (x[:10], y[:10])}}\n"
    )
    argv = ["llc", "--problem", f"{problem}:make", "--chains", "2", "--draws", "50", "--burnin", "0",
            "--batch-size", "32", "--observables", "llc,nu", "--out", str(tmp_path / "out"), "--no-progress", "--no-plots"]
    assert main(argv) == 0
    import json

    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert "probe" in summary["nu"]
    # llc and nu need neither the full-data loss nor the MALA probe: the run skips both.
    result = slt_jax.LLCResult.from_netcdf(tmp_path / "out" / "result.nc")
    assert result.attrs["diagnostics"] == []


def test_llc_rejects_unknown_observables(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["llc", "--toy", "regular", "--observables", "llc,entropy", "--out", str(tmp_path)])
    assert e.value.code == 2 and "unknown ['entropy']" in capsys.readouterr().err


def test_susceptibilities_command(tmp_path, capsys):
    import json

    problem = tmp_path / "sus_problem.py"
    problem.write_text(
        "import jax.numpy as jnp, numpy as np\n"
        "def make():\n"
        "    rng = np.random.default_rng(0)\n"
        "    x = rng.normal(size=(256, 3)).astype(np.float32)\n"
        "    y = (x @ np.ones((3, 1)) + 0.3 * rng.normal(size=(256, 1))).astype(np.float32)\n"
        "    w = np.linalg.lstsq(x, y, rcond=None)[0].astype(np.float32)\n"
        "    loss = lambda p, b: 0.5 * jnp.sum((b[1] - b[0] @ p['W'] - p['b']) ** 2, axis=-1)\n"
        "    return {'loss_fn': loss, 'params': {'W': jnp.asarray(w), 'b': jnp.zeros(1)}, 'data': (x, y),\n"
        "            'probes': {'a': (x[:8], y[:8]), 'b': (x[8:16], y[8:16])},\n"
        "            'components': {'W': {'W': True, 'b': False}, 'b': {'W': False, 'b': True}}}\n"
    )
    argv = ["susceptibilities", "--problem", f"{problem}:make", "--chains", "2", "--draws", "60", "--burnin", "20",
            "--batch-size", "32", "--out", str(tmp_path / "out"), "--no-progress"]
    assert main(argv) == 0
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert set(summary["aggregate_chi"]) == {"W|a", "W|b", "b|a", "b|b"}
    assert (tmp_path / "out" / "susceptibility_pca.png").stat().st_size > 0


def test_compile_cache_flag(tmp_path):
    """The CLI turns the persistent compilation cache on (here: into a given folder)."""
    import jax

    before = jax.config.jax_compilation_cache_dir
    cache = tmp_path / "xla"
    try:
        assert main(["--compile-cache", str(cache), "truth", "regular", "--num-params", "2"]) == 0
        assert jax.config.jax_compilation_cache_dir == str(cache) and cache.is_dir()
    finally:
        jax.config.update("jax_compilation_cache_dir", before)


# --- input errors: one line naming the flag, exit status 2, nothing written (issue #9 §5) ----------

_TOY = ["llc", "--toy", "rrr", "--widths", "5", "3", "5", "--rank", "3", "--num-samples", "200", "--no-progress"]


def _refused(argv, capsys, *needles):
    import slt_jax.cli as cli

    with pytest.raises(SystemExit) as e:
        cli.main(argv)
    err = capsys.readouterr().err
    assert e.value.code == 2, err
    assert err.endswith("\n") and err.count("\n") == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, err
    return err


@pytest.mark.parametrize(
    "flag,value",
    [("--chains", "0"), ("--chains", "-3"), ("--chains", "two"), ("--chains", "2.5"), ("--draws", "0"),
     ("--burnin", "-1"), ("--thin", "0"), ("--batch-size", "0"), ("--batch-size", "-5"), ("--eval-every", "0"),
     ("--eval-samples", "0"), ("--step-size", "0"), ("--step-size", "-1e-4"), ("--step-size", "nan"),
     ("--step-size", "abc"), ("--localization", "-1"), ("--localization", "inf"), ("--nbeta", "0"),
     ("--nbeta", "-5"), ("--nbeta", "big"), ("--num-samples", "1"), ("--noise-std", "-0.1"), ("--seed", "-1"),
     ("--rank", "-1"), ("--eval-batching", "pmap"), ("--sampler", "nope"), ("--observables", ""),
     ("--observables", "llc,entropy")],
)
def test_llc_refuses_a_bad_flag_value(flag, value, tmp_path, capsys):
    out = tmp_path / "out"
    _refused(_TOY + ["--out", str(out), f"{flag}={value}"], capsys, flag)
    assert not out.exists()  # refused before anything was written


@pytest.mark.parametrize(
    "extra,needles",
    [
        # Regression: larger than n used to be lowered to n silently.
        (["--batch-size", "500"], ["--batch-size 500", "n = 200", "between 1 and 200"]),
        (["--eval-samples", "300", "--observables", "nu"], ["--eval-samples 300", "n = 200"]),
        (["--widths", "5", "0", "5"], ["--widths"]),
        (["--rank", "9"], ["--toy rrr", "rank"]),
    ],
)
def test_llc_refuses_inputs_that_depend_on_the_data(extra, needles, tmp_path, capsys):
    out = tmp_path / "out"
    _refused(_TOY + ["--out", str(out)] + extra, capsys, *needles)
    assert not out.exists()


def test_llc_refuses_bad_problems_and_outputs(tmp_path, capsys):
    broken = tmp_path / "broken.py"
    broken.write_text("def make():\n    raise RuntimeError('no data here')\ndef other():\n    return 3\n")
    base = ["llc", "--no-progress", "--out", str(tmp_path / "out")]
    _refused(base + ["--problem", "nocolon"], capsys, "--problem", "FILE.py:FUNCTION")
    _refused(base + ["--problem", f"{tmp_path}/absent.py:make"], capsys, "--problem file", "does not exist")
    _refused(base + ["--problem", f"{broken}:nothing"], capsys, "--problem", "no function 'nothing'")
    _refused(base + ["--problem", f"{broken}:make"], capsys, "--problem", "RuntimeError: no data here")
    _refused(base + ["--problem", f"{broken}:other"], capsys, "--problem", "returned a int")
    _refused(["llc", "--toy", "dln", "--out", str(tmp_path / "out")], capsys, "--toy dln needs --widths")
    (tmp_path / "file").write_text("")
    _refused(_TOY + ["--out", str(tmp_path / "file")], capsys, "--out", "existing file")
    assert not (tmp_path / "out").exists()


def _sus_problem(tmp_path):
    problem = tmp_path / "sus_problem.py"
    problem.write_text(
        "import jax.numpy as jnp, numpy as np\n"
        "def make():\n"
        "    x = np.random.default_rng(0).normal(size=(64, 3)).astype(np.float32)\n"
        "    y = x @ np.ones((3, 1), np.float32)\n"
        "    loss = lambda p, b: 0.5 * jnp.sum((b[1] - b[0] @ p['W']) ** 2, axis=-1)\n"
        "    return {'loss_fn': loss, 'params': {'W': jnp.ones((3, 1))}, 'data': (x, y),\n"
        "            'probes': {'a': (x[:4], y[:4])}}\n"
        "def no_probes():\n"
        "    p = make(); del p['probes']; return p\n"
    )
    return problem


@pytest.mark.parametrize(
    "extra,needles",
    [(["--chains", "0"], ["--chains"]), (["--eval-every", "0"], ["--eval-every"]), (["--draws", "x"], ["--draws"]),
     (["--step-size", "0"], ["--step-size"]), (["--localization", "-2"], ["--localization"]),
     (["--batch-size", "999"], ["--batch-size 999", "n = 64"])],
)
def test_susceptibilities_refuses_a_bad_flag_value(extra, needles, tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["susceptibilities", "--problem", f"{_sus_problem(tmp_path)}:make", "--out", str(out), "--no-progress"]
    _refused(argv + extra, capsys, *needles)
    assert not out.exists()


def test_susceptibilities_needs_probes_and_demo_checks_its_flags(tmp_path, capsys):
    argv = ["susceptibilities", "--problem", f"{_sus_problem(tmp_path)}:no_probes", "--out", str(tmp_path / "o")]
    _refused(argv, capsys, "--problem", "probes")
    _refused(["demo", "--chains", "4", "--out", str(tmp_path / "o")], capsys, "--chains")
    _refused(["truth", "regular", "--num-params", "0"], capsys, "--num-params")
    assert not (tmp_path / "o").exists()


# --- run folders: atomic outputs, a status written last, NaN-robust summaries ---------------------

_SMALL = _TOY + ["--chains", "2", "--draws", "40", "--burnin", "10", "--batch-size", "50", "--eval-every", "5"]


def test_a_failed_or_nan_observable_still_writes_result_and_summary(tmp_path, monkeypatch, capsys):
    """wbic raising (e.g. all chains diverged) or a NaN statistic must not lose the run."""
    import json

    from slt_jax.cli import verify_run
    from slt_jax.result import LLCResult

    def diverged(self):
        raise FloatingPointError("all chains diverged")

    monkeypatch.setattr(LLCResult, "wbic", property(diverged))
    monkeypatch.setattr(LLCResult, "free_energy", property(lambda self: float("nan")))
    out = tmp_path / "out"
    assert main(_SMALL + ["--out", str(out), "--no-plots"]) == 0
    assert "wbic failed (FloatingPointError: all chains diverged)" in capsys.readouterr().err
    summary = json.loads((out / "summary.json").read_text(), parse_constant=lambda c: pytest.fail(f"non-JSON {c}"))
    assert summary["wbic"] is None and summary["free_energy"] is None and "llc" in summary
    assert summary["errors"] == {"wbic": "FloatingPointError: all chains diverged"}
    status = verify_run(out)
    assert status["errors"] == summary["errors"] and set(status["files"]) == {"result.nc", "summary.json"}
    assert slt_jax.LLCResult.from_netcdf(out / "result.nc").loss_trace.shape == (2, 40)


def test_a_rerun_clears_the_older_runs_outputs(tmp_path, capsys):
    import json

    from slt_jax.cli import RunFolderError, verify_run

    out = tmp_path / "out"
    assert main(_SMALL + ["--out", str(out), "--no-plots", "--observables", "llc,bif"]) == 0
    first = verify_run(out)
    assert "bif_train.npy" in first["files"]
    (out / ".tmp-0123abcd-result.nc").write_bytes(b"\x89HDF")  # a killed write's leftover
    assert main(_SMALL + ["--out", str(out), "--no-plots", "--observables", "llc", "--seed", "1"]) == 0
    second = verify_run(out)
    assert second["run_id"] != first["run_id"] and json.loads((out / "summary.json").read_text())["run_id"] == second["run_id"]
    assert sorted(p.name for p in out.iterdir()) == ["result.nc", "status.json", "summary.json"]
    (out / "summary.json").write_text("{}")  # not the file the run wrote
    with pytest.raises(RunFolderError, match="summary.json is not the file"):
        verify_run(out)


# A CLI run in a subprocess that SIGKILLs itself at the n-th os.replace onto NAME (before or after it).
_KILL_DRIVER = """
import os, signal, sys
from pathlib import Path
name, nth, when = sys.argv[1], int(sys.argv[2]), sys.argv[3]
real, seen = os.replace, []
def replace(src, dst):
    hit = Path(dst).name == name and (seen.append(1) or len(seen) == nth)
    if hit and when == "before":
        os.kill(os.getpid(), signal.SIGKILL)
    real(src, dst)
    if hit and when == "after":
        os.kill(os.getpid(), signal.SIGKILL)
os.replace = replace
from slt_jax.cli import main
sys.exit(main(sys.argv[4:]))
"""


@pytest.fixture(scope="module")
def old_run(tmp_path_factory):
    """A complete earlier run (with a BIF file) for the killed runs to land on."""
    out = tmp_path_factory.mktemp("old") / "out"
    cache = tmp_path_factory.mktemp("xla")
    assert main(["--compile-cache", str(cache)] + _SMALL + ["--out", str(out), "--no-plots", "--observables", "llc,bif"]) == 0
    return out, cache


def _killed_run_leaves(tmp_path, old_run, *kill):
    import shutil
    import signal
    import subprocess
    import sys

    out = tmp_path / "out"
    shutil.copytree(old_run[0], out)
    driver = tmp_path / "driver.py"
    driver.write_text(_KILL_DRIVER)
    argv = ["--compile-cache", str(old_run[1])] + _SMALL + ["--out", str(out), "--seed", "7", "--observables", "llc,wbic"]
    proc = subprocess.run([sys.executable, str(driver), *kill, *argv], capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    return out


def _assert_nothing_mixed_loads_as_complete(out):
    """Either the folder is one complete run (all recorded files intact, one run_id), or
    verify_run says it is not; a result.nc under its final name is never truncated."""
    import json

    from slt_jax.cli import RunFolderError, verify_run

    try:
        status = verify_run(out)
    except RunFolderError:
        status = None
    if status is not None:
        assert json.loads((out / "summary.json").read_text())["run_id"] == status["run_id"]
        # A killed write leaves at most a hidden .tmp-* file, which no reader opens.
        assert set(status["files"]) == {p.name for p in out.iterdir() if not p.name.startswith(".tmp-")} - {"status.json"}
    if (out / "result.nc").exists():
        slt_jax.LLCResult.from_netcdf(out / "result.nc")
    return status


@pytest.mark.parametrize(
    "kill,expect",
    [
        (("status.json", "1", "before"), "old"),  # killed while sampling: the old run stands
        (("status.json", "1", "after"), "running"),  # marked running, old outputs being cleared
        (("result.nc", "1", "before"), "running"),  # result fully written to its temporary
        (("result.nc", "1", "after"), "running"),
        (("summary.json", "1", "after"), "running"),
        (("status.json", "2", "before"), "running"),  # everything written but the final status
    ],
)
def test_a_sigkilled_run_never_loads_as_complete(kill, expect, tmp_path, old_run):
    import json

    from slt_jax.cli import RunFolderError, verify_run

    old_id = json.loads((old_run[0] / "status.json").read_text())["run_id"]
    out = _killed_run_leaves(tmp_path, old_run, *kill)
    status = _assert_nothing_mixed_loads_as_complete(out)
    if expect == "old":
        assert status["run_id"] == old_id
        return
    assert status is None
    with pytest.raises(RunFolderError, match="is 'running', not complete"):
        verify_run(out)
    on_disk = json.loads((out / "status.json").read_text())
    assert on_disk["status"] == "running" and on_disk["run_id"] != old_id
    if kill != ("status.json", "1", "after"):  # by then the older run's files are gone
        assert not (out / "bif_train.npy").exists()


def test_an_external_sigkill_mid_write_leaves_no_complete_mix(tmp_path, old_run):
    """A real SIGKILL from outside, as soon as the new run marks the folder running."""
    import json
    import shutil
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "out"
    shutil.copytree(old_run[0], out)
    old_id = json.loads((out / "status.json").read_text())["run_id"]
    argv = ["--compile-cache", str(old_run[1])] + _SMALL + ["--out", str(out), "--seed", "3"]
    proc = subprocess.Popen([sys.executable, "-m", "slt_jax.cli", *argv], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 240
        while proc.poll() is None and time.monotonic() < deadline:
            try:
                if json.loads((out / "status.json").read_text())["run_id"] != old_id:
                    break
            except (OSError, ValueError):
                pass
            time.sleep(0.002)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    _assert_nothing_mixed_loads_as_complete(out)
