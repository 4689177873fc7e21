"""Checkpoint batching: K checkpoints × C chains in one compiled program."""

import jax.numpy as jnp
import numpy as np
import pytest

import slt_jax
from scripts.linear_problem import linear_data
from slt_jax.llc import estimate_llc_checkpoints

N = 256


def _data():
    return linear_data(N)


def loss_fn(params, batch):
    x, y = batch
    return 0.5 * jnp.sum((y - jnp.tanh(x @ params["W1"]) @ params["W2"]) ** 2, axis=-1)


def _checkpoints(k=3):
    rng = np.random.default_rng(1)
    return [
        {"W1": jnp.asarray(rng.normal(size=(3, 4)) * s, jnp.float32), "W2": jnp.asarray(rng.normal(size=(4, 2)), jnp.float32)}
        for s in np.linspace(0.3, 1.0, k)
    ]


KW = dict(step_size=1e-4, localization=10.0, num_chains=4, num_draws=80, num_burnin=10, batch_size=32,
          seed=7, progress=False, eval_every=4)


def _kw(data):
    return {**KW, "eval_sets": {"probe": (data[0][:6], data[1][:6])}}


def test_batched_checkpoints_equal_separate_runs():
    """3 checkpoints × 4 chains in one program give each checkpoint the λ̂ of its own run
    (chain c of every checkpoint uses chain c's random stream); to float32 rounding, since
    XLA vectorizes 12 chains instead of 4."""
    data = _data()
    ckpts = _checkpoints(3)
    together = estimate_llc_checkpoints(loss_fn, ckpts, data, checkpoints_per_call=3, **_kw(data))
    assert [r.attrs["checkpoint"] for r in together] == [0, 1, 2]
    assert all(r.attrs["checkpoints_in_program"] == 3 for r in together)
    for k, ckpt in enumerate(ckpts):
        alone = slt_jax.estimate_llc(loss_fn, ckpt, data, **_kw(data))
        np.testing.assert_allclose(together[k].llc_per_chain, alone.llc_per_chain, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(together[k].init_loss, alone.init_loss, rtol=1e-6)
        np.testing.assert_allclose(
            together[k].per_sample_losses("probe"), alone.per_sample_losses("probe"), rtol=1e-4, atol=1e-5
        )
    # Different checkpoints really are sampled around different centres.
    assert len({round(r.init_loss, 6) for r in together}) == 3


def test_groups_and_stacked_input_and_planner():
    """Groups of 2 (the last padded), a stacked checkpoint pytree, and the memory planner."""
    data = _data()
    ckpts = _checkpoints(3)
    stacked = {k: jnp.stack([c[k] for c in ckpts]) for k in ckpts[0]}
    grouped = estimate_llc_checkpoints(loss_fn, stacked, data, checkpoints_per_call=2, **_kw(data))
    together = estimate_llc_checkpoints(loss_fn, ckpts, data, checkpoints_per_call=3, **_kw(data))
    assert [r.attrs["checkpoints_in_program"] for r in grouped] == [2, 2, 1]
    for a, b in zip(grouped, together):
        np.testing.assert_allclose(a.llc_per_chain, b.llc_per_chain, rtol=1e-4, atol=1e-4)
    tiny = estimate_llc_checkpoints(loss_fn, ckpts, data, checkpoints_per_call="auto", memory_budget_bytes=1, **_kw(data))
    assert all(r.attrs["checkpoints_in_program"] == 1 for r in tiny)
    roomy = estimate_llc_checkpoints(loss_fn, ckpts, data, checkpoints_per_call="auto", **_kw(data))
    assert all(r.attrs["checkpoints_in_program"] == 3 for r in roomy)


def test_checkpoint_errors():
    data = _data()
    ckpts = _checkpoints(2)
    bad = [ckpts[0], {"W1": ckpts[1]["W1"][:, :3], "W2": ckpts[1]["W2"]}]
    with pytest.raises(ValueError, match=r"checkpoints\[1\] leaf 0 has shape"):
        estimate_llc_checkpoints(loss_fn, bad, data, **_kw(data))
    with pytest.raises(ValueError, match="empty"):
        estimate_llc_checkpoints(loss_fn, [], data, **_kw(data))
    nan = [ckpts[0], {"W1": ckpts[1]["W1"].at[0, 0].set(jnp.nan), "W2": ckpts[1]["W2"]}]
    with pytest.raises(ValueError, match=r"checkpoints\[1\]\['W1'\].*non-finite"):
        estimate_llc_checkpoints(loss_fn, nan, data, **_kw(data))
