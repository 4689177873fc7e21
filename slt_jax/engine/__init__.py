"""The sampling engine: plan → per-chain configuration → compiled program (cached) → driver.

Nothing in here knows about files, results or progress beyond the driver's bar; workflows/
validates inputs and labels what the engine returns.
"""

from slt_jax.engine.cache import PROGRAM_CACHE, ProgramCache
from slt_jax.engine.compile_log import count_compilations
from slt_jax.engine.config import ChainConfig, chain_keys, make_config
from slt_jax.engine.driver import RunOutput, run_chains
from slt_jax.engine.plan import RunPlan, plan_segments
from slt_jax.engine.program import Programs, build_programs

__all__ = [
    "PROGRAM_CACHE", "ProgramCache", "count_compilations", "ChainConfig", "chain_keys", "make_config",
    "RunOutput", "run_chains", "RunPlan", "plan_segments", "Programs", "build_programs",
]
