"""Explicit order (results lever `order`): no BiGRU, and a learned bonus for later lines."""

import jax
import numpy as np

from memreasoner_jax.models import memreasoner as model_lib
from memreasoner_jax.models import presets
from tests import toy_batches
from tests import toy_training

_ORDER = {"temporal.kind": "none", "memory.learn_recency": True}
_NO_ORDER = {"temporal.kind": "none"}


def test_learned_order_reads_the_latest_move_in_stories_eight_times_longer():
  # Trained on six-line stories with no support label; held out on 6 and 48 lines (chunks of
  # 16, so the latest move and older ones may sit in different memories). Without order the
  # read cannot tell an actor's latest move from an older one.
  chunked = {"memory.mode": "chunked", "memory.lines_per_chunk": 16}
  order, params = toy_training.read_accuracy_after_training(
      1.0, steps=150, model_overrides={**_ORDER, **chunked}, eval_lines=(6, 48))
  plain, _ = toy_training.read_accuracy_after_training(
      1.0, steps=150, model_overrides={**_NO_ORDER, **chunked}, eval_lines=(6, 48))
  assert float(params["hops"]["hop"]["recency"]) > 0
  assert order[6] > 80.0 and order[48] > 60.0, order
  assert order[48] > plain[48] + 20.0, (order, plain)


def test_eval_recency_off_leaves_the_bonus_to_training_reads():
  # A fixed bonus large enough to move every read to a later line: with eval_recency off, reads
  # without an rng (evaluation) score the lines as a model without the bonus does, and reads
  # with one (training) still add it.
  def model(**memory):
    config = presets.model_config("tiny")
    config.update_from_flattened_dict({"temporal.kind": "none", **{
        f"memory.{k}": v for k, v in memory.items()}})
    return model_lib.MemReasoner(config)

  batch = toy_batches.qa1_batch(8, seed=0, lines=6, supervised=0.0)
  plain, bonus = model(), model(recency=2.0, eval_recency=False)
  params = plain.init(jax.random.PRNGKey(0), batch)
  sims = lambda m, rng=None: np.asarray(m.reason(params, batch, rng=rng).sims_BxHxE)
  np.testing.assert_allclose(sims(bonus), sims(plain), atol=1e-6)
  training = sims(bonus, jax.random.PRNGKey(1)) - sims(plain, jax.random.PRNGKey(1))
  real_BxE = np.asarray(batch["line_mask_BxE"], bool)
  assert np.all(training[:, 0][real_BxE & (np.arange(real_BxE.shape[1]) > 0)] > 0.1)
