"""Weight-gradient matmuls in the layout XLA CPU's fast matmul path accepts.

The gradient of `x @ W` with respect to W is `dot_general(x, dy)` contracting the *leading*
(row) axis of both operands: xᵀ·dy. XLA CPU hands a dot to its YNNPACK library only when
the left operand's contracting axis is its last one; anything else goes to a generic
Eigen contraction, which runs the small batched products of chain-vmapped programs an order
of magnitude slower. XLA's algebraic simplifier folds any transpose written before the dot
back into the dot's dimension numbers, so a plain `x.T` does not help.

`canonical_dots(fn)` re-traces `fn` and, for every such dot_general, transposes the left
operand so that its axes run (batch, free, contracting) and puts an optimization barrier on
it, which stops XLA from folding the transpose away. The product is the same (up to
float rounding: the order of the additions may differ); the result keeps its axes.

Measured on the MLP workload's per-step products at 128 chains on one CPU device
(benchmarks/RESULTS.md): dW₂ (48×100·100×4 per chain) 716 → 210 µs per step, dW₁ 340 →
148 µs. On a GPU or TPU the matmul libraries take transposed operands directly, so
`estimate_llc` applies it on CPU only (RunPlan.cpu_dot_layout); `SLT_JAX_CPU_DOTS=xla` turns it off.
"""

from __future__ import annotations

import os
from typing import Any, Callable

import jax
from jax.extend import core as jex_core

__all__ = ["ENV", "enabled", "canonical_permutation", "SMALL_PRODUCT", "should_rewrite", "canonical_dots"]

ENV = "SLT_JAX_CPU_DOTS"


def enabled(platform: str) -> bool:
    """Whether programs for `platform` should canonicalize their dots."""
    return platform == "cpu" and os.environ.get(ENV, "").lower() != "xla"


def canonical_permutation(contract, batch, rank: int) -> tuple[int, ...] | None:
    """The axis order (batch, free, contracting) for a dot operand, or None when it already
    has it."""
    free = [d for d in range(rank) if d not in contract and d not in batch]
    perm = tuple(batch) + tuple(free) + tuple(contract)
    return None if perm == tuple(range(rank)) else perm


# Measured on the 2-core CI VM (jax 0.10.2): the rewrite is 1.2–6.5× faster for batched
# products of up to 1.6·10⁶ multiply-adds per batch element (M·N·K), and neutral to 25%
# slower from 2·10⁶ up, where Eigen's blocked kernels already run near the matmul rate.
SMALL_PRODUCT = 2_000_000


def _product_size(dimension_numbers, lhs_shape, rhs_shape) -> int:
    """M·N·K of one batch element of the product."""
    (lhs_contract, rhs_contract), (lhs_batch, rhs_batch) = dimension_numbers
    size = 1
    for d, n in enumerate(lhs_shape):
        if d not in lhs_batch:  # free and contracting axes: M·K
            size *= n
    for d, n in enumerate(rhs_shape):
        if d not in rhs_contract and d not in rhs_batch:  # N
            size *= n
    return size


def should_rewrite(dimension_numbers, lhs_shape, rhs_shape) -> bool:
    """Whether a dot_general is small and has a left operand XLA CPU's fast path refuses."""
    (lhs_contract, _), (lhs_batch, _) = dimension_numbers
    return (
        canonical_permutation(lhs_contract, lhs_batch, len(lhs_shape)) is not None
        and _product_size(dimension_numbers, lhs_shape, rhs_shape) <= SMALL_PRODUCT
    )


