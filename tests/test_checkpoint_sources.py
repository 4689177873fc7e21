"""Checkpoint sources (issue 10, item 1): orbax, msgpack, safetensors and npz read back as
(step, params), lazily and in step order, validated against like=."""

import types

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest
from flax import nnx
from scripts.linear_problem import least_squares, linear_data, linear_loss

import slt_jax
import slt_jax.checkpoints as ckio
from slt_jax import adapters

FORMATS = ["npz", "msgpack", "safetensors", "orbax"]
STEPS = [0, 7, 120]


def _tree(scale=1.0):
    return {
        "dense": {"kernel": np.arange(6, dtype=np.float32).reshape(2, 3) * scale, "bias": np.full(3, scale, np.float16)},
        "count": np.array(int(scale), np.int32),  # 0-d
        "half": (np.ones(4) * scale).astype(ml_dtypes.bfloat16),
        "file": np.zeros((1, 2), np.float64),  # a key np.savez(**kw) would refuse
    }


def _save_all(root, fmt, steps=STEPS, tree=_tree):
    # orbax's CheckpointManager saves increasing steps only; files in any order
    order = steps if fmt == "orbax" else list(reversed(steps))
    for s in order:
        ckio.save(root, s, tree(s + 1.0), format=fmt)


def _assert_same(a, b):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        assert np.shape(x) == np.shape(y) and np.asarray(x).dtype == np.asarray(y).dtype
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


@pytest.mark.parametrize("fmt", FORMATS)
def test_round_trip(fmt, tmp_path):
    root = tmp_path / fmt
    _save_all(root, fmt)
    for like in (None, _tree()):
        gen = ckio.open(root, like=like)
        assert isinstance(gen, types.GeneratorType)
        got = list(gen)
        assert [s for s, _ in got] == STEPS
        for s, params in got:
            _assert_same(params, _tree(s + 1.0))
    if fmt != "orbax":  # a glob and a single file, too
        ext = {"npz": "npz", "msgpack": "msgpack", "safetensors": "safetensors"}[fmt]
        assert [s for s, _ in ckio.open(root / f"*.{ext}")] == STEPS
        (s, params), = ckio.open(root / f"ckpt_{7:08d}.{ext}")
        assert s == 7
        _assert_same(params, _tree(8.0))


def test_lazy(tmp_path, monkeypatch):
    """Nothing is read until the generator is advanced, then one checkpoint per step."""
    _save_all(tmp_path, "npz")
    reads = []
    real = ckio._READERS["npz"]
    monkeypatch.setitem(ckio._READERS, "npz", lambda p: reads.append(p.name) or real(p))
    gen = ckio.open(tmp_path, like=_tree())
    assert reads == []
    assert next(gen)[0] == 0 and len(reads) == 1
    assert next(gen)[0] == 7 and len(reads) == 2


def test_glob_with_mixed_steps_is_sorted(tmp_path):
    for name, s in [("run_b_step900.npz", 900), ("step10.npz", 10), ("a2_ckpt_00050.npz", 50), ("x_3.npz", 3)]:
        ckio.save(tmp_path / name, s, {"w": np.full(2, s, np.float32)})
    got = list(ckio.open(str(tmp_path / "*.npz")))
    assert [s for s, _ in got] == [3, 10, 50, 900]
    assert all(float(p["w"][0]) == s for s, p in got)
    ckio.save(tmp_path / "other_10.npz", 10, {"w": np.zeros(2, np.float32)})
    with pytest.raises(ValueError, match=r"several files for step\(s\) \[10\]"):
        ckio.open(tmp_path)
    with pytest.raises(ValueError, match="the step in the file name is 4"):
        ckio.save(tmp_path / "c_4.npz", 5, {"w": np.zeros(1)})


