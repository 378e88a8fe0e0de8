"""Starts the encoder from a Hugging Face BERT checkpoint and the decoder from a GPT-2 one.

Three steps, each a function: `configure` fills `model.encoder` / `model.decoder` from the
`config.json` of the directories named by their `init_from` fields (shapes, epsilons; anything our
blocks cannot reproduce is an error, never an approximation); the model is initialised as usual;
`apply_init_from` then overwrites the encoder's and decoder's parameters with the checkpoint's.
Parameters with no counterpart keep their initialisation: the encoder's `to_latent` (BERT's pooler
is dropped), the decoder's `memory_proj` (W_M), and the temporal, memory and hop parameters.

The name mapping is a table per architecture (`encoder_plan`, `decoder_plan`); BUILD_NOTES.md
("Pretrained weights") lists it with the conventions of the originals.
"""

import dataclasses
import json
import math
import os
from typing import Any, Callable

import ml_collections
import numpy as np

from memreasoner_jax.pretrained import hf_weights

Params = dict[str, Any]
Path = tuple[str, ...]  # a parameter's keys below params["encoder"] or params["decoder"]


# ---------------------------------------------------------------------------------------------
# config.json -> model.encoder / model.decoder fields


def read_hf_config(directory: str) -> dict[str, Any]:
  """The checkpoint's config.json as a dict."""
  path = os.path.join(directory, "config.json")
  if not os.path.isfile(path):
    raise FileNotFoundError(f"{path} does not exist: a Hugging Face checkpoint directory needs "
                            "config.json beside its weights")
  with open(path, encoding="utf-8") as f:
    return json.load(f)


# The original classes' defaults, for keys a config.json leaves out.
_BERT_DEFAULTS = {"vocab_size": 30522, "hidden_size": 768, "num_hidden_layers": 12,
                  "num_attention_heads": 12, "intermediate_size": 3072, "hidden_act": "gelu",
                  "max_position_embeddings": 512, "type_vocab_size": 2, "layer_norm_eps": 1e-12,
                  "position_embedding_type": "absolute", "pad_token_id": 0}
_GPT2_DEFAULTS = {"vocab_size": 50257, "n_positions": 1024, "n_embd": 768, "n_layer": 12,
                  "n_head": 12, "n_inner": None, "activation_function": "gelu_new",
                  "layer_norm_epsilon": 1e-5, "scale_attn_weights": True,
                  "scale_attn_by_inverse_layer_idx": False, "tie_word_embeddings": True}
# GPT-2's activation names for the tanh GELU our decoder uses (transformers' ACT2FN).
_TANH_GELUS = ("gelu_new", "gelu_pytorch_tanh", "gelu_fast")


def encoder_fields(hf: dict[str, Any], directory: str) -> dict[str, Any]:
  """`model.encoder` fields for a BERT config.json; an error for what our encoder lacks."""
  where = os.path.join(directory, "config.json")
  if hf.get("model_type") != "bert":
    raise ValueError(f"{where}: model_type {hf.get('model_type')!r} is not supported for the "
                     "encoder; supported: 'bert' (BertModel and BERT-based heads, e.g. MiniLM)")
  hf = {**_BERT_DEFAULTS, **hf}
  _require(where, hf, "hidden_act", ("gelu",), "the encoder uses BERT's exact (erf) GELU")
  _require(where, hf, "position_embedding_type", ("absolute",),
           "the encoder has learned absolute positions only")
  _require(where, hf, "pad_token_id", (0, None), "the encoder finds padding by token id 0")
  for flag in ("is_decoder", "add_cross_attention"):
    _require(where, hf, flag, (False, None), "the encoder is bidirectional self-attention only")
  return {"num_layers": hf["num_hidden_layers"], "num_heads": hf["num_attention_heads"],
          "d_model": hf["hidden_size"], "d_ff": hf["intermediate_size"],
          "vocab_size": hf["vocab_size"], "max_len": hf["max_position_embeddings"],
          "type_vocab_size": hf["type_vocab_size"], "layer_norm_eps": hf["layer_norm_eps"]}


