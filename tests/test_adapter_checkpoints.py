"""Checkpoints of adapted models: each checkpoint's frozen part comes from that checkpoint.

An adapted loss_fn holds the frozen part (what wrt= / mask= leave out, BatchNorm statistics,
other Linen collections) at the adapted model's values. Issue #9 §5: a list of checkpoints
combined with that loss_fn was evaluated with the adapted model's frozen weights (L_n(w*) of an
untrained frozen layer instead of the trained checkpoint's), silently. Adapted.at /
Adapted.checkpoints take the frozen part from each checkpoint; check_checkpoints refuses the
old combination at the engine's boundary.
"""

import warnings
from typing import Any

import flax.core
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from flax.training.train_state import TrainState

import slt_jax
from slt_jax.adapters import (
    Adapted,
    FrozenPartWarning,
    check_checkpoints,
    from_function,
    from_linen,
    from_nnx,
    head_masks,
    mask_from_paths,
)

RNG = np.random.default_rng(0)
X = RNG.normal(size=(64, 3)).astype(np.float32)
Y = np.tanh(X @ RNG.normal(size=(3, 2))).astype(np.float32)
DATA = (X, Y)
KW = {"step_size": 1e-4, "localization": 100.0, "num_chains": 2, "num_draws": 20, "batch_size": 16,
      "eval_every": None, "progress": False, "seed": 3}


def mean_loss(a, params=None):
    return float(jnp.mean(a.loss_fn(a.params if params is None else params, DATA)))


def half_sse(pred):
    return float(np.mean(0.5 * np.sum((np.asarray(pred) - Y) ** 2, -1)))


# ----------------------------------------------------------------------------- NNX


class Net(nnx.Module):
    def __init__(self, rngs, hidden=8):
        self.l1 = nnx.Linear(3, hidden, rngs=rngs)
        self.bn = nnx.BatchNorm(hidden, rngs=rngs)
        self.drop = nnx.Dropout(0.2, rngs=rngs)
        self.l2 = nnx.Linear(hidden, 2, rngs=rngs)

    def __call__(self, x):
        return self.l2(self.drop(jax.nn.relu(self.bn(self.l1(x)))))


WRT = nnx.All(nnx.Param, nnx.PathContains("l1"))  # sample l1; l2, bn (Params and stats) frozen


def direct_loss(model):
    """The checkpoint's own full-model loss, in eval mode, without the adapters."""
    return half_sse(nnx.view(model, deterministic=True, use_running_average=True, raise_if_not_found=False)(X))


@pytest.fixture(scope="module")
def ckpts():
    """Two checkpoints of one Net differing in every layer: untrained, and trained with Adam
    (after its BatchNorm statistics were changed, so the frozen stats differ too)."""
    ck0 = Net(nnx.Rngs(0))
    ck1 = nnx.clone(ck0)
    ck1.bn.mean[...] = jnp.full(8, 0.1)
    ck1.bn.var[...] = jnp.full(8, 2.0)
    full = from_nnx(ck1)  # every Param
    opt = optax.adam(3e-2)

    @jax.jit
    def step(p, s):
        g = jax.grad(lambda p: full.loss_fn(p, DATA).mean())(p)
        u, s = opt.update(g, s, p)
        return optax.apply_updates(p, u), s

    p, s = full.params, opt.init(full.params)
    for _ in range(300):
        p, s = step(p, s)
    state = nnx.state(ck1, nnx.Param)
    nnx.replace_by_pure_dict(state, p)
    nnx.update(ck1, state)
    assert direct_loss(ck0) > 0.5 and direct_loss(ck1) < 1e-2
    return ck0, ck1


