"""Deep linear network trained from small initialization: stages at known steps, exact final λ.

    from slt_jax.examples import dln
    info = dln.train("out/dln/checkpoints")        # optax SGD, orbax checkpoints, rank per step
    summary = dln.run("out/dln")                    # train -> calibrate -> sweep -> stages

The model is f(x) = x @ W1 @ W2 @ W3 (row vectors, as slt_jax.truth.make_dln), widths
(8, 4, 4, 8) (d = 80), on noise-free data y = x @ T from a teacher T = Σ_k s_k u_k v_kᵀ of rank 2.
From a small initialization gradient descent learns T one mode at a time (saddle-to-saddle
dynamics; Saxe et al. 2014, Jacot et al. 2021). With inputs of std σ_k along u_k (1 in the
other directions), mode k grows at the rate r_k = σ_k² s_k (for depth 3 it takes off at a
step ∝ 1/(r_k · init)) and lowers the loss by d_k = σ_k² s_k² / 2. The defaults pick
r = (1/30, 1), d = (0.1, 0.1): s = (6, 0.2), σ = (0.0745, 2.236). So the two transitions are
1.5 decades apart in log-step and equally large in loss. Why: stages.detect resolves two
moves only when its smoothed slope falls back to insignificance between them, and isotropic
inputs with well-separated s would make the later drops (∝ s²) too small to see. Rank 2
rather than 3 keeps the curvature range moderate (a third move 1.5 decades later would need
s₃ ≈ 180 and a stable ε ~30× smaller).

Rank, measured (not assumed): the numerical rank of the learned product W1 W2 W3, the number
of its singular values above RANK_THRESHOLD × min_k s_k (half the smallest teacher singular
value); ``rank_steps[k-1]`` is the first training step at which it reaches k.

Ground truth: the converged network has product T and, from a small and nearly balanced
initialization, every layer of rank 2 along one shared path up to init-sized residuals: the
most singular point of the true set, where the local learning coefficient is Aoyagi's (2024)
λ(widths, rank) (slt_jax.truth.dln_learning_coefficient; 16 here). The input covariance does
not change λ (it is positive definite). Noise-free data make the trained point an exact
minimum of L_n, as in tests/test_accuracy.py.

Intermediate checkpoints sit at saddles, where λ̂ is not a learning coefficient of a
minimum. Measured with calibrate's setting (ε = 5.4e-5, γ = 10, nβ = n/log n): at the rank-0
saddle the fast mode (r = 1) is learned within the chain, so λ̂ ≈ -48.5 ≈ λ̂(rank-1 saddle)
- nβ·0.1 (the loss drop in units of 1/nβ); at the rank-1 saddle the slow mode (r = 1/30) is not
reached within the chain and λ̂ ≈ 9.0 (Aoyagi's λ for rank 1 would be 12); at the converged
rank-2 minimum λ̂ = 15.4 for λ = 16. So λ̂ rises stage to stage, but only the final value has
an exact target.
"""

from __future__ import annotations

import dataclasses
from fractions import Fraction
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from slt_jax import atomic
from slt_jax.examples import _training

__all__ = ["DEFAULTS", "DLNTraining", "compare_stages", "learned_rank", "problem", "report", "run", "teacher", "train"]

# Every argument is an int, float or string, so a sweep config's [factory_args] can hold it.
DEFAULTS = {"seed": 0, "widths": "8,4,4,8", "singular_values": "6,0.2", "input_std": "0.074536,2.236068",
            "num_samples": 5_000, "init_scale": 0.03}
# 40 log-spaced checkpoints: stages.detect's CV bandwidth is then ~0.3 decades, narrow enough
# that the first rise's smoothed tail has died out (slope insignificant) before the second
# rise 1.5 decades later; with 22 checkpoints the two rises merged. 150k steps leave 9
# checkpoints after the second transition (detect needs >= 3 per stage).
TRAIN_DEFAULTS = {"num_steps": 150_000, "num_checkpoints": 40, "first_checkpoint": 30, "learning_rate": 0.02}
RANK_THRESHOLD = 0.5  # rank = #{singular values of W1 W2 W3 > RANK_THRESHOLD · min_k s_k}


def _ints(text) -> tuple[int, ...]:
    return tuple(int(v) for v in (text.split(",") if isinstance(text, str) else text))


def _floats(text) -> tuple[float, ...]:
    return tuple(float(v) for v in (text.split(",") if isinstance(text, str) else text))


