"""Answering questions with a trained checkpoint: `load(path) -> Reasoner`.

  import memreasoner_jax
  reasoner = memreasoner_jax.load("/tmp/qa1_tiny")  # a workdir, one step, an export, a .zip
  reasoner.answer("Mary went to the kitchen.\nJohn moved to the garden.", "Where is Mary?")
  print(reasoner.explain(story, "Where is Mary?"))   # the lines each hop read, then the answer

A text context is split into lines the way training data was made: every line of the text is
split into sentences (`tasks.sentences.split_sentences`), and a sentence longer than the model's
line width is cut at spaces (`data.lines.split_line`), never truncated. A list of lines is taken
as it is, apart from that cut.

Calls are jitted once per shape: the batch is padded to a power of two (at least the device
count) and the lines to the config's line buckets, extended by doubling past `data.max_lines`,
so a long evaluation compiles a handful of shapes. Memory stays bounded for long contexts: the
encoder encodes `model.encoder.encode_chunk` lines at a time, and a batch holds at most
`max_batch_lines` lines (fewer examples per batch as contexts grow, down to one).
"""

from collections.abc import Sequence
import dataclasses
import functools
import os
from typing import Any
import warnings
import zipfile

import jax
import ml_collections
import numpy as np

from memreasoner_jax import checkpointing
from memreasoner_jax.data import batching
from memreasoner_jax.data import lines as lines_lib
from memreasoner_jax.data import seen_text
from memreasoner_jax import input_pipeline as input_lib
from memreasoner_jax import models
from memreasoner_jax import sharding as sharding_lib
from memreasoner_jax.tasks.example import Example
from memreasoner_jax.tasks import sentences

Context = str | Sequence[str]


@dataclasses.dataclass(frozen=True)
class LineWeight:
  """One context line as a hop read it: `weight` is the cosine of the hop's readout with the
  line's written latent (1 = the readout points exactly at this line)."""

  index: int  # position in the context's lines (after splitting)
  text: str
  weight: float


@dataclasses.dataclass(frozen=True)
class Explanation:
  """Per hop the lines read most strongly (strongest first), then the answer."""

  question: str
  hops: tuple[tuple[LineWeight, ...], ...]
  answer: str
  notes: tuple[str, ...] = ()  # input unlike the training data (InputWarning's text)

  def __str__(self) -> str:
    out = [f"Question: {self.question}"]
    for h, read in enumerate(self.hops):
      for i, line in enumerate(read):
        head = f"Hop {h + 1}:" if i == 0 else ""
        out.append(f"{head:<8}{line.weight:6.3f}  line {line.index:<5} {line.text}")
    out.append(f"Answer: {self.answer}")
    out += [f"Note: {note}" for note in self.notes]
    return "\n".join(out)

  def _repr_pretty_(self, printer, cycle: bool) -> None:
    """IPython and notebooks show the same table as print()."""
    del cycle
    printer.text(str(self))


def _sentences(context: Context, name: str) -> list[str]:
  """The lines of `context` (a text, split into sentences, or a list of lines) before any cut."""
  if isinstance(context, str):
    raw = [s for line in context.splitlines() if line.strip()
           for s in sentences.split_sentences(line.strip())]
  elif isinstance(context, Sequence):
    for i, line in enumerate(context):
      if not isinstance(line, str):
        raise TypeError(f"{name}[{i}] must be a string (one line), got {type(line).__name__}")
    raw = [line for line in context if line.strip()]
  else:
    raise TypeError(f"{name} must be a string or a list of lines, got {type(context).__name__}")
  if not raw:
    raise ValueError(f"{name} is empty: give at least one non-blank line")
  return raw


def context_lines(context: Context, max_bytes: int, name: str = "context") -> tuple[str, ...]:
  """The lines the model reads for `context` (a text or a list of lines); errors name `name`."""
  return tuple(piece for line in _sentences(context, name)
               for piece in lines_lib.split_line(line, max_bytes))


class InputWarning(UserWarning):
  """Input unlike anything the model was trained on: its answer is unreliable."""


