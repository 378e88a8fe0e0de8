"""Small random Hugging Face BERT and GPT-2 checkpoints written to disk, for the import tests."""

import os

import numpy as np
import pytest

# Offline only: nothing may reach a hub from the tests.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

torch = pytest.importorskip("torch", reason="torch not installed (pip install -e .[test])")
transformers = pytest.importorskip(
    "transformers", reason="transformers not installed (pip install -e .[test])")

BERT = dict(vocab_size=120, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
            intermediate_size=96, max_position_embeddings=40, type_vocab_size=2)
GPT2 = dict(vocab_size=130, n_embd=64, n_layer=2, n_head=4, n_positions=64,
            bos_token_id=129, eos_token_id=129)


def randomize(model, seed: int):
  """Every parameter random (LayerNorm scales around 1), so no slot keeps a telltale 0 or 1."""
  gen = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for name, p in model.named_parameters():
      noise = torch.randn(p.shape, generator=gen)
      is_scale = "LayerNorm.weight" in name or (".ln_" in name and name.endswith("weight"))
      p.copy_(1.0 + 0.1 * noise if is_scale else 0.2 * noise)
  return model.eval()


def save(model, directory: str, fmt: str) -> str:
  """Writes config.json and the weights as model.safetensors or pytorch_model.bin."""
  if fmt == "safetensors":
    model.save_pretrained(directory)
  else:
    model.config.save_pretrained(directory)
    torch.save(model.state_dict(), os.path.join(directory, "pytorch_model.bin"))
  return directory


def bert(cls_name: str = "BertModel", seed: int = 0):
  return randomize(getattr(transformers, cls_name)(transformers.BertConfig(**BERT)), seed)


def gpt2(cls_name: str = "GPT2LMHeadModel", seed: int = 1):
  return randomize(getattr(transformers, cls_name)(transformers.GPT2Config(**GPT2)), seed)


def rel_err(ours: np.ndarray, theirs: np.ndarray) -> float:
  """Largest absolute difference relative to the largest value of the reference."""
  return float(np.abs(np.asarray(ours) - theirs).max() / np.abs(theirs).max())
