"""Explicit order (results lever `order`): no BiGRU, and a learned bonus for later lines."""

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
