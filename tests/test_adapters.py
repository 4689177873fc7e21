import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from slt_jax.adapters import (
    Adapted,
    complement,
    from_function,
    from_linen,
    from_nnx,
    head_masks,
    layer_masks,
    mask_from_paths,
    path_str,
    union,
)
from slt_jax.losses import (
    cross_entropy,
    get_loss,
    mean_squared_error,
    next_token_cross_entropy,
    squared_error,
)

RNG = np.random.default_rng(0)
X = RNG.normal(size=(7, 3)).astype(np.float32)
Y = RNG.normal(size=(7, 2)).astype(np.float32)


# ----------------------------------------------------------------------------- losses


def test_squared_error_and_mse_by_hand():
    p, y = RNG.normal(size=(5, 2, 3)), RNG.normal(size=(5, 2, 3))
    np.testing.assert_allclose(squared_error(p, y), 0.5 * ((p - y) ** 2).sum(axis=(1, 2)), rtol=1e-6)
    np.testing.assert_allclose(mean_squared_error(p, y), ((p - y) ** 2).mean(axis=(1, 2)), rtol=1e-6)
    assert squared_error(p[:, 0, 0], y[:, 0, 0]).shape == (5,)


def test_squared_error_rejects_broadcasting_shapes():
    with pytest.raises(ValueError, match=r"\(4, 1\).*\(4,\)"):
        squared_error(jnp.zeros((4, 1)), jnp.zeros(4))


def test_cross_entropy_by_hand():
    logits = RNG.normal(size=(6, 4)).astype(np.float32) * 50  # large: needs log-sum-exp
    labels = RNG.integers(0, 4, size=6)
    m = logits.max(-1, keepdims=True)
    logp = logits - m - np.log(np.exp(logits - m).sum(-1, keepdims=True))
    expected = -logp[np.arange(6), labels]
    out = cross_entropy(logits, labels)
    assert out.shape == (6,) and np.all(np.isfinite(out))
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)
    with pytest.raises(TypeError, match="integer"):
        cross_entropy(logits, labels.astype(np.float32))


def test_next_token_cross_entropy_shapes_and_values():
    tokens = np.array([[1, 2, 0], [3, 3, 1]])
    logits = RNG.normal(size=(2, 3, 4)).astype(np.float32)
    out = next_token_cross_entropy(logits, tokens)
    assert out.shape == (2, 2)
    logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    for b in range(2):
        for t in range(2):
            np.testing.assert_allclose(out[b, t], -logp[b, t, tokens[b, t + 1]], rtol=1e-5)


def test_get_loss():
    assert get_loss("squared_error") is squared_error
    assert get_loss("mse") is mean_squared_error
    assert get_loss("cross_entropy") is cross_entropy
    assert get_loss("next_token_cross_entropy") is next_token_cross_entropy
    f = lambda p, y: p  # noqa: E731
    assert get_loss(f) is f
    with pytest.raises(ValueError, match="'nll'.*squared_error"):
        get_loss("nll")


# ----------------------------------------------------------------------------- models


class NnxMLP(nnx.Module):
    def __init__(self, rngs, dropout=0.0):
        self.l1 = nnx.Linear(3, 5, rngs=rngs)
        self.drop = nnx.Dropout(dropout, rngs=rngs)
        self.l2 = nnx.Linear(5, 2, rngs=rngs)

    def __call__(self, x):
        return self.l2(self.drop(jax.nn.relu(self.l1(x))))


class LinenMLP(nn.Module):
    @nn.compact
    def __call__(self, x, train: bool = True):
        h = jax.nn.relu(nn.Dense(5)(x))
        return nn.Dense(2)(nn.Dropout(0.5, deterministic=not train)(h))


def mlp(p, x):
    h = jax.nn.relu(x @ p["l1"]["kernel"] + p["l1"]["bias"])
    return h @ p["l2"]["kernel"] + p["l2"]["bias"]


@pytest.fixture
def adapted_all():
    model = NnxMLP(nnx.Rngs(0))
    a_nnx = from_nnx(model)
    w = jax.tree.map(np.asarray, a_nnx.params)
    a_fn = from_function(mlp, w)
    variables = {"params": {"Dense_0": w["l1"], "Dense_1": w["l2"]}}
    a_ln = from_linen(LinenMLP(), variables, apply_kwargs={"train": False})
    return a_fn, a_nnx, a_ln


