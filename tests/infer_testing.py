"""Shared by the inference tests: one qa1 checkpoint trained on 8 fake devices per test run.

The run is short but learns (supporting-fact loss on every example, decoder conditioned on the
read fact as well as the readout, a higher learning rate). Its own final evaluation decodes
every held-out answer into the log; those lines are kept in `eval_answers.json` beside the
workdir, so other processes can compare their answers with what the training process produced.
Under pytest-xdist the workers share one run through a file lock.
"""

import ast
import dataclasses
import fcntl
import json
import logging
import os
import re

from absl import logging as absl_logging

from memreasoner_jax.configs import babi
from memreasoner_jax import train
from tests import train_testing

ARG = "qa1,tiny"
# Batches of 16: two examples per fake device (see BUILD_NOTES.md, "Inference and evaluation",
# on batched LAPACK calls and eight fake devices on two cores).
OVERRIDES = {
    "training.num_steps": 240, "training.log_every": 60, "training.eval_every": 10000,
    "training.checkpoint_every": 10000, "data.sf_fraction": 1.0, "data.global_batch": 16,
    "data.eval_batch": 16, "data.train_examples": 2000, "data.eval_examples": 48,
    "eval.num_samples": 48, "optimizer.warmup_steps": 20, "optimizer.learning_rate": 3e-3,
}
_SAMPLE = re.compile(r"^\[qa1 sample\] (.*) -> ('.*'|\".*\") \(target ('.*'|\".*\")\)$")


@dataclasses.dataclass(frozen=True)
class Trained:
  workdir: str
  scores: dict[str, float]  # the training process's final evaluation
  answers: list[dict[str, str]]  # its decoded held-out answers: question, output, target


def config():
  cfg = babi.get_config(ARG)
  for key, value in OVERRIDES.items():
    section, name = key.split(".")
    cfg[section][name] = value
  cfg.model.decoder.condition = "both"
  return cfg


class _Samples(logging.Handler):
  def __init__(self):
    super().__init__(logging.INFO)
    self.answers = []

  def emit(self, record):
    match = _SAMPLE.match(record.getMessage())
    if match:
      self.answers.append({"question": match[1], "output": ast.literal_eval(match[2]),
                           "target": ast.literal_eval(match[3])})


def _train(workdir: str) -> dict:
  handler = _Samples()
  absl_logger = logging.getLogger("absl")
  verbosity = absl_logging.get_verbosity()
  absl_logging.set_verbosity(absl_logging.INFO)
  absl_logger.addHandler(handler)
  try:
    results = train.train_and_evaluate(config(), workdir)
  finally:
    absl_logger.removeHandler(handler)
    absl_logging.set_verbosity(verbosity)
  scores = {k.split("/")[-1]: v for k, v in results.items() if k.startswith("eval/qa1/")}
  return {"scores": scores, "answers": handler.answers}


def trained_once(run_dir: str) -> Trained:
  """The run's checkpoint in `run_dir/qa1_tiny`, trained by whichever process gets here first."""
  train_testing.use_compilation_cache()
  workdir = os.path.join(run_dir, "qa1_tiny")
  record = workdir + ".eval_answers.json"
  with open(workdir + ".lock", "w") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    if not os.path.exists(record):
      with open(record + ".tmp", "w", encoding="utf-8") as f:
        json.dump(_train(workdir), f)
      os.replace(record + ".tmp", record)
  with open(record, encoding="utf-8") as f:
    saved = json.load(f)
  return Trained(workdir, saved["scores"], saved["answers"])