def teacher(seed: int, widths, singular_values, input_std) -> tuple[np.ndarray, np.ndarray]:
    """(T, Q): T = Σ_k s_k u_k v_kᵀ (H_0 × H_L), rank len(s) by construction, and Q an
    orthogonal H_0 × H_0 matrix whose first columns are the u_k; inputs are z diag(std) Qᵀ
    with std = input_std along the u_k and 1 elsewhere."""
    widths, s, std = _ints(widths), np.asarray(_floats(singular_values)), np.asarray(_floats(input_std))
    if len(s) >= min(widths) or np.any(s <= 0) or len(std) != len(s) or np.any(std <= 0):
        raise ValueError(f"need fewer than min(widths) = {min(widths)} positive singular_values and one positive "
                         f"input_std each, got {tuple(s)}, {tuple(std)}")
    rng = np.random.default_rng(seed)
    q = np.linalg.qr(rng.normal(size=(widths[0], widths[0])))[0]
    v = np.linalg.qr(rng.normal(size=(widths[-1], len(s))))[0]
    return (q[:, : len(s)] * s) @ v.T, q


def _input_scales(widths, input_std) -> np.ndarray:
    std = np.ones(_ints(widths)[0])
    std[: len(_floats(input_std))] = _floats(input_std)
    return std


def _forward(params, x):
    for i in range(1, len(params) + 1):
        x = x @ params[f"W{i}"]
    return x


def loss_fn(params, batch):
    """Per-sample Gaussian NLL without its constant (unit variance): ½ |y - f(x)|²."""
    return 0.5 * jnp.sum((batch["y"] - _forward(params, batch["x"])) ** 2, axis=-1)


def problem(seed: int = DEFAULTS["seed"], widths: str = DEFAULTS["widths"],
            singular_values: str = DEFAULTS["singular_values"], input_std: str = DEFAULTS["input_std"],
            num_samples: int = DEFAULTS["num_samples"], init_scale: float = DEFAULTS["init_scale"]) -> dict:
    """The sweep factory: {loss_fn, params (the initialization, step 0), data}, all from ``seed``.

    Inputs x = z diag(std) Qᵀ with z ~ N(0, I) (see ``teacher``), y = x @ T exactly
    (noise-free); init entries N(0, init_scale²). List arguments are comma-separated strings
    (or sequences), so every argument fits a sweep config's [factory_args].
    """
    widths = _ints(widths)
    t, q = teacher(seed, widths, singular_values, input_std)
    rng = np.random.default_rng(seed + 1)
    x = (rng.normal(size=(int(num_samples), widths[0])) * _input_scales(widths, input_std)) @ q.T
    data = {"x": jnp.asarray(x.astype(np.float32)), "y": jnp.asarray((x @ t).astype(np.float32))}
    keys = jax.random.split(jax.random.key(seed), len(widths) - 1)
    params = {f"W{i}": float(init_scale) * jax.random.normal(k, (a, b), jnp.float32)
              for i, (k, a, b) in enumerate(zip(keys, widths[:-1], widths[1:]), start=1)}
    return {"loss_fn": loss_fn, "params": params, "data": data}


def product(params) -> jax.Array:
    p = params["W1"]
    for i in range(2, len(params) + 1):
        p = p @ params[f"W{i}"]
    return p


def learned_rank(singular_values_learned: np.ndarray, target: tuple[float, ...]) -> np.ndarray:
    """Numerical rank along the last axis: singular values above RANK_THRESHOLD · min(target)."""
    return np.sum(np.asarray(singular_values_learned) > RANK_THRESHOLD * min(target), axis=-1)


@dataclasses.dataclass(frozen=True)
class DLNTraining:
    """``train``'s report. steps: checkpoint steps; rank: learned rank at each; loss: training
    loss at each; rank_steps: first step at which the learned rank reaches 1, 2, ...;
    singular_values: σ(W1 W2 W3) at each checkpoint; aoyagi: Aoyagi's λ for the final
    learned rank (None if the run did not reach the teacher's rank)."""

    checkpoint_dir: Path
    steps: list[int]
    rank: list[int]
    loss: list[float]
    rank_steps: list[int]
    singular_values: np.ndarray
    final_rank: int
    widths: tuple[int, ...]
    aoyagi: Fraction | None
    rank_threshold: float
    train_s: float
    kwargs: dict


