"""TFDS: a tiny config builds to ArrayRecord and reads back, in a fresh process without TensorFlow."""

import json
import os
import subprocess
import sys
import textwrap

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_SCRIPT = textwrap.dedent("""
    import json, sys
    import numpy as np
    from memreasoner_jax.data import batching, pipeline, tfds_builder, tokenizers
    from tests import data_fixtures

    def generate_split(self, split, num):  # Stands in for the task generators.
      if split == "train":
        return data_fixtures.qa1_examples(num, max_lines=7)
      return [data_fixtures.QA2_STORY.__class__(**{**data_fixtures.QA2_STORY.__dict__,
                                                    "index": i}) for i in range(num)]

    tfds_builder.MemreasonerTasks.generate_split = generate_split
    config = tfds_builder.TaskConfig(name="tiny", splits=(("train", 13), ("test", 5)))
    builder = tfds_builder.build(config, sys.argv[1])
    train = tfds_builder.load(config, "train", sys.argv[1], build_if_missing=False)
    again = tfds_builder.load_directory(builder.data_dir, "test")
    expected = data_fixtures.qa1_examples(13, max_lines=7)
    batcher = batching.Batcher(batching.BatchShape(40, 24, 40, line_buckets=(4, 8)),
                               tokenizers.ByteTokenizer())
    it = pipeline.TrainIterator(train, batcher, 4, seed=1, process_index=1, process_count=2,
                                prefetch=0)
    batch = next(it)
    print(json.dumps({
        "train_round_trip": [train[i] for i in range(13)] == expected,
        "read": pipeline.read_examples(train, np.array([5, 2])) == [expected[5], expected[2]],
        "num_lines": train.num_lines_N.tolist() == [len(e.context) for e in expected],
        "test": [again[i].context for i in range(5)] == [data_fixtures.QA2_STORY.context] * 5,
        "unicode": again[0].context[3],
        "batch": list(batch["context_BxExT"].shape),
        "tensorflow_loaded": any(m == "tensorflow" or m.startswith("tensorflow.")
                                 for m in sys.modules),
    }))
""")


def test_build_and_read_back_without_tensorflow(tmp_path):
  env = {**os.environ, "PYTHONPATH": ROOT, "TFDS_DISABLE_PROGRESS_BAR": "1"}
  proc = subprocess.run([sys.executable, "-c", _SCRIPT, str(tmp_path)], cwd=ROOT, env=env,
                        capture_output=True, text=True, timeout=120, check=False)
  assert proc.returncode == 0, proc.stderr[-3000:]
  result = json.loads(proc.stdout.strip().splitlines()[-1])
  assert result == {"train_round_trip": True, "read": True, "num_lines": True, "test": True,
                    "unicode": "Über café naïve.", "batch": result["batch"],
                    "tensorflow_loaded": False}
  assert result["batch"] in ([2, 4, 40], [2, 8, 40])  # Host 1's half of a global batch of 4.
  assert any(f.startswith("memreasoner_tasks-train.array_record")
             for f in os.listdir(tmp_path / "memreasoner_tasks" / "tiny" / "1.0.0"))
