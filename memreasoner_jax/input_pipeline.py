"""The config's `data` section -> Examples (generated, or read from `data.source`) and a Batcher.

Glue between `tasks.registry` (what the examples are) and `data.pipeline` (how they become
per-host batches, in train.py and evaluate.py); everything here is a pure function of the
config, so every host builds the same datasets and takes its own slice of each batch.
"""

import functools

import ml_collections

from memreasoner_jax.data import batching
from memreasoner_jax.data import lines as lines_lib
from memreasoner_jax.data import sources
from memreasoner_jax.data import tokenizers
from memreasoner_jax.tasks import distractors
from memreasoner_jax.tasks.example import Example
from memreasoner_jax.tasks import haystack
from memreasoner_jax.tasks import registry
from memreasoner_jax.tasks import rename


def task_names(cfg: ml_collections.ConfigDict) -> tuple[str, ...]:
  """The tasks of `data.tasks` ('qa1+qa2' -> ('qa1', 'qa2'))."""
  names = tuple(cfg.tasks.split("+"))
  unknown = [t for t in names if t not in registry.TASKS]
  if unknown:
    raise ValueError(f"config data.tasks={cfg.tasks!r}: unknown task(s) {unknown}; "
                     f"choose from {registry.TASKS}")
  return names


def make_batcher(cfg: ml_collections.ConfigDict, read_targets: bool = True,
                 read_words: bool = False) -> batching.Batcher:
  """The Batcher of data config `cfg`; without `read_targets` it leaves out the read losses'
  inputs, with `read_words` it adds their foreign negatives' (training passes
  `losses.uses_read_targets` and `losses.uses_read_words`)."""
  encoder_tokenizer = tokenizers.from_spec(cfg.encoder_tokenizer)
  decoder_tokenizer = tokenizers.from_spec(cfg.decoder_tokenizer) if cfg.decoder_tokenizer else None
  shape = batching.BatchShape(
      line_tokens=cfg.line_tokens, query_tokens=cfg.query_tokens,
      answer_tokens=cfg.answer_tokens, supports=cfg.supports,
      line_buckets=batching.line_buckets(cfg.line_bucket, cfg.max_lines),
      sequence_tokens=cfg.sequence_tokens, token_multiple=cfg.get("token_multiple", 0),
      sequence_multiple=cfg.get("sequence_multiple", 0), pack_lines=cfg.get("pack_lines", False))
  return batching.Batcher(shape, encoder_tokenizer, decoder_tokenizer, sf_fraction=cfg.sf_fraction,
                          read_targets=read_targets, read_words=read_words)


def _fit_lines(examples: list[Example], cfg: ml_collections.ConfigDict) -> list[Example]:
  """Over-long distractor lines split so every line fits `line_tokens` (never truncated)."""
  return [lines_lib.split_long_lines(e, cfg.line_tokens - 2) for e in examples]


def _source(cfg: ml_collections.ConfigDict) -> str:
  return cfg.get("source", "generated")  # configs saved before data.source existed: generated


def check_source(cfg: ml_collections.ConfigDict) -> None:
  """A clear error now for a `data.source` that cannot be read (sources.SourceError)."""
  sources.check(_source(cfg))


def _training_rename(task: str, cfg: ml_collections.ConfigDict):
  """(share of `task`'s training examples to rename, the renaming)."""
  if task in registry.BABI_TASKS:
    doubled = cfg.get("rename_doubled", 0.0)
    return cfg.get("rename_fraction", 0.0), functools.partial(rename.rename_rooms_randomly,
                                                             doubled=doubled)
  return cfg.get("value_rename_fraction", 0.0), rename.rename_values_randomly


def train_examples(cfg: ml_collections.ConfigDict) -> list[Example]:
  """The training split of `data.source`; generated: every task's, with 0..train_filler_max
  filler sentences per example (a `lookalike_fraction` of a bAbI story's opening with a
  look-alike of an actor's name), the rooms of a `rename_fraction` of the bAbI stories renamed to
  pseudo-words, and the values of a `value_rename_fraction` of the variable-tracking examples
  to pseudo-values."""
  if not sources.is_generated(_source(cfg)):
    return _fit_lines(sources.read(cfg.source, "train", cfg.tfds_dir), cfg)
  source = distractors.get_source(cfg.train_filler) if cfg.train_filler_max > 0 else None
  examples = []
  for task in task_names(cfg):
    fraction, rename_randomly = _training_rename(task, cfg)
    lookalike_fraction = (cfg.get("lookalike_fraction", 0.0)
                          if task in registry.BABI_TASKS else 0.0)
    for example in registry.generate(task, "train", cfg.train_examples, cfg.train_seed):
      if fraction > 0:
        rng = registry.rng_for(task, "train-rename", cfg.train_seed, example.index)
        if rng.random() < fraction:
          example = rename_randomly(example, rng)
      if source is not None:
        rng = registry.rng_for(task, "train-filler", cfg.train_seed, example.index)
        example = haystack.add_filler(example, rng.randint(0, cfg.train_filler_max), source, rng,
                                      max_line_chars=cfg.line_tokens - 2,
                                      lookalike_fraction=lookalike_fraction)
      examples.append(example)
  return _fit_lines(examples, cfg)


def eval_examples(cfg: ml_collections.ConfigDict) -> dict[str, list[Example]]:
  """Each task's held-out split: generated test stories at `eval_length` with the test
  filler, or the first `eval_examples` of each task in the test split of `data.source`.

  `eval_examples=0` turns evaluation off (benchmarks, smoke tests).
  """
  if cfg.eval_examples == 0:
    return {}
  if not sources.is_generated(_source(cfg)):
    by_task: dict[str, list[Example]] = {}
    for example in sources.read(cfg.source, "test", cfg.tfds_dir):
      by_task.setdefault(example.task, []).append(example)
    return {task: _fit_lines(examples[:cfg.eval_examples], cfg)
            for task, examples in sorted(by_task.items())}
  return {task: _fit_lines(registry.generate(task, "test", cfg.eval_examples, cfg.eval_seed,
                                             length=cfg.eval_length), cfg)
          for task in task_names(cfg)}
