"""The unrolled CPU threefry lowering (slt_jax.cpu_rng) must give jax's exact random bits."""

import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
from jax.extend.random import threefry_2x32

from slt_jax import cpu_rng

# Random123 known-answer vectors for threefry2x32_20 (kat_vectors): (key, counter, expected).
KAT = [
    ((0x00000000, 0x00000000), (0x00000000, 0x00000000), (0x6B200159, 0x99BA4EFE)),
    ((0xFFFFFFFF, 0xFFFFFFFF), (0xFFFFFFFF, 0xFFFFFFFF), (0x1CB996FC, 0xBB002BE7)),
    ((0x13198A2E, 0x03707344), (0x243F6A88, 0x85A308D3), (0xC4923A9C, 0x483DF7A0)),
]


def test_reference_function_matches_random123_vectors():
    for key, ctr, want in KAT:
        # 1-element arrays: numpy wraps uint32 array arithmetic silently (scalars warn).
        k0, k1, c0, c1 = (np.array([v], np.uint32) for v in (*key, *ctr))
        got = cpu_rng.threefry2x32_unrolled(k0, k1, c0, c1)
        assert tuple(int(g[0]) for g in got) == want


def test_installed_lowering_matches_random123_vectors_on_cpu():
    assert cpu_rng.install()
    for key, ctr, want in KAT:
        # A fresh jit each time so the program is lowered with the installed rule.
        out = jax.jit(lambda k, c: threefry_2x32(k, c))(
            jnp.array(key, jnp.uint32), jnp.array(ctr, jnp.uint32)
        )
        assert tuple(int(v) for v in np.asarray(out)) == want


_DRAWS = textwrap.dedent(
    """
    import sys, numpy as np, jax, jax.numpy as jnp
    if sys.argv[1] == "unrolled":
        from slt_jax import cpu_rng
        assert cpu_rng.install()
    k = jax.random.key(42)
    ks = jax.random.split(jax.random.fold_in(k, 7), 3)
    out = [jax.random.normal(ks[0], (1013,)), jax.random.uniform(ks[1], (5, 37)),
           jax.random.randint(ks[2], (300,), 0, 1000),
           jax.jit(jax.vmap(lambda kk: jax.random.normal(kk, (17, 3))))(jax.random.split(k, 8))]
    np.savez(sys.argv[2], *[np.asarray(o) for o in out])
    """
)


def test_random_streams_equal_jax_own_lowering(tmp_path):
    """jax.random draws (normal, uniform, randint, split, fold_in, vmapped) are bitwise the
    same with the unrolled lowering as with jax's: run both in fresh processes."""
    env = dict(os.environ, SLT_JAX_CPU_THREEFRY="unrolled", JAX_PLATFORMS="cpu")
    files = {}
    for mode in ("jax", "unrolled"):
        files[mode] = tmp_path / f"{mode}.npz"
        subprocess.run([sys.executable, "-c", _DRAWS, mode, str(files[mode])], check=True, env=env, timeout=300)
    a, b = np.load(files["jax"]), np.load(files["unrolled"])
    assert len(a.files) == 4
    for name in a.files:
        np.testing.assert_array_equal(a[name], b[name])


def test_environment_opt_out(monkeypatch):
    monkeypatch.setenv("SLT_JAX_CPU_THREEFRY", "jax")
    assert not cpu_rng.enabled_by_environment()
    monkeypatch.setenv("SLT_JAX_CPU_THREEFRY", "unrolled")
    assert cpu_rng.enabled_by_environment()