def test_adapters_agree(adapted_all):
    losses = [a.loss_fn(a.params, (X, Y)) for a in adapted_all]
    assert all(isinstance(a, Adapted) for a in adapted_all)
    assert losses[0].shape == (7,)
    expected = 0.5 * ((np.asarray(mlp(adapted_all[0].params, X)) - Y) ** 2).sum(-1)
    for loss in losses:
        np.testing.assert_allclose(loss, expected, rtol=1e-5, atol=1e-6)
    # dict batches give the same answer
    a = adapted_all[1]
    np.testing.assert_allclose(a.loss_fn(a.params, {"x": X, "y": Y}), expected, rtol=1e-5)


def test_grad_vmap_jit_scan_over_params(adapted_all):
    grads = []
    for a in adapted_all:
        mean_loss = lambda p, a=a: jnp.mean(a.loss_fn(p, (X, Y)))  # noqa: E731
        g = jax.jit(jax.grad(mean_loss))(a.params)
        assert jax.tree.structure(g) == jax.tree.structure(a.params)
        grads.append(sorted(np.asarray(x).ravel().sum() for x in jax.tree.leaves(g)))
        # several chains at once, and a few SGD steps inside scan
        chains = jax.tree.map(lambda w: jnp.stack([w, w + 0.1]), a.params)
        assert jax.jit(jax.vmap(mean_loss))(chains).shape == (2,)

        def step(p, _, f=mean_loss):
            return jax.tree.map(lambda w, d: w - 0.1 * d, p, jax.grad(f)(p)), f(p)

        _, ls = jax.jit(lambda p: jax.lax.scan(step, p, None, length=3))(a.params)
        assert ls[-1] < ls[0]
    np.testing.assert_allclose(grads[0], grads[1], rtol=1e-4)
    np.testing.assert_allclose(grads[0], grads[2], rtol=1e-4)


def test_nnx_params_are_plain_dict_and_user_model_untouched():
    model = NnxMLP(nnx.Rngs(0), dropout=0.5)
    a = from_nnx(model)
    assert type(a.params) is dict and set(a.params) == {"l1", "l2"}
    assert not model.drop.deterministic  # from_nnx must not switch the user's model to eval
    # later mutations of the user's model do not leak into the adapter
    before = a.loss_fn(a.params, (X, Y))
    model.l1.kernel[...] = model.l1.kernel[...] + 1.0
    np.testing.assert_array_equal(a.loss_fn(a.params, (X, Y)), before)


def test_nnx_subset_filter():
    model = NnxMLP(nnx.Rngs(0))
    full = from_nnx(model)
    sub = from_nnx(model, wrt=nnx.All(nnx.Param, nnx.PathContains("l1")))
    assert set(sub.params) == {"l1"}
    np.testing.assert_allclose(sub.loss_fn(sub.params, (X, Y)), full.loss_fn(full.params, (X, Y)), rtol=1e-6)
    g = jax.grad(lambda p: sub.loss_fn(p, (X, Y)).mean())(sub.params)
    g_full = jax.grad(lambda p: full.loss_fn(p, (X, Y)).mean())(full.params)
    np.testing.assert_allclose(g["l1"]["kernel"], g_full["l1"]["kernel"], rtol=1e-5)
    # moving l1 changes the loss; l2 stays frozen at its value
    moved = jax.tree.map(lambda w: w + 0.3, sub.params)
    expected = full.loss_fn({"l1": moved["l1"], "l2": full.params["l2"]}, (X, Y))
    np.testing.assert_allclose(sub.loss_fn(moved, (X, Y)), expected, rtol=1e-6)


def test_dropout_is_off_during_sampling():
    model = NnxMLP(nnx.Rngs(0), dropout=0.5)
    a = from_nnx(model)
    ref = from_nnx(NnxMLP(nnx.Rngs(0), dropout=0.0))
    l1 = a.loss_fn(a.params, (X, Y))
    np.testing.assert_array_equal(l1, a.loss_fn(a.params, (X, Y)))
    np.testing.assert_array_equal(l1, jax.jit(a.loss_fn)(a.params, (X, Y)))
    np.testing.assert_allclose(l1, ref.loss_fn(ref.params, (X, Y)), rtol=1e-6)