def _cut_note(name: str, raw: list[str], pieces: list[list[str]], max_bytes: int) -> str | None:
  """What was cut in `raw` (each line's `pieces`), or None when every line fits."""
  cut = [(len(p), i, line) for i, (line, p) in enumerate(zip(raw, pieces)) if len(p) > 1]
  if not cut:
    return None
  pieces, index, line = max(cut)
  return (f"{name}: {len(cut)} line(s) longer than the {max_bytes} bytes a line holds were cut "
          f"at spaces into {sum(c[0] for c in cut)} lines (the longest, line {index}, "
          f"{len(line):,} characters, into {pieces}); each piece is read as a separate fact")


def _unseen_note(name: str, known: tuple[frozenset[str], frozenset[str]],
                 texts: list[str]) -> str | None:
  """What of `texts` the training data (`seen_text.known`) never had, or None."""
  chars, words = seen_text.unseen(*known, texts)
  if not chars and not words:
    return None
  parts = []
  if chars:
    parts.append(f"characters {chars!r}")
  if words:
    shown = ", ".join(repr(w) for w in words[:5]) + (f" and {len(words) - 5} more"
                                                      if len(words) > 5 else "")
    parts.append(f"words {shown}")
  return f"{name} has {' and '.join(parts)} that the training data never had"


def _check_question(question: Any, name: str) -> str:
  if not isinstance(question, str):
    raise TypeError(f"{name} must be a string, got {type(question).__name__}")
  if not question.strip():
    raise ValueError(f"{name} is empty")
  return question


def _warn(notes: list[str]) -> None:
  if notes:
    warnings.warn("; ".join(notes) + ". Answers about such input are unreliable.", InputWarning,
                  stacklevel=3)


