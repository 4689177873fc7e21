"""The small noisy linear regression (y = x W + ε, 3 inputs, 2 outputs) that several tests and
the subprocess test scripts sample. Imported as `linear_problem` by the scripts (their folder
is on sys.path) and as `scripts.linear_problem` by the tests."""

import jax.numpy as jnp
import numpy as np


def linear_data(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3)).astype(np.float32)
    y = (x @ rng.normal(size=(3, 2)) + rng.normal(size=(n, 2))).astype(np.float32)
    return x, y


def linear_loss(params, batch):
    x, y = batch
    return 0.5 * jnp.sum((y - x @ params["W"]) ** 2, axis=-1)


def least_squares(x, y) -> dict:
    """w* = the least-squares fit, a minimum of the empirical loss."""
    return {"W": jnp.asarray(np.linalg.lstsq(x, y, rcond=None)[0])}
