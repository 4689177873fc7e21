"""slt_jax.cpu_dots: weight-gradient matmuls re-laid out for XLA CPU's fast dot path.

The rewrite must not change what is computed (every dimension-number pattern, swapped or
not, nested in jit, under vmap), must leave large products and already-canonical dots
alone, and must actually remove the slow standalone `dot` instructions from the optimized
CPU program of a chain-vmapped gradient (the reason it exists).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from slt_jax import cpu_dots

# (lhs shape, rhs shape, ((lhs contract, rhs contract), (lhs batch, rhs batch)))
DOT_CASES = [
    ((5, 3), (5, 4), (((0,), (0,)), ((), ()))),  # xᵀy: the weight-gradient pattern, lhs larger
    ((5, 7), (5, 2), (((0,), (0,)), ((), ()))),  # rhs smaller: operands swap
    ((3, 5), (5, 4), (((1,), (0,)), ((), ()))),  # already canonical
    ((5, 3), (4, 5), (((0,), (1,)), ((), ()))),
    ((2, 5, 3), (2, 5, 4), (((1,), (1,)), ((0,), (0,)))),  # batched, as vmap produces
    ((5, 2, 3), (2, 4, 5), (((0,), (2,)), ((1,), (0,)))),  # batch axis not leading
    ((5, 3, 6, 2), (6, 5, 4), (((0, 2), (1, 0)), ((), ()))),  # two contracting axes
    ((7, 5, 3), (5, 70), (((1,), (0,)), ((), ()))),
]


def _canonical(a, b, dn):
    return cpu_dots._canonical_dot(
        a, b, dimension_numbers=dn, precision=None, preferred_element_type=jnp.float32, out_sharding=None
    )


@pytest.mark.parametrize("lhs_shape, rhs_shape, dn", DOT_CASES)
def test_rewritten_dot_computes_the_same_product(lhs_shape, rhs_shape, dn):
    rng = np.random.default_rng(0)
    a = jnp.asarray(rng.standard_normal(lhs_shape), jnp.float32)
    b = jnp.asarray(rng.standard_normal(rhs_shape), jnp.float32)
    want = np.asarray(jax.lax.dot_general(a, b, dn, precision=jax.lax.Precision.HIGHEST))
    got = np.asarray(jax.jit(lambda a, b: _canonical(a, b, dn))(a, b))
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_only_small_dots_with_a_transposed_left_operand_are_rewritten():
    grad_pattern = (((0,), (0,)), ((), ()))
    assert cpu_dots.should_rewrite(grad_pattern, (100, 48), (100, 4))
    assert not cpu_dots.should_rewrite((((1,), (0,)), ((), ())), (100, 48), (48, 4))  # canonical
    # 500·160·160 = 12.8M multiply-adds: Eigen's own kernels are as fast or faster there.
    assert not cpu_dots.should_rewrite(grad_pattern, (500, 160), (500, 160))
    assert cpu_dots._product_size(grad_pattern, (500, 160), (500, 160)) == 500 * 160 * 160


def _mlp_loss(p, x, y):
    h = jnp.tanh(x @ p["W1"] + p["b1"])
    out = jnp.einsum("bh,ho->bo", h, p["W2"])  # einsum is itself jitted: a nested call
    return jnp.mean((out - y) ** 2)


def _mlp_problem(chains=8):
    k = jax.random.split(jax.random.key(0), 5)
    p = {"W1": jax.random.normal(k[0], (16, 48)), "b1": jnp.zeros(48), "W2": jax.random.normal(k[1], (48, 4))}
    x = jax.random.normal(k[2], (chains, 100, 16))
    y = jax.random.normal(k[3], (chains, 100, 4))
    ps = jax.tree.map(lambda w: w + 0.1 * jax.random.normal(k[4], (chains,) + w.shape), p)
    return ps, x, y


def test_vmapped_gradient_is_unchanged():
    ps, x, y = _mlp_problem()
    plain = jax.jit(jax.vmap(jax.value_and_grad(_mlp_loss)))(ps, x, y)
    rewritten = jax.jit(jax.vmap(cpu_dots.canonical_dots(jax.value_and_grad(_mlp_loss))))(ps, x, y)
    for a, b in zip(jax.tree.leaves(plain), jax.tree.leaves(rewritten)):
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=2e-6, atol=1e-6)


def test_rewritten_program_uses_no_standalone_cpu_dot():
    """The point of the rewrite: on jax 0.10's CPU backend every product of the chain-vmapped
    MLP gradient goes to the YNNPACK fusion path, where without it the two weight
    gradients are generic `dot` instructions."""
    # An XLA CPU property: compile on the CPU device whatever the default backend is.
    ps, x, y = jax.device_put(_mlp_problem(), jax.devices("cpu")[0])

    def hlo(fn):
        return jax.jit(jax.vmap(fn)).lower(ps, x, y).compile().as_text()

    def standalone_dots(text):
        return sum(1 for line in text.splitlines() if " dot(" in line and "fused_computation" not in line
                   and not line.lstrip().startswith("ROOT"))

    assert standalone_dots(hlo(jax.value_and_grad(_mlp_loss))) == 2
    assert standalone_dots(hlo(cpu_dots.canonical_dots(jax.value_and_grad(_mlp_loss)))) == 0


def test_enabled_on_cpu_only_and_opt_out(monkeypatch):
    monkeypatch.delenv(cpu_dots.ENV, raising=False)
    assert cpu_dots.enabled("cpu")
    assert not cpu_dots.enabled("gpu")
    monkeypatch.setenv(cpu_dots.ENV, "xla")
    assert not cpu_dots.enabled("cpu")


def test_function_without_dots_to_rewrite_is_called_as_is():
    calls = []

    def f(a, b):
        calls.append(1)
        return a @ b

    out = cpu_dots.canonical_dots(f)(jnp.ones((3, 4)), jnp.ones((4, 2)))
    np.testing.assert_array_equal(np.asarray(out), 4 * np.ones((3, 2)))
    assert len(calls) == 2  # traced once to inspect, then called


def test_estimate_llc_with_and_without_the_rewrite_agree(monkeypatch):
    """Same chains either way: the rewrite only changes how XLA lays out the products (the
    sums may round differently in the last bits)."""
    import slt_jax

    rng = np.random.default_rng(1)
    x = rng.standard_normal((200, 6)).astype(np.float32)
    y = rng.standard_normal((200, 3)).astype(np.float32)
    params = {"W1": 0.4 * rng.standard_normal((6, 10)).astype(np.float32), "b1": np.zeros(10, np.float32),
              "W2": 0.3 * rng.standard_normal((10, 3)).astype(np.float32)}

    def loss(p, batch):
        xb, yb = batch
        return jnp.mean((jnp.tanh(xb @ p["W1"] + p["b1"]) @ p["W2"] - yb) ** 2, axis=-1)

    data = (x, y)
    kw = dict(batch_size=50, num_chains=4, num_draws=40, seed=3, step_size=1e-4, localization=100.0,
              nbeta=100.0, eval_every=10, progress=False)
    monkeypatch.setenv(cpu_dots.ENV, "xla")
    plain = slt_jax.estimate_llc(loss, params, data, **kw)
    monkeypatch.delenv(cpu_dots.ENV)
    rewritten = slt_jax.estimate_llc(loss, params, data, **kw)
    np.testing.assert_allclose(rewritten.llc_per_chain, plain.llc_per_chain, rtol=1e-4)
    assert rewritten.attrs["cpu_dot_layout"] and not plain.attrs["cpu_dot_layout"]
    np.testing.assert_allclose(rewritten.dataset["loss"].values, plain.dataset["loss"].values, rtol=1e-4)


def test_flat_state_leaves_round_trip():
    from slt_jax.chains import batched_shaped, flat, flat_posterior, shaped
    from slt_jax.posterior import Posterior

    center = [jnp.arange(12.0).reshape(3, 4), jnp.arange(2.0)]
    mask = [jnp.arange(12).reshape(3, 4) % 2 == 0, None]
    flat_center = flat(center)
    assert [x.shape for x in flat_center] == [(12,), (2,)]
    np.testing.assert_array_equal(np.asarray(shaped(flat_center, center)[0]), np.asarray(center[0]))
    chains = [jnp.stack([x, 2 * x]) for x in flat_center]
    back = batched_shaped(chains, center, per_chain_center=False)
    np.testing.assert_array_equal(np.asarray(back[0][1]), 2 * np.asarray(center[0]))
    post = flat_posterior(Posterior(jnp.float32(1), jnp.float32(1), center, mask))
    assert post.element_mask[1] is None
    # the mask stays aligned with the coordinates it masks
    np.testing.assert_array_equal(np.asarray(post.element_mask[0]), np.asarray(mask[0]).ravel())
    np.testing.assert_array_equal(np.asarray(post.center[0]), np.asarray(center[0]).ravel())
