"""AdamW with warm-up and decay, gradient clipping and a weight-decay mask, from the config."""

from typing import Any

import jax
import ml_collections
import optax

DECAYS = ("cosine", "linear", "constant")
# Leaf names that are never decayed: biases, LayerNorm scales, embedding tables and the memory
# prior (decaying it would pull the memory away from the identity it starts at).
_NO_DECAY = ("bias", "scale", "embedding", "prior")


def learning_rate_schedule(cfg: ml_collections.ConfigDict, num_steps: int) -> optax.Schedule:
  """Linear warm-up to the peak, then the configured decay to final_lr_fraction of it."""
  if cfg.decay not in DECAYS:
    raise ValueError(f"config optimizer.decay must be one of {DECAYS}, got {cfg.decay!r}")
  if not 0 <= cfg.warmup_steps <= num_steps:
    raise ValueError(f"config optimizer.warmup_steps must be in [0, training.num_steps="
                     f"{num_steps}], got {cfg.warmup_steps}")
  peak, end = cfg.learning_rate, cfg.learning_rate * cfg.final_lr_fraction
  decay_steps = max(num_steps - cfg.warmup_steps, 1)
  decay = {
      "cosine": optax.cosine_decay_schedule(peak, decay_steps, alpha=cfg.final_lr_fraction),
      "linear": optax.linear_schedule(peak, end, decay_steps),
      "constant": optax.constant_schedule(peak),
  }[cfg.decay]
  warmup = optax.linear_schedule(0.0, peak, cfg.warmup_steps)
  return optax.join_schedules([warmup, decay], [cfg.warmup_steps])


def decay_mask(params: Any) -> Any:
  """True for the weight matrices that weight decay applies to."""
  def decays(path, _):
    return getattr(path[-1], "key", None) not in _NO_DECAY
  return jax.tree_util.tree_map_with_path(decays, params)


def make_optimizer(cfg: ml_collections.ConfigDict,
                   num_steps: int) -> tuple[optax.GradientTransformation, optax.Schedule]:
  """The optimizer and its schedule (the schedule is logged as `learning_rate`)."""
  schedule = learning_rate_schedule(cfg, num_steps)
  adamw = optax.adamw(schedule, b1=cfg.b1, b2=cfg.b2, eps=cfg.eps,
                      weight_decay=cfg.weight_decay, mask=decay_mask)
  if cfg.clip_norm < 0:
    raise ValueError(f"config optimizer.clip_norm must be >= 0 (0 disables), got {cfg.clip_norm}")
  if cfg.clip_norm:
    return optax.chain(optax.clip_by_global_norm(cfg.clip_norm), adamw), schedule
  return adamw, schedule
