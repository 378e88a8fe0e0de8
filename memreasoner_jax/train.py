"""The training recipe: `train_and_evaluate(config, workdir)`, read top to bottom.

Two phases: `setup` (devices, input pipeline, model and optimizer, the sharded state restored
from the workdir when it holds a checkpoint, the jitted update and eval steps) and `train_loop`
(step, log, evaluate, checkpoint, preemption).

The update step is one pure function `(state, batch) -> (state, metrics)` jitted over the mesh
with the state's buffers donated. Training noise comes from `fold_in(key, step)`, so a run
resumed from a checkpoint draws the same noise as one that never stopped. Metrics stay on the
devices except at log, checkpoint and preemption steps, where every loss since the last check is
fetched at once and a non-finite one stops the run before anything is saved.
"""

from collections.abc import Callable
import contextlib
import dataclasses
import os
import time
from typing import Any

from absl import logging
import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from memreasoner_jax import checkpointing
from memreasoner_jax.data import batching
from memreasoner_jax.data import device_padding
from memreasoner_jax.data import pipeline
from memreasoner_jax.data import seen_text
from memreasoner_jax import evaluate as evaluate_lib
from memreasoner_jax import input_pipeline as input_lib
from memreasoner_jax import metric_writers
from memreasoner_jax import models
from memreasoner_jax.models import losses
from memreasoner_jax import optimizer as optimizer_lib
from memreasoner_jax.pretrained import hf_import
from memreasoner_jax import sharding as sharding_lib
from memreasoner_jax.tasks.example import Example

Batch = dict[str, jax.Array]
TrainStep = Callable[["TrainState", Batch], tuple["TrainState", dict[str, jax.Array]]]


@flax.struct.dataclass
class TrainState:
  step: jax.Array  # int32 optimizer steps taken
  params: models.Params
  opt_state: optax.OptState


class NonFiniteLossError(FloatingPointError):
  """The loss became NaN or inf; the run stopped without saving the bad state."""


def init_state(model: models.Model, tx: optax.GradientTransformation, rng: jax.Array,
               batch: dict[str, np.ndarray]) -> TrainState:
  params = model.init(rng, batch)
  return TrainState(jnp.zeros((), jnp.int32), params, tx.init(params))


def make_train_step(model: models.Model, loss_cfg: ml_collections.ConfigDict,
                    tx: optax.GradientTransformation, schedule: optax.Schedule,
                    rng: jax.Array) -> TrainStep:
  """The pure update: loss and gradients on the global batch, one optimizer step. A batch whose
  lines come packed (`data.device_padding`) is padded first, `line_tokens` (T) wide."""

  def train_step(state: TrainState, batch: Batch,
                 line_tokens: int = 0) -> tuple[TrainState, dict[str, jax.Array]]:
    step_rng = jax.random.fold_in(rng, state.step)
    if line_tokens:
      batch = device_padding.pad_lines(batch, line_tokens)

    def loss(params):
      return model.loss(params, batch, step_rng, state.step, loss_cfg)

    (_, metrics), grads = jax.value_and_grad(loss, has_aux=True)(state.params)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics = {**metrics, "grad_norm": optax.tree.norm(grads),
               "learning_rate": schedule(state.step)}
    return TrainState(state.step + 1, params, opt_state), metrics

  return train_step


def jit_train_step(train_step: TrainStep, mesh: jax.sharding.Mesh, state_sharding: Any) -> TrainStep:
  """Sharded over the mesh, state donated (updated in place), metrics replicated; T of a batch
  padded on the device is static (a new T compiles anew, as a new shape does)."""
  return jax.jit(train_step, donate_argnums=0, static_argnums=2,
                 in_shardings=(state_sharding, sharding_lib.batch_sharding(mesh)),
                 out_shardings=(state_sharding, sharding_lib.replicated(mesh)))


def check_finite(pending: list[tuple[int, jax.Array]]) -> None:
  """Fetches the losses of `pending` steps in one transfer; raises at the first non-finite."""
  for step, loss in zip([s for s, _ in pending], jax.device_get([l for _, l in pending])):
    if not np.isfinite(loss):
      raise NonFiniteLossError(f"Non-finite loss {float(loss)} at step {step}; stopping")


