"""Orbax checkpoints in `workdir/checkpoints`: save, resume, refuse what does not fit, preemption,
and the workdir lock that keeps a second run off the same workdir.

Each step directory `checkpoints/<step>/` holds four items:
  state     the TrainState (step, params, opt_state) as sharded arrays (OCDBT/Zarr)
  config    the whole run config as JSON
  metadata  what the model is: model config, parameter shapes, tokenizers (JSON)
  data      the training iterator's position (JSON), so a resumed run reads the same batches

Saves are asynchronous: the arrays are copied off the devices and written in the background while
training goes on. Restoring reshards onto whatever mesh the restoring run has; `restore_params`
reads only the parameters (no optimizer state), for inference.
"""

from collections.abc import Callable
import contextlib
import json
import logging as python_logging
import os
import signal
import socket
import tempfile
from typing import Any, NamedTuple
import zipfile

from absl import logging
import jax
from jax.experimental import multihost_utils
import ml_collections
import numpy as np
import orbax.checkpoint as ocp

from memreasoner_jax.data import tokenizers as tokenizers_lib

ITEMS = ("state", "config", "metadata", "data")
# Config fields naming tokenizer files, which an exported checkpoint carries with it.
TOKENIZER_FIELDS = ("encoder_tokenizer", "decoder_tokenizer")
FORMAT_VERSION = 1
LOCK_FILE = "run.lock"  # in the workdir while a run trains there: {"host": ..., "pid": ...}


def quiet_orbax_logs() -> None:
  """Keeps orbax's per-save and per-restore INFO chatter out of command-line logs (its
  warnings still show)."""
  logging.get_absl_handler().addFilter(
      lambda r: r.levelno >= python_logging.WARNING or "/orbax/" not in r.pathname)


@contextlib.contextmanager
def quiet_failures():
  """Silences orbax's logs and asyncio's task errors around a restore that may fail: a failing
  step prints hundreds of lines, and the caller says what happened in one warning."""
  loggers = [python_logging.getLogger(name) for name in ("absl", "asyncio")]
  levels = [logger.level for logger in loggers]
  for logger in loggers:
    logger.setLevel(python_logging.CRITICAL)
  try:
    yield
  finally:
    for logger, level in zip(loggers, levels):
      logger.setLevel(level)


class IncompatibleCheckpointError(ValueError):
  """The workdir holds a checkpoint of a different model than the config describes."""


class UnreadableCheckpointError(ValueError):
  """No step of a checkpoint could be read (files missing or corrupt)."""


def _model_fields(config: ml_collections.ConfigDict, abstract_params: Any) -> dict[str, Any]:
  """The metadata a config and its parameter shapes determine (JSON-able)."""
  shapes = {jax.tree_util.keystr(path): [list(leaf.shape), str(leaf.dtype)]
            for path, leaf in jax.tree_util.tree_flatten_with_path(abstract_params)[0]}
  return json.loads(json.dumps({
      "format": FORMAT_VERSION,
      "model": config.model.to_dict(),
      "param_shapes": shapes,
      "num_params": int(sum(np.prod(s) for s, _ in shapes.values())),
  }))


def model_metadata(config: ml_collections.ConfigDict, abstract_params: Any,
                   tokenizers: dict[str, tokenizers_lib.Tokenizer]) -> dict[str, Any]:
  """What a checkpoint must agree on to be restored into this model (JSON-able).

  `tokenizers` are the encoder's and decoder's; their specs (paths) are kept for information,
  their digests for the comparison.
  """
  return {**_model_fields(config, abstract_params),
          "tokenizers": {part: tok.spec for part, tok in tokenizers.items()},
          "tokenizer_digests": {part: tok.digest for part, tok in tokenizers.items()}}