def decoder_fields(hf: dict[str, Any], directory: str) -> dict[str, Any]:
  """`model.decoder` fields for a GPT-2 config.json; an error for what our decoder lacks."""
  where = os.path.join(directory, "config.json")
  if hf.get("model_type") != "gpt2":
    raise ValueError(f"{where}: model_type {hf.get('model_type')!r} is not supported for the "
                     "decoder; supported: 'gpt2' (GPT2Model, GPT2LMHeadModel)")
  hf = {**_GPT2_DEFAULTS, **hf}
  _require(where, hf, "activation_function", _TANH_GELUS, "the decoder uses GPT-2's tanh GELU")
  _require(where, hf, "scale_attn_weights", (True,), "attention logits are scaled by 1/sqrt(head)")
  _require(where, hf, "scale_attn_by_inverse_layer_idx", (False,),
           "attention logits are not scaled per layer")
  _require(where, hf, "tie_word_embeddings", (True,), "the output head is the token embedding")
  _require(where, hf, "add_cross_attention", (False, None), "the decoder has no cross-attention")
  d = hf["n_embd"]
  return {"num_layers": hf["n_layer"], "num_heads": hf["n_head"], "d_model": d,
          "d_ff": hf["n_inner"] or 4 * d, "vocab_size": hf["vocab_size"],
          "max_len": hf["n_positions"], "layer_norm_eps": hf["layer_norm_epsilon"]}


def _require(where: str, hf: dict[str, Any], key: str, allowed: tuple, why: str) -> None:
  if hf.get(key) not in allowed:
    raise ValueError(f"{where}: {key}={hf.get(key)!r} is not supported ({why}); "
                     f"supported: {', '.join(repr(a) for a in allowed)}")


_FIELDS = {"encoder": encoder_fields, "decoder": decoder_fields}


