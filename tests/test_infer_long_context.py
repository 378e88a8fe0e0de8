"""A 128k-token context answers on one CPU device with bounded memory (lines are encoded in
chunks): about 15,000 of the tiny model's 46-byte lines, some 10 seconds with compilation on two
cores. Figures for other lengths: BUILD_NOTES.md, "Inference and evaluation".
"""

import json
import os
import subprocess
import sys

import pytest

_MEASURE = """
import json, sys, time
import memreasoner_jax
from memreasoner_jax.tasks import registry
def peak_rss_kb():
  # VmHWM is this process image's own peak: getrusage's ru_maxrss would also count the pages
  # shared with the (large) test worker this process was forked from, until exec.
  with open("/proc/self/status") as f:
    return int(next(l for l in f if l.startswith("VmHWM:")).split()[1])

reasoner = memreasoner_jax.load(sys.argv[1])
(example,) = registry.generate("qa1", "test", 1, seed=1, length=sys.argv[2])
started = time.time()
explanation = reasoner.explain(example.context, example.question)
print(json.dumps({"seconds": time.time() - started, "answer": explanation.answer,
                  "peak_rss_mb": peak_rss_kb() / 1024,
                  "chars": sum(len(line) for line in example.context)}))
"""


@pytest.mark.timeout(1500)  # the measuring process may take 1200 s, after the checkpoint trains
def test_128k_tokens_answer_on_one_cpu_with_bounded_memory(qa1_checkpoint):
  env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=1"}
  result = subprocess.run([sys.executable, "-c", _MEASURE, qa1_checkpoint.workdir, "128k"],
                          capture_output=True, text=True, env=env, timeout=1200, check=False)
  assert result.returncode == 0, result.stderr[-3000:]
  measured = json.loads(result.stdout.strip().splitlines()[-1])
  assert measured["chars"] > 3.5 * 128_000  # about 4 characters per token
  assert measured["answer"]
  # Measured: 0.9 GB alone (BUILD_NOTES.md).
  assert measured["peak_rss_mb"] < 4000, measured