def _flatten(tree: Any, prefix: str) -> dict[str, Any]:
  if isinstance(tree, dict):
    out = {}
    for key, value in tree.items():
      out.update(_flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return out
  return {prefix: tree}


# Model fields that choose how the same parameters are computed with, not what they are: a run
# may resume with another attention implementation, rematerialisation, pseudo-inverse method or
# encoder chunking (on another platform, or written before the field existed).
EXECUTION_FIELDS = ("model.attention", "model.remat", "model.memory.pinv",
                    "model.encoder.encode_chunk")
# Model fields added after checkpoints were written, with the value a checkpoint without one
# was trained with (the model reads them with the same default).
ADDED_FIELDS = {"model.decoder.copy": False, "model.memory.recency": 0.0,
                "model.memory.learn_recency": False, "model.hops.before_gate": False,
                "model.decoder.copy_written": False, "model.hops.skip_read": False,
                "model.memory.latest_margin": 0.0, "model.memory.latest_alike": -1.0,
                "model.memory.eval_recency": True}


def differences(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
  """Human-readable `key: checkpoint X, config Y` lines for every field that differs.

  Paths say where files were, not what the model is: tokenizers are compared by digest
  (checkpoints older than digests by spec) and the init_from directories, read only to
  initialise, not at all. So a workdir or tokenizer moved to another mount still resumes.
  EXECUTION_FIELDS are not compared either, and an ADDED_FIELDS field a checkpoint lacks
  counts as its default.
  """
  tokenizers_key = "tokenizer_digests" if "tokenizer_digests" in saved else "tokenizers"
  lines = []
  for section in ("format", tokenizers_key, "model", "param_shapes"):
    prefix = "" if section == "param_shapes" else section
    old, new = _flatten(saved.get(section), prefix), _flatten(current.get(section), prefix)
    for key in sorted(set(old) | set(new)):
      if key.endswith(".init_from") or key in EXECUTION_FIELDS:
        continue
      absent = ADDED_FIELDS.get(key, "<absent>")
      if old.get(key, absent) != new.get(key, absent):
        name = f"param {key}" if section == "param_shapes" else key
        lines.append(f"{name}: checkpoint {old.get(key, absent)!r}, "
                     f"this config {new.get(key, absent)!r}")
  return lines


class Checkpointer:
  """Saves and restores training runs in `workdir/checkpoints` (every process calls it)."""

  def __init__(self, workdir: str, keep: int):
    self.directory = f"{workdir.rstrip('/')}/checkpoints"
    self._manager = ocp.CheckpointManager(
        self.directory, item_names=ITEMS,
        options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True,
                                             enable_async_checkpointing=True))

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def all_steps(self) -> list[int]:
    return sorted(self._manager.all_steps())

  def save(self, step: int, state: Any, config: ml_collections.ConfigDict,
           metadata: dict[str, Any], data_state: dict[str, Any]) -> None:
    """Starts an asynchronous save of everything needed to resume at `step`."""
    self._manager.save(step, force=True, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state),
        config=ocp.args.JsonSave(json.loads(config.to_json())),
        metadata=ocp.args.JsonSave(metadata),
        data=ocp.args.JsonSave(data_state)))

  def metadata(self, step: int) -> dict[str, Any]:
    restored = self._manager.restore(step, args=ocp.args.Composite(metadata=ocp.args.JsonRestore()))
    return restored.metadata

  def check_compatible(self, step: int, metadata: dict[str, Any]) -> None:
    """Raises IncompatibleCheckpointError naming every field that differs."""
    diff = differences(self.metadata(step), metadata)
    if diff:
      shown = "\n  ".join(diff[:20]) + ("\n  ..." if len(diff) > 20 else "")
      raise IncompatibleCheckpointError(
          f"The checkpoint at {self.directory}/{step} was written by a different model than "
          f"this config describes ({len(diff)} difference(s)):\n  {shown}\n"
          "Use a fresh --workdir, or the config the checkpoint was trained with (its "
          "config item holds it).")

  def restore(self, abstract_state: Any,
              metadata: dict[str, Any]) -> tuple[Any, dict[str, Any], int] | None:
    """(state, data_state, step) from the latest readable checkpoint, or None if there is none.

    `abstract_state` gives shapes, dtypes and shardings (the target mesh). A checkpoint of another
    model is an error; an unreadable (corrupt or partial) one, its metadata included, is skipped
    for the one before it, with a warning saying so.
    """
    steps = self.all_steps()
    if not steps:
      return None
    for step in reversed(steps):
      try:
        self.check_compatible(step, metadata)
        with quiet_failures():
          restored = self._manager.restore(step, args=ocp.args.Composite(
              state=ocp.args.StandardRestore(abstract_state), data=ocp.args.JsonRestore()))
      except IncompatibleCheckpointError:
        raise
      except Exception as e:  # pylint: disable=broad-except  (any unreadable step falls back)
        logging.warning("Checkpoint %s/%d is unreadable (%s: %s); trying the one before it",
                        self.directory, step, type(e).__name__, _first_line(e))
        continue
      logging.info("Restored step %d from %s", step, self.directory)
      return restored.state, restored.data, step
    raise RuntimeError(f"No readable checkpoint in {self.directory} (steps {steps})")

  def wait(self) -> None:
    """Blocks until pending saves are on disk."""
    self._manager.wait_until_finished()

  def close(self) -> None:
    self._manager.wait_until_finished()
    self._manager.close()


