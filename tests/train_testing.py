"""Shared by the training tests: one on-disk compilation cache for in-process and child runs.

The tests that run the same tiny train step in several processes (an uninterrupted run, a
SIGTERM'd child, its resumption) compile it once; the rest load it from the cache.
"""

import os
import tempfile

import jax

CACHE_DIR = os.path.join(tempfile.gettempdir(), "memreasoner_jax_test_compilation_cache")


def use_compilation_cache() -> None:
  """Turns the cache on here and, through the environment, in child processes."""
  os.environ["JAX_COMPILATION_CACHE_DIR"] = CACHE_DIR
  jax.config.update("jax_compilation_cache_dir", CACHE_DIR)
