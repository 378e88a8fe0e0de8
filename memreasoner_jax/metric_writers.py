"""Metrics to disk: JSON lines always, TensorBoard event files through tensorboardX.

Only process 0 writes; the other processes get writers that drop everything, so the training
loop never asks which process it is on.
"""

import json
import os
import time

import jax
import tensorboardX


class TensorBoardWriter:
  """Scalars into an event file in `logdir` (tensorboardX; no TensorFlow needed)."""

  def __init__(self, logdir: str):
    self._writer = tensorboardX.SummaryWriter(logdir)

  def write(self, step: int, scalars: dict[str, float]) -> None:
    for tag, value in scalars.items():
      self._writer.add_scalar(tag, value, step)
    # Visible in TensorBoard at each log step, like the JSON lines, not after flush_secs.
    self._writer.flush()

  def close(self) -> None:
    self._writer.close()


class JsonlWriter:
  """One JSON object per line: {"step": s, "name": value, ...}; appends across restarts."""

  def __init__(self, path: str):
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    self.path = path
    self._file = open(path, "a", encoding="utf-8")

  def write(self, step: int, scalars: dict[str, float]) -> None:
    self._file.write(json.dumps({"step": step, **scalars}) + "\n")
    self._file.flush()

  def close(self) -> None:
    self._file.close()


class MetricWriter:
  """JSON lines at `workdir/metrics.jsonl` and TensorBoard files in `workdir/tensorboard`.

  Values are written as Python floats; on processes other than 0 every call is a no-op.
  """

  def __init__(self, workdir: str):
    self._writers = []
    if jax.process_index() == 0:
      self._writers = [JsonlWriter(os.path.join(workdir, "metrics.jsonl")),
                       TensorBoardWriter(os.path.join(workdir, "tensorboard"))]

  def write(self, step: int, scalars: dict[str, float]) -> None:
    scalars = {k: float(v) for k, v in scalars.items()}
    for writer in self._writers:
      writer.write(step, scalars)

  def close(self) -> None:
    for writer in self._writers:
      writer.close()


def read_jsonl(path: str) -> list[dict[str, float]]:
  """The records of a metrics.jsonl file, in order."""
  with open(path, encoding="utf-8") as f:
    return [json.loads(line) for line in f if line.strip()]


class Throughput:
  """Steps, examples and tokens per second since the last report, and the ETA.

  Time spent in `pause()` (evaluations, the first step's compilation) is left out, so the rates
  describe training alone.
  """

  def __init__(self, step: int, num_steps: int, global_batch: int, num_hosts: int):
    self._num_steps, self._global_batch, self._num_hosts = num_steps, global_batch, num_hosts
    self.restart(step)

  def restart(self, step: int) -> None:
    self._step, self._start, self._tokens = step, time.time(), 0

  def add_tokens(self, local_tokens: int) -> None:
    self._tokens += local_tokens * self._num_hosts

  def pause_until_now(self, paused_since: float) -> None:
    self._start += time.time() - paused_since

  def report(self, step: int) -> dict[str, float]:
    seconds = max(time.time() - self._start, 1e-9)
    steps_per_s = (step - self._step) / seconds
    out = {"perf/steps_per_sec": steps_per_s,
           "perf/examples_per_sec": steps_per_s * self._global_batch,
           "perf/tokens_per_sec": self._tokens / seconds,
           "perf/eta_sec": (self._num_steps - step) / max(steps_per_s, 1e-9)}
    self.restart(step)
    return out