class WorkdirLockedError(RuntimeError):
  """Another run holds the workdir."""


def _alive(pid: int) -> bool:
  try:
    os.kill(pid, 0)  # signal 0 only checks that the process exists
  except ProcessLookupError:
    return False
  except PermissionError:  # another user's process
    return True
  return True


class WorkdirLock:
  """One training run per workdir: process 0 holds `workdir/run.lock` (its host and pid).

  A second run on the same workdir stops at once naming the holder. A lock left by a process
  that died on this host is taken over with a warning; a lock from another host cannot be
  checked from here, so the error says to delete it once that run is gone. Every process of a
  multi-host run stops together.
  """

  def __init__(self, workdir: str):
    self.path = os.path.join(workdir, LOCK_FILE)
    self._held = False

  def __enter__(self) -> "WorkdirLock":
    error = ""
    if jax.process_index() == 0:
      try:
        self._acquire()
      except WorkdirLockedError as e:
        error = str(e)
    if jax.process_count() > 1 and multihost_utils.broadcast_one_to_all(np.int32(bool(error))):
      error = error or f"process 0 could not take the workdir lock {self.path}"
    if error:
      raise WorkdirLockedError(error)
    return self

  def __exit__(self, *exc_info) -> None:
    if self._held:
      os.remove(self.path)
      self._held = False

  def _acquire(self) -> None:
    me = {"host": socket.gethostname(), "pid": os.getpid()}
    for _ in range(2):  # a second try after taking over a stale lock
      try:
        fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
      except FileExistsError:
        holder = self._holder()
        if holder.get("host") != me["host"] or _alive(holder["pid"]):
          break
        logging.warning("Taking over the workdir lock %s of process %d on %s, which is no longer "
                        "running", self.path, holder["pid"], holder["host"])
        try:
          os.remove(self.path)
        except FileNotFoundError:
          pass
        continue
      with os.fdopen(fd, "w") as f:
        json.dump(me, f)
      self._held = True
      return
    raise WorkdirLockedError(
        f"Another run is using this workdir: {self.path} is held by "
        f"{self._describe(self._holder())}. Use another --workdir, or wait for that run to end "
        "(if it is gone, delete the lock file).")

  def _holder(self) -> dict[str, Any]:
    try:
      with open(self.path, encoding="utf-8") as f:
        holder = json.load(f)
      return holder if isinstance(holder.get("pid"), int) else {}
    except (OSError, ValueError, AttributeError):
      return {}  # being written, gone, or not ours: treated as held by an unknown process

  @staticmethod
  def _describe(holder: dict[str, Any]) -> str:
    if not holder:
      return "an unknown process (the lock file is unreadable)"
    return f"the run of host {holder['host']}, pid {holder['pid']}"


