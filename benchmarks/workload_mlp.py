"""Framework-free definition of the MLP LLC benchmark workload (numpy only).

Both sides of the slt_jax vs devinterp comparison import this module, so the weights, data
and hyperparameters are bit-identical.

Model: MLP 16 -> 48 -> 4, y = act(x @ W1 + b1) @ W2 + b2 (1,012 parameters).
Data: x ~ N(0, I_16); y = teacher(x) + NOISE_STD * N(0, I_4), n = 1,000.
The sampled point w* is the teacher itself (the true parameter of a realizable model),
so w* sits at (near) a minimum of the population loss, as the LLC requires.

Loss: MSE as torch.nn.functional.mse_loss(reduction="mean") computes it: the mean over
samples AND the 4 outputs, i.e. per-sample loss l_i = mean_k (f(x_i)_k - y_ik)^2 and
L_n = mean_i l_i. Both frameworks must use this convention (nβ multiplies this L).

Sampler: SGLD, w <- w - (EPS/2) [NBETA grad L_B + GAMMA (w - w*)] + sqrt(EPS) xi,
minibatches of BATCH drawn by reshuffling each epoch, NBETA = n / log n (passed explicitly).
"""

from __future__ import annotations

import math

import numpy as np

D_IN, D_HIDDEN, D_OUT = 16, 48, 4
N = 1000
BATCH = 100
GAMMA = 100.0
EPS = 1e-4
NBETA = N / math.log(N)  # ≈ 144.76
DRAWS = 2000
CHAIN_COUNTS = (4, 16)
NUM_BURNIN_STEPS = 0
NUM_STEPS_BW_DRAWS = 1
ACTIVATION = "tanh"  # "tanh" or "relu"
NOISE_STD = 0.1
SEED = 0
NUM_PARAMS = D_IN * D_HIDDEN + D_HIDDEN + D_HIDDEN * D_OUT + D_OUT  # 1012
PARAM_KEYS = ("W1", "b1", "W2", "b2")


def make_params(seed: int = SEED) -> dict[str, np.ndarray]:
    """Deterministic teacher weights (float32), scaled so pre-activations are O(1)."""
    rng = np.random.default_rng(seed)
    return {
        "W1": (rng.standard_normal((D_IN, D_HIDDEN)) / math.sqrt(D_IN)).astype(np.float32),
        "b1": (0.1 * rng.standard_normal(D_HIDDEN)).astype(np.float32),
        "W2": (rng.standard_normal((D_HIDDEN, D_OUT)) / math.sqrt(D_HIDDEN)).astype(np.float32),
        "b2": (0.1 * rng.standard_normal(D_OUT)).astype(np.float32),
    }


def act(h: np.ndarray, activation: str = ACTIVATION) -> np.ndarray:
    if activation == "tanh":
        return np.tanh(h)
    if activation == "relu":
        return np.maximum(h, 0)
    raise ValueError(f"unknown activation {activation!r}")


def forward(params: dict[str, np.ndarray], x: np.ndarray, activation: str = ACTIVATION) -> np.ndarray:
    return act(x @ params["W1"] + params["b1"], activation) @ params["W2"] + params["b2"]


def mse(params: dict[str, np.ndarray], x: np.ndarray, y: np.ndarray, activation: str = ACTIVATION) -> float:
    """Full-data loss L_n (mean over samples and outputs, as torch's F.mse_loss)."""
    r = forward(params, x.astype(np.float64), activation) - y
    return float(np.mean(r**2))


def make_data(params: dict[str, np.ndarray], seed: int = SEED + 1, activation: str = ACTIVATION):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((N, D_IN)).astype(np.float32)
    y = (forward(params, x, activation) + NOISE_STD * rng.standard_normal((N, D_OUT))).astype(np.float32)
    return x, y


def make_workload(seed: int = SEED, activation: str = ACTIVATION) -> dict:
    """{'params': {...}, 'x': (N,16), 'y': (N,4), 'activation': str, 'init_loss': L_n(w*)}."""
    params = make_params(seed)
    x, y = make_data(params, seed + 1, activation)
    return {"params": params, "x": x, "y": y, "activation": activation,
            "init_loss": mse(params, x, y, activation)}


def save_workload(path, workload: dict | None = None) -> None:
    w = workload if workload is not None else make_workload()
    np.savez(path, x=w["x"], y=w["y"], activation=np.array(w["activation"]), **w["params"])


def load_workload(path) -> dict:
    with np.load(path, allow_pickle=False) as f:
        params = {k: f[k] for k in PARAM_KEYS}
        x, y, activation = f["x"], f["y"], str(f["activation"])
    return {"params": params, "x": x, "y": y, "activation": activation,
            "init_loss": mse(params, x, y, activation)}


def describe() -> dict:
    """Workload constants for result metadata."""
    return {"model": f"MLP {D_IN}->{D_HIDDEN}->{D_OUT} ({ACTIVATION})", "num_params": NUM_PARAMS,
            "n": N, "batch": BATCH, "gamma": GAMMA, "eps": EPS, "nbeta": NBETA,
            "num_burnin_steps": NUM_BURNIN_STEPS, "num_steps_bw_draws": NUM_STEPS_BW_DRAWS,
            "loss": "mse (mean over samples and outputs)", "noise_std": NOISE_STD, "seed": SEED}


if __name__ == "__main__":
    w = make_workload()
    assert sum(v.size for v in w["params"].values()) == NUM_PARAMS
    print(describe(), "L_n(w*) =", w["init_loss"])