def test_batchnorm_uses_running_stats():
    class BN(nnx.Module):
        def __init__(self, rngs):
            self.bn = nnx.BatchNorm(3, rngs=rngs)

        def __call__(self, x):
            return self.bn(x)

    model = BN(nnx.Rngs(0))
    model.bn.mean[...] = jnp.array([1.0, 2.0, 3.0])
    model.bn.var[...] = jnp.array([4.0, 4.0, 4.0])
    a = from_nnx(model, targets=None, loss=lambda pred, x: jnp.sum(pred, -1))
    expected = ((X - np.array([1.0, 2.0, 3.0])) / np.sqrt(4.0 + model.bn.epsilon)).sum(-1)
    np.testing.assert_allclose(a.loss_fn(a.params, X), expected, rtol=1e-5)
    # per-example loss independent of the batch it is in (no batch statistics)
    np.testing.assert_allclose(a.loss_fn(a.params, X[:1]), expected[:1], rtol=1e-5)
    assert not model.bn.use_running_average


def test_linen_batchnorm_frozen_stats():
    class BN(nn.Module):
        @nn.compact
        def __call__(self, x, train: bool = True):
            return nn.BatchNorm(use_running_average=not train)(x)

    v = BN().init(jax.random.key(0), X, train=False)
    v = {"params": v["params"], "batch_stats": {"BatchNorm_0": {"mean": jnp.ones(3), "var": 4 * jnp.ones(3)}}}
    a = from_linen(BN(), v, lambda p, x: p.sum(-1), targets=None, apply_kwargs={"train": False})
    assert set(a.params) == {"BatchNorm_0"}
    np.testing.assert_allclose(a.loss_fn(a.params, X), ((X - 1) / np.sqrt(4 + 1e-5)).sum(-1), rtol=1e-5)


def test_next_token_adapter():
    V, T = 5, 4
    params = {"emb": jnp.asarray(RNG.normal(size=(V, V)), jnp.float32)}
    bigram = lambda p, tok: p["emb"][tok]  # noqa: E731  (B, T) -> (B, T, V)
    a = from_function(bigram, params, "next_token_cross_entropy")
    tokens = RNG.integers(0, V, size=(3, T))
    out = a.loss_fn(a.params, tokens)
    assert out.shape == (3, T - 1)
    np.testing.assert_allclose(out, next_token_cross_entropy(params["emb"][tokens], tokens), rtol=1e-6)
    np.testing.assert_allclose(a.loss_fn(a.params, {"x": tokens}), out, rtol=1e-6)


# ----------------------------------------------------------------------------- masks


def test_mask_from_paths():
    params = {
        "Dense_0": {"kernel": 1.0, "bias": 2.0},
        "Dense_1": {"kernel": 3.0, "bias": 4.0},
        "blocks": [5.0, 6.0],
    }
    assert mask_from_paths(params, "Dense_0") == {
        "Dense_0": {"kernel": True, "bias": True},
        "Dense_1": {"kernel": False, "bias": False},
        "blocks": [False, False],
    }
    m = mask_from_paths(params, ["kernel", "blocks/1"])
    assert m["Dense_0"]["kernel"] and m["Dense_1"]["kernel"] and not m["Dense_0"]["bias"]
    assert m["blocks"] == [False, True]
    m = mask_from_paths(params, lambda path, leaf: path.endswith("bias") and leaf > 3)
    assert jax.tree.leaves(m).count(True) == 1 and m["Dense_1"]["bias"] is True
    assert all(type(b) is bool for b in jax.tree.leaves(m))
    with pytest.raises(ValueError, match="selects no parameters.*Dense_0/bias"):
        mask_from_paths(params, "nope")


def test_path_str():
    (p, _), = jax.tree_util.tree_flatten_with_path({"a": [0, {"b": 1}]})[0][1:]
    assert path_str(p) == "a/1/b"


def test_linen_mask_samples_subset(adapted_all):
    _, _, a_ln = adapted_all
    variables = {"params": a_ln.params}
    sub = from_linen(LinenMLP(), variables, mask="Dense_1/kernel", apply_kwargs={"train": False})
    assert jax.tree.leaves(sub.params) == [a_ln.params["Dense_1"]["kernel"]]
    np.testing.assert_allclose(sub.loss_fn(sub.params, (X, Y)), a_ln.loss_fn(a_ln.params, (X, Y)), rtol=1e-6)
    g = jax.grad(lambda p: sub.loss_fn(p, (X, Y)).mean())(sub.params)
    assert g["Dense_0"]["kernel"] is None and g["Dense_1"]["kernel"].shape == (5, 2)
    # an explicit boolean mask works the same way
    mask = mask_from_paths(a_ln.params, "Dense_1/kernel")
    sub2 = from_linen(LinenMLP(), variables, mask=mask, apply_kwargs={"train": False})
    np.testing.assert_allclose(sub2.loss_fn(sub2.params, (X, Y)), sub.loss_fn(sub.params, (X, Y)))


