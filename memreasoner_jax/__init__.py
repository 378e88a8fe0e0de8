"""MemReasoner in JAX/Flax.

The model is a set of pure functions over a parameter pytree (see `model.py`); `memory.py` holds
Larimar's least-squares episodic memory.
"""
