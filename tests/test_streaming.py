"""Streaming data from host memory or disk gives the in-memory λ̂ for the same seed."""

import numpy as np
import pytest

import slt_jax
from scripts.linear_problem import least_squares, linear_data, linear_loss
from slt_jax.llc import estimate_llc_checkpoints
from slt_jax.streaming import StreamingData

N = 300


def _data():
    return linear_data(N)


loss_fn = linear_loss
PARAMS = least_squares(*_data())
# Several segments (segment_steps=24), thinning, a burn-in that is not a multiple of thin.
KW = dict(step_size=1e-4, localization=1.0, num_chains=3, num_draws=50, num_burnin=7, thin=2,
          batch_size=16, seed=4, segment_steps=24, progress=False)


@pytest.mark.parametrize("sampling", ["with_replacement", "without_replacement"])
def test_streaming_from_memory_equals_in_memory(sampling):
    data = _data()
    probe = {"probe": (data[0][:4], data[1][:4])}
    mem = slt_jax.estimate_llc(loss_fn, PARAMS, data, batch_sampling=sampling, eval_sets=probe, eval_every=5, **KW)
    st = slt_jax.estimate_llc(loss_fn, PARAMS, StreamingData(data), batch_sampling=sampling, eval_sets=probe,
                              eval_every=5, **KW)
    np.testing.assert_array_equal(st.loss_trace, mem.loss_trace)
    # Same minibatches, same draws; L_n(w*) is summed in host chunks, so λ̂ agrees to rounding.
    np.testing.assert_allclose(st.llc_per_chain, mem.llc_per_chain, rtol=1e-5)
    np.testing.assert_array_equal(st.per_sample_losses("probe"), mem.per_sample_losses("probe"))
    assert st.init_loss == pytest.approx(mem.init_loss, rel=1e-6)
    assert st.attrs["streaming"] and not mem.attrs["streaming"]
    assert np.all(np.isnan(st.dataset["eval_loss"].values))  # no full data on the device


def test_streaming_from_disk_and_checkpoints(tmp_path):
    data = _data()
    np.save(tmp_path / "x.npy", data[0])
    np.save(tmp_path / "y.npy", data[1])
    disk = StreamingData((np.load(tmp_path / "x.npy", mmap_mode="r"), np.load(tmp_path / "y.npy", mmap_mode="r")))
    mem = slt_jax.estimate_llc(loss_fn, PARAMS, data, **KW)
    st = slt_jax.estimate_llc(loss_fn, PARAMS, disk, **KW)
    np.testing.assert_array_equal(st.loss_trace, mem.loss_trace)
    ckpts = [PARAMS, {"W": PARAMS["W"] * 0.8}]
    a = estimate_llc_checkpoints(loss_fn, ckpts, data, checkpoints_per_call=2, **KW)
    b = estimate_llc_checkpoints(loss_fn, ckpts, disk, checkpoints_per_call=2, **KW)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x.loss_trace, y.loss_trace)


def test_streaming_data_validation():
    with pytest.raises(ValueError, match="disagree"):
        StreamingData((np.zeros((5, 2)), np.zeros((4, 2))))
    with pytest.raises(ValueError, match="at least one"):
        StreamingData(())
