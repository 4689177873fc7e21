"""The command line: help for every command, exact λ, and the demo end to end."""

import pytest

import slt_jax
from slt_jax.cli import build_parser, main


def test_help_documents_every_command(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    text = capsys.readouterr().out
    for command in ("demo", "truth"):
        assert command in text
    for command in ("demo", "truth"):
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
