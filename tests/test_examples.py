"""Built-in examples (slt_jax.examples, issue 10 item 8).

Fast tests (~15 s): every example's factory is deterministic, its training reaches low loss,
its orbax checkpoints reload with ``checkpoints.open(dir, like=problem()["params"])`` and equal
what training kept; the DLN's rank-increase steps are increasing and agree with the rank at
the checkpoints.

Slow tests (the acceptance of issue 10): the whole workflow (train -> calibrate -> sweep ->
stages) with calibrate's recommendation. Modular addition and TMS calibrate on their last
checkpoint (``calibrate_kwargs={"which": "last"}`` in their modules).
- DLN (~4.5 min on 2 cores, 230 s of it calibration): calibrate's defaults (first, middle
  and last checkpoints: steps 0, 1695, 150000) at the sweep's chain length, nothing else set.
  Step 0 is the rank-0 saddle: chains descend there at every mixing step size, and calibrate
  excludes it from the consistency requirement (before it did, cells that barely move won:
  ε = 9.2e-7, final λ̂ 37% of λ on a (10, 6, 6, 10) version). Detected stage boundaries
  coincide with the rank-increase steps, λ̂ rises from stage to stage (medians -48.4, 9.0,
  15.4), and the final λ̂ is within 15% of Aoyagi's λ (measured: 15.42 ± 0.82 for 16, -3.6%;
  calibrate chose ε = 5.4e-5, γ = 10, nβ = n/log n, 6 of 99 cells passing every rule at steps
  1695 and 150000). "Coincide", in log10(1 + step), the axis stages are
  detected on: each rank step lies inside a detected rising stage widened by the largest
  checkpoint spacing around it (~0.1 decades), and there is exactly one rising stage per rank
  increase. A transition between two checkpoints cannot be located more finely than their
  spacing, and the detected stage edges are where the smoothed slope falls to 20% of its
  peak, ± ~0.5 decades around a sharp step at the CV bandwidth (~0.3 decades).
- Modular addition: λ̂ of the random-label network ≥ 2× the generalizing network's at the end
  of training (measured 4.7×: 328 vs 70, both at the cell calibrate scores best for both).
  Panickssery & Vaintrob (2024) find memorizing networks' λ̂ growing ~p² and generalizing
  ones' ~p, a ratio of order p (31 here) in the limit; at this size the localization caps
  both (calibrate's "spread" rule fails for both), so the margin asked is 2×, well below
  what was measured and far above the seed-to-seed and chain noise (MCSE ~1%).
- TMS: no exact λ; the workflow runs and the final λ̂ is finite and positive.
"""

import logging

import numpy as np
import pytest

import slt_jax
from slt_jax.examples import dln, modular_addition, tms

logging.getLogger("absl").setLevel(logging.ERROR)  # orbax's read-only manager notes


def _leaves_equal(a, b):
    import jax

    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    return len(la) == len(lb) and all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(la, lb))


def _same_problem(make, **kwargs):
    p1, p2 = make(**kwargs), make(**kwargs)
    assert _leaves_equal(p1["params"], p2["params"])
    assert _leaves_equal(p1["data"], p2["data"])
    return p1


# ---- fast --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dln_small(tmp_path_factory):
    out = tmp_path_factory.mktemp("dln") / "checkpoints"
    return dln.train(out)


def test_dln_problem_is_deterministic_and_realizable():
    prob = _same_problem(dln.problem)
    d = dln.DEFAULTS
    t, _ = dln.teacher(d["seed"], d["widths"], d["singular_values"], d["input_std"])
    assert np.linalg.matrix_rank(t) == 2
    x, y = np.asarray(prob["data"]["x"]), np.asarray(prob["data"]["y"])
    np.testing.assert_allclose(y, x @ t, atol=1e-4)  # noise-free: the teacher is an exact minimum
    assert not _leaves_equal(prob["params"], dln.problem(seed=1)["params"])


def test_dln_training_learns_rank_at_increasing_steps(dln_small):
    info = dln_small
    assert info.loss[-1] < 1e-5 * info.loss[0]
    assert info.final_rank == 2 and info.aoyagi == slt_jax.truth.dln_learning_coefficient((8, 4, 4, 8), 2)
    assert np.all(np.diff(info.rank_steps) > 0)
    # The rank at every checkpoint is the number of rank steps at or before it.
    expected = [int(np.sum(np.asarray(info.rank_steps) <= s)) for s in info.steps]
    assert info.rank == expected
    assert info.rank[0] == 0 and np.all(np.diff(info.rank) >= 0)
    # Each transition is well separated (1.5 decades by design), with checkpoints in between.
    assert np.log10(info.rank_steps[1] / info.rank_steps[0]) > 1.0


def test_dln_checkpoints_reload_as_trained(dln_small):
    like = dln.problem()["params"]
    loaded = dict(slt_jax.checkpoints.open(dln_small.checkpoint_dir, like=like))
    assert sorted(loaded) == dln_small.steps
    assert _leaves_equal(loaded[0], like)  # step 0 is the factory's initialization
    sv = np.linalg.svd(np.asarray(dln.product(loaded[dln_small.steps[-1]])), compute_uv=False)
    np.testing.assert_allclose(sv, dln_small.singular_values[-1], rtol=1e-5, atol=1e-6)