def test_nnx_checkpoints_report_each_checkpoints_own_init_loss(ckpts):
    ck0, ck1 = ckpts
    a = from_nnx(ck0, wrt=WRT)
    b = a.checkpoints([ck0, ck1])
    assert b.loss_fn is a.checkpoints([ck1]).loss_fn  # one function: one program for every sweep
    results = slt_jax.estimate_llc_checkpoints(b.loss_fn, b.checkpoints, DATA, mask=b.mask, **KW)
    for r, ck in zip(results, ckpts):
        np.testing.assert_allclose(r.init_loss, direct_loss(ck), rtol=1e-5)
    assert results[1].init_loss < 1e-2  # the trained checkpoint's L_n(w*), not ck0's frozen layers'
    l1 = 3 * 8 + 8
    assert results[0].attrs["num_params"] == l1  # only l1 moves; bn and l2 stay at each checkpoint's
    assert results[0].attrs["num_params_total"] == l1 + 4 * 8 + 8 * 2 + 2
    # each checkpoint alone, via at(): the same chains (same seed), so the same λ̂ per chain
    for r, ck in zip(results, ckpts):
        c = a.at(ck)
        alone = slt_jax.estimate_llc(c.loss_fn, c.params, DATA, **KW)
        np.testing.assert_allclose(alone.init_loss, r.init_loss, rtol=1e-5)
        np.testing.assert_allclose(alone.llc_per_chain, r.llc_per_chain, rtol=1e-4, atol=1e-4)


def test_old_silent_combination_is_refused_before_compiling(ckpts, no_compilation):
    ck0, ck1 = ckpts
    a = from_nnx(ck0, wrt=WRT)
    sampled_parts = [from_nnx(ck, wrt=WRT).params for ck in ckpts]  # what issue #9 §5 did
    with pytest.raises(ValueError, match=r"frozen part.*checkpoints \[1\] differ.*adapted\.checkpoints"):
        slt_jax.estimate_llc_checkpoints(a.loss_fn, sampled_parts, DATA, **KW)
    with pytest.raises(ValueError, match=r"checkpoints\[0\] is an nnx\.Module.*adapted\.checkpoints"):
        slt_jax.estimate_llc_checkpoints(a.loss_fn, [ck0, ck1], DATA, **KW)
    with pytest.raises(ValueError, match=r"holding 6 leaves of the frozen part.*adapted\.checkpoints"):
        slt_jax.estimate_llc_checkpoints(a.loss_fn, [nnx.to_pure_dict(nnx.state(c)) for c in ckpts], DATA, **KW)


def test_single_foreign_params_warn_at_the_users_line(ckpts):
    a = from_nnx(ckpts[0], wrt=WRT)
    with pytest.warns(FrozenPartWarning, match=r"adapted\.at\(checkpoint\)") as record:
        slt_jax.estimate_llc(a.loss_fn, from_nnx(ckpts[1], wrt=WRT).params, DATA, **KW)
    assert [w.filename for w in record if w.category is FrozenPartWarning] == [__file__]