@pytest.mark.parametrize("fmt", FORMATS)
def test_mismatch_names_the_leaf(fmt, tmp_path):
    good = _tree()
    ckio.save(tmp_path, 1, good, format=fmt)
    bad = _tree(2.0)
    bad["dense"]["kernel"] = bad["dense"]["kernel"][:, :2]
    ckio.save(tmp_path, 2, bad, format=fmt)
    gen = ckio.open(tmp_path, like=good)
    assert next(gen)[0] == 1  # the good one is read, the bad one refused when reached
    with pytest.raises(ValueError, match=r"leaf dense/kernel has shape \(2, 2\), dtype float32; expected shape \(2, 3\)") as e:
        next(gen)
    assert ("00000002" if fmt != "orbax" else "orbax step 2") in str(e.value)
    # a dtype mismatch, a missing leaf and an extra leaf
    like = _tree()
    like["dense"]["bias"] = like["dense"]["bias"].astype(np.float32)
    with pytest.raises(ValueError, match=r"leaf dense/bias has shape \(3,\), dtype float16; expected shape \(3,\), dtype float32"):
        list(ckio.open(tmp_path, like=like))
    with pytest.raises(ValueError, match="has no leaf extra"):
        list(ckio.open(tmp_path, like={**_tree(), "extra": np.zeros(1)}))
    small = _tree()
    del small["file"]
    with pytest.raises(ValueError, match="leaves that like does not: file"):
        list(ckio.open(tmp_path, like=small))


def test_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        ckio.open(tmp_path / "nothing_*.npz")
    with pytest.raises(FileNotFoundError):
        ckio.open(tmp_path)
    (tmp_path / "ckpt_1.pkl").write_bytes(b"")
    with pytest.raises(ValueError, match="unknown checkpoint format"):
        ckio.open(tmp_path / "*.pkl")
    with pytest.raises(ValueError, match="no step number"):
        ckio.step_of("final.npz")
    ckio.save(tmp_path / "o", 3, {"w": np.zeros(1)}, format="orbax")
    with pytest.raises(ValueError, match="increasing steps only"):
        ckio.save(tmp_path / "o", 2, {"w": np.zeros(1)}, format="orbax")


class _Net(nnx.Module):
    def __init__(self, seed):
        rngs = nnx.Rngs(seed)
        self.l1 = nnx.Linear(3, 8, rngs=rngs)
        self.bn = nnx.BatchNorm(8, rngs=rngs)
        self.drop = nnx.Dropout(0.1, rngs=rngs)
        self.l2 = nnx.Linear(8, 2, rngs=rngs)

    def __call__(self, x):
        return self.l2(self.drop(nnx.relu(self.bn(self.l1(x)))))


def _trained(seed):
    m = _Net(seed)
    m.bn.mean[...] = jnp.full(8, 0.1 * seed)  # a frozen part that differs between checkpoints
    return m


@pytest.mark.parametrize("fmt", FORMATS)
def test_nnx_restores_into_the_adapter(fmt, tmp_path):
    """Pure dicts of whole NNX states (typed RNG keys and the BatchNorm statistics included)
    restore into what adapted.at / adapted.checkpoints take, frozen parts from each file."""
    models = {10: _trained(1), 20: _trained(2)}
    for s, m in models.items():
        ckio.save(tmp_path, s, nnx.to_pure_dict(nnx.state(m)), format=fmt)
    a = adapters.from_nnx(_trained(0), wrt=nnx.All(nnx.Param, nnx.PathContains("l1")))
    like = nnx.to_pure_dict(nnx.state(_trained(0)))
    x = np.random.default_rng(0).normal(size=(16, 3)).astype(np.float32)
    y = np.zeros((16, 2), np.float32)
    ckpts = dict(ckio.open(tmp_path, like=like))
    assert list(ckpts) == [10, 20]
    assert jax.dtypes.issubdtype(ckpts[10]["drop"]["rngs"]["key"].dtype, jax.dtypes.prng_key)
    for s, m in models.items():
        c = a.at(ckpts[s])
        np.testing.assert_array_equal(c.frozen["bn"]["mean"], m.bn.mean[...])
        np.testing.assert_array_equal(c.params["l1"]["kernel"], m.l1.kernel[...])
        m.eval()
        want = np.mean(0.5 * np.sum((y - np.asarray(m(x))) ** 2, axis=-1))
        np.testing.assert_allclose(float(c.loss_fn(c.params, (x, y)).mean()), want, rtol=1e-5)
    b = a.checkpoints(ckpts)
    assert list(b.checkpoints) == [10, 20]
    # an nnx.State as like gives an nnx.State back
    (s, st), *_ = ckio.open(tmp_path, like=nnx.state(_trained(0)))
    assert isinstance(st, nnx.State) and s == 10
    np.testing.assert_array_equal(st["bn"]["mean"][...], models[10].bn.mean[...])