class Reasoner:
  """A trained MemReasoner with its tokenizers and config, ready to answer questions."""

  def __init__(self, params: models.Params, config: ml_collections.ConfigDict,
               mesh: jax.sharding.Mesh, *, step: int, directory: str,
               max_batch_lines: int = 2 ** 14, training_text: dict[str, Any] | None = None):
    self._config = config
    # What the training examples held (seen_text.record); None for checkpoints written before
    # it was recorded, which answer without the unseen-input check.
    self._known = None if training_text is None else seen_text.known(training_text)
    self._model = models.build(config.model)
    # What the model reads (packed line rows too, where the config packs lines).
    self._batch_keys = (*self._model.batch_shapes(), "line_rows_SxM")
    self._params = params
    self._mesh = mesh
    self._batcher = input_lib.make_batcher(config.data)
    self.step = step
    self.directory = directory
    self.max_batch_lines = max_batch_lines
    self._max_line_bytes = config.data.line_tokens - 2
    max_new_tokens = config.eval.max_new_tokens

    def infer(params, batch):
      generated = self._model.generate(params, batch, max_new_tokens)
      return generated.tokens_BxN, generated.sims_BxHxE

    rows = sharding_lib.batch_sharding(mesh)
    params_sharding = jax.tree.map(lambda x: x.sharding, params)
    self._infer = jax.jit(infer, in_shardings=(params_sharding, rows), out_shardings=rows)

  @property
  def config(self) -> ml_collections.ConfigDict:
    """The config the checkpoint was trained with."""
    return self._config

  def __repr__(self) -> str:
    num_params = sum(x.size for x in jax.tree.leaves(self._params))
    return (f"Reasoner({self._config.model.preset} preset, tasks {self._config.data.tasks}, "
            f"{num_params:,} parameters, step {self.step}, {self._mesh.devices.size} device(s), "
            f"from {self.directory})")

  def answer(self, context: Context, question: str) -> str:
    """The model's answer to `question` about `context` (a text or a list of lines).

    Warns (InputWarning, once per call) when the input holds characters or words the training
    data never had, or lines too long for the model's line width.
    """
    examples, notes = self._examples([context], [question], ("context", "question"))
    _warn(notes)
    ((answer, _),) = self._run(examples)
    return answer

  def answer_batch(self, contexts: Sequence[Context], questions: Sequence[str]) -> list[str]:
    """Answers of many questions, batched (contexts of different lengths are fine); warns as
    `answer` does."""
    examples, notes = self._examples(contexts, questions, ("contexts[{i}]", "questions[{i}]"))
    _warn(notes)
    return [answer for answer, _ in self._run(examples)]

  def explain(self, context: Context, question: str, top_k: int = 3) -> Explanation:
    """Per hop the `top_k` lines whose latents the hop's readout points at most, and the answer;
    its notes (and a warning) say what in the input the model was not trained on."""
    (example,), notes = self._examples([context], [question], ("context", "question"))
    _warn(notes)
    ((answer, sims_HxE),) = self._run([example])
    hops = []
    for sims_E in sims_HxE:
      sims_E = sims_E[:len(example.context)]
      order = np.argsort(-sims_E, kind="stable")[:top_k]
      hops.append(tuple(LineWeight(int(i), example.context[i], float(sims_E[i])) for i in order))
    return Explanation(question, tuple(hops), answer, tuple(notes))

  def answer_examples(self, examples: Sequence[Example]) -> list[str]:
    """Answers of task Examples (their context and question; answers are not looked at).

    No InputWarning: evaluation data (haystacks, renamed answers) is unlike the training data
    on purpose, and its lines are already cut to fit.
    """
    examples, _ = self._examples([e.context for e in examples], [e.question for e in examples],
                                 ("examples[{i}].context", "examples[{i}].question"), notes=False)
    return [answer for answer, _ in self._run(examples)]

  def _examples(self, contexts: Sequence[Context], questions: Sequence[str],
                names: tuple[str, str], notes: bool = True) -> tuple[list[Example], list[str]]:
    """The Examples the model reads, and (unless `notes` is False) notes on what in them is
    unlike the training data."""
    if isinstance(contexts, str) or isinstance(questions, str):
      raise TypeError("answer_batch takes a list of contexts and a list of questions; use "
                      "answer() for a single question")
    if len(contexts) != len(questions):
      raise ValueError(f"{len(contexts)} contexts but {len(questions)} questions")
    query_limit = self._config.data.query_tokens - 2
    examples, found = [], []
    for i, (context, question) in enumerate(zip(contexts, questions)):
      context_name, question_name = (n.format(i=i) for n in names)
      question = _check_question(question, question_name)
      num_tokens = len(self._batcher.encoder_tokenizer.encode(question))
      if num_tokens > query_limit:
        raise ValueError(f"{question_name} has {num_tokens} tokens, more than the {query_limit} "
                         f"this model reads (data.query_tokens={query_limit + 2})")
      raw = _sentences(context, context_name)
      pieces = [lines_lib.split_line(line, self._max_line_bytes) for line in raw]
      if notes:
        found.append(_cut_note(context_name, raw, pieces, self._max_line_bytes))
        if self._known is not None:
          found.append(_unseen_note(question_name, self._known, [question]))
          found.append(_unseen_note(context_name, self._known, raw))
      examples.append(Example(tuple(p for line in pieces for p in line), question, "", (),
                              "input", i))
    return examples, [note for note in found if note]

  def _line_bucket(self, num_lines: int) -> int:
    data = self._config.data
    return batching.bucket_for(
        num_lines, batching.line_buckets(data.line_bucket, max(data.max_lines, num_lines)))

  def _batch_rows(self, size: int) -> int:
    """Rows of a batch of `size` examples: a power of two, a multiple of the device count."""
    devices = self._mesh.devices.size
    rows = 1 << max(size - 1, 0).bit_length()
    return -(-max(rows, devices) // devices) * devices

  def _groups(self, examples: list[Example]) -> list[list[Example]]:
    """Consecutive examples batched so that a batch holds at most `max_batch_lines` lines."""
    groups, start = [], 0
    while start < len(examples):
      size = self._config.data.eval_batch
      while size > 1:
        part = examples[start:start + size]
        lines = self._line_bucket(max(len(e.context) for e in part))
        if self._batch_rows(len(part)) * lines <= self.max_batch_lines:
          break
        size //= 2
      groups.append(examples[start:start + size])
      start += size
    return groups

  def _run(self, examples: list[Example]) -> list[tuple[str, np.ndarray]]:
    """(answer, sims_HxE) per example, in order."""
    results = []
    decode = lambda ids: batching.answer_text(self._batcher.decoder_tokenizer, ids)
    for group in self._groups(examples):
      padded = group + group[:1] * (self._batch_rows(len(group)) - len(group))
      shards = self._mesh.devices.size
      layout = self._batcher.layout(self._batcher.sizes(padded), shards,
                                    num_lines=self._line_bucket(max(len(e.context) for e in group)))
      local = self._batcher(padded, layout, shards=shards)
      batch = sharding_lib.global_batch({k: v for k, v in local.items() if k in self._batch_keys},
                                        self._mesh)
      tokens_BxN, sims_BxHxE = jax.device_get(self._infer(self._params, batch))
      results += [(decode(tokens_BxN[b]), sims_BxHxE[b]) for b in range(len(group))]
    return results


def load(path: str, devices: Sequence[jax.Device] | None = None) -> Reasoner:
  """A Reasoner from a training workdir (its newest readable step), one step directory under
  any name (copied out of checkpoints/, or written by `memreasoner_jax.export`), or a .zip of one.

  The parameters are restored replicated onto `devices` (default: this process's devices),
  whatever mesh wrote them; the model, tokenizers and decoding length come from the
  checkpoint's own config. The optimizer state is not read.
  """
  if os.path.isfile(path) and zipfile.is_zipfile(path):
    with checkpointing.unzipped(path) as root:
      reasoner = load(root, devices)  # reads the tokenizer files before they are deleted
    reasoner.directory = os.path.abspath(path)
    return reasoner
  mesh = replicated_mesh(devices or jax.local_devices())
  restored = checkpointing.restore_params(path, functools.partial(abstract_params, mesh=mesh))
  return Reasoner(restored.params, restored.config, mesh, step=restored.step,
                  directory=restored.directory,
                  training_text=restored.metadata.get("training_text"))


def load_average(paths: Sequence[str], devices: Sequence[jax.Device] | None = None) -> Reasoner:
  """A Reasoner whose parameters are the mean of several checkpoints of one model (e.g. the kept
  steps of a run: `paths` are step directories, or anything `load` reads).

  Steps of one run lie close in weight space, and their mean can answer better than any of them
  (weight averaging). The config, tokenizers and step are the newest checkpoint's. Checkpoints
  of different parameter shapes are an error naming the first that differs.
  """
  if not paths:
    raise ValueError("load_average needs at least one checkpoint")
  mesh = replicated_mesh(devices or jax.local_devices())
  restored = [checkpointing.restore_params(p, functools.partial(abstract_params, mesh=mesh))
              for p in paths]
  shapes = [jax.tree.map(np.shape, r.params) for r in restored]
  for path, shape in zip(paths, shapes):
    if shape != shapes[0]:
      raise ValueError(f"{path} holds parameters of other shapes than {paths[0]}: checkpoints "
                       "of one model only can be averaged")
  params = jax.tree.map(lambda *arrays: sum(arrays) / len(arrays), *(r.params for r in restored))
  newest = max(restored, key=lambda r: r.step)
  return Reasoner(params, newest.config, mesh, step=newest.step, directory=newest.directory,
                  training_text=newest.metadata.get("training_text"))


def replicated_mesh(devices: Sequence[jax.Device]) -> jax.sharding.Mesh:
  """A data-parallel mesh over `devices`: parameters replicated, batches split."""
  return sharding_lib.make_mesh(ml_collections.ConfigDict({"data": -1, "fsdp": 1}), devices)


def abstract_params(config: ml_collections.ConfigDict, mesh: jax.sharding.Mesh) -> Any:
  """The parameters `config` builds, as ShapeDtypeStructs sharded over `mesh`."""
  model = models.build(config.model)
  shapes = jax.eval_shape(model.init, jax.random.key(0), model.batch_shapes())
  shardings = sharding_lib.state_shardings(shapes, mesh, config.mesh.fsdp_min_size)
  return jax.tree.map(lambda s, sh: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sh),
                      shapes, shardings)
