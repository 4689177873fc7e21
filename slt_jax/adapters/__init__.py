"""Turn models into the engine's contract: a pure per-sample ``loss_fn(params, batch)``.

``loss_fn`` returns losses of shape ``(B,)`` or ``(B, T)`` for a batch whose leaves share a
leading axis ``B``; ``params`` is the pytree that gets sampled. Everything the model needs
besides ``params`` (frozen weights, BatchNorm statistics, RNG state) is captured as plain
arrays, so ``loss_fn`` is safe under ``jax.value_and_grad``, ``vmap``, ``scan`` and ``jit``.

Batches for supervised losses are ``(x, y)`` tuples or dicts ``{inputs: x, targets: y}``;
for self-supervised losses (``next_token_cross_entropy``, or ``targets=None``) the batch is
the input array itself (or a dict holding it under ``inputs``).

Checkpoints. The frozen part (what ``wrt=`` / ``mask=`` leaves out, other Linen
collections) is held inside ``loss_fn`` at the *adapted* model's values, so ``loss_fn`` is
right for ``Adapted.params`` and wrong for another checkpoint's params. For other
checkpoints of the same model, :meth:`Adapted.at` (one) and :meth:`Adapted.checkpoints`
(several, one compiled program) take each checkpoint's frozen part from that checkpoint;
:func:`check_checkpoints` refuses the wrong combination at the engine's boundary.

Modules, by concern (each imports only those above it):
    paths        '/'-joined key paths (path_str) and the previews messages show
    masks        mask_from_paths, layer_masks, head_masks, complement, union; mask= checks
    losses       loss construction: apply_fn + loss -> per-sample loss_fn
    spec         the model spec (a role per leaf: sampled, frozen, constant) and bound models
    checkpoints  matching checkpoint forms to the spec; check_checkpoints, FrozenPartWarning
    adapted      Adapted (at, checkpoints, frozen), CheckpointBatch, _bind
    function     from_function
    flax         from_nnx, from_linen
Every name of the former single module is re-exported here, so ``adapters.from_nnx(...)``
and ``from slt_jax.adapters import ...`` work as before.
"""

# The `_name as _name` imports re-export the private names of the former single module for
# code that reaches them through it; they are not in __all__.
from slt_jax.adapters.adapted import FROZEN_SOURCES as FROZEN_SOURCES
from slt_jax.adapters.adapted import Adapted, CheckpointBatch
from slt_jax.adapters.adapted import _bind as _bind
from slt_jax.adapters.adapted import _frozen_source as _frozen_source
from slt_jax.adapters.checkpoints import _NOT_GIVEN as _NOT_GIVEN
from slt_jax.adapters.checkpoints import FrozenPartWarning, check_checkpoints
from slt_jax.adapters.checkpoints import _caller_stacklevel as _caller_stacklevel
from slt_jax.adapters.checkpoints import _canonical_path as _canonical_path
from slt_jax.adapters.checkpoints import _check_packed as _check_packed
from slt_jax.adapters.checkpoints import _equal_or_unknown as _equal_or_unknown
from slt_jax.adapters.checkpoints import _evidence as _evidence
from slt_jax.adapters.checkpoints import _is_one_checkpoint as _is_one_checkpoint
from slt_jax.adapters.checkpoints import _labeled as _labeled
from slt_jax.adapters.checkpoints import _match as _match
from slt_jax.adapters.checkpoints import _same_as_bound as _same_as_bound
from slt_jax.adapters.checkpoints import _split_checkpoints as _split_checkpoints
from slt_jax.adapters.checkpoints import _tag_of as _tag_of
from slt_jax.adapters.flax import _NNX_HINT as _NNX_HINT
from slt_jax.adapters.flax import from_linen, from_nnx
from slt_jax.adapters.function import _pytree_canonical as _pytree_canonical
from slt_jax.adapters.function import from_function
from slt_jax.adapters.losses import _loss_maker as _loss_maker
from slt_jax.adapters.losses import _make_loss_fn as _make_loss_fn
from slt_jax.adapters.masks import _QKV as _QKV
from slt_jax.adapters.masks import LayerInclude as LayerInclude
from slt_jax.adapters.masks import _as_mask_leaf as _as_mask_leaf
from slt_jax.adapters.masks import _attention_modules as _attention_modules
from slt_jax.adapters.masks import _check_params as _check_params
from slt_jax.adapters.masks import _name_filter as _name_filter
from slt_jax.adapters.masks import _resolve_mask as _resolve_mask
from slt_jax.adapters.masks import (
    complement,
    head_masks,
    layer_masks,
    mask_from_paths,
    union,
)
from slt_jax.adapters.paths import Include as Include
from slt_jax.adapters.paths import PyTree as PyTree
from slt_jax.adapters.paths import _components as _components
from slt_jax.adapters.paths import _key_str as _key_str
from slt_jax.adapters.paths import _leaves as _leaves
from slt_jax.adapters.paths import _paths as _paths
from slt_jax.adapters.paths import _preview as _preview
from slt_jax.adapters.paths import path_str
from slt_jax.adapters.spec import _CONST as _CONST
from slt_jax.adapters.spec import _FROZEN as _FROZEN
from slt_jax.adapters.spec import _SAMPLED as _SAMPLED
from slt_jax.adapters.spec import _TAG as _TAG
from slt_jax.adapters.spec import _Bound as _Bound
from slt_jax.adapters.spec import _flatten_like as _flatten_like
from slt_jax.adapters.spec import _is_float as _is_float
from slt_jax.adapters.spec import _make_spec as _make_spec
from slt_jax.adapters.spec import _Spec as _Spec
from slt_jax.adapters.spec import _Tag as _Tag

__all__ = [
    "Adapted",
    "CheckpointBatch",
    "FrozenPartWarning",
    "check_checkpoints",
    "complement",
    "from_function",
    "from_linen",
    "from_nnx",
    "head_masks",
    "layer_masks",
    "mask_from_paths",
    "path_str",
    "union",
]
