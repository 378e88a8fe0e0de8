"""Held-out evaluation: losses without noise, and greedy answers scored as text.

Each host decodes the answers of its own rows and scores them with the task's metric (BABILong's
label match for bAbI, RULER's string_match_all for variable tracking, and exact match for all);
the per-host sums are added over hosts once per evaluation.
"""

from collections.abc import Callable
from typing import Any

from absl import logging
import jax
from jax.experimental import multihost_utils
import jax.numpy as jnp
import ml_collections
import numpy as np

from memreasoner_jax.data import batching
from memreasoner_jax.data import pipeline
from memreasoner_jax import models
from memreasoner_jax import sharding
from memreasoner_jax.tasks.example import Example
from memreasoner_jax.tasks import metrics as task_metrics
from memreasoner_jax.tasks import rename

EvalStep = Callable[[Any, dict[str, jax.Array]], tuple[dict[str, jax.Array], jax.Array]]


def make_eval_step(model: models.Model, loss_cfg: ml_collections.ConfigDict,
                   max_new_tokens: int, mesh: jax.sharding.Mesh,
                   params_sharding: Any) -> EvalStep:
  """jit((params, batch) -> (example-weighted metric sums, greedy tokens_BxN))."""

  def eval_step(params, batch):
    # One call: the model reads each context once for both the losses and the answers.
    _, metrics, generated = model.loss_and_generate(params, batch, loss_cfg, max_new_tokens)
    count = jnp.sum(batch["example_weight_B"])
    sums = {f"{k}_sum": v * count for k, v in metrics.items()}
    return {"count": count, **sums}, generated.tokens_BxN

  return jax.jit(eval_step,
                 in_shardings=(params_sharding, sharding.batch_sharding(mesh)),
                 out_shardings=(sharding.replicated(mesh), sharding.batch_sharding(mesh)))


def metric_names(task: str) -> tuple[str, str]:
  """The names `score` returns for a task, in its order; the second is the task's own metric."""
  return ("exact_match", "ruler" if task.startswith("vt") else "babilong")


def score(task: str, output: str, target: str, question: str,
          renamed: bool = False) -> dict[str, float]:
  """The task's metrics for one answer, 0..1 (`renamed`: BABILong's labels are the renamed
  split's words)."""
  scores = {"exact_match": float(task_metrics.exact_match(output, target))}
  if task.startswith("vt"):
    scores["ruler"] = task_metrics.string_match_all(output, target.split())
  else:
    scores["babilong"] = float(task_metrics.compare_answers(
        output, target, question, rename.answer_labels(task, renamed)))
  return scores


def _texts(batcher: batching.Batcher, batch: batching.Batch, tokens_BxN: np.ndarray):
  """(output, target, question) strings of each row of this host's batch."""
  dec = batcher.decoder_tokenizer
  for b in range(tokens_BxN.shape[0]):
    target = batch["answer_BxA"][b][batch["answer_mask_BxA"][b]]
    # The query is in the encoder's ids, which need not be the decoder's.
    question = batcher.encoder_tokenizer.decode_sequence(batch["query_BxQ"][b])
    yield batching.answer_text(dec, tokens_BxN[b]), batching.answer_text(dec, target), question


def evaluate(eval_step: EvalStep, params: Any, task: str, examples: list[Example],
             batcher: batching.Batcher, global_batch: int, mesh: jax.sharding.Mesh,
             num_samples: int = 0) -> dict[str, float]:
  """Mean losses and answer scores (in %) over one held-out split, on every host alike."""
  sums: dict[str, float] = {}
  host_scores = dict.fromkeys(metric_names(task), 0.0)
  samples = []
  for local in pipeline.eval_batches(examples, batcher, global_batch,
                                     shards=sharding.local_batch_shards(mesh)):
    batch_sums, tokens_BxN = eval_step(params, sharding.global_batch(local, mesh))
    for k, v in jax.device_get(batch_sums).items():
      sums[k] = sums.get(k, 0.0) + float(v)
    local_tokens = multihost_utils.global_array_to_host_local_array(
        tokens_BxN, mesh, jax.sharding.PartitionSpec(sharding.BATCH_AXES))
    for weight, (output, target, question) in zip(
        local["example_weight_B"], _texts(batcher, local, np.asarray(local_tokens))):
      if weight > 0:
        for k, v in score(task, output, target, question).items():
          host_scores[k] += v
        if len(samples) < num_samples:
          samples.append(f"{question} -> {output!r} (target {target!r})")
  for line in samples:
    logging.info("[%s sample] %s", task, line)
  names = list(host_scores)
  totals = multihost_utils.process_allgather(
      np.array([host_scores[k] for k in names], np.float64)).reshape(-1, len(names)).sum(0)
  count = max(sums.pop("count"), 1.0)
  result = {k[:-len("_sum")]: v / count for k, v in sums.items()}
  result.update({k: 100.0 * total / count for k, total in zip(names, totals)})
  return result
