import os

# Tests run on the host CPU with a persistent compilation cache, so a second run of the suite
# skips most XLA compilation (the slow part of small-model tests on a 2-core machine).
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", os.path.join(os.path.dirname(__file__), "..", ".jax_cache"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
# One CPU device, the library's default, for the whole session: the CLI tests call main(),
# which would otherwise expose every core mid-session. Several devices are tested in a
# subprocess (tests/test_devices.py).
if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=1").strip()


import pytest  # noqa: E402


@pytest.fixture
def no_compilation():
    """Fails the test if anything was compiled by XLA inside it (jax's monitoring events):
    bad input must be refused before any program is built."""
    from slt_jax.engine.compile_log import count_compilations

    with count_compilations() as log:
        yield log
    assert log.count == 0, f"{log.count} XLA compilations before the error: {log.names}"
