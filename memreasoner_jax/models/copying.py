"""Copying answer tokens from the lines the hops read (a pointer-generator output layer).

The decoder is conditioned on latents, so on its own it can only spell words it learned to spell
in training; a word it never saw (the renamed splits) is out of its reach. With
`model.decoder.copy`, each answer position also points at one token of the lines the hops
selected, and the output distribution mixes the two:

  p(v) = g * softmax(logits)(v) + (1 - g) * (pointer weight on the source tokens equal to v)

with a gate g in (0, 1) from the decoder state and the token the pointer lands on. A token's
pointer key holds its own encoder state, its predecessor's, and the ids of the two tokens before
it, so the decoder, which knows what it has just written, finds the token that follows those two
in the line: words are copied one token after another, repeated letters included ("garage").
The gate seeing the pointed token is what ends a word it never saw: the pointer landing on the
"." after it. With `model.decoder.copy_written` the query also holds the ids of the two tokens
just written (the token at the position and the one before it), the same facts the keys hold
about the two tokens before each source token, so following a word needs no decoder state
that carries them ("balcony" was copied "balcooom" without; BUILD_NOTES.md).

Trained on the mixture alone, the pointer and the gate need not learn to copy: the decoder can
spell every training answer from its latents. `copy_terms` adds what makes copying the habit:
the pointer's mass on the target wherever the target is in the source, and the gate's choice of
copying exactly there; `data.rename_fraction` (training stories with pseudo-word rooms) takes
away the memorised spellings. BUILD_NOTES.md measures each step.
"""

from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from memreasoner_jax.data import special_tokens


class CopySource(NamedTuple):
  """The tokens the answer may copy: the lines each hop selected, H lines of T tokens."""

  states_BxMxD: jax.Array  # the encoder's last hidden states of those tokens (M = H*T)
  tokens_BxM: jax.Array  # their ids, PAD where there is no token


class Pointer(NamedTuple):
  pointer_BxWxM: jax.Array  # where each position points (zero on tokens it may not copy)
  generate_BxWx1: jax.Array  # the gate g: the weight of the decoder's own distribution


def copyable(tokens_BxM: jax.Array) -> jax.Array:
  """Tokens a pointer may land on: text, not padding or the line markers."""
  return ((tokens_BxM != special_tokens.PAD_ID) & (tokens_BxM != special_tokens.BOS_ID)
          & (tokens_BxM != special_tokens.EOS_ID))


def _shift(x_BxMx: jax.Array, by: int) -> jax.Array:
  """x moved `by` places along M (the first `by` places zero)."""
  pad = [(0, 0), (by, 0)] + [(0, 0)] * (x_BxMx.ndim - 2)
  return jnp.pad(x_BxMx, pad)[:, :x_BxMx.shape[1]]


def written_tokens(tokens_BxT: jax.Array) -> jax.Array:
  """written_BxTx2: at each position of a decoder input, its token and the one before it (PAD
  before the first)."""
  return jnp.stack([tokens_BxT, _shift(tokens_BxT, 1)], axis=-1)