def model_section(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """The `model` section of a full config, or the config itself if it is one."""
  return config.model if "model" in config else config


def configure(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """A copy of `config` (full, or its `model` section) shaped after its `init_from` checkpoints.

  Fields not derived from config.json (pooling, latent size, memory, hops...) are kept.
  """
  config = config.copy_and_resolve_references()
  model = model_section(config)
  for part, fields in _FIELDS.items():
    directory = model[part].init_from
    if directory:
      model[part].update(fields(read_hf_config(directory), directory))
  return config


def check_config(model: ml_collections.ConfigDict, part: str) -> None:
  """Raises if `model.<part>` disagrees with its checkpoint's config.json in any field."""
  directory = model[part].init_from
  derived = _FIELDS[part](read_hf_config(directory), directory)
  wrong = [f"model.{part}.{k}={model[part][k]!r} but the checkpoint needs {v!r}"
           for k, v in derived.items() if model[part][k] != v]
  if wrong:
    raise ValueError(f"config does not match {os.path.join(directory, 'config.json')}: "
                     + "; ".join(wrong) + " (build the config with hf_import.configure)")


# ---------------------------------------------------------------------------------------------
# Name mapping


@dataclasses.dataclass(frozen=True)
class Tensor:
  """One checkpoint tensor and the parameter it becomes.

  `in_axes` says how a PyTorch `nn.Linear` weight (out, in) maps onto our kernel, whose first
  `in_axes` axes are inputs and the rest outputs (DenseGeneral splits heads into their own axes);
  0 means the same values in the same order, reshaped if the parameter splits heads (biases).
  """

  ours: Path
  theirs: str
  in_axes: int = 0

  def their_shape(self, our_shape: tuple[int, ...]) -> tuple[int, ...]:
    """The checkpoint shape that fits a parameter of `our_shape`."""
    if self.in_axes:
      return (math.prod(our_shape[self.in_axes:]), math.prod(our_shape[:self.in_axes]))
    return (math.prod(our_shape),) if self.theirs.endswith("bias") else tuple(our_shape)

  def convert(self, array: np.ndarray, our_shape: tuple[int, ...]) -> np.ndarray:
    return (array.T if self.in_axes else array).reshape(our_shape)


def _norm(ours: Path, theirs: str) -> list[Tensor]:
  return [Tensor(ours + ("scale",), f"{theirs}.weight"),
          Tensor(ours + ("bias",), f"{theirs}.bias")]


def _linear(ours: Path, theirs: str, in_axes: int = 1) -> list[Tensor]:
  return [Tensor(ours + ("kernel",), f"{theirs}.weight", in_axes),
          Tensor(ours + ("bias",), f"{theirs}.bias")]


def encoder_plan(num_layers: int) -> list[Tensor]:
  """BertModel names (after any "bert." prefix) for every encoder parameter but `to_latent`."""
  plan = [Tensor(("token_embed", "embedding"), "embeddings.word_embeddings.weight"),
          Tensor(("position_embed", "embedding"), "embeddings.position_embeddings.weight"),
          Tensor(("type_embed", "embedding"), "embeddings.token_type_embeddings.weight"),
          *_norm(("embed_norm",), "embeddings.LayerNorm")]
  for i in range(num_layers):
    ours, theirs = f"layer_{i}", f"encoder.layer.{i}"
    plan += [*_linear((ours, "attention", "query"), f"{theirs}.attention.self.query"),
             *_linear((ours, "attention", "key"), f"{theirs}.attention.self.key"),
             *_linear((ours, "attention", "value"), f"{theirs}.attention.self.value"),
             *_linear((ours, "attention", "output"), f"{theirs}.attention.output.dense", 2),
             *_norm((ours, "attention_norm"), f"{theirs}.attention.output.LayerNorm"),
             *_linear((ours, "intermediate"), f"{theirs}.intermediate.dense"),
             *_linear((ours, "output"), f"{theirs}.output.dense"),
             *_norm((ours, "output_norm"), f"{theirs}.output.LayerNorm")]
  return plan


def decoder_plan(num_layers: int) -> list[Tensor]:
  """GPT2Model names (after any "transformer." prefix) for every decoder parameter but W_M.

  GPT-2's Conv1D stores weights as (in, out), our kernels' layout, so nothing is transposed;
  its fused c_attn splits into q, k, v along the output axis exactly as our `qkv` does.
  """
  plan = [Tensor(("token_embed", "embedding"), "wte.weight"),
          Tensor(("position_embed", "embedding"), "wpe.weight"),
          *_norm(("final_norm",), "ln_f")]
  for i in range(num_layers):
    ours, theirs = f"layer_{i}", f"h.{i}"
    plan += [*_norm((ours, "attention_norm"), f"{theirs}.ln_1"),
             *_linear((ours, "attention", "qkv"), f"{theirs}.attn.c_attn", 0),
             *_linear((ours, "attention", "proj"), f"{theirs}.attn.c_proj", 0),
             *_norm((ours, "mlp_norm"), f"{theirs}.ln_2"),
             *_linear((ours, "fc"), f"{theirs}.mlp.c_fc", 0),
             *_linear((ours, "proj"), f"{theirs}.mlp.c_proj", 0)]
  return plan


_PLANS: dict[str, tuple[Callable[[int], list[Tensor]], tuple[str, ...]]] = {
    # part: (plan, prefixes the task heads put before the base model's names)
    "encoder": (encoder_plan, ("", "bert.")),
    "decoder": (decoder_plan, ("", "transformer.")),
}
# Old TF-converted BERT checkpoints name LayerNorm parameters gamma and beta.
_ALIASES = {".weight": ".gamma", ".bias": ".beta"}


def _find(weights: hf_weights.Weights, name: str, prefixes: tuple[str, ...]) -> str | None:
  """The stored name of `name`, trying every prefix and the gamma/beta aliases."""
  candidates = [name] + [name[:-len(s)] + a for s, a in _ALIASES.items() if name.endswith(s)]
  for prefix in prefixes:
    for candidate in candidates:
      if prefix + candidate in weights:
        return prefix + candidate
  return None


def load_part(part: str, num_layers: int, weights: hf_weights.Weights,
              params: Params) -> Params:
  """`params` (one part's tree) with every mapped parameter replaced by the checkpoint's."""
  plan, prefixes = _PLANS[part]
  out = _copy_tree(params)
  for tensor in plan(num_layers):
    name = _find(weights, tensor.theirs, prefixes)
    if name is None:
      raise LookupError(f"{weights.directory}: tensor {tensor.theirs!r} (for {part} parameter "
                     f"{'/'.join(tensor.ours)}) is missing from the checkpoint")
    node = out
    for key in tensor.ours[:-1]:
      node = node[key]
    our_shape = tuple(node[tensor.ours[-1]].shape)
    array, expected = weights[name], tensor.their_shape(our_shape)
    if array.shape != expected:
      raise ValueError(f"{weights.file_of(name)}: tensor {name!r} has shape {array.shape}, but "
                       f"the config needs {expected} (for {part} parameter "
                       f"{'/'.join(tensor.ours)} of shape {our_shape})")
    node[tensor.ours[-1]] = tensor.convert(array, our_shape).astype(np.float32)
  if part == "decoder":
    _check_tied_head(weights, out["token_embed"]["embedding"])
  return out


def _check_tied_head(weights: hf_weights.Weights, embedding_VxD: np.ndarray) -> None:
  """Our head is the token embedding; a stored GPT-2 head must be that same matrix."""
  head = weights.get("lm_head.weight")
  if head is not None and not np.array_equal(head, embedding_VxD):
    raise ValueError(f"{weights.file_of('lm_head.weight')}: tensor 'lm_head.weight' differs "
                     "from the token embedding 'wte.weight'; only tied output heads are supported")


def _copy_tree(tree: Any) -> Any:
  """Nested dicts copied (leaves shared), so loading never mutates the caller's params."""
  return {k: _copy_tree(v) for k, v in tree.items()} if hasattr(tree, "items") else tree


def apply_init_from(config: ml_collections.ConfigDict, params: Params) -> Params:
  """`params` with the encoder and decoder loaded from their `init_from` checkpoints, if set.

  `config` is the full config or its `model` section, already shaped by `configure`; `params`
  come from `MemReasoner(config.model).init`. Returns a new pytree of numpy arrays where loaded.
  """
  model = model_section(config)
  out = dict(params)
  for part in _PLANS:
    directory = model[part].init_from
    if directory:
      check_config(model, part)
      out[part] = load_part(part, model[part].num_layers, hf_weights.read_weights(directory),
                            params[part])
  return out


# Files that make a directory usable as a tokenizer spec (data.tokenizers.from_spec).
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "vocab.json")
# The data fields naming the tokenizer of each side (lines and queries; answers).
TOKENIZER_FIELDS = {"encoder": "encoder_tokenizer", "decoder": "decoder_tokenizer"}


def tokenizer_spec(directory: str) -> str:
  """The tokenizer spec of a checkpoint directory: the directory, if it holds tokenizer files."""
  if not any(os.path.isfile(os.path.join(directory, f)) for f in TOKENIZER_FILES):
    raise FileNotFoundError(f"checkpoint directory {directory} holds no tokenizer (none of "
                            f"{', '.join(TOKENIZER_FILES)}); its token ids need the tokenizer "
                            "it was trained with")
  return os.path.abspath(directory)


def record_tokenizers(config: ml_collections.ConfigDict) -> None:
  """Sets `data.encoder_tokenizer` / `data.decoder_tokenizer` to the `init_from` checkpoints.

  A checkpoint's token embedding only means something with its own tokenizer, so a full config
  must have both fields; the encoder and decoder may differ (BERT WordPiece for lines, GPT-2 BPE
  for answers).
  """
  for part, field in TOKENIZER_FIELDS.items():
    directory = config.model[part].init_from
    if not directory:
      continue
    if field not in config.data:
      raise ValueError(f"config.data has no field {field!r} to record the tokenizer of "
                       f"model.{part}.init_from={directory!r}")
    config.data[field] = tokenizer_spec(directory)
