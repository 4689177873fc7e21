"""The sampler benchmark's logic (benchmarks/samplers): rule selection on held-out chains, the
report, and one tiny end-to-end run of its one command."""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "benchmarks" / "samplers"
sys.path.insert(0, str(BENCH))
import report  # noqa: E402
import rules  # noqa: E402


def _row(model, sampler, c, per_chain, mala, reference=1.0, exact=1.25):
    lam = sum(per_chain) / len(per_chain)
    return dict(model=model, family=model.split("_")[0], d=2, n=100, exact=exact, sampler=sampler, c=c, eps=c / 10,
                wall_s=1.0, chains=len(per_chain), steps=10, error=None, llc=lam, mcse=0.01, rel_err=(lam - exact) / exact,
                llc_per_chain=list(per_chain), mala=mala, healthy=len(per_chain), ess_per_grad=0.1,
                reference=reference, reference_kind="quadrature", sampler_err=(lam - reference) / reference)


def _grid(model, sampler, values_by_c, mala_by_c):
    return [_row(model, sampler, c, [v, v + 0.01, v - 0.01, v], mala_by_c[c]) for c, v in values_by_c.items()]


def test_objective_is_the_acceptance_as_one_number():
    assert rules.objective([0.05, 0.10, 0.20]) == pytest.approx(max(0.10 / 0.10, 0.20 / 0.25))
    assert rules.objective([0.01, 0.02, 0.30]) == pytest.approx(0.30 / 0.25)  # the max fails it
    assert rules.objective([float("inf")]) == math.inf


def test_fixed_rule_picks_the_step_size_that_is_right_on_every_model():
    rows = (_grid("nc_a", "sgld", {0.01: 0.7, 0.1: 1.0, 1.0: 1.6}, {0.01: 1.0, 0.1: 0.99, 1.0: 0.8})
            + _grid("nc_b", "sgld", {0.01: 0.5, 0.1: 1.02, 1.0: 2.0}, {0.01: 1.0, 0.1: 0.97, 1.0: 0.6}))
    best = rules.best(rules.candidates(rows, "sgld"), "fixed")
    assert best["param"] == 0.1
    assert best["select"]["max_ref"] < 0.05
    mala = rules.best(rules.candidates(rows, "sgld"), "mala")
    # τ = 0.95 admits ε·nβ = 0.1 on both models and excludes 1.0: the right cell without λ.
    assert set(mala["picks"].values()) == {0.1}


def test_confirmation_summary_is_the_acceptance():
    conf = [dict(model="a", sampler_err=0.05, rel_err=-0.3), dict(model="b", sampler_err=-0.08, rel_err=0.1),
            dict(model="c", sampler_err=0.3, rel_err=0.0)]
    sc = rules.summarize_confirmation(conf)
    assert sc["median_ref"] == pytest.approx(0.08) and sc["max_ref"] == pytest.approx(0.3)
    assert sc["J"] == pytest.approx(0.3 / 0.25)


def test_mala_rule_falls_back_to_the_smallest_step_when_nothing_passes():
    rows = _grid("nc_a", "sgld", {0.01: 0.7, 0.1: 1.0}, {0.01: 0.5, 0.1: 0.4})
    assert rules.pick_mala(rows, 0.9)["c"] == 0.01


def test_sensitivity_is_the_log_slope():
    rs = [dict(c=0.01, llc=1.0), dict(c=0.1, llc=2.0), dict(c=1.0, llc=4.0)]
    rules.sensitivity(rs)
    assert rs[1]["sensitivity"] == pytest.approx(math.log(4.0) / math.log(100.0))


def test_report_renders_every_section(tmp_path):
    rows = (_grid("nc_a", "sgld", {0.01: 0.7, 0.1: 1.0, 1.0: 1.6}, {0.01: 1.0, 0.1: 0.99, 1.0: 0.8})
            + _grid("nc_a", "sgnht", {0.01: 0.9, 0.1: 1.05, 1.0: 1.3}, {0.01: 1.0, 0.1: 0.99, 1.0: 0.8}))
    refs = {"nc_a": dict(exact_posterior=1.0, exact_posterior_kind="quadrature", nuts=1.01, nuts_se=0.02,
                         nuts_rhat=1.0, nuts_divergences=0, nuts_ess_per_grad=0.05, nuts_wall_s=1.0,
                         reference=1.0, reference_se=0.0, reference_kind="quadrature", estimator_bias=-0.2)}
    meta = dict(n=100, batch=10, localization=1.0, nbeta=21.7, chains=4, burnin=10, draws=10, total_s=1.0,
                jax_devices=["cpu:0"], command="run.py")
    confirm = [dict(rows[1], scope="all", rule="ε = 0.1/nβ"), dict(rows[1], scope="nc", rule="ε = 0.1/nβ")]
    text = report.render(dict(meta=meta, references=refs, rows=rows, confirm_rows=confirm, size_rows=[]),
                         tmp_path / "results.md")
    for section in ("Where the error comes from", "Recommendation (chosen on the grid runs", "Confirmation runs",
                    "Every sampler with its best rule", "Per model: every configuration"):
        assert section in text
    assert "| **default (one rule, every model)** | sgld | ε = 0.1/nβ |" in text
    assert (tmp_path / "results_rel_error.png").stat().st_size > 0


@pytest.mark.slow
def test_the_one_command_runs_end_to_end(tmp_path):
    out = tmp_path / "results.md"
    cmd = [sys.executable, str(BENCH / "run.py"), "--out-md", str(out), "--models", "regular", "--samplers", "sgld",
           "--chains", "4", "--burnin", "100", "--draws", "200", "--max-params", "1100", "--quick"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    blob = json.loads(out.with_suffix(".json").read_text())
    ref = blob["references"]["regular(4,2;bias=True)"]
    assert ref["reference_kind"] == "gaussian"
    # NUTS on the linear model must match its closed form: the check that NUTS is a reference.
    assert abs(ref["nuts"] - ref["exact_posterior"]) < 5 * ref["nuts_se"]
    sgld = [r for r in blob["rows"] if r["sampler"] == "sgld"]
    assert len(sgld) == 6 and all(r.get("stationary") is not None for r in sgld)
    text = out.read_text()
    assert "Recommendation" in text and "Confirmation runs per model" in text
    # The size tier's first (d = 1,024) DLN ran for SGLD and the DLN family's pick (here the
    # only sampler, SGLD), over its ε grid, and has its own table and plot.
    assert {r["d"] for r in blob["size_rows"]} == {1024} and len(blob["size_rows"]) == 6
    assert "## Size tier: error vs model size" in text and (tmp_path / "results_size.png").is_file()


def test_tiers_above_a_million_parameters_are_refused_without_an_accelerator(tmp_path):
    proc = subprocess.run([sys.executable, str(BENCH / "run.py"), "--max-params", "1e7", "--out-md",
                           str(tmp_path / "r.md")], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert "--max-params" in proc.stderr and "accelerator" in proc.stderr
    assert not (tmp_path / "r.json").exists()