class StepProfiler:
  """Traces `num_steps` steps after the first (compiling) one with jax.profiler.

  The trace lands in `log_dir/plugins/profile/<run>/`, where TensorBoard's profile tab (the
  tensorboard-plugin-profile / xprof package) finds it beside the scalars of the same log_dir.
  """

  def __init__(self, log_dir: str, num_steps: int):
    self._log_dir, self._num_steps = log_dir, num_steps
    self._stop_at: int | None = None  # the step that ends a running trace

  def step_done(self, step: int, first_step: int, metrics: Any) -> None:
    """Called after each step is dispatched; starts and stops the trace."""
    if self._num_steps > 0 and step == first_step + 1:
      jax.profiler.start_trace(self._log_dir)
      self._stop_at = step + self._num_steps
    elif step == self._stop_at:
      jax.block_until_ready(metrics)  # the traced steps' device work ends inside the trace
      self.stop()

  def stop(self) -> None:
    """Ends a running trace (a run shorter than the traced steps ends it here)."""
    if self._stop_at is not None:
      jax.profiler.stop_trace()
      self._stop_at = None


def count_tokens(local: dict[str, np.ndarray], pad_id: int) -> int:
  """Real (non-padding) line, query and answer tokens of one host batch."""
  lines = (local["context_lengths_BxE"].sum() if "context_lengths_BxE" in local
           else np.count_nonzero(local["context_BxExT"] != pad_id))
  return int(lines
             + np.count_nonzero(local["query_BxQ"] != pad_id)
             + np.count_nonzero(local["answer_mask_BxA"]))


def recorded_results(workdir: str, step: int) -> dict[str, float]:
  """What metrics.jsonl recorded at `step` (empty where it holds nothing)."""
  path = os.path.join(workdir, "metrics.jsonl")
  results = {}
  for record in metric_writers.read_jsonl(path) if os.path.exists(path) else []:
    if record["step"] == step:
      results.update({k: v for k, v in record.items() if k != "step"})
  return results


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, float]:
  """Trains (resuming from `workdir` if it holds a checkpoint) and evaluates on held-out data.

  Returns the metrics of the last log step and the last evaluation; a workdir whose checkpoint
  already reached training.num_steps is left as it is and what metrics.jsonl recorded at that
  step is returned. Raises NonFiniteLossError when the loss stops being finite (the last good
  checkpoint stays in `workdir`); before any work, and before `workdir` is created,
  MeshConfigError when the batches do not divide over the devices, NotADirectoryError when
  `workdir` is a file, sources.SourceError when `data.source` cannot be read, and
  WorkdirLockedError when another run holds `workdir`.
  """
  workdir = os.path.abspath(workdir)  # orbax takes absolute paths only
  # Mesh: data parallel over every device of every host (+ optional fsdp axis).
  mesh = sharding_lib.make_mesh(config.mesh)
  sharding_lib.check_global_batch(config.data.global_batch, mesh, "data.global_batch")
  sharding_lib.check_global_batch(config.data.eval_batch, mesh, "data.eval_batch")
  input_lib.check_source(config.data)
  if os.path.exists(workdir) and not os.path.isdir(workdir):
    raise NotADirectoryError(f"The workdir {workdir} is a file, not a directory")
  os.makedirs(workdir, exist_ok=True)
  with checkpointing.WorkdirLock(workdir):  # one checkpoints/ and metrics.jsonl, one writer
    return _train_and_evaluate(config, workdir, mesh)


def _train_and_evaluate(config: ml_collections.ConfigDict, workdir: str,
                        mesh: jax.sharding.Mesh) -> dict[str, float]:
  """The recipe, in a workdir this run holds, on a mesh its batches fit."""
  cfg = config
  if cfg.model.encoder.init_from or cfg.model.decoder.init_from:
    cfg = hf_import.configure(cfg)  # shapes and tokenizers follow the pretrained checkpoints
    hf_import.record_tokenizers(cfg)
  ckpt = checkpointing.Checkpointer(workdir, cfg.training.keep_checkpoints)
  finished = ckpt.latest_step()
  if finished is not None and finished >= cfg.training.num_steps:
    # Evaluating again would only append a duplicate row to metrics.jsonl.
    ckpt.close()
    logging.warning("Nothing to do: %s already holds step %d of training.num_steps=%d. Raise "
                    "--config.training.num_steps to train on, or use a fresh --workdir.",
                    ckpt.directory, finished, cfg.training.num_steps)
    return recorded_results(workdir, finished)
  with contextlib.ExitStack() as closing:  # closed in reverse: input, checkpoints, writer
    writer = metric_writers.MetricWriter(workdir)
    closing.callback(writer.close)
    closing.callback(ckpt.close)
    logging.info("Config:\n%s", cfg)
    run = setup(cfg, mesh, ckpt)
    closing.callback(run.train_iter.close)
    return train_loop(run, cfg, ckpt, writer, os.path.join(workdir, "tensorboard"))