def test_check_checkpoints_nnx(ckpts):
    ck0, ck1 = ckpts
    a = from_nnx(ck0, wrt=WRT)
    sampled_parts = [from_nnx(ck, wrt=WRT).params for ck in ckpts]
    assert mean_loss(a, sampled_parts[1]) > 100 * direct_loss(ck1)  # what issue #9 §5 silently computed
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert check_checkpoints(lambda p, b: p, sampled_parts) is None  # not an adapter's loss_fn
        check_checkpoints(a.loss_fn, [a.params])  # the usual single-checkpoint run
        check_checkpoints(a.loss_fn, [a.params, jax.tree.map(np.array, a.params)])  # same values

    # every Param sampled, but the BatchNorm statistics are still a frozen part of each checkpoint
    every_param = from_nnx(ck0)
    with pytest.raises(ValueError, match=r"2 leaves: bn/mean, bn/var.*checkpoints \[1\] differ"):
        check_checkpoints(every_param.loss_fn, [from_nnx(ck).params for ck in ckpts])

    fix = r"b = adapted\.checkpoints\(checkpoints\).*mask=b\.mask.*adapted\.at\(checkpoint\)"
    with pytest.raises(ValueError, match=rf"6 leaves: bn/bias.*l2/kernel.*differ.*{fix}.*frozen='shared'"):
        check_checkpoints(a.loss_fn, sampled_parts)
    with pytest.raises(ValueError, match="differ"):
        check_checkpoints(jax.jit(a.loss_fn), sampled_parts)  # jit keeps the tag
    stacked = jax.tree.map(lambda *xs: jnp.stack(xs), *sampled_parts)
    with pytest.raises(ValueError, match=r"checkpoints \[1\] differ"):
        check_checkpoints(a.loss_fn, stacked)
    with pytest.raises(ValueError, match=r"checkpoints\[1\] is an nnx\.Module \(Net\)"):
        check_checkpoints(a.loss_fn, [a.params, ck1])
    with pytest.raises(ValueError, match=r"params is an nnx\.State holding 6 leaves of the frozen part"):
        check_checkpoints(a.loss_fn, [nnx.state(ck1)])
    with pytest.raises(ValueError, match=r"checkpoints\[1\] is a pytree holding 4 leaves of the frozen part \(bn/bias, bn/scale, l2/bias, l2/kernel\)"):
        check_checkpoints(a.loss_fn, {0: sampled_parts[0], 10: nnx.to_pure_dict(nnx.state(ck1, nnx.Param))})
    # one params that is not w*: warned, since a perturbed w* may be meant
    with pytest.warns(FrozenPartWarning, match=r"adapted\.at\(checkpoint\)"):
        check_checkpoints(a.loss_fn, [sampled_parts[1]])

    # the fixed form, and its own misuse
    b = a.checkpoints([ck0, ck1])
    check_checkpoints(b.loss_fn, b.checkpoints, b.mask)
    check_checkpoints(b.loss_fn, b.checkpoints)  # no mask argument: the mask is not checked
    with pytest.raises(ValueError, match=r"mask=b\.mask"):
        check_checkpoints(b.loss_fn, b.checkpoints, None)
    with pytest.raises(ValueError, match=r"adapted\.checkpoints\(checkpoints, mask=your_mask\)"):
        check_checkpoints(b.loss_fn, b.checkpoints, mask_from_paths(a.params, "kernel"))
    with pytest.raises(ValueError, match=r"checkpoints\[0\] is not a packed checkpoint"):
        check_checkpoints(b.loss_fn, [ck0, ck1], b.mask)
    # a frozen part declared common to every checkpoint
    s = a.checkpoints(sampled_parts, frozen="shared")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_checkpoints(s.loss_fn, s.checkpoints, s.mask)
    assert s.mask is None and s.checkpoints[1] is not sampled_parts[1]
    np.testing.assert_allclose(mean_loss(a, sampled_parts[1]), float(s.loss_fn(s.checkpoints[1], DATA).mean()))
    with pytest.raises(ValueError, match="nnx.Module"):
        check_checkpoints(s.loss_fn, [ck0, ck1])


def test_nnx_checkpoint_forms(ckpts, tmp_path):
    ck0, ck1 = ckpts
    a = from_nnx(ck0, wrt=WRT)
    np.testing.assert_allclose(mean_loss(a), direct_loss(ck0), rtol=1e-6)
    forms = {
        "module": ck1,
        "state": nnx.state(ck1),
        "pure dict": nnx.to_pure_dict(nnx.state(ck1)),
        "numpy dict": jax.tree.map(np.asarray, nnx.to_pure_dict(nnx.state(ck1, nnx.Not(nnx.RngState)))),
    }
    ocp = pytest.importorskip("orbax.checkpoint")
    with ocp.StandardCheckpointer() as saver:
        saver.save(tmp_path / "ck1", nnx.state(ck1))
    restored = ocp.StandardCheckpointer().restore(tmp_path / "ck1")  # no target: .../value leaves
    assert "value" in restored["l1"]["kernel"]
    forms["orbax restore"] = restored
    for name, form in forms.items():
        c = a.at(form)
        np.testing.assert_allclose(mean_loss(c), direct_loss(ck1), rtol=1e-5, err_msg=name)
        np.testing.assert_array_equal(c.params["l1"]["kernel"], ck1.l1.kernel[...])
        np.testing.assert_array_equal(c.frozen["bn"]["mean"], ck1.bn.mean[...])
        np.testing.assert_array_equal(c.frozen["l2"]["kernel"], ck1.l2.kernel[...])
        assert c.frozen["l1"]["kernel"] is None and c.frozen["drop"]["rngs"]["key"] is None
    # the adapted model itself is unchanged, and the labels of a {label: checkpoint} dict stay
    np.testing.assert_allclose(mean_loss(a), direct_loss(ck0), rtol=1e-6)
    b = a.checkpoints({0: ck0, 300: restored})
    assert list(b.checkpoints) == [0, 300]
    for label, ck in zip([0, 300], ckpts):
        np.testing.assert_allclose(float(b.loss_fn(b.checkpoints[label], DATA).mean()), direct_loss(ck), rtol=1e-5)
    # a mask over adapted.params goes in lifted; the frozen part stays held
    head = {"l1": {"kernel": np.eye(3, 8, dtype=bool), "bias": False}}
    b = a.checkpoints([ck0, ck1], mask=head)
    assert b.mask["sampled"] is head and not any(jax.tree.leaves(b.mask["frozen"]))
    assert a.checkpoints([ck0], mask="bias").mask["sampled"] == {"l1": {"bias": True, "kernel": False}}


