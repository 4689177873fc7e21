"""Per-sample losses: pure ``(predictions, targets) -> losses`` functions.

Every loss keeps the batch axis (and, for sequence models, the token axis) so the
engine sees one loss per example, shape ``(B,)``, or per token, shape ``(B, T)``.
The engine averages all elements; nothing here reduces over the batch.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax

__all__ = [
    "LOSSES",
    "SELF_SUPERVISED",
    "cross_entropy",
    "get_loss",
    "mean_squared_error",
    "next_token_cross_entropy",
    "squared_error",
]

LossFn = Callable[[jax.Array, jax.Array], jax.Array]


def _check_same_shape(pred: jax.Array, y: jax.Array, name: str) -> None:
    # (B, 1) vs (B,) would silently broadcast to (B, B): a classic regression bug.
    if jnp.shape(pred) != jnp.shape(y):
        raise ValueError(
            f"{name}: predictions shape {jnp.shape(pred)} != targets shape {jnp.shape(y)}; "
            "reshape one of them (e.g. y[:, None] or pred[:, 0]) so the shapes match exactly."
        )


def squared_error(pred: jax.Array, y: jax.Array) -> jax.Array:
    """``0.5 * sum((pred - y)**2)`` over all non-batch axes.

    pred, y: ``(B, ...)`` with identical shapes. Returns ``(B,)``.
    This is the Gaussian negative log-likelihood with unit noise variance up to the
    additive constant ``(d/2) log(2 pi)``, so it gives the likelihood-based nβL_n.
    """
    _check_same_shape(pred, y, "squared_error")
    r = jnp.asarray(pred) - jnp.asarray(y)
    return 0.5 * jnp.sum(r * r, axis=tuple(range(1, r.ndim)))


def mean_squared_error(pred: jax.Array, y: jax.Array) -> jax.Array:
    """``mean((pred - y)**2)`` over all non-batch axes (no 1/2 factor).

    pred, y: ``(B, ...)`` with identical shapes. Returns ``(B,)``. Matches torch's
    ``MSELoss(reduction="none")(pred, y).mean(-1)`` (for 2-D outputs), i.e. devinterp's
    convention; for ``(B, d)`` outputs it is ``2 / d`` times :func:`squared_error`.
    """
    _check_same_shape(pred, y, "mean_squared_error")
    r = jnp.asarray(pred) - jnp.asarray(y)
    return jnp.mean(r * r, axis=tuple(range(1, r.ndim)))


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Softmax cross-entropy with integer labels (log-sum-exp, numerically stable).

    logits: ``(B, C)`` (or ``(B, ..., C)``); labels: integers of shape ``(B,)`` (or
    ``(B, ...)``). Returns ``(B,)`` (or ``(B, ...)``).
    """
    labels = jnp.asarray(labels)
    if not jnp.issubdtype(labels.dtype, jnp.integer):
        raise TypeError(
            f"cross_entropy: labels must be integer class indices, got dtype {labels.dtype}; "
            "pass argmax of one-hot labels (labels.argmax(-1)) cast to int32."
        )
    if jnp.shape(logits)[:-1] != labels.shape:
        raise ValueError(
            f"cross_entropy: logits shape {jnp.shape(logits)} must be labels shape "
            f"{labels.shape} plus a trailing class axis."
        )
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels)


def next_token_cross_entropy(logits: jax.Array, tokens: jax.Array) -> jax.Array:
    """Autoregressive loss: position ``t`` predicts token ``t + 1``.

    logits: ``(B, T, V)`` from a model fed ``tokens``; tokens: integers ``(B, T)``.
    Returns per-token losses ``(B, T - 1)`` (the last position has no target).
    """
    tokens = jnp.asarray(tokens)
    if tokens.ndim != 2 or jnp.shape(logits)[:2] != tokens.shape or jnp.ndim(logits) != 3:
        raise ValueError(
            f"next_token_cross_entropy: expected logits (B, T, V) and tokens (B, T), got "
            f"logits {jnp.shape(logits)} and tokens {tokens.shape}."
        )
    return cross_entropy(logits[:, :-1], tokens[:, 1:])


LOSSES: dict[str, LossFn] = {
    "squared_error": squared_error,
    "mse": mean_squared_error,
    "mean_squared_error": mean_squared_error,
    "cross_entropy": cross_entropy,
    "next_token_cross_entropy": next_token_cross_entropy,
}

# Losses whose "targets" are the model inputs themselves: the batch is just the inputs.
SELF_SUPERVISED: frozenset[LossFn] = frozenset({next_token_cross_entropy})


def get_loss(loss: str | LossFn) -> LossFn:
    """Resolve a loss name from :data:`LOSSES`, or pass a callable through unchanged."""
    if callable(loss):
        return loss
    if isinstance(loss, str) and loss in LOSSES:
        return LOSSES[loss]
    raise ValueError(
        f"loss={loss!r} is not a known loss; use one of {sorted(LOSSES)} or pass a callable "
        "(predictions, targets) -> per-sample losses of shape (B,) or (B, T)."
    )