class RestoredParams(NamedTuple):
  params: Any
  config: ml_collections.ConfigDict  # the run's whole config, locked
  metadata: dict[str, Any]  # model_metadata() as saved
  step: int
  directory: str  # the step directory read


def checkpoint_steps(path: str) -> tuple[str, list[int]]:
  """(checkpoints directory, steps to try newest first) for a workdir, its `checkpoints/`
  directory, or one step directory `checkpoints/<step>`; a clear error for anything else."""
  path = os.path.abspath(path)
  if not os.path.isdir(path):
    name, parent = os.path.basename(path), os.path.dirname(path)
    found = sorted(int(n) for n in os.listdir(parent) if n.isdigit()) if name.isdigit() and \
        os.path.isdir(parent) else []
    raise FileNotFoundError(f"No checkpoint at {path}: no such directory" + (
        f"; the steps in {parent} are {', '.join(map(str, found))}" if found else ""))
  name = os.path.basename(path)
  if name.isdigit() and _holds_items(path):
    return os.path.dirname(path), [int(name)]
  directory = os.path.join(path, "checkpoints") if os.path.isdir(
      os.path.join(path, "checkpoints")) else path
  steps = sorted((int(n) for n in os.listdir(directory)
                  if n.isdigit() and os.path.isdir(os.path.join(directory, n))), reverse=True)
  if not steps:
    raise FileNotFoundError(
        f"No checkpoint at {path}: expected a training workdir (holding checkpoints/<step>/), "
        "its checkpoints/ directory, one step directory checkpoints/<step> (under any name), or "
        "an exported checkpoint (each holds state/, config/ and metadata/)")
  return directory, steps


def _holds_items(path: str) -> bool:
  return any(os.path.exists(os.path.join(path, i)) for i in ITEMS)


def _step_dirs(path: str) -> list[tuple[str, int | None]]:
  """(directory, step) to try newest first; the step is None for a step directory under another
  name (copied out, exported), whose state holds it."""
  path = os.path.abspath(path)
  if os.path.isdir(path) and _holds_items(path) and not os.path.basename(path).isdigit():
    return [(path, None)]
  directory, steps = checkpoint_steps(path)
  return [(os.path.join(directory, str(step)), step) for step in steps]


def _missing_items(step_dir: str) -> list[str]:
  return [i for i in ("state", "config", "metadata") if not os.path.isdir(os.path.join(step_dir, i))]


def restore_params(path: str, abstract_params: Callable[[ml_collections.ConfigDict], Any]
                   ) -> RestoredParams:
  """The parameters of the newest readable step under `path`, without the optimizer state.

  `path` is a workdir, its checkpoints/, or one step directory under any name (an exported
  checkpoint is one). `abstract_params(config)` gives the parameter tree as ShapeDtypeStructs
  with the shardings to restore onto (any device count: orbax reshards). A workdir's newest
  unreadable step (files missing or corrupt) is skipped for the one before it with one warning;
  an explicit step directory that cannot be read is an error naming what is wrong. Relative
  tokenizer paths in the config (an export's) are resolved against the step directory.
  """
  problems = []
  for step_dir, step in _step_dirs(path):
    missing = _missing_items(step_dir)
    if missing:
      problems.append(f"{step_dir} is incomplete: missing {', '.join(missing)}")
    else:
      try:
        with quiet_failures():
          restored = _restore_step(step_dir, step, abstract_params)
        if problems:
          logging.warning("Restored step %d instead: %s", restored.step, "; ".join(problems))
        return restored
      except IncompatibleCheckpointError:
        raise
      except Exception as e:  # pylint: disable=broad-except  (any unreadable step falls back)
        problems.append(f"{step_dir} is unreadable ({type(e).__name__}: {_first_line(e)})")
  raise UnreadableCheckpointError("No readable checkpoint at " + path + ":\n  "
                                  + "\n  ".join(problems))