@dataclasses.dataclass
class Run:
  """What `setup` builds and `train_loop` drives."""
  mesh: jax.sharding.Mesh
  batcher: batching.Batcher
  train_iter: pipeline.TrainIterator
  eval_sets: dict[str, list[Example]]  # task name -> held-out examples
  metadata: dict[str, Any]  # written beside every checkpoint
  state: TrainState  # sharded over `mesh`; restored when the workdir held a checkpoint
  train_step: TrainStep
  eval_step: evaluate_lib.EvalStep


def setup(cfg: ml_collections.ConfigDict, mesh: jax.sharding.Mesh,
          ckpt: checkpointing.Checkpointer) -> Run:
  """Devices, input pipeline, model and optimizer, and the sharded state (initialised, or
  restored with the input position from the latest checkpoint in `ckpt`)."""
  logging.info("Running on %s", sharding_lib.describe_devices(jax.devices()))
  warning = sharding_lib.cpu_only_warning(jax.default_backend(),
                                          os.environ.get("JAX_PLATFORMS", ""))
  if warning:
    logging.warning("%s", warning)
  logging.info("Mesh %s over %d devices of %d process(es)", dict(mesh.shape), mesh.devices.size,
               jax.process_count())

  # Input pipeline: the same generated datasets on every host, each host reads its own rows.
  batcher = input_lib.make_batcher(cfg.data, losses.uses_read_targets(cfg.loss),
                                   losses.uses_read_words(cfg.loss))
  for part, tok in (("encoder", batcher.encoder_tokenizer), ("decoder", batcher.decoder_tokenizer)):
    if tok.vocab_size > cfg.model[part].vocab_size:
      raise ValueError(f"tokenizer {tok.spec!r} has {tok.vocab_size} ids but "
                       f"model.{part}.vocab_size is {cfg.model[part].vocab_size}")
  train_examples = input_lib.train_examples(cfg.data)
  eval_sets = input_lib.eval_examples(cfg.data)
  init_batch = batcher(train_examples[:1])  # identical on every host; only its shapes matter

  # Model and optimizer.
  model = models.build(cfg.model)
  tx, schedule = optimizer_lib.make_optimizer(cfg.optimizer, cfg.training.num_steps)
  init_rng, train_rng = jax.random.split(jax.random.key(cfg.training.seed))
  init_fn = lambda: init_state(model, tx, init_rng, init_batch)

  # Sharded state: shapes first, shardings from them, then initialise or restore into them.
  abstract_state = jax.eval_shape(init_fn)
  state_sharding = sharding_lib.state_shardings(abstract_state, mesh, cfg.mesh.fsdp_min_size)
  metadata = checkpointing.model_metadata(
      cfg, abstract_state.params,
      {"encoder": batcher.encoder_tokenizer, "decoder": batcher.decoder_tokenizer})
  # What inference warns about when input holds characters or words never trained on.
  metadata["training_text"] = seen_text.record(train_examples)
  logging.info("Model: %s parameters", f"{metadata['num_params']:,}")
  restored = ckpt.restore(jax.tree.map(
      lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
      abstract_state, state_sharding), metadata)
  if restored is None:
    state, data_state = jax.jit(init_fn, out_shardings=state_sharding)(), None
    # Pretrained encoder/decoder weights (every host reads the same files); Adam's moments start
    # at zero whatever the parameters are, so the optimizer state needs no change.
    state = state.replace(params=jax.device_put(hf_import.apply_init_from(cfg, state.params),
                                                state_sharding.params))
  else:
    state, data_state, _ = restored
  train_iter = pipeline.TrainIterator(train_examples, batcher, cfg.data.global_batch,
                                      seed=cfg.training.seed, prefetch=cfg.data.prefetch,
                                      workers=cfg.data.get("workers", 0),
                                      shards=sharding_lib.local_batch_shards(mesh),
                                      device_padding=cfg.data.get("device_padding", False))
  if data_state is not None:
    train_iter.set_state(data_state)

  train_step = jit_train_step(make_train_step(model, cfg.loss, tx, schedule, train_rng), mesh,
                              state_sharding)
  eval_step = evaluate_lib.make_eval_step(model, cfg.loss, cfg.eval.max_new_tokens, mesh,
                                          state_sharding.params)
  return Run(mesh, batcher, train_iter, eval_sets, metadata, state, train_step, eval_step)


