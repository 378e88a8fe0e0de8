"""Metrics to disk: JSON lines always, TensorBoard event files without TensorFlow.

Only process 0 writes; the other processes get writers that drop everything, so the training
loop never asks which process it is on.

The event file is written by hand: a TFRecord stream (length, masked CRC-32C, payload, masked
CRC-32C) of `Event` protocol buffers holding scalar `Summary` values. That is all TensorBoard
needs to plot scalars, and it saves a TensorFlow (or tensorboardX + protobuf) dependency.
"""

import json
import os
import socket
import struct
import time

import jax

_CRC32C_POLY = 0x82F63B78  # Castagnoli, reflected
_CRC32C_TABLE = []
for _byte in range(256):
  _crc = _byte
  for _ in range(8):
    _crc = (_crc >> 1) ^ (_CRC32C_POLY if _crc & 1 else 0)
  _CRC32C_TABLE.append(_crc)


def crc32c(data: bytes) -> int:
  crc = 0xFFFFFFFF
  for b in data:
    crc = _CRC32C_TABLE[(crc ^ b) & 0xFF] ^ (crc >> 8)
  return crc ^ 0xFFFFFFFF


def masked_crc32c(data: bytes) -> int:
  """TFRecord's CRC: rotated and offset so a CRC of CRCs does not look like data."""
  crc = crc32c(data)
  return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def _varint(n: int) -> bytes:
  out = bytearray()
  while True:
    byte, n = n & 0x7F, n >> 7
    out.append(byte | (0x80 if n else 0))
    if not n:
      return bytes(out)


def _field(number: int, wire_type: int, payload: bytes) -> bytes:
  """One protobuf field; wire type 2 (length-delimited) gets its length prefix."""
  key = _varint(number << 3 | wire_type)
  return key + (_varint(len(payload)) + payload if wire_type == 2 else payload)


def event_proto(wall_time: float, step: int, scalars: dict[str, float] | None = None,
                file_version: str | None = None) -> bytes:
  """tensorflow.Event: wall_time=1 (double), step=2 (int64), file_version=3, summary=5.

  Summary.value=1 holds Summary.Value messages with tag=1 (string), simple_value=2 (float).
  """
  out = _field(1, 1, struct.pack("<d", wall_time)) + _field(2, 0, _varint(step))
  if file_version is not None:
    out += _field(3, 2, file_version.encode())
  if scalars:
    values = b"".join(
        _field(1, 2, _field(1, 2, tag.encode()) + _field(2, 5, struct.pack("<f", value)))
        for tag, value in scalars.items())
    out += _field(5, 2, values)
  return out


def tfrecord(payload: bytes) -> bytes:
  length = struct.pack("<Q", len(payload))
  return (length + struct.pack("<I", masked_crc32c(length)) + payload
          + struct.pack("<I", masked_crc32c(payload)))


class TensorBoardWriter:
  """Scalars into `logdir/events.out.tfevents.<time>.<host>`."""

  def __init__(self, logdir: str):
    os.makedirs(logdir, exist_ok=True)
    now = time.time()
    self.path = os.path.join(logdir, f"events.out.tfevents.{int(now)}.{socket.gethostname()}")
    self._file = open(self.path, "ab")
    self._file.write(tfrecord(event_proto(now, 0, file_version="brain.Event:2")))

  def write(self, step: int, scalars: dict[str, float]) -> None:
    self._file.write(tfrecord(event_proto(time.time(), step, scalars)))
    self._file.flush()

  def close(self) -> None:
    self._file.close()


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
