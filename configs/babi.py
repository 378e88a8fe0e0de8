"""Train MemReasoner on generated bAbI-style tasks: see `memreasoner_jax/configs/babi.py`.

  python -m memreasoner_jax.main --config=configs/babi.py:qa1,tiny --workdir=/tmp/qa1_tiny

The config lives in the package so that installed commands (benchmarks, evaluation) build it
without this folder; this file names it on the command line.
"""

from memreasoner_jax.configs.babi import get_config, get_sweep  # pylint: disable=unused-import
