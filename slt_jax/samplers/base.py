"""What every sampler shares: the engine's kernel interface, the registry, Langevin helpers.

A sampler is a pair of pure functions over flat parameter lists (optax/blackjax style):

    init(position, hyper) -> state                      # state.position is the current w
    step(key, state, loss_grad, posterior, hyper) -> (state, info)

`hyper` holds the chain's numeric hyperparameters as traced scalars: the step size ε (always,
key "step_size") and the sampler's own constants (β2, friction, ...). Because they are data,
not closure constants, one compiled program runs chains with different ε, β2, ... side by
side. Structural choices that change the program (bias correction on/off) are static and
chosen when the spec is built. `loss_grad` is ∇L_B(w), the minibatch mean loss's gradient;
the sampler adds nβ and the localization term itself (posterior.potential_grad), so
preconditioners see the loss gradient alone (estimators.md §2).

The public constructors (`sgld(step_size)`, ...) return a `Kernel`: the same functions with
the hyperparameters bound, for direct use and tests.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

from slt_jax.posterior import Posterior, apply_element_mask

__all__ = [
    "Kernel", "SamplerSpec", "REGISTRY", "register", "get_spec", "tree_normal", "noise_norm",
    "expected_noise_norm", "langevin_update", "masked_add",
]

Params = Any


class Kernel(NamedTuple):
    """A sampler with its hyperparameters bound: init(position), step(key, state, grad, posterior)."""

    init: Callable[[Params], Any]
    step: Callable[[jax.Array, Any, Params, Posterior], tuple[Any, dict]]


@dataclass(frozen=True)
class SamplerSpec:
    """A registered sampler.

    numeric: the traced constants and their defaults (recorded in every result's metadata).
    structural: static choices and their defaults; `build(structural)` returns (init, step).
    resolve: fills defaults that depend on other constants (SGNHT's ζ0 = α).
    """

    name: str
    build: Callable[[dict], tuple[Callable, Callable]]
    numeric: dict = field(default_factory=dict)
    structural: dict = field(default_factory=dict)
    resolve: Callable[[dict], dict] | None = None
    doc: str = ""

    def constants(self, overrides: dict | None = None) -> tuple[dict, dict]:
        """(numeric, structural) with defaults filled in; overrides are assumed validated."""
        overrides = dict(overrides or {})
        numeric = {k: overrides.pop(k, v) for k, v in self.numeric.items()}
        structural = {k: overrides.pop(k, v) for k, v in self.structural.items()}
        if overrides:
            raise ValueError(
                f"sampler {self.name!r} has no constants {sorted(overrides)}; it takes "
                f"{sorted(self.numeric) + sorted(self.structural)}."
            )
        if self.resolve is not None:
            numeric = self.resolve(numeric)
        return {k: float(v) for k, v in numeric.items()}, structural

    def bind(self, step_size: float, **overrides) -> Kernel:
        """A Kernel with ε and the constants as Python numbers (the public constructors)."""
        numeric, structural = self.constants(overrides)
        init, step = self.build(structural)
        hyper = {"step_size": step_size, **numeric}
        return Kernel(lambda position: init(position, hyper), lambda k, s, g, p: step(k, s, g, p, hyper))


REGISTRY: dict[str, SamplerSpec] = {}


def register(spec: SamplerSpec) -> SamplerSpec:
    REGISTRY[spec.name] = spec
    return spec


def get_spec(name: str) -> SamplerSpec:
    return REGISTRY[name]


def tree_normal(key: jax.Array, like: Params) -> Params:
    """Standard normal noise shaped like `like`, one independent key per leaf."""
    leaves, treedef = jax.tree.flatten(like)
    keys = jax.random.split(key, len(leaves))
    return treedef.unflatten(
        [jax.random.normal(k, jnp.shape(x), jnp.result_type(x)) for k, x in zip(keys, leaves)]
    )


def noise_norm(scale, noise: Params, element_mask: Params) -> jax.Array:
    """||scale·ξ|| over the sampled coordinates: the size of the injected noise (a diagnostic).

    scale: a scalar or a pytree like `noise` (per-leaf scalars or arrays)."""
    scale = scale if isinstance(scale, (list, tuple, dict)) else jax.tree.map(lambda _: scale, noise)
    injected = apply_element_mask(element_mask, jax.tree.map(lambda s, xi: s * xi, scale, noise))
    return jnp.sqrt(sum(jnp.sum(jnp.square(x)) for x in jax.tree.leaves(injected)))


def expected_noise_norm(eps, element_mask, like: Params) -> jax.Array:
    """sqrt(E||sqrt(ε)·ξ||²) = sqrt(Σ ε) over the sampled coordinates: the scale of the noise a
    Langevin step injects (a diagnostic to set against the drift, (ε/2)||∇U||).

    The expectation, not the realized ||sqrt(ε)ξ|| (which differs from it by O(1/sqrt(d))
    relative, so it carries no extra information): reducing ξ itself makes XLA store the
    noise instead of generating it inside the update's fused loop (MLP workload at 256
    chains: 75–80k → 80–90k chain-steps/s), and recovering it from the update
    (new - w + (ε/2)∇U) keeps the old and new positions alive together."""
    per_coordinate = jax.tree.map(lambda e, x: jnp.broadcast_to(jnp.asarray(e, jnp.float32), jnp.shape(x)), eps, like)
    per_coordinate = apply_element_mask(element_mask, per_coordinate)
    return jnp.sqrt(sum(jnp.sum(x) for x in jax.tree.leaves(per_coordinate)))


def langevin_update(position, grad_u, noise, eps, element_mask) -> Params:
    """w - (ε/2) ∇U + sqrt(ε) ξ, with ε a pytree like `position` (per-leaf scalars or arrays)."""
    delta = jax.tree.map(lambda e, g, xi: -0.5 * e * g + jnp.sqrt(e) * xi, eps, grad_u, noise)
    delta = apply_element_mask(element_mask, delta)
    return jax.tree.map(jnp.add, position, delta)


def masked_add(element_mask, base, delta):
    return jax.tree.map(jnp.add, base, apply_element_mask(element_mask, delta))