def test_nnx_checkpoint_errors(ckpts):
    ck0, ck1 = ckpts
    a = from_nnx(ck0, wrt=WRT)
    with pytest.raises(ValueError, match=r"lacks 2 of the model's floating-point leaves: bn/mean, bn/var.*nnx\.state\(model\)"):
        a.at(nnx.state(ck1, nnx.Param))  # BatchNorm statistics are not Params
    with pytest.raises(ValueError, match=r"only the sampled part.*bn/bias.*l2/kernel.*frozen='shared'"):
        a.at(from_nnx(ck1, wrt=WRT).params)
    np.testing.assert_allclose(  # declared: the sampled part alone, the adapted model's frozen part
        mean_loss(a.at(from_nnx(ck1, wrt=WRT).params, frozen="shared")), mean_loss(a, from_nnx(ck1, wrt=WRT).params)
    )
    with pytest.raises(ValueError, match=r"has 7 leaves of other shapes.*bn/bias \(9,\) \(the model's \(8,\)\).*l1/kernel \(3, 9\)"):
        a.at(Net(nnx.Rngs(0), hidden=9))
    with pytest.raises(TypeError, match="is a Linear but the adapted model is a Net"):
        a.at(nnx.Linear(3, 2, rngs=nnx.Rngs(0)))
    with pytest.raises(ValueError, match=r"leaves the adapted model does not have: l3/kernel"):
        a.at({**nnx.to_pure_dict(nnx.state(ck1)), "l3": {"kernel": np.ones(2)}})
    with pytest.raises(TypeError, match=r"one checkpoint \(Net\).*adapted\.at\(checkpoint\)"):
        a.checkpoints(ck1)
    with pytest.raises(TypeError, match=r"one checkpoint \(dict\)"):
        a.checkpoints(nnx.to_pure_dict(nnx.state(ck1)))
    with pytest.raises(ValueError, match="empty"):
        a.checkpoints([])
    with pytest.raises(ValueError, match="frozen='both'"):
        a.checkpoints([ck1], frozen="both")
    with pytest.raises(TypeError, match="built by hand"):
        Adapted(a.loss_fn, a.params, a.apply_fn).at(ck1)
    # the adapted loss_fn itself refuses another structure, with the fix
    with pytest.raises(ValueError, match=r"structure of Adapted\.params.*adapted\.at\(checkpoint\)"):
        a.loss_fn(nnx.to_pure_dict(nnx.state(ck1, nnx.Param)), DATA)


# ----------------------------------------------------------------------------- Linen


class LinenNet(nn.Module):
    @nn.compact
    def __call__(self, x, train: bool = True):
        h = nn.BatchNorm(use_running_average=not train)(jax.nn.relu(nn.Dense(8)(x)))
        return nn.Dense(2)(h)


def linen_loss(v):
    return half_sse(LinenNet().apply(v, X, train=False))


