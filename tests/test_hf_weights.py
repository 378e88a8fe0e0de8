"""The checkpoint reader: PyTorch zip files without torch, sharded checkpoints, bad files."""

import json
import os
import pickle

import ml_dtypes
import numpy as np
import pytest
from safetensors import numpy as safetensors_np

from memreasoner_jax.pretrained import hf_weights
from tests import hf_models

torch = hf_models.torch


def test_torch_file_views_dtypes_and_shared_storage(tmp_path):
  base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
  state = {"transposed": base.t(), "slice": base[1:3, 2:5], "shared": base,
           "half": base.half(), "bf16": base.bfloat16()[0], "ids": torch.arange(5)}
  path = str(tmp_path / "pytorch_model.bin")
  torch.save(state, path)
  got = hf_weights.read_torch_zip(path)
  assert got.keys() == state.keys()
  for name, tensor in state.items():
    expected = tensor.float().numpy() if tensor.dtype == torch.bfloat16 else tensor.numpy()
    np.testing.assert_array_equal(got[name].astype(expected.dtype), expected)
  assert got["bf16"].dtype == ml_dtypes.bfloat16 and got["ids"].dtype == np.int64


def test_floats_become_float32_and_directory_files_are_named(tmp_path):
  torch.save({"w": torch.ones(2, 3, dtype=torch.float16)}, tmp_path / "pytorch_model.bin")
  weights = hf_weights.read_weights(str(tmp_path))
  assert weights["w"].dtype == np.float32
  assert weights.file_of("w") == str(tmp_path / "pytorch_model.bin")


def test_sharded_safetensors(tmp_path):
  shards = {"a.safetensors": {"x": np.ones(3, np.float32)},
            "b.safetensors": {"y": np.zeros((2, 2), np.float32)}}
  for name, tensors in shards.items():
    safetensors_np.save_file(tensors, str(tmp_path / name))
  index = {"weight_map": {k: name for name, ts in shards.items() for k in ts}}
  (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
  weights = hf_weights.read_weights(str(tmp_path))
  assert sorted(weights) == ["x", "y"]
  assert weights.file_of("y") == str(tmp_path / "b.safetensors")
  os.remove(tmp_path / "b.safetensors")
  with pytest.raises(FileNotFoundError, match="b.safetensors does not exist"):
    hf_weights.read_weights(str(tmp_path))


def test_pickle_with_code_is_refused(tmp_path):
  path = str(tmp_path / "pytorch_model.bin")
  torch.save({"w": torch.ones(2), "extra": torch.nn.Linear(2, 2)}, path)
  with pytest.raises(pickle.UnpicklingError, match="names torch.nn.*not a tensor"):
    hf_weights.read_torch_zip(path)


def test_legacy_and_missing_files(tmp_path):
  legacy = tmp_path / "pytorch_model.bin"
  legacy.write_bytes(b"\x80\x02not a zip")
  with pytest.raises(ValueError, match="pytorch_model.bin: not a zip-format PyTorch file"):
    hf_weights.read_weights(str(tmp_path))
  with pytest.raises(FileNotFoundError, match="does not exist"):
    hf_weights.read_weights(str(tmp_path / "nowhere"))
