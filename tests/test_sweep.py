"""slt_jax.sweep (issue 10, items 2-3): a resumable λ̂ sweep over checkpoints with a results
directory, a fingerprint that refuses a changed config, and a summary that does not depend on
interruptions or on how the checkpoints were grouped into programs."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import slt_jax
from slt_jax.results.llc_result import LLCResult
from slt_jax.workflows.sweep import SUMMARY_COLUMNS, SweepConfigError, sweep
from slt_jax.workflows.sweep_outputs import read_combined, read_summary

STEPS = (10, 20, 40, 80, 160)

FACTORY = textwrap.dedent('''
    import jax.numpy as jnp
    import numpy as np

    def make():
        rng = np.random.default_rng(0)
        x = rng.normal(size=(128, 3)).astype(np.float32)
        y = (x @ rng.normal(size=(3, 2)) + rng.normal(size=(128, 2))).astype(np.float32)
        w = np.linalg.lstsq(x, y, rcond=None)[0].astype(np.float32)

        def loss(params, batch):
            xb, yb = batch
            return 0.5 * jnp.sum((yb - xb @ params["W"]) ** 2, axis=-1)

        return {"loss_fn": loss, "params": {"W": jnp.asarray(w)}, "data": (x, y)}
''')


@pytest.fixture
def run(tmp_path, monkeypatch):
    """A factory module on sys.path, npz checkpoints, and a config builder."""
    (tmp_path / "sweep_factory.py").write_text(FACTORY)
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("sweep_factory", None)
    import sweep_factory

    w = np.asarray(sweep_factory.make()["params"]["W"])
    for s in STEPS:
        slt_jax.checkpoints.save(tmp_path / "ckpts" / f"ckpt_{s:05d}.npz", s, {"W": w + 1e-3 * s})

    def config(out="out", glob="ckpt_*.npz", **sampler):
        kw = dict(step_size=1e-3, localization=100.0, nbeta=20.0, num_chains=2, num_draws=30, num_burnin=5,
                  batch_size=16, seed=7)
        kw.update(sampler)
        return {"factory": "sweep_factory:make", "checkpoints": str(tmp_path / "ckpts" / glob),
                "out": str(tmp_path / out), "sampler": kw}

    return tmp_path, config


def assert_same(a: pd.DataFrame, b: pd.DataFrame):
    pd.testing.assert_frame_equal(a.reset_index(drop=True), b.reset_index(drop=True), check_exact=True)


def test_full_sweep_writes_every_file(run):
    tmp, config = run
    table = sweep(config())
    out = tmp / "out"
    assert list(table.columns) == list(SUMMARY_COLUMNS) and table["step"].tolist() == list(STEPS)
    assert table.attrs["computed"] == list(STEPS) and table.attrs["skipped"] == []
    for s in STEPS:
        r = LLCResult.from_netcdf(out / f"ckpt_{s}.nc")
        row = table.set_index("step").loc[s]
        assert r.llc_mean == row["llc"] and r.init_loss == row["init_loss"]
    assert np.isfinite(table[["llc", "llc_mcse", "llc_std", "llc_var", "rhat", "ess", "mala_mean"]].values).all()
    assert (table["chains_used"] == 2).all() and (table["chains_excluded"] == 0).all()
    assert_same(read_summary(out), table)
    fp = json.loads((out / "fingerprint.json").read_text())
    assert fp["sha256"] == table.attrs["fingerprint"] and fp["components"]["sampler.seed"] == 7
    assert json.loads((out / "complete").read_text())["steps"] == list(STEPS)
    try:
        import pyarrow  # noqa: F401
        assert table.attrs["parquet"] == "written"
        assert_same(pd.read_parquet(out / "summary.parquet"), table)
    except ImportError:
        assert "pyarrow" in table.attrs["parquet"] and not (out / "summary.parquet").exists()
    assert not [p for p in out.iterdir() if p.name.startswith(".tmp-")]
    # A second call finds everything done and samples nothing.
    again = sweep(config())
    assert again.attrs["computed"] == [] and again.attrs["skipped"] == list(STEPS)
    assert_same(again, table)


def test_grouping_and_partial_resume_give_identical_numbers(run):
    """A checkpoint's λ̂ does not depend on which group (program) it ran in: one program for all,
    one per checkpoint, and a sweep over some checkpoints then resumed over all are equal bitwise."""
    _, config = run
    whole = sweep(config(out="whole"))
    single = sweep(config(out="single", checkpoints_per_program=1))
    assert_same(whole, single)
    # Groups of 2 over 5 checkpoints: the last group is padded, so one compilation serves all.
    pairs = sweep(config(out="pairs", checkpoints_per_program=2))
    assert len(pairs.attrs["compilations_per_group"]) == 3 and pairs.attrs["compilations_per_group"][1:] == [0, 0]
    assert_same(whole, pairs)
    part = sweep(config(out="resumed", glob="ckpt_000[1-4]*.npz", checkpoints_per_program=2))
    assert part["step"].tolist() == [10, 20, 40]
    resumed = sweep(config(out="resumed", checkpoints_per_program=2))
    assert resumed.attrs["skipped"] == [10, 20, 40] and resumed.attrs["computed"] == [80, 160]
    assert_same(resumed, whole)


def test_corrupt_result_file_is_redone(run):
    tmp, config = run
    whole = sweep(config())
    (tmp / "out" / "ckpt_40.nc").write_bytes(b"truncated")
    (tmp / "out" / ".tmp-deadbeef-ckpt_80.nc").write_bytes(b"half")
    again = sweep(config())
    assert again.attrs["computed"] == [40]
    assert_same(again, whole)
    assert not (tmp / "out" / ".tmp-deadbeef-ckpt_80.nc").exists()


_KILLED = textwrap.dedent('''
    import sys
    sys.path.insert(0, sys.argv[1])
    import json
    from slt_jax.workflows.sweep import sweep
    sweep(json.loads(sys.argv[2]))
''')


def test_sigkilled_sweep_resumes_to_the_same_summary(run):
    """A sweep SIGKILLed in a subprocess as soon as its first group's file appears, then resumed
    in this process, ends with exactly the summary of an uninterrupted sweep."""
    tmp, config = run
    cfg = config(out="killed", checkpoints_per_program=1, num_draws=200)
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    proc = subprocess.Popen([sys.executable, "-c", _KILLED, str(tmp), json.dumps(cfg)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    first = tmp / "killed" / f"ckpt_{STEPS[0]}.nc"
    deadline = time.monotonic() + 120
    while not first.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    assert first.exists(), proc.stderr.read().decode() if proc.poll() is not None else "timed out"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stderr.close()
    done = sorted(int(p.stem.split("_")[1]) for p in (tmp / "killed").glob("ckpt_*.nc"))
    assert not (tmp / "killed" / "complete").exists() and done != list(STEPS), "the sweep finished before the kill"
    resumed = sweep(config(out="killed", checkpoints_per_program=1, num_draws=200))
    assert set(resumed.attrs["skipped"]) >= {STEPS[0]} and resumed["step"].tolist() == list(STEPS)
    uninterrupted = sweep(config(out="whole", num_draws=200))
    # Exactly: rows sampled in the killed process, read back from their files, equal rows sampled
    # here in memory (GridResult.sel makes C-ordered copies; strided slices once made llc_var
    # differ in the last float32 bit).
    pd.testing.assert_frame_equal(resumed, uninterrupted, check_exact=True)


def test_changed_config_is_refused_unless_new(run):
    tmp, config = run
    first = sweep(config(checkpoints_per_program=2))
    with pytest.raises(SweepConfigError, match=r"sampler\.step_size") as err:
        sweep(config(step_size=2e-3))
    assert "sampler.seed" not in str(err.value) and "new=True" in str(err.value)
    with pytest.raises(SweepConfigError, match=r"sampler\.seed.*sampler\.step_size"):
        sweep(config(step_size=2e-3, seed=8))
    # Not part of the fingerprint: the grouping (numbers do not depend on it).
    assert sweep(config(checkpoints_per_program=1)).attrs["computed"] == []
    fresh = sweep(config(step_size=2e-3), new=True)
    aside = Path(fresh.attrs["moved_aside"])
    assert aside.parent == tmp and aside.name.startswith("out.old-")
    assert_same(read_summary(aside), first)
    assert fresh.attrs["computed"] == list(STEPS) and not fresh["llc"].equals(first["llc"])
    assert json.loads((tmp / "out" / "fingerprint.json").read_text())["components"]["sampler.step_size"] == 2e-3


def test_toml_config_and_bad_configs(run):
    tmp, config = run
    (tmp / "sweep.toml").write_text(textwrap.dedent('''
        factory = "sweep_factory:make"
        checkpoints = "ckpts/ckpt_*.npz"     # relative to this file
        out = "toml_out"
        [sampler]
        step_size = 1e-3
        localization = 100.0
        nbeta = 20.0
        num_chains = 2
        num_draws = 30
        num_burnin = 5
        batch_size = 16
        seed = 7
    '''))
    from_toml = sweep(tmp / "sweep.toml")
    assert (tmp / "toml_out" / "complete").exists()
    assert_same(from_toml, sweep(config(out="dict_out")))
    bad = config()
    bad["sampler"]["stepsize"] = 1.0
    with pytest.raises(SweepConfigError, match="stepsize"):
        sweep(bad)
    bad = config()
    del bad["sampler"]["batch_size"]
    with pytest.raises(SweepConfigError, match="batch_size"):
        sweep(bad)
    with pytest.raises(SweepConfigError, match="no function"):
        sweep(dict(config(), factory="sweep_factory:nope"))


def _kill_when(proc, out: Path, rng, mode: str, timeout: float = 120.0) -> str:
    """SIGKILL `proc` mid-write (as soon as a temporary file appears in `out`) or at a random
    moment after its first result file; returns what happened."""
    deadline = time.monotonic() + timeout
    at = None
    while proc.poll() is None and time.monotonic() < deadline:
        names = [e.name for e in os.scandir(out)] if out.is_dir() else []
        if mode == "mid-write" and any(n.startswith(".tmp-") for n in names):
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            return "mid-write"
        if mode == "random" and any(n.startswith("ckpt_") for n in names):
            at = at or time.monotonic() + rng.uniform(0.0, 1.5)
            if time.monotonic() >= at:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                return "random"
    proc.kill()
    proc.wait()
    return "finished" if proc.returncode == 0 else "timeout"


@pytest.mark.slow
def test_sweep_killed_repeatedly_resumes_to_the_same_summary(run, tmp_path):
    """Several SIGKILLs (at random moments and while a file is being written), each followed by
    a restart, then a final resume: exactly the summary of an uninterrupted sweep, every file
    readable, no temporaries left."""
    _, config = run
    w = np.asarray(slt_jax.checkpoints.open(str(tmp_path / "ckpts" / "ckpt_00010.npz")).__next__()[1]["W"])
    steps = [10 * 2**k for k in range(10)]
    for s in steps:
        slt_jax.checkpoints.save(tmp_path / "many" / f"ckpt_{s:06d}.npz", s, {"W": (w + 1e-4 * np.log1p(s)).astype(np.float32)})
    cfg = config(out="killed", checkpoints_per_program=1, num_draws=300)
    cfg["checkpoints"] = str(tmp_path / "many" / "ckpt_*.npz")
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    out, rng, happened = tmp_path / "killed", np.random.default_rng(3), []
    for mode in ("mid-write", "random", "mid-write", "random", "mid-write"):
        proc = subprocess.Popen([sys.executable, "-c", _KILLED, str(tmp_path), json.dumps(cfg)], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        happened.append(_kill_when(proc, out, rng, mode))
        assert happened[-1] != "timeout", proc.stderr.read().decode()[-3000:]
        proc.stderr.close()
        if happened[-1] == "finished":
            break
    assert happened.count("mid-write") >= 2 and "random" in happened, happened
    resumed = sweep(cfg, progress=False)
    assert resumed["step"].tolist() == steps and len(resumed.attrs["skipped"]) > 0
    whole = dict(cfg, out=str(tmp_path / "whole"))
    assert_same(resumed, sweep(whole, progress=False))
    for s in steps:
        LLCResult.from_netcdf(out / f"ckpt_{s}.nc")
    assert not [p for p in out.iterdir() if p.name.startswith(".tmp-")]


def test_outputs_observables_and_factory_args(run):
    """The combined dataset has a step coordinate and the per-checkpoint draws; observables become
    columns; factory_args reach the factory and are fingerprinted; with ≥ 6 checkpoints the stages
    and the plot are written."""
    tmp, config = run
    w = np.asarray(next(slt_jax.checkpoints.open(str(tmp / "ckpts" / "ckpt_00010.npz")))[1]["W"])
    for s in (320, 640):
        slt_jax.checkpoints.save(tmp / "ckpts" / f"ckpt_{s:05d}.npz", s, {"W": w + 1e-3 * s})
    cfg = config(out="obs")
    cfg["observables"] = ["wbic", "free_energy", "llc_var_se"]
    table = sweep(cfg, progress=False)
    steps = list(STEPS) + [320, 640]
    assert list(table.columns) == list(SUMMARY_COLUMNS) + ["wbic", "free_energy", "llc_var_se"]
    out = tmp / "obs"
    for s in steps:
        r = LLCResult.from_netcdf(out / f"ckpt_{s}.nc")
        row = table.set_index("step").loc[s]
        assert row["free_energy"] == r.free_energy and row["llc_var_se"] == r.llc_var_se
    combined = read_combined(out)
    assert combined["step"].values.tolist() == steps
    np.testing.assert_array_equal(combined["init_loss"].values, table["init_loss"].values)
    r40 = LLCResult.from_netcdf(out / "ckpt_40.nc")
    np.testing.assert_array_equal(combined["loss"].sel(step=40).values, r40.dataset["loss"].values)
    assert (out / "llc_vs_step.png").stat().st_size > 10_000 and table.attrs["plot"].endswith("llc_vs_step.png")
    assert isinstance(table.attrs["stages"], list) and (out / "stages.csv").exists()
    # factory_args: passed to the factory, part of the fingerprint.
    (tmp / "args_factory.py").write_text(FACTORY.replace("def make():", "def make(scale=1.0):").replace(
        "return {\"loss_fn\": loss", "x = x * scale\n    return {\"loss_fn\": loss"))
    sys.modules.pop("args_factory", None)
    a = dict(config(out="args"), factory="args_factory:make", factory_args={"scale": 1.0})
    sweep(a, progress=False)
    with pytest.raises(SweepConfigError, match="factory_args"):
        sweep(dict(a, factory_args={"scale": 2.0}), progress=False)
    with pytest.raises(SweepConfigError, match="calling it with"):
        sweep(dict(a, factory_args={"nope": 1}), new=True, progress=False)
    with pytest.raises(SweepConfigError, match="eval sets"):
        sweep(dict(config(out="nu"), observables=["nu"]), progress=False)


def test_cli_sweep(run, capsys):
    from slt_jax.cli import main

    tmp, config = run
    cfg = config(out="cli")
    lines = [f'factory = "{cfg["factory"]}"', f'checkpoints = "{cfg["checkpoints"]}"', f'out = "{cfg["out"]}"',
             "[sampler]"] + [f"{k} = {v!r}" for k, v in cfg["sampler"].items()]
    (tmp / "sweep.toml").write_text("\n".join(lines) + "\n")
    assert main(["sweep", str(tmp / "sweep.toml"), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "sampled 5 checkpoint(s), 0 already done" in printed and "nbeta 20 (from config)" in printed
    assert_same(read_summary(tmp / "cli"), sweep(config(out="py"), progress=False))
    assert main(["sweep", str(tmp / "sweep.toml"), "--no-progress"]) == 0
    assert "sampled 0 checkpoint(s), 5 already done" in capsys.readouterr().out
    (tmp / "bad.toml").write_text((tmp / "sweep.toml").read_text().replace("step_size", "stepsize"))
    with pytest.raises(SystemExit) as e:
        main(["sweep", str(tmp / "bad.toml")])
    assert e.value.code == 2 and "stepsize" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(["sweep", str(tmp / "sweep.toml"), "--shard", "2/2"])
    assert e.value.code == 2 and "--shard" in capsys.readouterr().err


def test_calibrate_then_sweep_reads_the_calibration(run, capsys):
    """`slt_jax.calibrate(config)` / `slt-jax calibrate` writes <out>/calibration/calibration.json;
    a sweep whose [sampler] leaves step_size, localization and nbeta out takes them from it (and
    says so), the same numbers as a sweep given them; --new keeps the calibration."""
    from slt_jax.cli import main
    from slt_jax.calibration import load_recommendation

    tmp, config = run
    cfg = config(out="cal", num_draws=100)
    for k in ("step_size", "localization", "nbeta"):
        del cfg["sampler"][k]
    cfg["calibrate"] = {"step_sizes": [1e-4, 1e-3, 1.0], "localizations": [100.0], "nbetas": [20.0],
                        "checkpoints": [10, 160]}
    with pytest.raises(SweepConfigError, match="no calibration file"):
        sweep(cfg, progress=False)
    cal = slt_jax.calibrate(cfg, progress=False)
    path = tmp / "cal" / "calibration" / "calibration.json"
    assert load_recommendation(path) == cal.recommended and cal.checkpoints == [10, 160]
    assert cal.recommended["step_size"] != 1.0  # diverges: never recommended
    table = sweep(cfg, progress=False)
    assert "calibration file" in table.attrs["settings_source"]
    assert table.attrs["settings"] == {k: cal.recommended[k] for k in ("step_size", "localization", "nbeta")}
    given = config(out="given", num_draws=100, **cal.recommended)
    assert_same(table, sweep(given, progress=False))
    fresh = sweep(cfg, new=True, progress=False)  # same fingerprint: nothing moved, nothing sampled
    assert fresh.attrs["computed"] == []
    # The CLI writes the same file.
    lines = [f'factory = "{cfg["factory"]}"', f'checkpoints = "{cfg["checkpoints"]}"', f'out = "{tmp / "cli_cal"}"',
             "[sampler]"] + [f"{k} = {v!r}" for k, v in cfg["sampler"].items()] + ["[calibrate]"] + [
             f"{k} = {v!r}" for k, v in cfg["calibrate"].items()]
    (tmp / "cal.toml").write_text("\n".join(lines) + "\n")
    assert main(["calibrate", str(tmp / "cal.toml"), "--no-progress", "--no-plots"]) == 0
    assert "recommended: step_size" in capsys.readouterr().out
    assert load_recommendation(tmp / "cli_cal" / "calibration" / "calibration.json") == cal.recommended


def test_a_factory_module_in_the_working_directory_imports(tmp_path, monkeypatch):
    # The `slt-jax` console script's sys.path lacks the working directory (python -m has it).
    from slt_jax.workflows.sweep_config import load_factory

    (tmp_path / "my_factory_mod.py").write_text(
        "import jax.numpy as jnp\n"
        "def make(scale=1.0):\n"
        "    return {'loss_fn': lambda p, b: (b - p['w']) ** 2, 'params': {'w': jnp.zeros(())},\n"
        "            'data': scale * jnp.ones((4,))}\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    problem = load_factory("my_factory_mod:make", {"scale": 2.0})
    assert float(problem["data"][0]) == 2.0
    assert str(tmp_path) not in sys.path  # the working directory is not left on sys.path
