"""Command line: train and evaluate MemReasoner from a config file.

  python -m memreasoner_jax.main --config=configs/babi.py:qa1,tiny --workdir=/tmp/run

Multi-host: on SLURM, Cloud TPU pods and Open MPI nothing more is needed; elsewhere start one
process per host with --coordinator_address=HOST:PORT --num_processes=N --process_id=I.
"""

import difflib
import os
import sys

from absl import app
from absl import flags
from absl import logging
import ml_collections
from ml_collections import config_flags
# The parser behind --config, to read the file again and name a key it lacks.
from ml_collections.config_flags.config_flags import ConfigFileFlagParser
import jax

from memreasoner_jax import checkpointing
from memreasoner_jax.data import sources
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
          checkpointing.WorkdirLockedError, sharding.MeshConfigError, NotADirectoryError,
          sources.SourceError) as e:
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
      line += f", supporting fact read {scores['sf_accuracy']:.1f}%"
    lines.append(line)
  return lines


def parse_flags(argv: list[str]) -> list[str]:
  """absl's flag parsing, with one short error for a config file that does not load, a config
  key it lacks, or a config argument its get_config refuses (instead of a traceback)."""
  try:
    rest = flags.FLAGS(argv)
  except flags.Error as e:
    # A config file's own error arrives wrapped around its whole traceback; its last line says it.
    message = str(e).strip().splitlines()[-1].strip()
    sys.exit(f"ERROR: {message}\nPass --helpshort or --helpfull to see help on flags.")
  except (AttributeError, KeyError, OSError) as e:
    sys.exit(config_error(argv) or f"ERROR: {e}")
  if not isinstance(_CONFIG.value, ml_collections.ConfigDict):  # the file did not load
    sys.exit(config_error(argv) or f"ERROR: the config {_CONFIG.value} did not load")
  return rest


def _config_keys(config: ml_collections.ConfigDict, prefix: str = "") -> list[str]:
  keys = []
  for name, value in config.items():
    keys.append(prefix + name)
    if isinstance(value, ml_collections.ConfigDict):
      keys += _config_keys(value, f"{prefix}{name}.")
  return keys


def config_error(argv: list[str]) -> str | None:
  """Names a --config file that does not exist or a --config.KEY the file's config lacks, with
  the closest name there is; None when neither is wrong."""
  spec = ""
  for arg, following in zip(argv, argv[1:] + [""]):
    if arg in ("--config", "-config"):
      spec = following
    elif arg.startswith(("--config=", "-config=")):
      spec = arg.split("=", 1)[1]
  path = spec.split(":", 1)[0]
  if not os.path.isfile(path):
    folder = os.path.dirname(path) or "."
    files = [os.path.join(os.path.dirname(path), n) for n in sorted(os.listdir(folder))
             if n.endswith(".py")] if os.path.isdir(folder) else []
    close = difflib.get_close_matches(path, files, n=1)
    return (f"ERROR: config file {path} not found (--config={spec}, from {os.getcwd()})"
            + (f"; did you mean {close[0]}?" if close else ""))
  keys = _config_keys(ConfigFileFlagParser("config").parse(spec))
  for arg in argv:
    key = arg.split("=", 1)[0].lstrip("-").removeprefix("no")
    if key.startswith("config.") and key[len("config."):] not in keys:
      key = key[len("config."):]
      close = difflib.get_close_matches(key, keys, n=1)
      return (f"ERROR: unknown config key {key} (--config.{key}): the config of {spec} has no "
              "such field" + (f"; did you mean {close[0]}?" if close else ""))
  return None


if __name__ == "__main__":
  app.run(main, flags_parser=parse_flags)