def test_orbax_nnx_state_saved_directly(tmp_path):
    """An orbax directory of nnx.State (keys ending in /value) matches a pure-dict like."""
    ocp = pytest.importorskip("orbax.checkpoint")
    models = {5: _trained(1), 6: _trained(2)}
    with ocp.CheckpointManager(tmp_path) as mngr:
        for s, m in models.items():
            mngr.save(s, args=ocp.args.StandardSave(nnx.state(m, nnx.Param)))
        mngr.wait_until_finished()
    like = nnx.to_pure_dict(nnx.state(_trained(0), nnx.Param))
    got = dict(ckio.open(tmp_path, like=like))
    assert list(got) == [5, 6]
    for s, m in models.items():
        _assert_same(got[s], jax.tree.map(np.asarray, nnx.to_pure_dict(nnx.state(m, nnx.Param))))
    # like's jax.Array leaves are the abstract target: restored onto their sharding
    jlike = jax.tree.map(jnp.asarray, like)
    (_, p), *_ = ckio.open(tmp_path, like=jlike)
    assert isinstance(p["l1"]["kernel"], jax.Array)


def test_end_to_end_llc_from_checkpoints(tmp_path):
    """dict(open(...)) gives estimate_llc_checkpoints the same λ̂ per chain as the originals."""
    x, y = linear_data(128)
    w = least_squares(x, y)["W"]
    rng = np.random.default_rng(3)
    original = {s: {"W": np.asarray(w + 0.05 * rng.normal(size=w.shape), np.float32)} for s in (300, 20, 100)}
    for s, p in original.items():
        ckio.save(tmp_path / f"ckpt_{s:05d}.safetensors", s, p)
    loaded = dict(ckio.open(tmp_path / "*.safetensors", like={"W": w}))
    assert list(loaded) == [20, 100, 300]
    kw = {"step_size": 1e-4, "localization": 10.0, "num_chains": 2, "num_draws": 40, "num_burnin": 5,
          "batch_size": 32, "seed": 7, "progress": False}
    ordered = {s: original[s] for s in sorted(original)}
    a = slt_jax.estimate_llc_checkpoints(linear_loss, loaded, (x, y), **kw)
    b = slt_jax.estimate_llc_checkpoints(linear_loss, ordered, (x, y), **kw)
    assert len(a) == 3
    for ra, rb in zip(a, b):
        np.testing.assert_array_equal(ra.llc_per_chain, rb.llc_per_chain)
        assert np.all(np.isfinite(ra.llc_per_chain))


def test_orbax_save_and_open_take_a_relative_path(tmp_path, monkeypatch):
    """orbax itself refuses relative paths; slt_jax's save/open resolve them."""
    pytest.importorskip("orbax.checkpoint")
    monkeypatch.chdir(tmp_path)
    params = {"W": np.arange(6, dtype=np.float32).reshape(2, 3)}
    ckio.save("run/ckpts", 7, params, format="orbax")
    ((step, back),) = list(ckio.open("run/ckpts", like=params))
    assert step == 7
    np.testing.assert_array_equal(back["W"], params["W"])
