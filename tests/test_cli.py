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
def test_demo_quick(tmp_path, capsys):
    assert main(["demo", "--quick", "--chains", "4", "--no-progress", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "exact λ = 75/2" in out and "λ̂ =" in out
    for name in ("dln.nc", "mlp.nc", "dln_trace.png", "mlp_trace.png"):
        assert (tmp_path / name).stat().st_size > 0
    back = slt_jax.LLCResult.from_netcdf(tmp_path / "dln.nc")
    assert back.loss_trace.shape[0] == 4


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


def test_llc_rejects_unknown_observables(tmp_path):
    with pytest.raises(SystemExit, match="unknown"):
        main(["llc", "--toy", "regular", "--observables", "llc,entropy", "--out", str(tmp_path)])


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
