"""Checkpoint sources: read a training run's checkpoints as ``(step, params)``, lazily, in step order.

    for step, params in slt_jax.checkpoints.open("run/ckpts"):            # an orbax directory
        ...
    ckpts = dict(slt_jax.checkpoints.open("run/ckpt_*.npz", like=params))   # {step: params}

Formats (none uses pickle):
  orbax        a ``CheckpointManager`` directory (one subdirectory per step, saved with
               ``args.StandardSave``); the steps are orbax's own.
  msgpack      Flax ``flax.serialization.to_bytes`` / ``msgpack_serialize`` files
               (``.msgpack``, ``.mpk``).
  safetensors  ``.safetensors`` files; a nested pytree is stored flat under '/'-joined key
               paths (``params/Dense_0/kernel``).
  npz          ``.npz`` files, the same '/'-joined keys; read with ``allow_pickle=False``.
A file's step is the last integer in its name's stem (``ckpt_00120.npz`` -> 120). A path is
one file, a directory (of orbax steps, or of checkpoint files), or a glob of files.

Without ``like`` a checkpoint comes back as nested dicts of host numpy arrays (sequence
indices become string keys ``"0"``, ``"1"``, ...; orbax keeps the saved containers). With
``like`` (a params pytree of arrays or ``jax.ShapeDtypeStruct``; an adapter's params; the
model's ``nnx.to_pure_dict(nnx.state(model))``; an ``nnx.State``) every checkpoint is checked
against it -- the same leaves, each with like's shape and dtype -- and comes back in like's
structure; the first mismatch raises ValueError naming the checkpoint file and the leaf. A
checkpoint of an ``nnx.State`` (keys ending in ``/value``) matches a pure-dict ``like`` and
vice versa. Typed PRNG keys are stored as their ``jax.random.key_data`` (uint32) and wrapped
again when ``like`` holds a key. For orbax, ``like``'s leaves are the abstract restore target:
a ``jax.Array`` or a ``ShapeDtypeStruct`` with a sharding restores onto that sharding;
other leaves restore to host numpy.

:func:`save` writes one checkpoint in any of these formats (atomically for files, see
:mod:`slt_jax.atomic`; through a ``CheckpointManager`` for orbax), for tests and examples.
"""

from __future__ import annotations

import builtins
import glob as _glob
import json
import re
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jax
import numpy as np

from slt_jax import atomic
from slt_jax.adapters.paths import _preview, path_str

__all__ = ["FORMATS", "open", "save", "step_of", "steps"]

FORMATS = ("orbax", "msgpack", "safetensors", "npz")
_SUFFIXES = {".npz": "npz", ".msgpack": "msgpack", ".mpk": "msgpack", ".safetensors": "safetensors"}
_DEFAULT_SUFFIX = {"npz": ".npz", "msgpack": ".msgpack", "safetensors": ".safetensors"}
_DTYPES_KEY = "__slt_jax_dtypes__"  # npz/safetensors: dtypes numpy files cannot name (bfloat16, ...)


def step_of(path: str | Path) -> int:
    """The training step in a checkpoint file's name: the last integer of its stem."""
    found = re.findall(r"\d+", Path(path).name[: -len(Path(path).suffix) or None])
    if not found:
        raise ValueError(f"{path}: no step number in the file name (expected e.g. ckpt_00120.npz).")
    return int(found[-1])


# ---------------------------------------------------------------------------------------
# Flat '/'-joined trees


def _host(x: Any) -> np.ndarray:
    if _is_key(x):
        x = jax.random.key_data(x)
    return np.asarray(jax.device_get(x))


def _is_key(x: Any) -> bool:
    dtype = getattr(x, "dtype", None)
    return dtype is not None and jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key)


def _leaf_paths(tree: Any) -> tuple[list[str], list[Any], Any]:
    """'/'-joined paths (an nnx.Variable's trailing ``value`` dropped), leaves, treedef."""
    flat, treedef = jax.tree_util.tree_flatten_with_path(tree)
    paths = []
    for path, _ in flat:
        if path and isinstance(path[-1], jax.tree_util.GetAttrKey) and path[-1].name == "value":
            path = path[:-1]
        paths.append(path_str(path))
    if len(set(paths)) != len(paths):
        dup = sorted({p for p in paths if paths.count(p) > 1})
        raise ValueError(f"several leaves share the '/'-joined path(s) {_preview(dup)}; rename keys containing '/'.")
    return paths, [x for _, x in flat], treedef


