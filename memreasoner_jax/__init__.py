"""MemReasoner in JAX/Flax.

The model is a set of pure functions over a parameter pytree (see `model.py`); `memory.py` holds
Larimar's least-squares episodic memory. `load(path)` returns a `Reasoner` that answers
questions with a trained checkpoint (see `inference.py`).
"""


def __getattr__(name: str):
  """`load` and `Reasoner` are imported on first use, so `import memreasoner_jax` stays light."""
  if name in ("load", "Reasoner"):
    from memreasoner_jax import inference  # pylint: disable=import-outside-toplevel
    return getattr(inference, name)
  raise AttributeError(f"module 'memreasoner_jax' has no attribute {name!r}")
