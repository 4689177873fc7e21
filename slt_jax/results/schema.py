"""The on-disk layout of every slt_jax result: the only module that writes and reads files.

netCDF (h5netcdf engine; no pickle), written atomically (slt_jax.atomic); attrs hold JSON for
dicts, lists and None. `read_netcdf` checks a `ResultSchema` and raises `ResultFileError`
naming the path and what is missing before any result object is built.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping

import numpy as np
import xarray as xr

from slt_jax.atomic import atomic_path

__all__ = ["KIND_ATTR", "ResultFileError", "ResultSchema", "write_netcdf", "read_netcdf", "encode_attrs",
           "decode_attr", "decode_attrs"]


# --- netCDF files --------------------------------------------------------------------------
KIND_ATTR = "slt_jax_result_kind"  # on disk only: lets the reader say which loader a file needs


class ResultFileError(ValueError):
    """A file that is not a complete slt_jax result of the expected kind (truncated, another
    tool's netCDF, or missing variables/attributes). The message names the path and the gaps."""


@dataclass(frozen=True)
class ResultSchema:
    """What a result kind needs on disk, checked by `read_netcdf` before any result is built.

    variables: name -> required dims (exact, in order), or None for any dims.
    attrs: attribute names that must be present.
    check: optional extra test, dataset -> list of problems (strings; empty when fine).
    """

    kind: str
    variables: Mapping[str, tuple[str, ...] | None]
    attrs: tuple[str, ...] = ()
    check: Callable[[xr.Dataset], list[str]] | None = None

    def problems(self, ds: xr.Dataset) -> list[str]:
        found = ds.attrs.get(KIND_ATTR)
        if found is not None and str(found) != self.kind:
            return [f"it holds an slt_jax {found!r} result, not {self.kind!r}; load it with that result's from_netcdf"]
        out = [f"variable {v!r} is missing" for v in self.variables if v not in ds.variables]
        out += [
            f"variable {v!r} has dims {ds[v].dims}, expected {dims}"
            for v, dims in self.variables.items() if v in ds.variables and dims is not None and ds[v].dims != dims
        ]
        out += [f"attribute {a!r} is missing" for a in self.attrs if a not in ds.attrs]
        return out + (self.check(ds) if self.check and not out else [])


def write_netcdf(dataset: xr.Dataset, path: str | Path, *, kind: str | None = None) -> Path:
    """Write `dataset` atomically (slt_jax.atomic): `path` is either its old file or the whole new one.

    kind (a ResultSchema.kind) is stored in the file only, so `read_netcdf` can name the right
    loader. Written on process 0 only: under jax.distributed every process holds the same result.
    """
    import jax

    path = Path(path)
    if jax.process_index() != 0:
        return path
    if kind is not None:
        dataset = dataset.assign_attrs({KIND_ATTR: kind})  # a copy: the caller's attrs are unchanged
    with atomic_path(path) as tmp:
        dataset.to_netcdf(tmp, engine="h5netcdf")
    return path


def read_netcdf(path: str | Path, schema: ResultSchema | None = None) -> xr.Dataset:
    """Load a netCDF file fully into memory and check it against `schema`.

    Raises FileNotFoundError when `path` does not exist and ResultFileError (a ValueError) when
    it cannot be read (truncated, not netCDF4/HDF5) or lacks what `schema` requires.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no result file at {path}.")
    try:
        with xr.open_dataset(path, engine="h5netcdf") as ds:
            ds = ds.load()
    except Exception as e:  # h5py/h5netcdf/xarray errors vary by how the file is broken
        raise ResultFileError(
            f"{path} cannot be read as a netCDF4/HDF5 file ({type(e).__name__}: {e}); it may be "
            "truncated by an interrupted write or not an slt_jax result. Rerun or restore it."
        ) from e
    problems = schema.problems(ds) if schema is not None else []
    if problems:
        what = f"an slt_jax {schema.kind!r} result"
        raise ResultFileError(f"{path} is not {what}: {'; '.join(problems)}.")
    ds.attrs.pop(KIND_ATTR, None)
    return ds


def encode_attrs(attrs: dict) -> dict:
    """netCDF attributes hold numbers and strings only: dicts/lists/None go as JSON text."""
    out = {}
    for k, v in attrs.items():
        if v is None or isinstance(v, (dict, list, tuple, bool)):
            out[k] = "json:" + json.dumps(v)
        else:
            out[k] = v
    return out


def _decode_attr(v):
    if isinstance(v, str) and v.startswith("json:"):
        return json.loads(v[5:])
    if isinstance(v, np.generic):
        return v.item()
    return v


decode_attr = _decode_attr


def decode_attrs(attrs: Mapping) -> dict:
    """A Dataset's attrs with the JSON-encoded entries (dicts, lists, None) decoded."""
    return {k: _decode_attr(v) for k, v in attrs.items()}
