"""Shared by the training and launch tests: a compilation cache for in-process and child runs,
and the environment, flags and log parsing of small runs in child processes.

The tests that run the same tiny train step in several processes (an uninterrupted run, a
SIGTERM'd child, its resumption) compile it once; the rest load it from the cache.
"""

import os
import re
import socket
import tempfile

import jax

CACHE_DIR = os.path.join(tempfile.gettempdir(), "memreasoner_jax_test_compilation_cache")


def use_compilation_cache() -> None:
  """Turns the cache on here and, through the environment, in child processes."""
  os.environ["JAX_COMPILATION_CACHE_DIR"] = CACHE_DIR
  jax.config.update("jax_compilation_cache_dir", CACHE_DIR)


# The smallest run that still checkpoints: what a multi-process test can afford on two cores.
MULTIHOST_STEPS = 3
MULTIHOST_FLAGS = ["--config=configs/babi.py:qa1,tiny,runlocal",
                   f"--config.training.num_steps={MULTIHOST_STEPS}",
                   "--config.training.log_every=1",
                   f"--config.training.checkpoint_every={MULTIHOST_STEPS}",
                   "--config.data.eval_examples=0", "--config.data.global_batch=4",
                   "--config.data.train_examples=50", "--config.data.prefetch=0"]


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def one_device_env() -> dict[str, str]:
  """This process's environment for a child JAX process with one CPU device (several JAX
  processes on two cores slow each other down many times over)."""
  env = dict(os.environ)
  env["XLA_FLAGS"] = "--xla_force_host_platform_device_count=1"
  env["JAX_PLATFORMS"] = "cpu"
  return env


def logged_losses(output: str) -> list[tuple[str, str]]:
  """(step, loss) of every training log line in `output`."""
  return re.findall(r"step (\d+)/\d+ loss ([0-9.]+)", output)
