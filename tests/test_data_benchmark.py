"""The pipeline benchmark runs end to end on a tiny dataset (speed is never asserted)."""

from memreasoner_jax.data import benchmark
from memreasoner_jax.data import tfds_builder
from memreasoner_jax.data import tokenizers
from tests import data_fixtures


def test_measure_reports_every_rate(tmp_path, monkeypatch):
  monkeypatch.setattr(tfds_builder.MemreasonerTasks, "generate_split",
                      lambda self, split, num: data_fixtures.qa1_examples(num))
  row = benchmark.measure("qa1", 0, 12, 4, tokenizers.ByteTokenizer(), str(tmp_path))
  assert row["examples"] == 12 and row["lines_per_example"] > 1
  rates = [k for k in row if k.endswith("_per_s")]
  assert len(rates) == 6 and all(row[k] > 0 for k in rates)
