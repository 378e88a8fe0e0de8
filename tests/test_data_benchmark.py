"""The pipeline benchmark runs end to end on the real generators (speed is never asserted)."""

from memreasoner_jax.data import tokenizers
from memreasoner_jax.tools import benchmark_input


def test_measure_reports_every_rate(tmp_path):
  row = benchmark_input.measure("qa2", "1k", 6, 4, tokenizers.ByteTokenizer(), str(tmp_path),
                                workers=(0, 2))
  assert row["examples"] == 6 and row["lines_per_example"] > 20
  rates = [k for k in row if k.endswith("_per_s")]
  assert len(rates) == 11 and all(row[k] > 0 for k in rates)
  assert {"train_0_workers_examples_per_s", "train_2_workers_examples_per_s",
          "train_0_workers_device_padded_examples_per_s",
          "train_2_workers_device_padded_examples_per_s"} <= set(rates)
  assert row["device_pad_ms_per_batch"] > 0
