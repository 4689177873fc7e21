"""The sweep benchmark's factory: the MLP workload (workload_mlp.py) as a sweep problem."""

import sys
from pathlib import Path

import jax.numpy as jnp

sys.path.insert(0, str(Path(__file__).resolve().parent))
import workload_mlp as W  # noqa: E402


def make():
    w = W.make_workload()

    def loss(params, batch):
        x, y = batch
        h = jnp.tanh(x @ params["W1"] + params["b1"]) @ params["W2"] + params["b2"]
        return jnp.mean((h - y) ** 2, axis=-1)

    return {"loss_fn": loss, "params": {k: jnp.asarray(v) for k, v in w["params"].items()}, "data": (w["x"], w["y"])}