def run_evals(run: Run, cfg: ml_collections.ConfigDict, params: models.Params, step: int,
              writer: metric_writers.MetricWriter) -> dict[str, float]:
  """Every held-out set at `step`, logged and written as `eval/<task>/<metric>`."""
  if not run.eval_sets:
    return {}
  results = {}
  for task, examples in run.eval_sets.items():
    for name, value in evaluate_lib.evaluate(
        run.eval_step, params, task, examples, run.batcher, cfg.data.eval_batch, run.mesh,
        cfg.eval.num_samples).items():
      results[f"eval/{task}/{name}"] = value
  logging.info("Eval at step %d: %s", step,
               ", ".join(f"{k}={v:.4g}" for k, v in sorted(results.items())))
  writer.write(step, results)
  return results


# Steps dispatched ahead of the device at most: enough to keep it busy, few enough that a
# preempted run stops within a step or two.
_IN_FLIGHT = 2


def train_loop(run: Run, cfg: ml_collections.ConfigDict, ckpt: checkpointing.Checkpointer,
               writer: metric_writers.MetricWriter, profile_dir: str) -> dict[str, float]:
  """Steps from the state's step to training.num_steps: log, evaluate, checkpoint, and stop
  cleanly (after saving) on preemption. Returns the last logged and evaluated metrics (a
  preempted run: its training metrics only)."""
  state = run.state
  step = int(jax.device_get(state.step))
  num_steps = cfg.training.num_steps
  logging.info("Training from step %d to %d", step, num_steps)
  preemption = checkpointing.Preemption()
  meter = metric_writers.Throughput(step, num_steps, cfg.data.global_batch, jax.process_count())
  first_step, started = step, time.time()
  results: dict[str, float] = {}
  pending: list[tuple[int, jax.Array]] = []
  pad_id = run.batcher.encoder_tokenizer.pad_id
  profiler = StepProfiler(profile_dir, cfg.training.profile_steps)
  save = lambda: ckpt.save(step, state, cfg, run.metadata, run.train_iter.get_state())
  try:
    while step < num_steps:
      local, line_tokens = device_padding.split_line_tokens(next(run.train_iter))
      state, metrics = run.train_step(state, sharding_lib.global_batch(local, run.mesh),
                                      line_tokens)
      step += 1
      pending.append((step, metrics["loss"]))
      if len(pending) > _IN_FLIGHT:
        # Dispatch may otherwise run up to log_every steps ahead of the device, and a SIGTERM
        # waits for all of them before the save: minutes where a step takes seconds.
        jax.block_until_ready(pending[-_IN_FLIGHT - 1][1])
      if step == first_step + 1:  # The first step compiles; rates start after it.
        jax.block_until_ready(metrics)
        logging.info("First step (with compilation) took %.1fs", time.time() - started)
        meter.restart(step)
      else:
        meter.add_tokens(count_tokens(local, pad_id))
      profiler.step_done(step, first_step, metrics)
      preempted = preemption.reached(step)
      log_now = step % cfg.training.log_every == 0 or step == num_steps
      save_now = step % cfg.training.checkpoint_every == 0 or step == num_steps or preempted
      if log_now or save_now:
        check_finite(pending)
        pending = []
      if log_now:
        train = {f"train/{k}": float(v) for k, v in jax.device_get(metrics).items()}
        perf = meter.report(step)
        writer.write(step, {**train, **perf})
        logging.info("step %d/%d loss %.4f | %.2f steps/s, %.0f examples/s, %.0f tokens/s, "
                     "ETA %.0fs", step, num_steps, train["train/loss"], perf["perf/steps_per_sec"],
                     perf["perf/examples_per_sec"], perf["perf/tokens_per_sec"],
                     perf["perf/eta_sec"])
        results.update(train)
      if save_now:
        save()
      if preempted:
        ckpt.wait()
        logging.warning("Preempted: saved step %d in %s; stopping cleanly", step, ckpt.directory)
        # An earlier evaluation is not this run's result: nothing held-out is returned, so
        # nothing is printed as if it were final.
        return {k: v for k, v in results.items() if not k.startswith("eval/")}
      if step % cfg.training.eval_every == 0 and step < num_steps:
        paused_since = time.time()
        results.update(run_evals(run, cfg, state.params, step, writer))
        meter.pause_until_now(paused_since)
    if ckpt.latest_step() != step:  # a zero-step run (the convert command) saves its start
      save()
    results.update(run_evals(run, cfg, state.params, step, writer))
  except NonFiniteLossError as e:
    ckpt.wait()
    raise NonFiniteLossError(f"{e}. The last good checkpoint is step {ckpt.latest_step()} in "
                             f"{ckpt.directory}.") from None
  finally:
    profiler.stop()
    preemption.close()
  return results
