"""Kernels against hand computations: the update formulas of estimators.md §2, exactly."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from slt_jax.kernels import adam_sgld, rmsprop_sgld, rmsprop_sgld_devinterp, sgld, tree_normal
from slt_jax.posterior import Posterior


def _posterior(center, nbeta=50.0, gamma=3.0, mask=None):
    return Posterior(jnp.float32(nbeta), jnp.float32(gamma), center, mask or [None] * len(center))


W0 = [jnp.array([0.5, -1.0, 2.0]), jnp.array([[0.1, 0.2], [0.3, -0.4]])]
CENTER = [jnp.zeros(3), jnp.ones((2, 2))]
G = [jnp.array([1.0, 2.0, -3.0]), jnp.array([[0.5, -0.5], [0.0, 1.0]])]


def test_sgld_is_gradient_descent_on_U_plus_scaled_noise():
    """w' = w - (ε/2)(nβ g + γ(w - w*)) + sqrt(ε) ξ, with ξ from the same key."""
    eps, key = 1e-3, jax.random.key(7)
    post = _posterior(CENTER)
    new, _ = sgld(eps).step(key, sgld(eps).init(W0), G, post)
    noise = tree_normal(key, W0)
    for w, c, g, xi, out in zip(W0, CENTER, G, noise, new.position):
        grad_u = 50.0 * g + 3.0 * (w - c)
        np.testing.assert_allclose(out, w - eps / 2 * grad_u + np.sqrt(eps) * xi, rtol=1e-6, atol=1e-7)


def test_sgld_noise_is_standard_normal_scaled_by_sqrt_eps():
    """With ∇U = 0 (w at w*, zero gradient) the step is pure noise of variance ε per coordinate."""
    eps = 0.04
    w = [jnp.zeros(200_000)]
    post = _posterior([jnp.zeros(200_000)])
    new, _ = sgld(eps).step(jax.random.key(0), sgld(eps).init(w), [jnp.zeros(200_000)], post)
    # 200k draws: the sample variance's relative standard error is sqrt(2/200k) ≈ 0.3%.
    assert abs(float(jnp.var(new.position[0])) / eps - 1) < 0.015
    assert abs(float(jnp.mean(new.position[0]))) < 5 * np.sqrt(eps / 200_000)


def test_element_mask_freezes_coordinates():
    eps = 1e-2
    mask = [jnp.array([1.0, 0.0, 1.0]), None]
    post = _posterior(CENTER, mask=mask)
    new, _ = sgld(eps).step(jax.random.key(1), sgld(eps).init(W0), G, post)
    assert new.position[0][1] == W0[0][1]  # frozen: neither drift nor noise
    assert new.position[0][0] != W0[0][0] and new.position[0][2] != W0[0][2]
    assert not np.allclose(new.position[1], W0[1])


@pytest.mark.parametrize("make", [sgld, rmsprop_sgld, adam_sgld])
@pytest.mark.parametrize("eps", [1e-2, 1e-7])
def test_reported_noise_norm_is_the_expected_injected_noise(make, eps):
    """Kernels report sqrt(E||sqrt(ε_t)ξ||²) = sqrt(Σ ε_t) over the sampled coordinates (the
    frozen middle coordinate of the first leaf is left out), with this step's ε_t."""
    mask = [jnp.array([1.0, 0.0, 1.0]), None]
    post = _posterior(CENTER, mask=mask)
    kernel = make(eps)
    new, info = kernel.step(jax.random.key(3), kernel.init(W0), G, post)
    if make is sgld:
        eps_t = [jnp.full(w.shape, eps) for w in W0]
    else:  # ε_t = ε / (sqrt(v_t / (1 - β2^t)) + a), default β2 = 0.999 and a
        a = 1e-5 if make is rmsprop_sgld else 1e-8
        correction = 1 - 0.999 ** float(new.count)
        eps_t = [eps / (jnp.sqrt(v / correction) + a) for v in new.square_avg]
    want = np.sqrt(float(jnp.sum(eps_t[0] * mask[0]) + jnp.sum(eps_t[1])))
    np.testing.assert_allclose(float(info["noise_norm"]), want, rtol=1e-5)


def test_rmsprop_preconditioner_matches_hand_computation():
    """Two steps by hand: v_{-1}=1, v_t = β2 v + (1-β2) g², v̂ = v/(1-β2^t), ε_t = ε/(sqrt(v̂)+a)."""
    eps, b2, a = 1e-3, 0.9, 1e-2
    kernel = rmsprop_sgld(eps, beta2=b2, eps_stabilizer=a)
    post = _posterior(CENTER)
    key1, key2 = jax.random.key(3), jax.random.key(4)
    g2 = [x * 2.0 + 0.1 for x in G]  # a different gradient at the second step

    state = kernel.init(W0)
    s1, _ = kernel.step(key1, state, G, post)
    s2, _ = kernel.step(key2, s1, g2, post)

    w = [np.asarray(x, np.float64) for x in W0]
    v = [np.ones_like(x) for x in w]
    for t, (key, grads) in enumerate([(key1, G), (key2, g2)], start=1):
        noise = tree_normal(key, W0)
        new_w = []
        for i, (wi, ci, gi, xi) in enumerate(zip(w, CENTER, grads, noise)):
            gi = np.asarray(gi, np.float64)
            v[i] = b2 * v[i] + (1 - b2) * gi**2
            eps_t = eps / (np.sqrt(v[i] / (1 - b2**t)) + a)
            grad_u = 50.0 * gi + 3.0 * (wi - np.asarray(ci))  # localization is not preconditioned-in
            new_w.append(wi - eps_t / 2 * grad_u + np.sqrt(eps_t) * np.asarray(xi))
        w = new_w
    for got, want in zip(s2.position, w):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    for got, want in zip(s2.square_avg, v):
        np.testing.assert_allclose(got, want, rtol=1e-6)
    assert int(s2.count) == 2


def test_rmsprop_devinterp_variant_starts_at_zero_without_bias_correction():
    eps, b2, a = 1e-3, 0.99, 0.1
    kernel = rmsprop_sgld_devinterp(eps)
    post = _posterior(CENTER)
    key = jax.random.key(5)
    s1, _ = kernel.step(key, kernel.init(W0), G, post)
    noise = tree_normal(key, W0)
    for wi, ci, gi, xi, got in zip(W0, CENTER, G, noise, s1.position):
        v = (1 - b2) * np.asarray(gi) ** 2
        eps_t = eps / (np.sqrt(v) + a)
        want = wi - eps_t / 2 * (50.0 * gi + 3.0 * (wi - ci)) + np.sqrt(eps_t) * xi
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("make", [sgld, rmsprop_sgld])
def test_kernels_vmap_and_jit(make):
    kernel = make(1e-3)
    post = _posterior(CENTER)
    states = jax.vmap(kernel.init)([jnp.stack([x] * 4) for x in W0])
    keys = jax.random.split(jax.random.key(0), 4)
    grads = [jnp.stack([g] * 4) for g in G]
    step = jax.jit(jax.vmap(kernel.step, in_axes=(0, 0, 0, None)))
    new, _ = step(keys, states, grads, post)
    assert new.position[0].shape == (4, 3)
    assert not np.allclose(new.position[0][0], new.position[0][1])  # independent noise per chain
