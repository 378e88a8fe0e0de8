"""Model presets as ml_collections configs: tiny, small, base, large.

`base` and `large` have the exact shapes of BERT-base + GPT-2 (124M) and BERT-large +
GPT-2-large (Larimar-1.3B), vocabularies and position tables included, so pretrained
checkpoints load into them; `tiny` and `small` use the 260-token byte vocabulary.
"""

import ml_collections

PRESETS = ("tiny", "small", "base", "large")
BYTE_VOCAB = 260  # PAD, BOS, EOS, UNK and the 256 bytes

# name: (encoder layers, heads, width, ffn, vocab, positions,
#        decoder layers, heads, width, ffn, vocab, positions, C, K)
_SHAPES = {
    "tiny": (2, 2, 64, 128, BYTE_VOCAB, 128, 2, 2, 64, 128, BYTE_VOCAB, 128, 64, 16),
    "small": (2, 4, 128, 512, BYTE_VOCAB, 256, 2, 4, 128, 512, BYTE_VOCAB, 256, 128, 32),
    "base": (12, 12, 768, 3072, 30522, 512, 12, 12, 768, 3072, 50257, 1024, 768, 512),
    "large": (24, 16, 1024, 4096, 30522, 512, 36, 20, 1280, 5120, 50257, 1024, 768, 512),
}


# The fields a preset sets from _SHAPES (everything else is the same in every preset).
_SHAPE_FIELDS = ("preset", "latent_size", "memory.num_slots",
                 *(f"{side}.{field}" for side in ("encoder", "decoder")
                   for field in ("num_layers", "num_heads", "d_model", "d_ff", "vocab_size",
                                 "max_len")))