def train(out_dir, *, num_steps: int = TRAIN_DEFAULTS["num_steps"],
          num_checkpoints: int = TRAIN_DEFAULTS["num_checkpoints"],
          first_checkpoint: int = TRAIN_DEFAULTS["first_checkpoint"],
          learning_rate: float = TRAIN_DEFAULTS["learning_rate"], **kwargs) -> DLNTraining:
    """Full-batch gradient descent (optax.sgd) from ``problem(**kwargs)``'s initialization;
    orbax checkpoints at step 0 and log-spaced steps into ``out_dir``.

    The loss is trained through its sufficient statistic (exact, not an approximation): for y = x T,
    mean_i ½|y_i - x_i P|² = ½ tr((P - T)ᵀ Σ̂ (P - T)) with Σ̂ = XᵀX / n, the same function
    of the weights as the per-sample loss, at a cost independent of n.
    """
    args = {**DEFAULTS, **kwargs}
    prob = problem(**args)
    x = np.asarray(prob["data"]["x"], np.float64)
    cov = jnp.asarray(x.T @ x / len(x), jnp.float32)
    target = jnp.asarray(teacher(args["seed"], args["widths"], args["singular_values"], args["input_std"])[0],
                         jnp.float32)
    s = _floats(args["singular_values"])

    def objective(params, t):
        diff = product(params) - target
        return 0.5 * jnp.sum(diff * (cov @ diff))

    def record(params):  # the learned product's singular values at every step
        return jnp.linalg.svd(product(params), compute_uv=False)

    import optax

    steps = _training.checkpoint_steps(num_steps, num_checkpoints, first_checkpoint)
    fit = _training.fit(objective, prob["params"], optax.sgd(learning_rate), num_steps=num_steps,
                        steps=steps, record=record)
    ckpt_dir = _training.save_checkpoints(out_dir, fit.checkpoints)
    rank_per_step = learned_rank(fit.records, s)
    rank_steps = [int(np.argmax(rank_per_step >= k)) for k in range(1, int(rank_per_step.max()) + 1)]
    final_rank = int(rank_per_step[-1])
    widths = _ints(args["widths"])
    from slt_jax.truth import dln_learning_coefficient

    return DLNTraining(
        checkpoint_dir=ckpt_dir, steps=steps, rank=[int(rank_per_step[t]) for t in steps],
        loss=[float(fit.loss[t]) for t in steps], rank_steps=rank_steps,
        singular_values=np.asarray(fit.records)[steps], final_rank=final_rank, widths=widths,
        aoyagi=dln_learning_coefficient(widths, final_rank) if final_rank == len(s) else None,
        rank_threshold=RANK_THRESHOLD, train_s=fit.train_s, kwargs=args,
    )


# ---------------------------------------------------------------------------------------
# The whole workflow

# Sampling budget per checkpoint (what calibrate does not choose). The chains must be long:
# the final minimum's flattest directions (products of three small weights: a sextic loss)
# reach their posterior scale ~nβ^(-1/6) only after ~0.1/ε steps (on a (10, 6, 6, 10)
# version, 2,000 draws at ε = 1e-5 measured λ̂ 16% low, 10,000 within 2%).
# Calibration runs at the sweep's chain length, on calibrate's default checkpoints (first,
# middle, last: steps 0, 1695, 150000). Step 0 is the rank-0 saddle: chains descend there at
# every mixing step size, so calibrate reports it as not a local minimum and holds the cells to
# the rules at the other two (slt_jax.calibration.checkpoints). Measured: it recommends
# ε = 5.4e-5, γ = 10, nβ = n/log n (6 of 99 cells pass; γ = 100 fails localization_consistency,
# γ = 1 step_consistency). Before that exclusion the default checkpoints made cells that barely
# move win ((10, 6, 6, 10): ε = 9.2e-7, final λ̂ 9.7 for λ = 26). The chain length matters too:
# with shorter calibration chains sound step sizes have not plateaued and slow cells win
# ((10, 6, 6, 10), 200 burn-in + 2,000 draws: ε = 9.2e-7, λ̂ 6.9 for 26).
SAMPLING = {"batch_size": 200, "num_chains": 4, "num_draws": 8_000, "num_burnin": 4_000,
            "calibration_chains": 4, "calibration_draws": 8_000, "calibration_burnin": 4_000}
# `slt-jax demo`: the same run with half the calibration chains (calibration is ~70% of the time).
SAMPLING_SMALL = {**SAMPLING, "calibration_chains": 2}


