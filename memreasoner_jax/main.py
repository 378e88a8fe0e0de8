"""Command line: train and evaluate MemReasoner from a config file.

  python -m memreasoner_jax.main --config=configs/babi.py:qa1,tiny --workdir=/tmp/run

Multi-host: on SLURM, Cloud TPU pods and Open MPI nothing more is needed; elsewhere start one
process per host with --coordinator_address=HOST:PORT --num_processes=N --process_id=I.
"""

import sys

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags
import jax

from memreasoner_jax import checkpointing
from memreasoner_jax import sharding
from memreasoner_jax import train

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file and argument "
                                          "(configs/babi.py:qa1,tiny).", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Checkpoints, metrics and TensorBoard files; "
                               "a run resumes from the checkpoints it finds here.")
_COORDINATOR = flags.DEFINE_string("coordinator_address", "", "HOST:PORT of process 0 (multi-host "
                                   "runs outside SLURM / Cloud TPU / Open MPI).")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", 1, "Processes in a multi-host run.")
_PROCESS_ID = flags.DEFINE_integer("process_id", 0, "This process's index in a multi-host run.")
_JOIN_TIMEOUT = flags.DEFINE_integer("join_timeout", 300, "Seconds to wait for every process of "
                                     "a multi-host run to join before giving up with an error.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  del argv
  checkpointing.quiet_orbax_logs()
  sharding.initialize_distributed(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value,
                                  _JOIN_TIMEOUT.value)
  try:
    results = train.train_and_evaluate(_CONFIG.value, _WORKDIR.value)
  except (train.NonFiniteLossError, checkpointing.IncompatibleCheckpointError,
          checkpointing.WorkdirLockedError) as e:
    logging.error("%s", e)
    sys.exit(f"ERROR: {e}")
  if jax.process_index() == 0:
    for line in final_scores(results):
      print(line)


def final_scores(results: dict[str, float]) -> list[str]:
  """One line per task of the final held-out evaluation, e.g. 'qa1 held-out accuracy: 84.1%
  (babilong), exact match 84.1%, supporting fact read 94.1%'."""
  tasks = sorted({key.split("/")[1] for key in results if key.startswith("eval/")})
  lines = []
  for task in tasks:
    scores = {key.split("/")[-1]: value for key, value in results.items()
              if key.startswith(f"eval/{task}/")}
    metric = "ruler" if "ruler" in scores else "babilong"
    line = (f"{task} held-out accuracy: {scores[metric]:.1f}% ({metric}), exact match "
            f"{scores['exact_match']:.1f}%")
    if "sf_accuracy" in scores:  # the full-attention baseline has no memory read
      line += f", supporting fact read {100 * scores['sf_accuracy']:.1f}%"
    lines.append(line)
  return lines


if __name__ == "__main__":
  app.run(main)
