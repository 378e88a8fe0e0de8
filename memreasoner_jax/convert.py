"""Converts Hugging Face BERT / GPT-2 checkpoints once into this model's config and parameters.

`convert(config, encoder_dir, decoder_dir)` returns the config shaped after the checkpoints (with
their directories recorded as `init_from` and as the tokenizers the data must use) and the full
parameter pytree: encoder and decoder from the checkpoints, everything else initialised as usual.
"""

import os

import jax
import jax.numpy as jnp
import ml_collections

from memreasoner_jax import hf_import
from memreasoner_jax import model as model_lib

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


def init_batch() -> dict[str, jax.Array]:
  """A one-example batch of the smallest shapes: `MemReasoner.init` only needs its ranks."""
  return {"context_BxExT": jnp.zeros((1, 1, 4), jnp.int32),
          "line_mask_BxE": jnp.ones((1, 1), bool),
          "query_BxQ": jnp.zeros((1, 4), jnp.int32),
          "answer_BxA": jnp.zeros((1, 4), jnp.int32)}


def convert(config: ml_collections.ConfigDict, encoder_dir: str = "", decoder_dir: str = "", *,
            seed: int = 0) -> tuple[ml_collections.ConfigDict, model_lib.Params]:
  """(config, params) of a model starting from the given checkpoints ("" keeps a part random).

  `config` is a full config (with `model` and `data`) or a `model` section; it is copied, never
  changed. Parts with no counterpart are initialised from `seed`, as training would.
  """
  config = config.copy_and_resolve_references()
  model_cfg = hf_import.model_section(config)
  model_cfg.encoder.init_from = encoder_dir
  model_cfg.decoder.init_from = decoder_dir
  config = hf_import.configure(config)
  if "data" in config:
    record_tokenizers(config)
  model = model_lib.MemReasoner(hf_import.model_section(config))
  params = jax.jit(model.init)(jax.random.key(seed), init_batch())
  return config, hf_import.apply_init_from(config, params)