def compare_stages(stages_result, rank_steps, steps) -> list[dict]:
    """For each rank-increase step, the detected rising stage that holds it.

    "Coincide" is judged in x = log10(1 + step), the axis stages are detected on: the rank
    step must lie in a rising stage [start, end] widened on each side by the largest
    checkpoint spacing around it (a transition between two checkpoints cannot be located
    more finely than their spacing, and detect puts boundaries between checkpoints).
    Returns one dict per rank step: step, stage (row index or None), start, end, tolerance.
    """
    x = np.log10(1.0 + np.asarray(steps, float))
    table = stages_result.table
    out = []
    for t in rank_steps:
        xt = np.log10(1.0 + t)
        i = int(np.clip(np.searchsorted(x, xt), 1, len(x) - 1))
        tol = float(np.max(np.diff(x)[max(i - 2, 0): i + 1]))
        hit = None
        for row, stage in enumerate(table.itertuples()):
            if stage.type == "rising" and stage.log_start - tol <= xt <= stage.log_end + tol:
                hit = row
                break
        start, end = (None, None) if hit is None else (float(table["start"][hit]), float(table["end"][hit]))
        out.append({"rank_step": int(t), "stage": hit, "start": start, "end": end, "tolerance_decades": tol})
    return out


def run(out_dir, *, small: bool = False, progress: bool = True) -> dict:
    """Train, calibrate on calibrate's default checkpoints (first, middle, last; at the sweep's
    chain length, see SAMPLING), sweep λ̂ over all checkpoints with calibrate's recommendation,
    detect stages.
    ``small``: the `slt-jax demo` budget (2 calibration chains instead of 4; the same
    network, checkpoints and sweep).

    Returns a JSON-able summary (also written to ``out_dir/summary.json``): the training
    report (rank steps, rank per checkpoint), the sampler settings and who chose them,
    λ̂ per checkpoint, the stage table, how each rank step matches a stage, and the final
    λ̂ against Aoyagi's λ.
    """
    import json
    import time

    out = Path(out_dir)
    kwargs, train_kw, sampling = DEFAULTS, TRAIN_DEFAULTS, SAMPLING_SMALL if small else SAMPLING
    t0 = time.perf_counter()
    info = train(out / "checkpoints", **train_kw, **kwargs)
    factory = "slt_jax.examples.dln:problem"
    res = _training.workflow(factory, info.checkpoint_dir, out, sampling,
                             progress=progress)
    table = res["table"]
    final = table.iloc[-1]
    lam = float(info.aoyagi) if info.aoyagi is not None else float("nan")
    summary = {
        "example": "dln", "small": small, "problem": kwargs, "training": train_kw,
        "rank_threshold": info.rank_threshold, "rank_steps": info.rank_steps,
        "checkpoints": [{"step": s, "rank": r, "loss": lo, "llc": float(v), "llc_mcse": float(e)}
                        for s, r, lo, v, e in zip(info.steps, info.rank, info.loss, table["llc"], table["llc_mcse"])],
        "recommended": res["recommended"], "calibrated": res["calibrated"],
        "boundaries": [float(b) for b in res["stages"].boundaries],
        "stages": res["stages"].table.to_dict(orient="records"),
        "rank_steps_vs_stages": compare_stages(res["stages"], info.rank_steps, info.steps),
        "final": {"step": int(final["step"]), "llc": float(final["llc"]), "llc_mcse": float(final["llc_mcse"]),
                  "aoyagi": lam, "aoyagi_exact": str(info.aoyagi), "relative_error": float(final["llc"]) / lam - 1},
        "timings": {"train_s": info.train_s, **res["timings"], "total_s": time.perf_counter() - t0},
    }
    atomic.write_text(out / "summary.json", json.dumps(summary, indent=1, default=_training.json_default))
    return summary


def report(summary: dict) -> str:
    """``run``'s summary as a few printable lines (for `slt-jax demo`)."""
    rec, fin = summary["recommended"], summary["final"]
    who = "calibrate (first, middle, last checkpoints)"
    lines = [(f"deep linear network {summary['problem']['widths']}: learned rank rose at steps "
             f"{summary['rank_steps']} (σ(W1W2W3) > {summary['rank_threshold']}·min s)"),
             f"settings from {who}: ε = {rec['step_size']:.3g}, γ = {rec['localization']:g}, nβ = {rec['nbeta']:.4g}",
             "stages: " + ", ".join(f"{s['type']} [{s['start']:.0f}, {s['end']:.0f}]" for s in summary["stages"])]
    for m in summary["rank_steps_vs_stages"]:
        where = "no rising stage" if m["stage"] is None else f"rising stage [{m['start']:.0f}, {m['end']:.0f}]"
        lines.append(f"  rank step {m['rank_step']}: {where}")
    lines.append(f"final λ̂ = {fin['llc']:.3g} ± {fin['llc_mcse']:.2g} vs Aoyagi λ = {fin['aoyagi_exact']} "
                 f"({fin['relative_error']:+.1%}); total {summary['timings']['total_s']:.0f} s")
    return "\n".join(lines)
