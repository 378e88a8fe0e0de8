"""Prints every preset's parameter count and runs one training-loss gradient of a preset.

  python -m memreasoner_jax.tools.summary --preset=tiny
"""

import time

from absl import app
from absl import flags
import jax
import numpy as np

from memreasoner_jax.models import losses
from memreasoner_jax.models import memreasoner as model_lib
from memreasoner_jax.models import presets

_PRESET = flags.DEFINE_enum("preset", "tiny", presets.PRESETS, "Preset to run a step of.")
_BATCH = flags.DEFINE_integer("batch_size", 4, "Examples in the step's batch.")


def main(argv):
  del argv
  print(f"{'preset':8} {'encoder':>13} {'temporal':>10} {'memory':>9} {'hops':>10} "
        f"{'decoder':>13} {'total':>14}")
  for name in presets.PRESETS:
    counts = model_lib.parameter_counts(presets.model_config(name))
    print(f"{name:8} {counts['encoder']:13,} {counts['temporal']:10,} {counts['memory']:9,} "
          f"{counts['hops']:10,} {counts['decoder']:13,} {sum(counts.values()):14,}")

  config = presets.model_config(_PRESET.value)
  model = model_lib.MemReasoner(config)
  shapes = model_lib.batch_shapes(_BATCH.value, lines=6, line_tokens=32, query_tokens=16,
                                  answer_tokens=24)
  rng = np.random.default_rng(0)
  batch = {k: rng.integers(4, 100, s.shape).astype(s.dtype) for k, s in shapes.items()}
  batch["line_mask_BxE"][:] = True
  batch["support_BxS"][:] = 0
  batch["example_weight_B"][:] = 1.0
  params = model.init(jax.random.PRNGKey(0), batch)
  grad_fn = jax.jit(jax.value_and_grad(
      lambda p, b: model.loss(p, b, jax.random.PRNGKey(1), 0, losses.loss_config()),
      has_aux=True))
  start = time.perf_counter()
  (loss, metrics), grads = jax.block_until_ready(grad_fn(params, batch))
  grad_norm = float(np.sqrt(sum(np.sum(np.square(g)) for g in jax.tree.leaves(grads))))
  print(f"{_PRESET.value}: loss {float(loss):.4f} (answer {float(metrics['answer_loss']):.4f}), "
        f"gradient norm {grad_norm:.4f}, first step with compile {time.perf_counter() - start:.1f}s")


if __name__ == "__main__":
  app.run(main)
