"""Line tokens padded inside the jitted train step (`data.device_padding`).

A long context's padded context_BxExT is mostly padding (at 16k, 1,024 line slots of 256 tokens
hold about a quarter real tokens), and building it is the input pipeline's largest cost in the
process that feeds the devices. With `data.device_padding` the pipeline sends each example's
lines packed back to back (`Batcher.pack_lines`: context_ids_BxN, context_lengths_BxE, and the
same for recon_*), and `pad_lines` rebuilds exactly the arrays `Batcher.pad_lines` would have
built, as one gather on the device, where memory bandwidth is plentiful.
"""

import jax
import jax.numpy as jnp
import numpy as np

from memreasoner_jax.data import batching

Batch = dict[str, jax.Array]


def split_line_tokens(local: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], int]:
  """(the batch's arrays, its T) of a host batch; T is 0 for a batch padded on the host."""
  if batching.LINE_TOKENS not in local:
    return local, 0
  arrays = {k: v for k, v in local.items() if k != batching.LINE_TOKENS}
  return arrays, int(local[batching.LINE_TOKENS])


def _pad(ids_BxN: jax.Array, lengths_BxE: jax.Array, line_tokens: int) -> jax.Array:
  """B x E x T: line e of example b from ids_BxN[b] (its lines back to back), padded from the
  last column of ids_BxN, which `Batcher.pack_lines` keeps as padding."""
  batch, lines = lengths_BxE.shape
  starts_BxE = jnp.cumsum(lengths_BxE, axis=1) - lengths_BxE
  column_T = jnp.arange(line_tokens)
  inside_BxExT = column_T < lengths_BxE[:, :, None]
  index_BxExT = jnp.where(inside_BxExT, starts_BxE[:, :, None] + column_T, ids_BxN.shape[1] - 1)
  return jnp.take_along_axis(ids_BxN, index_BxExT.reshape(batch, -1), axis=1).reshape(
      batch, lines, line_tokens).astype(jnp.int32)


def pad_lines(batch: Batch, line_tokens: int) -> Batch:
  """The batch with context_BxExT (and recon_BxExT, recon_mask_BxExT) in place of the packed
  lines of `Batcher.pack_lines`; lines of T = `line_tokens`. Runs under jit."""
  out = {k: v for k, v in batch.items() if not k.endswith(("_ids_BxN", "_lengths_BxE"))}
  out["context_BxExT"] = _pad(batch["context_ids_BxN"], batch["context_lengths_BxE"], line_tokens)
  if "recon_ids_BxN" in batch:
    lengths_BxE = batch["recon_lengths_BxE"]
    out["recon_BxExT"] = _pad(batch["recon_ids_BxN"], lengths_BxE, line_tokens)
    # The tokens after BOS, EOS included, as Batcher.pad_lines marks them.
    column_T = jnp.arange(line_tokens)
    out["recon_mask_BxExT"] = (column_T >= 1) & (column_T < lengths_BxE[:, :, None])
  return out
