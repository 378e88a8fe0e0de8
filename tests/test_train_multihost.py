"""Two processes on 127.0.0.1 train together through jax.distributed; a missing one times out.

Every process runs under a timeout, with one CPU device each and the smallest run that still
checkpoints (several JAX processes on two cores slow each other down many times over).
"""

import os
import re
import subprocess
import sys
import time

import orbax.checkpoint as ocp
import pytest

from tests import train_testing
from tests.train_testing import MULTIHOST_STEPS as STEPS


def _worker(workdir, port, process_id, num_processes=2, timeout_s=20, extra_flags=()):
  command = ["timeout", "420", sys.executable, "-m", "memreasoner_jax.main", f"--workdir={workdir}",
             f"--coordinator_address=127.0.0.1:{port}", f"--num_processes={num_processes}",
             f"--process_id={process_id}", f"--join_timeout={timeout_s}",
             *train_testing.MULTIHOST_FLAGS, *extra_flags]
  return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          env=train_testing.one_device_env())


# Lines padded on the device too: both processes size the packed rows from the global batch.
@pytest.mark.parametrize("padding", ["host", "device"])
def test_two_processes_train_checkpoint_and_agree(tmp_path, padding):
  port = train_testing.free_port()
  # A final evaluation of 8 held-out questions, each process decoding and scoring its 2 of
  # every batch of 4.
  evaluation = ["--config.data.eval_examples=8", "--config.data.eval_batch=4",
                "--config.eval.max_new_tokens=4",
                f"--config.data.device_padding={padding == 'device'}"]
  workers = [_worker(tmp_path, port, i, timeout_s=120, extra_flags=evaluation) for i in range(2)]
  outputs = [w.communicate(timeout=450)[0] for w in workers]
  for w, out in zip(workers, outputs):
    assert w.returncode == 0, out[-4000:]
  assert "Mesh {'data': 2, 'fsdp': 1} over 2 devices of 2 process(es)" in outputs[0]
  # Both processes computed the same global losses, step by step.
  assert len(train_testing.logged_losses(outputs[0])) == STEPS
  assert train_testing.logged_losses(outputs[0]) == train_testing.logged_losses(outputs[1])
  manager = ocp.CheckpointManager(os.path.join(tmp_path, "checkpoints"))
  assert manager.latest_step() == STEPS
  # The evaluation's sums were combined over both processes: each reports the same scores.
  scores = [re.findall(r"Eval at step 3: (.*)", out) for out in outputs]
  assert len(scores[0]) == 1 and "eval/qa1/babilong=" in scores[0][0], outputs[0][-3000:]
  assert scores[0] == scores[1]
  # Only process 0 writes metrics: one line per step, and one for the evaluation.
  assert len((tmp_path / "metrics.jsonl").read_text().splitlines()) == STEPS + 1


def test_a_worker_that_never_joins_ends_the_other_with_a_clear_error(tmp_path):
  start = time.time()
  lonely = _worker(tmp_path, train_testing.free_port(), 0, timeout_s=5)
  output = lonely.communicate(timeout=120)[0]
  assert lonely.returncode == 1, output[-3000:]
  assert "not every process joined the multi-host run" in output
  assert "process 0 of 2" in output
  assert time.time() - start < 90
