"""Reads the tensors of a Hugging Face checkpoint directory as numpy arrays, without torch.

Supported: `model.safetensors`, `pytorch_model.bin` (PyTorch's zip format, read with a restricted
unpickler that only rebuilds tensors, so no code in the file runs and torch is not needed), and
either one sharded with its `*.index.json`. Every tensor comes back as float32 or its integer
dtype, with the name of the file it came from, so errors can point at the file.
"""

import collections
import json
import os
import pickle
import zipfile

import ml_dtypes
import numpy as np

# Weight files in order of preference: safetensors first (no pickle at all).
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json",
                "pytorch_model.bin", "pytorch_model.bin.index.json")

# PyTorch storage class names -> numpy dtypes.
_STORAGE_DTYPES = {
    "FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
    "BFloat16Storage": ml_dtypes.bfloat16, "LongStorage": np.int64, "IntStorage": np.int32,
    "ShortStorage": np.int16, "CharStorage": np.int8, "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


class Weights(dict):
  """Tensor name -> array; `file_of(name)` says which file of the directory holds it."""

  def __init__(self, directory: str):
    super().__init__()
    self.directory = directory
    self._files: dict[str, str] = {}

  def add(self, tensors: dict[str, np.ndarray], path: str) -> None:
    for name, array in tensors.items():
      self[name] = array
      self._files[name] = path

  def file_of(self, name: str) -> str:
    return self._files.get(name, self.directory)


def read_weights(directory: str) -> Weights:
  """All tensors of the checkpoint in `directory` (floating point ones as float32)."""
  if not os.path.isdir(directory):
    raise FileNotFoundError(f"checkpoint directory {directory} does not exist")
  present = [f for f in WEIGHT_FILES if os.path.isfile(os.path.join(directory, f))]
  if not present:
    raise FileNotFoundError(
        f"checkpoint directory {directory} holds no weights: expected one of "
        f"{', '.join(WEIGHT_FILES)}; found {sorted(os.listdir(directory))}")
  path = os.path.join(directory, present[0])
  weights = Weights(directory)
  for shard in _shards(path):
    weights.add({k: _as_float32(v) for k, v in _read_file(shard).items()}, shard)
  return weights


def _shards(path: str) -> list[str]:
  """The files to read: the file itself, or the shards an index file lists."""
  if not path.endswith(".index.json"):
    return [path]
  with open(path, encoding="utf-8") as f:
    weight_map = json.load(f).get("weight_map")
  if not weight_map:
    raise ValueError(f"{path}: no 'weight_map' in the shard index")
  directory = os.path.dirname(path)
  return [os.path.join(directory, name) for name in sorted(set(weight_map.values()))]


def _read_file(path: str) -> dict[str, np.ndarray]:
  if not os.path.isfile(path):
    raise FileNotFoundError(f"weight file {path} does not exist (named by the shard index)")
  if path.endswith(".safetensors"):
    from safetensors.numpy import load_file  # pylint: disable=g-import-not-at-top
    try:
      return load_file(path)
    except Exception as e:  # safetensors raises its own error types; say which file failed
      raise ValueError(f"{path}: cannot read safetensors file: {e}") from e
  return read_torch_zip(path)


def _as_float32(array: np.ndarray) -> np.ndarray:
  floating = np.issubdtype(array.dtype, np.floating) or array.dtype == ml_dtypes.bfloat16
  return array.astype(np.float32) if floating else array


def read_torch_zip(path: str) -> dict[str, np.ndarray]:
  """A state dict saved by `torch.save` (zip format, PyTorch >= 1.6) as numpy arrays."""
  if not zipfile.is_zipfile(path):
    raise ValueError(
        f"{path}: not a zip-format PyTorch file (saved by PyTorch < 1.6?); re-save it with a "
        "recent PyTorch or convert it to model.safetensors")
  with zipfile.ZipFile(path) as archive:
    pickles = [n for n in archive.namelist() if n.endswith("/data.pkl") or n == "data.pkl"]
    if len(pickles) != 1:
      raise ValueError(f"{path}: expected one data.pkl in the archive, found {pickles}")
    root = pickles[0][:-len("data.pkl")]
    byteorder = root + "byteorder"
    if byteorder in archive.namelist() and archive.read(byteorder).strip() != b"little":
      raise ValueError(f"{path}: big-endian PyTorch files are not supported")
    unpickler = _TensorUnpickler(archive, root, path)
    state = unpickler.load()
  if not isinstance(state, dict):
    raise ValueError(f"{path}: holds a {type(state).__name__}, not a state dict of tensors")
  return {name: np.ascontiguousarray(t) for name, t in state.items() if isinstance(t, np.ndarray)}


class _TensorUnpickler(pickle.Unpickler):
  """Rebuilds tensors as numpy arrays and refuses every other global the pickle names."""

  def __init__(self, archive: zipfile.ZipFile, root: str, path: str):
    super().__init__(archive.open(root + "data.pkl"))
    self._archive, self._root, self._path = archive, root, path
    self._storages: dict[str, np.ndarray] = {}

  def find_class(self, module: str, name: str):
    if module == "collections" and name == "OrderedDict":
      return collections.OrderedDict
    if module == "torch._utils" and name == "_rebuild_tensor_v2":
      return _rebuild_tensor
    if module == "torch._utils" and name == "_rebuild_parameter":
      return lambda data, requires_grad, hooks: data
    if module == "torch" and name in _STORAGE_DTYPES:
      return np.dtype(_STORAGE_DTYPES[name])  # a storage class stands for its dtype
    raise pickle.UnpicklingError(
        f"{self._path}: the pickle names {module}.{name}, which is not a tensor; only plain "
        "state dicts of tensors can be read (convert the file to model.safetensors)")

  def persistent_load(self, pid):
    kind, dtype, key, _, numel = pid
    if kind != "storage" or not isinstance(dtype, np.dtype):
      raise pickle.UnpicklingError(f"{self._path}: unsupported persistent id {pid[:2]}")
    if key not in self._storages:
      data = self._archive.read(f"{self._root}data/{key}")
      self._storages[key] = np.frombuffer(data, dtype, count=numel)
    return self._storages[key]


def _rebuild_tensor(storage: np.ndarray, offset: int, size: tuple[int, ...],
                    stride: tuple[int, ...], *unused) -> np.ndarray:
  """A (possibly strided) view of a storage, copied so it owns its memory."""
  del unused  # requires_grad, backward hooks, metadata
  item = storage.itemsize
  view = np.lib.stride_tricks.as_strided(storage[offset:], shape=tuple(size),
                                         strides=tuple(s * item for s in stride))
  return np.array(view)
