"""Toy model of superposition (Elhage et al. 2022): 6 sparse features through 2 hidden units.

    from slt_jax.examples import tms
    info = tms.train("out/tms/checkpoints")        # Adam, orbax checkpoints
    summary = tms.run("out/tms")                    # train -> calibrate -> sweep -> stages

Data: x ∈ [0, 1]^6, each feature independently 0 with probability ``sparsity`` (0.8) and
otherwise uniform on [0, 1]; a fixed training set of n = 1,000 samples from the seed.
Model: x̂ = ReLU(Wᵀ W x + b) with W of shape (2, 6) and b of shape (6,) (18 parameters);
per-sample loss |x - x̂|² (all importances 1), as in Chen et al. 2023, "Dynamical versus
Bayesian phase transitions in a toy model of superposition" (arXiv 2310.06301), who report
that training passes plateaus near critical points (k-gons: k features on a regular polygon
in the hidden plane) with λ̂ changing between them. Trained full batch with Adam from a small
initialization so that the features are picked up one plateau at a time.

No exact λ is known here; `run` reports λ̂ over training and the stages found.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from slt_jax import atomic
from slt_jax.examples import _training

__all__ = ["DEFAULTS", "TMSTraining", "problem", "problem_default", "represented_features", "run", "train"]

DEFAULTS = {"seed": 0, "num_features": 6, "num_hidden": 2, "sparsity": 0.8, "num_samples": 1_000, "init_scale": 0.01}
TRAIN_DEFAULTS = {"num_steps": 20_000, "num_checkpoints": 24, "first_checkpoint": 10, "learning_rate": 3e-3}


def loss_fn(params, batch):
    """Per-sample squared reconstruction error |x - ReLU(Wᵀ W x + b)|²."""
    x = batch["x"]
    recon = jax.nn.relu((x @ params["W"].T) @ params["W"] + params["b"])
    return jnp.sum((x - recon) ** 2, axis=-1)


def problem(seed: int = DEFAULTS["seed"], num_features: int = DEFAULTS["num_features"],
            num_hidden: int = DEFAULTS["num_hidden"], sparsity: float = DEFAULTS["sparsity"],
            num_samples: int = DEFAULTS["num_samples"], init_scale: float = DEFAULTS["init_scale"]) -> dict:
    """The sweep factory: {loss_fn, params (the initialization), data {"x": (n, features)}}."""
    rng = np.random.default_rng(seed)
    shape = (int(num_samples), int(num_features))
    x = rng.uniform(size=shape) * (rng.uniform(size=shape) >= sparsity)
    key = jax.random.key(seed)
    params = {"W": float(init_scale) * jax.random.normal(key, (int(num_hidden), int(num_features))),
              "b": jnp.zeros((int(num_features),))}
    return {"loss_fn": loss_fn, "params": params, "data": {"x": jnp.asarray(x, jnp.float32)}}


def problem_default() -> dict:
    """Zero-argument factory: ``problem()`` with the defaults."""
    return problem()


def represented_features(W: np.ndarray, threshold: float = 0.5) -> int:
    """How many features have a column of W longer than ``threshold`` (norm 1 = fully
    represented; a k-gon represents k features)."""
    return int(np.sum(np.linalg.norm(np.asarray(W), axis=0) > threshold))


@dataclasses.dataclass(frozen=True)
class TMSTraining:
    """``train``'s report per checkpoint step: training loss and the number of represented
    features (columns of W with norm > 0.5)."""

    checkpoint_dir: Path
    steps: list[int]
    loss: list[float]
    represented: list[int]
    train_s: float
    kwargs: dict


def train(out_dir, *, num_steps: int = TRAIN_DEFAULTS["num_steps"],
          num_checkpoints: int = TRAIN_DEFAULTS["num_checkpoints"],
          first_checkpoint: int = TRAIN_DEFAULTS["first_checkpoint"],
          learning_rate: float = TRAIN_DEFAULTS["learning_rate"], **kwargs) -> TMSTraining:
    """Full-batch Adam from ``problem(**kwargs)``'s initialization; orbax checkpoints at step 0
    and log-spaced steps into ``out_dir``."""
    import optax

    args = {**DEFAULTS, **kwargs}
    prob = problem(**args)

    def objective(params, t):
        return jnp.mean(loss_fn(params, prob["data"]))

    steps = _training.checkpoint_steps(num_steps, num_checkpoints, first_checkpoint)
    fit = _training.fit(objective, prob["params"], optax.adam(learning_rate), num_steps=num_steps, steps=steps)
    ckpt_dir = _training.save_checkpoints(out_dir, fit.checkpoints)
    return TMSTraining(
        checkpoint_dir=ckpt_dir, steps=steps, loss=[float(fit.loss[t]) for t in steps],
        represented=[represented_features(fit.checkpoints[t]["W"]) for t in steps], train_s=fit.train_s,
        kwargs=args,
    )


# ---------------------------------------------------------------------------------------
# The whole workflow

# Calibration on the last checkpoint, as in the other examples: with calibrate's default
# (first, middle, last) no cell passes, since at step 0 (a saddle near W = 0) every sound step
# size runs downhill (λ̂ = -28); it recommended ε = 2.2e-3, γ = 1, nβ = n/log n anyway.
SAMPLING = {"batch_size": 100, "num_chains": 4, "num_draws": 2_000, "num_burnin": 1_000,
            "calibration_chains": 4, "calibration_draws": 2_000, "calibration_burnin": 1_000,
            "calibrate_kwargs": {"which": "last"}}


def run(out_dir, *, small: bool = False, progress: bool = True) -> dict:
    """Train, calibrate on the last checkpoint, sweep
    λ̂ over all of them with the recommendation, detect stages. Returns a JSON-able summary
    (also ``out_dir/summary.json``). ``small``: fewer steps and checkpoints."""
    import json
    import time

    out = Path(out_dir)
    train_kw = dict(TRAIN_DEFAULTS, num_steps=5_000, num_checkpoints=14) if small else dict(TRAIN_DEFAULTS)
    t0 = time.perf_counter()
    info = train(out / "checkpoints", **train_kw)
    res = _training.workflow("slt_jax.examples.tms:problem_default", info.checkpoint_dir, out,
                             dict(SAMPLING), progress=progress)
    table = res["table"]
    summary = {
        "example": "tms", "small": small, "problem": DEFAULTS, "training": train_kw,
        "recommended": res["recommended"], "calibrated": res["calibrated"],
        "checkpoints": [{"step": s, "loss": lo, "represented": k, "llc": float(v), "llc_mcse": float(e)}
                        for s, lo, k, v, e in zip(info.steps, info.loss, info.represented, table["llc"],
                                                  table["llc_mcse"])],
        "boundaries": [float(b) for b in res["stages"].boundaries],
        "stages": res["stages"].table.to_dict(orient="records"),
        "final_llc": float(table["llc"].iloc[-1]),
        "timings": {"train_s": info.train_s, **res["timings"], "total_s": time.perf_counter() - t0},
    }
    atomic.write_text(out / "summary.json", json.dumps(summary, indent=1, default=_training.json_default))
    return summary