def test_compare_stages_matches_rank_steps_to_rising_stages():
    import pandas as pd

    table = pd.DataFrame({"type": ["plateau", "rising", "plateau"], "start": [0.0, 99.0, 999.0],
                          "end": [99.0, 999.0, 1e4], "log_start": [0.0, 2.0, 3.0], "log_end": [2.0, 3.0, 4.0]})
    found = type("S", (), {"table": table})()
    steps = [0] + np.unique(np.round(10 ** np.arange(0.0, 4.01, 0.1)).astype(int)).tolist()  # 0.1-decade spacing
    rows = dln.compare_stages(found, [300, 1100, 5000], steps)
    assert [r["stage"] for r in rows] == [1, 1, None]  # 1100 is 0.04 decades past the end: within spacing
    assert all(0.05 < r["tolerance_decades"] < 0.15 for r in rows)


@pytest.mark.parametrize("labels", ["true", "random"])
def test_modular_addition_trains_and_reloads(tmp_path, labels):
    prob = _same_problem(modular_addition.problem, labels=labels)
    info = modular_addition.train(tmp_path / "ck", labels=labels, num_steps=600, num_checkpoints=6)
    assert info.train_accuracy[-1] == 1.0 and info.loss[-1] < 0.3 * info.loss[0]
    loaded = dict(slt_jax.checkpoints.open(info.checkpoint_dir, like=prob["params"]))
    assert sorted(loaded) == info.steps
    per_sample = np.asarray(prob["loss_fn"](loaded[info.steps[-1]], prob["data"]))
    assert per_sample.shape == (prob["data"]["y"].shape[0],)
    np.testing.assert_allclose(per_sample.mean(), info.loss[-1], rtol=0.2)  # the last step's update moves it
    if labels == "random":
        assert info.test_accuracy[-1] < 0.2  # nothing to generalize


def test_modular_addition_labels_differ_only_for_random():
    true, rand = modular_addition.problem(labels="true"), modular_addition.problem(labels="random")
    d = true["data"]
    assert np.array_equal((np.asarray(d["a"]) + np.asarray(d["b"])) % 31, np.asarray(d["y"]))
    assert np.array_equal(np.asarray(d["a"]), np.asarray(rand["data"]["a"]))
    assert np.mean(np.asarray(rand["data"]["y"]) == np.asarray(d["y"])) < 0.2
    with pytest.raises(ValueError, match="labels"):
        modular_addition.problem(labels="shuffled")


def test_tms_trains_to_superposition_and_reloads(tmp_path):
    prob = _same_problem(tms.problem)
    info = tms.train(tmp_path / "ck", num_steps=3_000, num_checkpoints=8)
    assert info.loss[-1] < 0.4 * info.loss[0]
    assert info.represented[-1] > 2  # more features than hidden dimensions: superposition
    loaded = dict(slt_jax.checkpoints.open(info.checkpoint_dir, like=prob["params"]))
    assert sorted(loaded) == info.steps


# ---- slow: the acceptance ----------------------------------------------------------------------


@pytest.mark.slow
def test_dln_workflow_stages_match_rank_and_final_llc_matches_aoyagi(tmp_path):
    summary = dln.run(tmp_path, progress=False)
    assert summary["calibrated"], "slt_jax.calibration was not importable"
    matches = summary["rank_steps_vs_stages"]
    rising = [s for s in summary["stages"] if s["type"] == "rising"]
    assert all(m["stage"] is not None for m in matches), matches
    assert len({m["stage"] for m in matches}) == len(matches) == len(rising), (matches, summary["stages"])
    # λ̂ rises from stage to stage: the median λ̂ of the checkpoints at each learned rank.
    by_rank = {}
    for c in summary["checkpoints"]:
        by_rank.setdefault(c["rank"], []).append(c["llc"])
    medians = [np.median(by_rank[r]) for r in sorted(by_rank)]
    assert np.all(np.diff(medians) > 0), medians
    final = summary["final"]
    assert abs(final["relative_error"]) < 0.15, final


@pytest.mark.slow
def test_modular_addition_random_labels_have_far_higher_llc(tmp_path):
    summary = modular_addition.run(tmp_path, progress=False)
    assert summary["true"]["generalized_step"] is not None  # it grokked
    assert summary["random"]["memorized_step"] is not None  # it fit the random labels
    assert summary["true"]["final_llc"] > 0
    assert summary["ratio_random_to_true"] >= 2.0, summary["ratio_random_to_true"]


@pytest.mark.slow
def test_tms_workflow_runs_and_final_llc_is_positive(tmp_path):
    """No exact λ for TMS: the workflow runs end to end and λ̂ at the trained point is
    finite and positive."""
    summary = tms.run(tmp_path, small=True, progress=False)
    assert summary["calibrated"]
    llc = [c["llc"] for c in summary["checkpoints"]]
    assert np.all(np.isfinite(llc)) and summary["final_llc"] > 0