# ----------------------------------------------------------------------------- errors


def test_error_messages():
    model = NnxMLP(nnx.Rngs(0))
    with pytest.raises(ValueError, match="loss='nll'"):
        from_nnx(model, loss="nll")
    with pytest.raises(TypeError, match="nnx.Module.*from_linen"):
        from_nnx(LinenMLP())
    with pytest.raises(ValueError, match="wrt=.*selects no variables.*l1/kernel"):
        from_nnx(model, wrt=nnx.All(nnx.Param, nnx.PathContains("l3")))
    with pytest.raises(TypeError, match="non-floating.*rngs"):
        from_nnx(NnxMLP(nnx.Rngs(0), dropout=0.5), wrt=...)
    with pytest.raises(ValueError, match="'params' collection.*batch_stats"):
        from_linen(LinenMLP(), {"batch_stats": {}})
    with pytest.raises(ValueError, match="mask selects no parameters"):
        from_function(mlp, {"w": jnp.ones(2)}, mask={"w": False})
    a = from_function(lambda p, x: x @ p, jnp.ones((3, 2)), loss=lambda p, y: jnp.mean((p - y) ** 2))
    with pytest.raises(ValueError, match=r"shape \(\).*per-sample"):
        a.loss_fn(a.params, (X, Y))
    with pytest.raises(ValueError, match="nothing to sample"):
        from_function(mlp, {})
    a = from_function(lambda p, x: x @ p, jnp.ones((3, 2)))
    with pytest.raises(KeyError, match="'y'"):
        a.loss_fn(a.params, {"x": X, "target": Y})


# ----------------------------------------------------------------------------- layer and head masks

def _dense(mask, params):
    """Mask leaves as boolean arrays of the params' shapes (bools broadcast)."""
    return jax.tree.map(lambda m, p: np.broadcast_to(np.asarray(m, bool), np.shape(p)), mask, params)


def _count(mask, params):
    return int(sum(np.sum(m) for m in jax.tree.leaves(_dense(mask, params))))


def test_layer_masks_nnx_and_linen(adapted_all):
    _, a_nnx, a_ln = adapted_all
    masks = layer_masks(a_nnx.params)
    assert list(masks) == ["l1", "l2"]
    assert masks["l1"] == {"l1": {"bias": True, "kernel": True}, "l2": {"bias": False, "kernel": False}}
    assert all(type(b) is bool for m in masks.values() for b in jax.tree.leaves(m))
    assert complement(masks["l1"]) == masks["l2"]
    assert all(jax.tree.leaves(union(*masks.values())))

    masks = layer_masks(a_ln.params)
    assert list(masks) == ["Dense_0", "Dense_1"]
    assert masks["Dense_1"] == mask_from_paths(a_ln.params, "Dense_1")
    assert list(layer_masks(a_ln.params, include="Dense_1")) == ["Dense_1"]
    assert list(layer_masks(a_ln.params, include=lambda name: name.endswith("0"))) == ["Dense_0"]
    fine = layer_masks(a_ln.params, depth=2, include="kernel")
    assert list(fine) == ["Dense_0/kernel", "Dense_1/kernel"]
    assert jax.tree.leaves(fine["Dense_0/kernel"]).count(True) == 1
    # a bool-per-leaf layer mask plugs straight into from_linen(mask=)
    sub = from_linen(LinenMLP(), {"params": a_ln.params}, mask=masks["Dense_1"], apply_kwargs={"train": False})
    assert sub.params["Dense_0"]["kernel"] is None and sub.params["Dense_1"]["kernel"].shape == (5, 2)
    with pytest.raises(ValueError, match="include='Dense_7' matches no layer.*Dense_0, Dense_1"):
        layer_masks(a_ln.params, include="Dense_7")
    with pytest.raises(ValueError, match="depth=0"):
        layer_masks(a_ln.params, depth=0)


class NnxAttn(nnx.Module):
    def __init__(self, rngs, num_heads=2):
        self.embed = nnx.Linear(3, 8, rngs=rngs)
        self.attn = nnx.MultiHeadAttention(
            num_heads=num_heads, in_features=8, qkv_features=8, out_features=8, decode=False, rngs=rngs
        )
        self.head = nnx.Linear(8, 2, rngs=rngs)

    def __call__(self, x):  # (B, T, 3) -> (B, 2)
        return self.head(self.attn(self.embed(x)).mean(-2))


