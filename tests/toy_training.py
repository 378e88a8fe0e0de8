"""Tiny models trained for a few steps on toy qa1 stories with no supporting-fact label."""

import jax
import optax

from memreasoner_jax.models import losses
from memreasoner_jax.models import memreasoner as model_lib
from memreasoner_jax.models import presets
from memreasoner_jax.models import Params
from tests import toy_batches


def read_accuracy_after_training(answer_read_weight: float, steps: int,
                                 model_overrides: dict | None = None,
                                 eval_lines: tuple[int, ...] = (6,)
                                 ) -> tuple[dict[int, float], Params]:
  """(share of held-out reads on the supporting line per story length, the trained params).

  Trains the tiny preset (with `model_overrides`) on six-line toy qa1 stories; the held-out
  stories have each of `eval_lines` lines.
  """
  config = presets.model_config("tiny")
  for key, value in (model_overrides or {}).items():
    config.update_from_flattened_dict({key: value})
  model = model_lib.MemReasoner(config)
  cfg = losses.loss_config()
  cfg.answer_read_weight = answer_read_weight
  batch = toy_batches.qa1_batch(16, seed=0, lines=6, supervised=0.0)
  params = model.init(jax.random.PRNGKey(0), batch)
  opt = optax.adam(3e-3)

  @jax.jit
  def step(p, s, b, i):
    grads = jax.grad(lambda q: losses.loss_fn(model, q, b, jax.random.PRNGKey(i), i, cfg)[0])(p)
    updates, s = opt.update(grads, s, p)
    return optax.apply_updates(p, updates), s

  state = opt.init(params)
  for i in range(steps):
    params, state = step(params, state, toy_batches.qa1_batch(16, seed=100 + i, lines=6,
                                                              supervised=0.0), i)
  accuracy = {}
  for lines in eval_lines:
    held_out = toy_batches.qa1_batch(64, seed=1, lines=lines, supervised=0.0)
    _, metrics = jax.jit(lambda p, b: losses.loss_fn(model, p, b, None, 0, cfg))(params, held_out)
    accuracy[lines] = float(metrics["sf_accuracy"])
  return accuracy, params