@pytest.fixture(scope="module")
def linen_ckpts():
    v0 = flax.core.unfreeze(LinenNet().init(jax.random.key(0), X, train=False))
    v1 = jax.tree.map(lambda x: x, v0)
    v1["params"]["Dense_0"]["kernel"] = v0["params"]["Dense_0"]["kernel"] * 1.5
    v1["params"]["Dense_1"]["kernel"] = -v0["params"]["Dense_1"]["kernel"]
    v1["params"]["BatchNorm_0"]["scale"] = v0["params"]["BatchNorm_0"]["scale"] * 2
    v1["batch_stats"]["BatchNorm_0"]["mean"] = v0["batch_stats"]["BatchNorm_0"]["mean"] + 0.3
    return v0, v1


def test_linen_checkpoints_with_mask(linen_ckpts):
    v0, v1 = linen_ckpts
    a = from_linen(LinenNet(), v0, mask="Dense_0", apply_kwargs={"train": False})
    assert a.frozen["params"]["Dense_0"]["kernel"] is None and a.frozen["batch_stats"]["BatchNorm_0"]["var"] is not None
    b = a.checkpoints([v0, v1])
    results = slt_jax.estimate_llc_checkpoints(b.loss_fn, b.checkpoints, DATA, mask=b.mask, **KW)
    for r, v in zip(results, linen_ckpts):
        np.testing.assert_allclose(r.init_loss, linen_loss(v), rtol=1e-5)
    assert results[0].attrs["num_params"] == 3 * 8 + 8
    assert abs(linen_loss(v0) - linen_loss(v1)) > 0.1
    np.testing.assert_allclose(mean_loss(a.at(v1)), linen_loss(v1), rtol=1e-5)

    # the old combination: bare params dicts / variables dicts are whole checkpoints
    with pytest.raises(ValueError, match=r"of 6 leaves, more than the 2 of adapted\.params"):
        check_checkpoints(a.loss_fn, [v0["params"], v1["params"]])
    with pytest.raises(ValueError, match=r"holding \d+ leaves of the frozen part.*adapted\.checkpoints"):
        check_checkpoints(a.loss_fn, [v0, v1])
    with pytest.raises(ValueError, match=r"checkpoints \[1\] differ"):
        check_checkpoints(a.loss_fn, [a.params, a.at(v1).params])

    # TrainState: its params, and the collections it carries as attributes
    tx = optax.sgd(0.1)
    plain = TrainState.create(apply_fn=None, params=v1["params"], tx=tx)
    with pytest.raises(ValueError, match=r"lacks 2 .*batch_stats/BatchNorm_0/mean.*\['batch_stats', 'params'\]"):
        a.at(plain)

    class WithStats(TrainState):
        batch_stats: Any = None

    ts = WithStats.create(apply_fn=None, params=v1["params"], tx=tx, batch_stats=v1["batch_stats"])
    np.testing.assert_allclose(mean_loss(a.at(ts)), linen_loss(v1), rtol=1e-5)


def test_linen_without_other_collections_takes_bare_params():
    class Mlp(nn.Module):
        @nn.compact
        def __call__(self, x):
            return nn.Dense(2)(jax.nn.relu(nn.Dense(5)(x)))

    v0 = Mlp().init(jax.random.key(0), X)
    v1 = jax.tree.map(lambda x: x * 0.5, v0)
    a = from_linen(Mlp(), v0, mask="Dense_1")
    for form in (v1, v1["params"]):
        np.testing.assert_allclose(mean_loss(a.at(form)), half_sse(Mlp().apply(v1, X)), rtol=1e-5)
    full = from_linen(Mlp(), v0)  # nothing frozen: plain params, the adapted loss_fn, the user's mask
    b = full.checkpoints([v0, v1], mask="kernel")
    assert b.loss_fn is full.loss_fn and b.mask == mask_from_paths(full.params, "kernel")
    assert jax.tree.structure(b.checkpoints[1]) == jax.tree.structure(full.params)
    check_checkpoints(full.loss_fn, [v0["params"], v1["params"]])