def _canonical_dot(lhs, rhs, *, dimension_numbers, **params):
    """dot_general(lhs, rhs) with a left operand whose contracting axes come last.

    Either the left operand is transposed, or the operands swap places (the right one,
    transposed if need be, goes left) and the product is transposed back; whichever copies
    fewer elements. Transposing the smaller operand matters: for dW = xᵀ·dy, copying the
    (batch × 16) input costs a third of copying the (batch × 48) cotangent."""
    if not should_rewrite(dimension_numbers, lhs.shape, rhs.shape):
        return jax.lax.dot_general_p.bind(lhs, rhs, dimension_numbers=dimension_numbers, **params)
    (lhs_contract, rhs_contract), (lhs_batch, rhs_batch) = dimension_numbers
    lhs_perm = canonical_permutation(lhs_contract, lhs_batch, lhs.ndim)
    rhs_perm = canonical_permutation(rhs_contract, rhs_batch, rhs.ndim)
    swap = (0 if rhs_perm is None else rhs.size) < lhs.size
    first, perm, contract, batch = (rhs, rhs_perm, rhs_contract, rhs_batch) if swap else (lhs, lhs_perm, lhs_contract, lhs_batch)
    second, second_contract, second_batch = (lhs, lhs_contract, lhs_batch) if swap else (rhs, rhs_contract, rhs_batch)
    rank, n_batch, n_contract = first.ndim, len(batch), len(contract)
    if perm is not None:
        first = jax.lax.optimization_barrier(jax.lax.transpose(first, perm))
    numbers = (
        (tuple(range(rank - n_contract, rank)), tuple(second_contract)),
        (tuple(range(n_batch)), tuple(second_batch)),
    )
    # Autodiff transposes a weight gradient next (dW = (dyᵀx)ᵀ); without the barrier XLA
    # folds that transpose into the dot by swapping its operands back.
    out = jax.lax.optimization_barrier(jax.lax.dot_general_p.bind(first, second, dimension_numbers=numbers, **params))
    if not swap:
        return out
    # (batch, rhs free, lhs free) → (batch, lhs free, rhs free)
    n_first_free = first.ndim - n_batch - n_contract
    n_second_free = second.ndim - n_batch - n_contract
    order = (
        tuple(range(n_batch))
        + tuple(range(n_batch + n_first_free, n_batch + n_first_free + n_second_free))
        + tuple(range(n_batch, n_batch + n_first_free))
    )
    return jax.lax.transpose(out, order)


def _needs_rewrite(jaxpr) -> bool:
    for eqn in jaxpr.eqns:
        if eqn.primitive is jax.lax.dot_general_p:
            lhs, rhs = (v.aval.shape for v in eqn.invars)
            if should_rewrite(eqn.params["dimension_numbers"], lhs, rhs):
                return True
        elif eqn.primitive.name == "jit" and _needs_rewrite(eqn.params["jaxpr"].jaxpr):
            return True
    return False


def _evaluate(jaxpr, consts, *args) -> list[Any]:
    """jax.core.eval_jaxpr, with the dot rewrite, entering nested jit calls that hold a dot
    to rewrite. Other higher-order primitives (scan, cond, remat, custom derivatives) are
    bound unchanged: dots inside them keep XLA's layout."""
    env: dict = {}

    def read(v):
        return v.val if isinstance(v, jex_core.Literal) else env[v]

    for var, val in zip(jaxpr.constvars, consts):
        env[var] = val
    for var, val in zip(jaxpr.invars, args):
        env[var] = val
    for eqn in jaxpr.eqns:
        invals = [read(v) for v in eqn.invars]
        with eqn.ctx.manager:
            if eqn.primitive is jax.lax.dot_general_p:
                outvals = [_canonical_dot(*invals, **eqn.params)]
            elif eqn.primitive.name == "jit" and _needs_rewrite(eqn.params["jaxpr"].jaxpr):
                inner = eqn.params["jaxpr"]
                outvals = _evaluate(inner.jaxpr, inner.consts, *invals)
            else:
                out = eqn.primitive.bind(*invals, **eqn.primitive.get_bind_params(eqn.params))
                outvals = out if eqn.primitive.multiple_results else [out]
        for var, val in zip(eqn.outvars, outvals):
            env[var] = val
    return [read(v) for v in jaxpr.outvars]


def canonical_dots(fn: Callable) -> Callable:
    """`fn` with every dot_general's left operand in (batch, free, contracting) axis order
    (see the module docstring). Traces `fn` once per call; use it inside jit."""

    def rewritten(*args):
        closed, out_shape = jax.make_jaxpr(fn, return_shape=True)(*args)
        if not _needs_rewrite(closed.jaxpr):
            return fn(*args)
        out = _evaluate(closed.jaxpr, closed.consts, *jax.tree.leaves(args))
        return jax.tree.unflatten(jax.tree.structure(out_shape), out)

    return rewritten
