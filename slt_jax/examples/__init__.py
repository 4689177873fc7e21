"""Built-in examples (issue 10 item 8): each trains a model with optax, saves orbax
checkpoints and runs the whole workflow (calibrate -> sweep -> stages).

- ``dln``: a deep linear network from small initialization; its learned rank increases at
  measured steps and its converged λ is Aoyagi's (exact): the ground truth for stage detection.
- ``modular_addition``: an MLP on (a + b) mod p, generalizing vs trained on random labels.
- ``tms``: the toy model of superposition (6 features, 2 hidden units).

Each module has ``problem(**kwargs)`` (a sweep factory: {loss_fn, params, data}, deterministic
from its seed; zero-argument variants for configs without [factory_args]), ``train(out_dir,
...)`` and ``run(out_dir, small=False, progress=True)``. Submodules import lazily.
"""

__all__ = ["dln", "modular_addition", "tms"]


def __getattr__(name):
    if name in __all__:
        import importlib

        return importlib.import_module(f"slt_jax.examples.{name}")
    raise AttributeError(f"module 'slt_jax.examples' has no attribute {name!r}")