class LinenAttn(nn.Module):
    @nn.compact
    def __call__(self, x):
        h = nn.MultiHeadDotProductAttention(num_heads=4, qkv_features=8, out_features=6)(nn.Dense(8)(x))
        return nn.Dense(2)(h.mean(-2))


XS = RNG.normal(size=(16, 5, 3)).astype(np.float32)
YS = RNG.normal(size=(16, 2)).astype(np.float32)
PER_HEAD = ["query/kernel", "query/bias", "key/kernel", "key/bias", "value/kernel", "value/bias", "out/kernel"]


def _check_heads(params, attn, num_heads, per_head_size, out_per_head):
    masks = head_masks(params, attn)
    assert list(masks) == [f"head_{h}" for h in range(num_heads)]
    for m in masks.values():
        assert jax.tree.structure(m) == jax.tree.structure(params)
        for leaf, p in zip(jax.tree.leaves(m), jax.tree.leaves(params)):
            assert type(leaf) is bool or (leaf.dtype == np.bool_ and leaf.shape == p.shape)
        assert _count(m, params) == per_head_size
    dense = [_dense(m, params) for m in masks.values()]
    for i in range(num_heads):  # disjoint
        for j in range(i + 1, num_heads):
            assert not any(np.any(a & b) for a, b in zip(jax.tree.leaves(dense[i]), jax.tree.leaves(dense[j])))
    # the union is exactly the per-head parameters of the attention module
    full = _dense(union(*masks.values()), params)
    flat = {path_str(p): m for p, m in jax.tree_util.tree_flatten_with_path(full)[0]}
    for path, m in flat.items():
        assert m.all() if path in [f"{attn}/{r}" for r in PER_HEAD] else not m.any(), path
    assert _count(union(*masks.values()), params) == num_heads * per_head_size
    # include_output=False drops the output projection only
    qkv = head_masks(params, attn, include_output=False)["head_0"]
    assert _count(qkv, params) == per_head_size - out_per_head
    flat = jax.tree_util.tree_flatten_with_path(qkv)[0]
    assert all(m is False for p, m in flat if path_str(p).startswith(f"{attn}/out"))
    assert _count(union(qkv, masks["head_0"]), params) == per_head_size
    return masks


def _only_heads(params, masks, keep):
    """params with every attention head except those in `keep` zeroed."""
    drop = union(*[m for k, m in masks.items() if k not in keep])
    return jax.tree.map(lambda m, p: jnp.where(m, 0.0, p), drop, params)


def test_head_masks_nnx_attention():
    model = NnxAttn(nnx.Rngs(0))
    a = from_nnx(model)
    # q/k/v: kernel (8, 2, 4) + bias (2, 4) per projection; out kernel (2, 4, 8)
    assert a.params["attn"]["query"]["kernel"].shape == (8, 2, 4)
    assert a.params["attn"]["out"]["kernel"].shape == (2, 4, 8)
    masks = _check_heads(a.params, "attn", 2, 3 * (8 * 4 + 4) + 4 * 8, 4 * 8)
    # the masks select real heads: a head's output is a function of its own slices only,
    # so attention output = sum over heads + out bias (checked on the attention module itself)
    attn = from_nnx(model.attn, targets=None, loss=lambda p, x: p.sum((-1, -2)))
    am = head_masks(attn.params, "")  # params of the attention module itself
    assert all(jax.tree.all(jax.tree.map(np.array_equal, am[k], masks[k]["attn"])) for k in am)
    f = lambda p: attn.apply_fn(p, XS @ np.ones((3, 8), np.float32))  # noqa: E731
    total = f(_only_heads(attn.params, am, ["head_0"])) + f(_only_heads(attn.params, am, ["head_1"]))
    np.testing.assert_allclose(total, f(attn.params) + attn.params["out"]["bias"], rtol=1e-4, atol=1e-5)


def test_head_masks_linen_attention():
    module = LinenAttn()
    variables = module.init(jax.random.key(0), XS)
    a = from_linen(module, variables)
    name = "MultiHeadDotProductAttention_0"
    # num_heads=4, qkv_features=8 -> head_dim 2; q/k/v kernel (8, 4, 2), bias (4, 2); out (4, 2, 6)
    assert a.params[name]["key"]["kernel"].shape == (8, 4, 2)
    assert a.params[name]["out"]["kernel"].shape == (4, 2, 6)
    masks = _check_heads(a.params, name, 4, 3 * (8 * 2 + 2) + 2 * 6, 2 * 6)
    mha = nn.MultiHeadDotProductAttention(num_heads=4, qkv_features=8, out_features=6)
    p = a.params[name]
    am = {k: m[name] for k, m in masks.items()}
    h = XS @ np.ones((3, 8), np.float32)
    f = lambda q: mha.apply({"params": q}, h)  # noqa: E731
    total = sum(f(_only_heads(p, am, [k])) for k in am)
    np.testing.assert_allclose(total, f(p) + 3 * p["out"]["bias"], rtol=1e-4, atol=1e-5)


