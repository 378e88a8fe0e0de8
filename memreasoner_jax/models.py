"""Which model a config builds (`model.kind`) and the loss that trains it.

Training, evaluation and checkpoints go through these two functions, so MemReasoner and the
full-attention baseline share every config, data path and evaluation.
"""

from typing import Any

import jax
import ml_collections

from memreasoner_jax import baseline
from memreasoner_jax import losses
from memreasoner_jax import model as model_lib

KINDS = ("memreasoner", "baseline")
Model = model_lib.MemReasoner | baseline.Baseline


def build(config: ml_collections.ConfigDict) -> Model:
  """The model of a config's `model` section."""
  if config.kind == "memreasoner":
    return model_lib.MemReasoner(config)
  if config.kind == "baseline":
    return baseline.Baseline(config)
  raise ValueError(f"config model.kind must be one of {KINDS}, got {config.kind!r}")


def loss_fn(model: Model, params: Any, batch: dict[str, jax.Array], rng: jax.Array | None,
            step: jax.Array | int, cfg: ml_collections.ConfigDict) -> tuple[jax.Array, dict]:
  """The model's training objective (`losses.loss_fn` for MemReasoner). `rng=None`: no noise."""
  fn = baseline.loss_fn if isinstance(model, baseline.Baseline) else losses.loss_fn
  return fn(model, params, batch, rng, step, cfg)