def _flatten(params: Any) -> dict[str, np.ndarray]:
    from flax import nnx

    if isinstance(params, nnx.State):
        params = nnx.to_pure_dict(params)
    paths, leaves, _ = _leaf_paths(params)
    return {p: _host(x) for p, x in zip(paths, leaves)}


def _unflatten(flat: dict[str, Any]) -> dict:
    out: dict = {}
    for key, x in flat.items():
        *parents, last = key.split("/")
        node = out
        for k in parents:
            node = node.setdefault(k, {})
        node[last] = x
    return out


def _encode_dtypes(flat: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Arrays of dtypes outside numpy's own (bfloat16, float8...) as unsigned views, with a
    JSON record of their dtype names under _DTYPES_KEY."""
    named, out = {}, {}
    for k, x in flat.items():
        if x.dtype.kind == "V" or type(x.dtype).__module__.startswith("ml_dtypes"):
            named[k] = x.dtype.name
            x = x.view(f"u{x.dtype.itemsize}")
        out[k] = x if x.flags.c_contiguous else x.copy()  # (ascontiguousarray makes 0-d 1-d)
    if named:
        out[_DTYPES_KEY] = np.frombuffer(json.dumps(named).encode(), np.uint8)
    return out


def _decode_dtypes(flat: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    named = flat.pop(_DTYPES_KEY, None)
    if named is not None:
        for k, name in json.loads(bytes(named).decode()).items():
            flat[k] = flat[k].view(np.dtype(getattr(__import__("ml_dtypes"), name, name)))
    return flat


# ---------------------------------------------------------------------------------------
# Readers: one checkpoint -> {path: host array}


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as z:
        return _decode_dtypes({k: z[k] for k in z.files})


def _read_safetensors(path: Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    return _decode_dtypes(dict(load_file(str(path))))


def _read_msgpack(path: Path) -> dict[str, np.ndarray]:
    from flax import serialization

    state = serialization.msgpack_restore(path.read_bytes())
    paths, leaves, _ = _leaf_paths(state)
    return {p: np.asarray(x) for p, x in zip(paths, leaves)}


_READERS = {"npz": _read_npz, "safetensors": _read_safetensors, "msgpack": _read_msgpack}


class _Like:
    """like's leaves by path, the check of a checkpoint against them, and the rebuild."""

    def __init__(self, like: Any):
        self.paths, leaves, self.treedef = _leaf_paths(like)
        self.leaves = leaves
        self.keys = [_is_key(x) for x in leaves]
        stored = [jax.eval_shape(jax.random.key_data, x) if k else x for x, k in zip(leaves, self.keys)]
        self.shapes = [tuple(np.shape(x)) for x in stored]
        self.dtypes = [np.dtype(getattr(x, "dtype", None) or np.asarray(x).dtype) for x in stored]

    def match(self, found: dict[str, tuple[tuple, np.dtype]], where: str) -> list[str]:
        """The checkpoint's key for each of like's leaves; ValueError at the first mismatch."""
        keys, used = [], set()
        for p, shape, dtype in zip(self.paths, self.shapes, self.dtypes):
            k = p if p in found else p + "/value" if p + "/value" in found else None
            if k is None:
                raise ValueError(
                    f"checkpoint {where} has no leaf {p} (expected shape {shape}, dtype {dtype}); "
                    f"its leaves are {_preview(sorted(found))}."
                )
            fshape, fdtype = found[k]
            if tuple(fshape) != shape or np.dtype(fdtype) != dtype:
                raise ValueError(
                    f"checkpoint {where}: leaf {p} has shape {tuple(fshape)}, dtype {np.dtype(fdtype)}; "
                    f"expected shape {shape}, dtype {dtype} (as in like)."
                )
            keys.append(k)
            used.add(k)
        extra = sorted(set(found) - used)
        if extra:
            raise ValueError(
                f"checkpoint {where} has leaves that like does not: {_preview(extra)}; pass a like "
                "with the checkpoint's whole structure (for NNX, nnx.to_pure_dict(nnx.state(model)))."
            )
        return keys

    def build(self, values: list[Any]) -> Any:
        out = []
        for x, ref, key in zip(values, self.leaves, self.keys):
            out.append(jax.random.wrap_key_data(x, impl=jax.random.key_impl(ref)) if key else x)
        return jax.tree_util.tree_unflatten(self.treedef, out)


# ---------------------------------------------------------------------------------------
# Orbax


def _manager(path: Path, read_only: bool):
    import orbax.checkpoint as ocp

    path = Path(path).absolute()  # orbax refuses relative paths

    options = ocp.CheckpointManagerOptions(read_only=True) if read_only else None
    return ocp.CheckpointManager(path, item_handlers=ocp.StandardCheckpointHandler(), options=options)


def _orbax_steps(path: Path) -> list[int]:
    with _manager(path, read_only=True) as m:
        return sorted(m.all_steps())


def _read_orbax(path: Path, step: int, like: _Like | None) -> Any:
    import orbax.checkpoint as ocp

    with _manager(path, read_only=True) as m:
        disk = m.item_metadata(step).tree
        d_paths, d_meta, d_treedef = _leaf_paths(disk)
        where = f"{path / str(step)} (orbax step {step})"
        if like is None:
            target = [np.empty(x.shape, x.dtype) for x in d_meta]
        else:
            keys = like.match({p: (x.shape, x.dtype) for p, x in zip(d_paths, d_meta)}, where)
            by_disk = dict(zip(keys, zip(like.leaves, like.shapes, like.dtypes, like.keys)))
            target = []
            for p in d_paths:
                ref, shape, dtype, key = by_disk[p]
                sharding = None if key else getattr(ref, "sharding", None)
                target.append(
                    np.empty(shape, dtype) if sharding is None else jax.ShapeDtypeStruct(shape, dtype, sharding=sharding)
                )
        restored = m.restore(step, args=ocp.args.StandardRestore(jax.tree_util.tree_unflatten(d_treedef, target)))
    if like is None:
        return restored
    values = dict(zip(d_paths, jax.tree_util.tree_leaves(restored)))
    return like.build([values[k] for k in keys])


# ---------------------------------------------------------------------------------------
# open


def _sources(spec: str | Path, format: str | None) -> tuple[str, list[tuple[int, Path]]]:
    """('orbax', [(step, manager dir)]) or ('files', [(step, file)]), sorted by step."""
    path = Path(spec)
    if path.is_dir():
        files = [p for p in path.iterdir() if p.is_file() and p.suffix in _SUFFIXES
                 and not p.name.startswith(atomic.TEMP_PREFIX)]
        step_dirs = [p for p in path.iterdir() if p.is_dir() and p.name.isdigit()]
        if step_dirs and not files:
            return "orbax", [(s, path) for s in _orbax_steps(path)]
        if step_dirs:
            raise ValueError(f"{path} holds both orbax step directories and checkpoint files; pass a glob of the files.")
        if not files:
            raise FileNotFoundError(
                f"{path}: no checkpoints (no orbax step directories, no {', '.join(sorted(_SUFFIXES))} files)."
            )
    elif path.is_file():
        files = [path]
    else:
        files = [Path(p) for p in _glob.glob(str(spec)) if Path(p).is_file()
                 and not Path(p).name.startswith(atomic.TEMP_PREFIX)]
        if not files:
            raise FileNotFoundError(f"{spec}: no such checkpoint file, directory or glob matches.")
    for f in files:
        if format is None and f.suffix not in _SUFFIXES:
            raise ValueError(f"{f}: unknown checkpoint format {f.suffix!r}; pass format= ({', '.join(FORMATS[1:])}).")
    found = sorted((step_of(f), f) for f in files)
    steps = [s for s, _ in found]
    dup = sorted({s for s in steps if steps.count(s) > 1})
    if dup:
        raise ValueError(f"{spec}: several files for step(s) {dup}: {[str(f) for s, f in found if s in dup]}.")
    return "files", found


def steps(path_or_glob: str | Path, *, format: str | None = None) -> list[int]:
    """The training steps of the checkpoints at ``path_or_glob``, increasing; nothing is read."""
    return [step for step, _ in _sources(path_or_glob, format)[1]]


def open(path_or_glob: str | Path, like: Any = None, *, format: str | None = None,
         steps: Any = None) -> Iterator[tuple[int, Any]]:
    """``(step, params)`` for every checkpoint at ``path_or_glob``, in increasing step order.

    The checkpoints are found now (a missing path, an unknown format or two files for one
    step raise here) and read one at a time as the generator is advanced, so a long run's
    checkpoints never sit in memory together unless the caller keeps them (``dict(open(...))``).
    ``like``: see the module docstring; each checkpoint is validated against it when read.
    ``format``: one of FORMATS' file formats, for files whose suffix does not say.
    ``steps``: read only these steps (each must exist), e.g. one shard's share of a sweep.
    """
    if format is not None and format not in FORMATS[1:]:
        raise ValueError(f"format must be one of {FORMATS[1:]} (orbax directories are recognized as such), got {format!r}.")
    kind, found = _sources(path_or_glob, format)
    if steps is not None:
        wanted = {int(s) for s in steps}
        missing = sorted(wanted - {s for s, _ in found})
        if missing:
            raise ValueError(f"{path_or_glob}: no checkpoint for step(s) {missing}; it has {[s for s, _ in found]}.")
        found = [(s, p) for s, p in found if s in wanted]
    target = None if like is None else _Like(like)

    def read() -> Iterator[tuple[int, Any]]:
        for step, path in found:
            if kind == "orbax":
                yield step, _read_orbax(path, step, target)
                continue
            flat = _READERS[format or _SUFFIXES[path.suffix]](path)
            if target is None:
                yield step, _unflatten(flat)
            else:
                keys = target.match({k: (x.shape, x.dtype) for k, x in flat.items()}, str(path))
                yield step, target.build([flat[k] for k in keys])

    return read()


# ---------------------------------------------------------------------------------------
# save


def _write_npz(tmp: Path, flat: dict[str, np.ndarray]) -> None:
    # np.savez(**flat) would refuse keys such as "file"; write its zip of .npy members directly.
    with builtins.open(tmp, "xb") as f, zipfile.ZipFile(f, "w", zipfile.ZIP_STORED, allowZip64=True) as z:
        for k, x in _encode_dtypes(flat).items():
            with z.open(k + ".npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, x, allow_pickle=False)


def _bytes(format: str, flat: dict[str, np.ndarray]) -> bytes:
    if format == "msgpack":
        from flax import serialization

        return serialization.msgpack_serialize(_unflatten(flat))
    from safetensors.numpy import save

    return save(_encode_dtypes(flat))


def save(path: str | Path, step: int, params: Any, format: str | None = None) -> Path:
    """Write one checkpoint of ``params`` at ``step``; returns the file (or orbax directory).

    ``format`` in FORMATS, or None to take it from ``path``'s suffix. For the file formats a
    ``path`` with the format's suffix is the file itself (the last integer in its name must
    be ``step``); any other ``path`` is a directory, written as ``path/ckpt_{step:08d}.<ext>``.
    Files are written atomically (temporary name, fsync, rename). For orbax ``path`` is the
    ``CheckpointManager`` directory; the save is finished when this returns.
    """
    path = Path(path)
    if format is None:
        if path.suffix not in _SUFFIXES:
            raise ValueError(f"{path}: pass format= (one of {FORMATS}); the suffix does not name one.")
        format = _SUFFIXES[path.suffix]
    if format not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, got {format!r}.")
    step = int(step)
    flat = _flatten(params)
    if format == "orbax":
        import orbax.checkpoint as ocp

        with _manager(path, read_only=False) as m:
            steps = list(m.all_steps())
            if steps and step <= max(steps):
                raise ValueError(
                    f"{path}: orbax step {step} is not after the latest saved step {max(steps)}; a "
                    "CheckpointManager saves increasing steps only."
                )
            if not m.save(step, args=ocp.args.StandardSave(_unflatten(flat)), force=True):
                raise RuntimeError(f"{path}: orbax did not save step {step}.")
            m.wait_until_finished()
        return path
    if _SUFFIXES.get(path.suffix) != format:
        path = path / f"ckpt_{step:08d}{_DEFAULT_SUFFIX[format]}"
    elif step_of(path) != step:
        raise ValueError(f"{path}: the step in the file name is {step_of(path)}, not {step}; open() would misread it.")
    if format == "npz":
        with atomic.atomic_path(path) as tmp:
            _write_npz(tmp, flat)
    else:
        atomic.write_bytes(path, _bytes(format, flat))
    return path