def test_head_masks_fused_layout_and_errors():
    params = {
        "attn": {
            "query": {"kernel": jnp.zeros((5, 6)), "bias": jnp.zeros(6)},
            "key": {"kernel": jnp.zeros((5, 6))},
            "value": {"kernel": jnp.zeros((5, 6)), "bias": jnp.zeros(6)},
            "out": {"kernel": jnp.zeros((6, 5)), "bias": jnp.zeros(5)},
        },
        "mlp": {"kernel": jnp.zeros((5, 5))},
    }
    masks = head_masks(params, "attn", num_heads=3)
    assert list(masks) == ["head_0", "head_1", "head_2"]
    m1 = masks["head_1"]["attn"]
    np.testing.assert_array_equal(m1["query"]["kernel"][0], [False, False, True, True, False, False])
    np.testing.assert_array_equal(m1["out"]["kernel"][:, 0], [False, False, True, True, False, False])
    assert masks["head_1"]["mlp"]["kernel"] is False and m1["out"]["bias"] is False
    assert all(np.all(m) for m in jax.tree.leaves(union(*masks.values())["attn"]["query"]))
    with pytest.raises(ValueError, match="fused 2-D kernels.*pass num_heads="):
        head_masks(params, "attn")
    with pytest.raises(ValueError, match="num_heads=4 does not divide"):
        head_masks(params, "attn", num_heads=4)

    a = from_nnx(NnxAttn(nnx.Rngs(0)))
    with pytest.raises(ValueError, match="attention_path='blocks/0/attn' matches no module.*found.*: attn"):
        head_masks(a.params, "blocks/0/attn")
    with pytest.raises(ValueError, match="attention_path='embed' does not look like.*query/kernel"):
        head_masks(a.params, "embed")
    with pytest.raises(ValueError, match="num_heads=3 but.*2 heads.*omit num_heads"):
        head_masks(a.params, "attn", num_heads=3)
    with pytest.raises(ValueError, match="matches no module.*no query/kernel leaf"):
        head_masks(from_nnx(NnxMLP(nnx.Rngs(0))).params, "attn")


def test_complement_and_union_mixed_leaves():
    params = {"a": jnp.zeros((2, 3)), "b": jnp.zeros(4)}
    m = {"a": np.array([[True, False, False], [False, True, False]]), "b": False}
    c = complement(m)
    np.testing.assert_array_equal(c["a"], ~m["a"])
    assert c["b"] is True
    u = union(m, c)
    assert np.all(u["a"]) and u["b"] is True
    assert union(m, {"a": False, "b": False})["b"] is False
    np.testing.assert_array_equal(union(m, {"a": False, "b": False})["a"], m["a"])
    assert union(m, {"a": True, "b": False})["a"] is True
    assert _count(complement(c), params) == _count(m, params) == 2
    with pytest.raises(ValueError, match="same tree structure"):
        union(m, {"a": True})
    with pytest.raises(ValueError, match="different shapes"):
        union(m, {"a": np.ones(3, bool), "b": False})
    with pytest.raises(TypeError, match="boolean arrays.*float"):
        complement({"a": np.ones(2)})


def test_head_mask_llc_end_to_end():
    import slt_jax

    a = from_nnx(NnxAttn(nnx.Rngs(0)))
    mask = head_masks(a.params, "attn")["head_0"]
    result = slt_jax.estimate_llc(
        a.loss_fn, a.params, (XS, YS), mask=mask, step_size=1e-4, localization=100.0,
        num_chains=2, num_draws=20, batch_size=8, eval_every=None, progress=False,
    )
    # only head 0's coordinates are sampled: the engine counts exactly the mask's True entries
    assert result.attrs["num_params"] == _count(mask, a.params) == 3 * (8 * 4 + 4) + 4 * 8
    assert result.attrs["num_params_total"] == sum(np.size(x) for x in jax.tree.leaves(a.params))
    assert np.isfinite(result.llc_mean)
