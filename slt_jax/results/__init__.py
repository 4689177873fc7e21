"""Results: labelled xarray Datasets with every hyperparameter in their metadata.

schema.py alone writes and reads the on-disk layout; LLCResult is one configuration,
GridResult a grid over checkpoint × step_size × localization × nbeta (× component).
"""

from slt_jax.results.grid_result import GridResult
from slt_jax.results.llc_result import LLCResult
from slt_jax.results.schema import ResultFileError, ResultSchema, read_netcdf, write_netcdf

__all__ = ["LLCResult", "GridResult", "ResultFileError", "ResultSchema", "read_netcdf", "write_netcdf"]