@contextlib.contextmanager
def unzipped(path: str):
  """The checkpoint folder inside the zip file `path`, extracted to a temporary directory that
  is deleted on exit (a zip of a folder, or of the folder's contents)."""
  with tempfile.TemporaryDirectory(prefix="memreasoner_jax_") as tmp:
    with zipfile.ZipFile(path) as archive:
      archive.extractall(tmp)
    entries = os.listdir(tmp)
    one = len(entries) == 1 and os.path.isdir(os.path.join(tmp, entries[0]))
    yield os.path.join(tmp, entries[0]) if one and not _holds_items(tmp) else tmp


def save_params(directory: str, params: Any, step: int, config: ml_collections.ConfigDict,
                metadata: dict[str, Any]) -> None:
  """An inference-only step directory: parameters and step, config and metadata (no optimizer
  state, no data position); `restore_params` reads it."""
  checkpointer = ocp.Checkpointer(ocp.CompositeCheckpointHandler())
  try:
    checkpointer.save(directory, args=ocp.args.Composite(
        state=ocp.args.StandardSave({"params": params, "step": np.array(step, np.int32)}),
        config=ocp.args.JsonSave(json.loads(config.to_json())),
        metadata=ocp.args.JsonSave(metadata)))
  finally:
    checkpointer.close()


def _first_line(error: Exception) -> str:
  return (str(error).strip().splitlines() or [""])[0]


def _restore_step(step_dir: str, step: int | None,
                  abstract_params: Callable[[ml_collections.ConfigDict], Any]) -> RestoredParams:
  checkpointer = ocp.Checkpointer(ocp.CompositeCheckpointHandler())
  try:
    saved = checkpointer.restore(step_dir, args=ocp.args.Composite(
        config=ocp.args.JsonRestore(), metadata=ocp.args.JsonRestore()))
    config = ml_collections.ConfigDict(saved.config)
    for field in TOKENIZER_FIELDS:
      spec = config.data.get(field, "")
      if spec and not os.path.isabs(spec) and os.path.exists(os.path.join(step_dir, spec)):
        config.data[field] = os.path.join(step_dir, spec)
    config.lock()
    target = abstract_params(config)
    diff = differences(saved.metadata, {**saved.metadata, **_model_fields(config, target)})
    if diff:
      raise IncompatibleCheckpointError(
          f"Checkpoint {step_dir} does not match the model its own config builds with this "
          "version of the code:\n  " + "\n  ".join(diff[:20]))
    item = {"params": target, "step": np.zeros((), np.int32)}
    state = checkpointer.restore(step_dir, args=ocp.args.Composite(state=ocp.args.PyTreeRestore(
        item=item, restore_args=ocp.checkpoint_utils.construct_restore_args(item),
        partial_restore=True))).state
  finally:
    checkpointer.close()
  return RestoredParams(state["params"], config, saved.metadata,
                        int(state["step"]) if step is None else step, step_dir)


class Preemption:
  """Says when a preempted run should save and stop.

  One process: a SIGTERM handler sets a flag that the loop reads after each step. Several
  processes: JAX's preemption sync point, which agrees across hosts on the first step every host
  can still reach (the JAX runtime itself catches SIGTERM there).
  """

  def __init__(self):
    self._signalled = False
    self._multihost = jax.process_count() > 1
    self._previous = None
    if not self._multihost:
      self._previous = signal.signal(signal.SIGTERM, self._on_sigterm)

  def _on_sigterm(self, signum, frame) -> None:
    del signum, frame
    logging.warning("SIGTERM received: saving a checkpoint after this step, then stopping")
    self._signalled = True

  def reached(self, step: int) -> bool:
    if self._multihost:
      return multihost_utils.reached_preemption_sync_point(step)
    return self._signalled

  def close(self) -> None:
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)
      self._previous = None
