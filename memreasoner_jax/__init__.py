"""MemReasoner in JAX/Flax.

Layout: `models/` holds the model (encoder, temporal encoding, Larimar's memory, hops, decoder,
their composition and the full-attention baseline, all behind one protocol); the flat core
trains (`main`, `train`, `input_pipeline`, `sharding`, `optimizer`, `checkpointing`,
`metric_writers`), evaluates (`evaluate`, `eval_grid`), answers (`inference`) and packs a
checkpoint for inference (`export`); `data/` and `tasks/` make the examples; `pretrained/`
imports Hugging Face weights; `tools/` holds the benchmarks and the summary. `load(path)` returns a `Reasoner` that answers questions with a
trained checkpoint.
"""

import importlib

# Public names resolved on first use, so `import memreasoner_jax` stays light.
# `memreasoner_jax.memory` keeps the documented path of Larimar's memory functions.
_LAZY = {"load": "memreasoner_jax.inference", "load_average": "memreasoner_jax.inference",
         "Reasoner": "memreasoner_jax.inference", "memory": "memreasoner_jax.models.memory"}


def __getattr__(name: str):
  if name not in _LAZY:
    raise AttributeError(f"module 'memreasoner_jax' has no attribute {name!r}")
  module = importlib.import_module(_LAZY[name])
  return module if module.__name__.endswith("." + name) else getattr(module, name)