def model_config(preset: str = "tiny") -> ml_collections.ConfigDict:
  """The `model` section of a config for one preset."""
  if preset not in _SHAPES:
    raise ValueError(f"unknown model preset {preset!r}; choose one of {PRESETS}")
  (enc_l, enc_h, enc_d, enc_f, enc_v, enc_p,
   dec_l, dec_h, dec_d, dec_f, dec_v, dec_p, latent, slots) = _SHAPES[preset]
  cfg = ml_collections.ConfigDict()
  cfg.preset = preset  # the preset these shapes came from (recorded in checkpoints)
  # memreasoner, or baseline: the decoder alone reading the whole context with full attention
  # (memreasoner_jax/models/baseline.py; needs data.sequence_tokens and a decoder.max_len to match).
  cfg.kind = "memreasoner"
  cfg.dtype = "float32"  # compute dtype: float32, or bfloat16 on accelerators
  # Attention implementation (models/attention.py): xla (any device) or cudnn (the fused kernel,
  # NVIDIA GPUs only, bf16 inputs).
  cfg.attention = "xla"
  # Rematerialisation: none, or blocks (each encoder and decoder block recomputes its
  # activations in the backward pass: less memory for about a third more compute).
  cfg.remat = "none"
  cfg.latent_size = latent  # C, the width of every line latent, query and readout

  cfg.encoder = ml_collections.ConfigDict()
  cfg.encoder.num_layers = enc_l  # transformer blocks
  cfg.encoder.num_heads = enc_h  # attention heads per block
  cfg.encoder.d_model = enc_d  # hidden width
  cfg.encoder.d_ff = enc_f  # feed-forward width
  cfg.encoder.vocab_size = enc_v  # token embedding rows
  cfg.encoder.max_len = enc_p  # position table size: the longest line or query in tokens
  cfg.encoder.type_vocab_size = 2  # BERT token types (all lines use type 0)
  cfg.encoder.layer_norm_eps = 1e-12  # BERT's epsilon
  cfg.encoder.pooling = "first" if enc_v != BYTE_VOCAB else "mean"  # first ([CLS]/BOS) or mean
  cfg.encoder.encode_chunk = 1024  # lines encoded per step for long contexts (bounds memory)
  cfg.encoder.init_from = ""  # a Hugging Face BERT-family directory to start from ("" = random)

  cfg.temporal = ml_collections.ConfigDict()
  cfg.temporal.kind = "bigru"  # bigru (C/2 units per direction) or none
  # Add each line's own latent to its BiGRU output: the written latent then carries the line
  # itself, not only a recurrent summary (qa1, tiny: 78% held-out at step 300 with it, chance
  # without it; BUILD_NOTES.md).
  cfg.temporal.residual = True

  cfg.memory = ml_collections.ConfigDict()
  cfg.memory.mode = "single"  # single: one memory of num_slots; chunked: one per lines_per_chunk
  cfg.memory.num_slots = slots  # K of the single memory (Larimar: 512)
  cfg.memory.lines_per_chunk = 16  # chunked mode: lines per chunk, and slots per chunk memory
  cfg.memory.combine = "nearest_line"  # chunked mode: nearest_line, soft or straight_through
  # A bonus for later lines in every read: this much times the line's place among the
  # example's lines (0 first, 1 last), added to its similarity (0: none). With learn_recency
  # the bonus is a parameter starting here: explicit order that, being relative, holds over
  # any gap, where the BiGRU forgets across thousands of filler lines (BUILD_NOTES.md).
  cfg.memory.recency = 0.0
  cfg.memory.learn_recency = False
  # Whether reads without an rng (evaluation, inference) add that bonus too. Off, the bonus
  # shapes training alone and order at evaluation is left to latest_margin: in a 128k haystack
  # a bonus learnt on 1k-token contexts lifts late filler lines over an early fact
  # (BUILD_NOTES.md).
  cfg.memory.eval_recency = True
  # Of the lines whose similarity is within this margin of a read's best, the latest is read,
  # however far apart they stand (0: the best; memory.latest_within).
  cfg.memory.latest_margin = 0.0
  # A later line within that margin is read only if its latent's cosine similarity to the best
  # line's is at least this (-1: any line), so that filler near the query by chance stays out.
  cfg.memory.latest_alike = -1.0
  # How M^+ is computed: gram (the read as a projection onto the lines via one Cholesky of
  # their E x E Gram matrix when E <= K, else as solve), solve (regularised normal equations),
  # svd (jnp.linalg.pinv, the reference), ben_israel (Larimar's iteration) or auto (svd on
  # CPU, gram on GPU and TPU, where batched SVDs are slow).
  cfg.memory.pinv = "auto"
  cfg.memory.write_noise_std = 0.0  # Gaussian noise on written latents during training
  cfg.memory.read_noise = False  # Larimar's learned noise on read weights (enables the KL term)

  cfg.hops = ml_collections.ConfigDict()
  cfg.hops.num_hops = 1  # H reads of the memory
  cfg.hops.update_rule = "gru"  # query update: gru, add, linear, nearest_fact, nearest_content
  # A learned gate on each hop's query that may cut the lines after the previous hop's line
  # from its read (qa2: after "John dropped the football", where John was before; hops.py).
  cfg.hops.before_gate = False
  # Each hop reads a line no earlier hop read (vt: every hop follows the chain one link on).
  cfg.hops.skip_read = False

  cfg.decoder = ml_collections.ConfigDict()
  cfg.decoder.num_layers = dec_l  # transformer blocks (L)
  cfg.decoder.num_heads = dec_h  # attention heads per block
  cfg.decoder.d_model = dec_d  # hidden width (D)
  cfg.decoder.d_ff = dec_f  # feed-forward width
  cfg.decoder.vocab_size = dec_v  # token embedding rows (tied with the output head)
  cfg.decoder.max_len = dec_p  # position table size: the longest prompt + answer in tokens
  cfg.decoder.layer_norm_eps = 1e-5  # GPT-2's epsilon
  cfg.decoder.condition = "readouts"  # readouts, facts (each hop's nearest line) or both
  # How the answer loss reaches the read when the decoder gets the facts: "none" (the argmax
  # passes no gradient; the read learns only from supporting-fact supervision) or
  # "straight_through" (forward the argmax line, backward a softmax over lines at
  # fact_temperature, so unsupervised examples train the read too).
  cfg.decoder.fact_gradient = "none"
  cfg.decoder.fact_temperature = 0.1
  # Answers may copy tokens of the lines the hops selected (models/copying.py): what lets the
  # decoder write words it never saw in training (the renamed splits).
  cfg.decoder.copy = False
  # The copy pointer's queries also hold the two tokens just written, as its keys hold the two
  # before each source token: a word is followed token by token without the decoder carrying
  # them (models/copying.py).
  cfg.decoder.copy_written = False
  cfg.decoder.init_from = ""  # a Hugging Face GPT-2-family directory to start from ("" = random)
  return cfg


def shape_overrides(preset: str) -> dict[str, object]:
  """A preset's shapes as `model.KEY` config overrides: another preset's model trained on a
  config's own data and schedule (the results table's capacity comparison)."""
  cfg = model_config(preset)
  overrides = {}
  for field in _SHAPE_FIELDS:
    value = cfg
    for key in field.split("."):
      value = value[key]
    overrides[f"model.{field}"] = value
  return overrides