class CopyHead(nn.Module):
  """The pointer over a CopySource and the gate, for decoder states hidden_BxWxD."""

  width: int  # K of the pointer's queries and keys
  vocab_size: int
  written: bool = False  # the queries hold the two tokens just written (`written_BxWx2`)

  @nn.compact
  def __call__(self, hidden_BxWxD: jax.Array, source: CopySource,
               written_BxWx2: jax.Array | None = None) -> Pointer:
    hidden_BxWxD = hidden_BxWxD.astype(jnp.float32)
    states_BxMxD = source.states_BxMxD.astype(jnp.float32)
    tokens_BxM = source.tokens_BxM
    keys_BxMxK = (nn.Dense(self.width, name="key")(states_BxMxD)
                  + nn.Dense(self.width, use_bias=False, name="previous_key")(
                      _shift(states_BxMxD, 1))
                  + nn.Embed(self.vocab_size, self.width, name="previous_token")(
                      _shift(tokens_BxM, 1))
                  + nn.Embed(self.vocab_size, self.width, name="second_previous_token")(
                      _shift(tokens_BxM, 2)))
    queries_BxWxK = nn.Dense(self.width, name="query")(hidden_BxWxD)
    if self.written:
      if written_BxWx2 is None:
        raise ValueError("a CopyHead with `written` needs the tokens written (written_BxWx2)")
      queries_BxWxK = (queries_BxWxK
                       + nn.Embed(self.vocab_size, self.width, name="written_token")(
                           written_BxWx2[..., 0])
                       + nn.Embed(self.vocab_size, self.width, name="second_written_token")(
                           written_BxWx2[..., 1]))
    scores_BxWxM = jnp.einsum("bwk,bmk->bwm", queries_BxWxK, keys_BxMxK) / jnp.sqrt(self.width)
    keep_Bx1xM = copyable(tokens_BxM)[:, None, :]
    pointer_BxWxM = jax.nn.softmax(scores_BxWxM, axis=-1, where=keep_Bx1xM)
    pointer_BxWxM = jnp.where(keep_Bx1xM, pointer_BxWxM, 0.0)
    # The gate also sees what the pointer would copy: landing on the "." or space after a word
    # says the word is done, which the decoder cannot know for a word it never saw.
    pointed_BxWxK = jnp.einsum("bwm,bmk->bwk", pointer_BxWxM,
                               nn.Embed(self.vocab_size, self.width, name="pointed_token")(
                                   tokens_BxM))
    generate_BxWx1 = jax.nn.sigmoid(nn.Dense(1, name="gate")(
        jnp.concatenate([hidden_BxWxD, pointed_BxWxK], axis=-1)))
    # A source with nothing to copy (all padding) leaves generation alone.
    generate_BxWx1 = jnp.where(jnp.any(keep_Bx1xM, axis=-1, keepdims=True), generate_BxWx1, 1.0)
    return Pointer(pointer_BxWxM, generate_BxWx1)


def mix(logits_BxWxV: jax.Array, pointer: Pointer, tokens_BxM: jax.Array) -> jax.Array:
  """Log-probabilities_BxWxV of the gated mixture of generating and copying."""
  # Pointer weights summed per token id: a scatter-add, as a one-hot over a GPT-2-sized
  # vocabulary would not fit.
  scatter = lambda p_WxM, ids_M: jnp.zeros((p_WxM.shape[0], logits_BxWxV.shape[-1]),
                                           jnp.float32).at[:, ids_M].add(p_WxM)
  copy_BxWxV = jax.vmap(scatter)(pointer.pointer_BxWxM, tokens_BxM)
  g_BxWx1 = pointer.generate_BxWx1
  mixed_BxWxV = (g_BxWx1 * jax.nn.softmax(logits_BxWxV.astype(jnp.float32), axis=-1)
                 + (1.0 - g_BxWx1) * copy_BxWxV)
  return jnp.log(mixed_BxWxV + 1e-9)


def copy_terms(pointer: Pointer, tokens_BxM: jax.Array,
               targets_BxW: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Per position (pointer loss_BxW, gate loss_BxW): -log of the pointer's mass on the target
  where the source holds it (0 elsewhere), and the gate's cross-entropy against "copy exactly
  where the source holds the target"."""
  match_BxWxM = (tokens_BxM[:, None, :] == targets_BxW[..., None]) & copyable(tokens_BxM)[:, None]
  in_source_BxW = jnp.any(match_BxWxM, axis=-1)
  mass_BxW = jnp.sum(jnp.where(match_BxWxM, pointer.pointer_BxWxM, 0.0), axis=-1)
  pointer_BxW = jnp.where(in_source_BxW, -jnp.log(mass_BxW + 1e-9), 0.0)
  g_BxW = jnp.clip(pointer.generate_BxWx1[..., 0], 1e-6, 1 - 1e-6)
  gate_BxW = -jnp.where(in_source_BxW, jnp.log1p(-g_BxW), jnp.log(g_BxW))
  return pointer_BxW, gate_BxW