# ----------------------------------------------------------------------------- from_function


def mlp(p, x):
    return jax.nn.relu(x @ p["l1"]["w"] + p["l1"]["b"]) @ p["l2"]["w"]


def test_function_checkpoints_with_mask():
    p0 = {"l1": {"w": jnp.asarray(RNG.normal(size=(3, 4)), jnp.float32), "b": jnp.zeros(4)},
          "l2": {"w": jnp.asarray(RNG.normal(size=(4, 2)), jnp.float32)}}
    p1 = jax.tree.map(lambda x: x * 0.7 + 0.1, p0)
    a = from_function(mlp, p0, mask="l1")
    assert a.params["l2"]["w"] is None and a.frozen["l2"]["w"] is p0["l2"]["w"]
    b = a.checkpoints([p0, p1])
    for packed, p in zip(b.checkpoints, (p0, p1)):
        np.testing.assert_allclose(float(b.loss_fn(packed, DATA).mean()), half_sse(mlp(p, X)), rtol=1e-5)
    np.testing.assert_allclose(mean_loss(a.at(p1)), half_sse(mlp(p1, X)), rtol=1e-5)
    with pytest.raises(ValueError, match=r"holding 1 leaf of the frozen part \(l2/w\).*\(1 leaf: l2/w\)"):
        check_checkpoints(a.loss_fn, [p0, p1])
    with pytest.raises(ValueError, match=r"differ.*frozen='shared'"):
        check_checkpoints(a.loss_fn, [a.params, a.at(p1).params])
    # element-wise masks over adapted.params (head_masks-like) are lifted
    m = {"l1": {"w": np.arange(12).reshape(3, 4) % 2 == 0, "b": False}, "l2": {"w": None}}
    b = a.checkpoints([p0, p1], mask=m)
    assert b.mask["sampled"] is m and b.mask["frozen"]["l2"]["w"] is False and b.mask["frozen"]["l1"]["w"] is None
    check_checkpoints(b.loss_fn, b.checkpoints, b.mask)
    with pytest.raises(ValueError, match=r"lacks 1 of the model's floating-point leaves: l1/b"):
        a.at({"l1": {"w": p1["l1"]["w"]}, "l2": p1["l2"]})
    with pytest.raises(ValueError, match=r"mask does not have the structure of adapted\.params"):
        a.checkpoints([p0], mask={"l1": True})


def test_unmasked_adapters_are_unchanged_for_checkpoints():
    """No frozen floating-point part: the plain engine form, and no check in the way."""
    p0 = {"w": jnp.ones((3, 2))}
    a = from_function(lambda p, x: x @ p["w"], p0)
    assert a.frozen is None
    b = a.checkpoints([p0, {"w": jnp.zeros((3, 2))}])
    assert b.loss_fn is a.loss_fn and b.mask is None and b.checkpoints[1]["w"].shape == (3, 2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_checkpoints(a.loss_fn, b.checkpoints)
        check_checkpoints(a.loss_fn, [{"w": jnp.zeros((3, 2))}])


def test_head_masks_on_a_frozen_model_go_through_checkpoints():
    class Attn(nnx.Module):
        def __init__(self, rngs):
            self.embed = nnx.Linear(3, 8, rngs=rngs)
            self.attn = nnx.MultiHeadAttention(num_heads=2, in_features=8, qkv_features=8, out_features=8,
                                               decode=False, rngs=rngs)
            self.head = nnx.Linear(8, 2, rngs=rngs)

        def __call__(self, x):
            return self.head(self.attn(self.embed(x)).mean(-2))

    model = Attn(nnx.Rngs(0))
    a = from_nnx(model, wrt=nnx.All(nnx.Param, nnx.PathContains("attn")))
    mask = head_masks(a.params, "attn")["head_1"]
    b = a.checkpoints([model, Attn(nnx.Rngs(1))], mask=mask)
    assert b.mask["sampled"] is mask
    assert jax.tree.structure(b.mask) == jax.tree.structure(b.checkpoints[0])
