"""The models and the one protocol they answer: `build(config.model)` returns either.

Training, evaluation, inference and the benchmarks call only the `Model` protocol below, so
MemReasoner and the full-attention baseline share every config, data path, checkpoint and
evaluation without the caller asking which it holds.
"""

from typing import Any, NamedTuple, Protocol

import jax
import ml_collections

KINDS = ("memreasoner", "baseline")
DTYPES = ("float32", "bfloat16")  # compute dtypes (parameters stay float32)
Params = dict[str, Any]
Batch = dict[str, jax.Array]


class Generated(NamedTuple):
  """Greedy answers and what the model read to give them."""

  tokens_BxN: jax.Array  # the N generated tokens after each example's prompt
  logits_BxNxV: jax.Array
  sims_BxHxE: jax.Array  # each hop's similarity to every line; H = 0 for models without hops


class Model(Protocol):
  """What every model offers, as pure functions of explicit parameters."""

  config: ml_collections.ConfigDict  # the config's `model` section

  def init(self, rng: jax.Array, batch: Batch) -> Params:
    """Float32 parameters for batches shaped like `batch`."""

  def batch_shapes(self, batch_size: int = 1) -> dict[str, jax.ShapeDtypeStruct]:
    """Shape-only stand-in batch for `jax.eval_shape(model.init, rng, shapes)`."""

  def loss(self, params: Params, batch: Batch, rng: jax.Array | None, step: jax.Array | int,
           cfg: ml_collections.ConfigDict) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Weighted total loss and its named parts; `rng=None` evaluates without training noise."""

  def generate(self, params: Params, batch: Batch, max_new_tokens: int) -> Generated:
    """Greedy answers after each example's prompt."""

  def loss_and_generate(self, params: Params, batch: Batch, cfg: ml_collections.ConfigDict,
                        max_new_tokens: int) -> tuple[jax.Array, dict[str, jax.Array], Generated]:
    """`loss` without noise and `generate` from one reading of the context (evaluation)."""


def check_dtype(config: ml_collections.ConfigDict) -> None:
  """Raises ValueError for a compute dtype training cannot use.

  float16 would need loss scaling (its small gradients underflow to zero and large activations
  overflow), which the trainer does not do; bfloat16 has float32's range and the same speed.
  """
  if config.dtype == "float16":
    raise ValueError("config model.dtype=float16 is not supported: training does no loss "
                     "scaling, so float16 gradients underflow; use model.dtype=bfloat16")
  if config.dtype not in DTYPES:
    raise ValueError(f"config model.dtype must be one of {DTYPES}, got {config.dtype!r}")


def build(config: ml_collections.ConfigDict) -> Model:
  """The model of a config's `model` section (`model.kind`)."""
  # Imported here: the model modules import this one for `Generated`.
  from memreasoner_jax.models import baseline  # pylint: disable=import-outside-toplevel
  from memreasoner_jax.models import memreasoner  # pylint: disable=import-outside-toplevel
  if config.kind == "memreasoner":
    return memreasoner.MemReasoner(config)
  if config.kind == "baseline":
    return baseline.Baseline(config)
  raise ValueError(f"config model.kind must be one of {KINDS}, got {config.kind!r}")
