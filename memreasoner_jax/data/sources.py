"""Where training and evaluation examples come from: `data.source` in the config.

  generated                    the task generators, in-process (the default)
  files:PATTERN                bAbI-format text files or JSON lines of Examples; PATTERN is a
                               glob holding `{split}`, replaced by `train` or `test`, e.g.
                               files:/data/babi/en-10k/qa1_*_{split}.txt
  tfds:memreasoner_tasks/CONFIG  the project's TFDS dataset (data/tfds_builder.py), built into
                               `data.tfds_dir` on first use and read from there afterwards
  tfds:NAME[/CONFIG]           any built TFDS ArrayRecord dataset with the same features

A bAbI text file's task is the start of its name (`qa1_single-supporting-fact_train.txt` ->
qa1), as in the released files and the project's generator (`tasks.generate --format=babi`);
a JSON lines file's Examples name their own task. Every problem (an unknown kind, a pattern
without `{split}`, no file, a file in the wrong format, a dataset that is not built) is an error
that names the source, raised before any training step.
"""

import glob
import json
import os

from memreasoner_jax.tasks import babi_format
from memreasoner_jax.tasks.example import Example
from memreasoner_jax.tasks import output

KINDS = ("generated", "files:PATTERN", "tfds:NAME[/CONFIG]")
_TFDS_NAME = "memreasoner_tasks"  # data/tfds_builder.py's NAME, without importing TFDS


class SourceError(ValueError):
  """`data.source` names no readable data; the message says what and where."""


def is_generated(spec: str) -> bool:
  """True for the generators; raises for a spec of no known kind."""
  if spec == "generated":
    return True
  if spec.startswith(("files:", "tfds:")) and spec.split(":", 1)[1]:
    return False
  raise SourceError(f"config data.source={spec!r} is not one of {', '.join(KINDS)}")


def read(spec: str, split: str, tfds_dir: str) -> list[Example]:
  """Every Example of `split` ('train' or 'test') of a files: or tfds: source, in order."""
  kind, arg = spec.split(":", 1)
  examples = _read_files(arg, split) if kind == "files" else _read_tfds(arg, split, tfds_dir)
  if not examples:
    raise SourceError(f"config data.source={spec!r}: its {split} split holds no examples")
  return examples


def check(spec: str) -> None:
  """Raises what `read(spec, "train", ...)` would for the spec's form, its training files or its
  dataset name, without reading or building anything (a run checks this before it starts)."""
  if is_generated(spec):
    return
  kind, arg = spec.split(":", 1)
  if kind == "files":
    _paths(arg, "train")
  elif arg.partition("/")[0] == _TFDS_NAME:
    _project_config(arg)


def _paths(pattern: str, split: str) -> list[str]:
  if "{split}" not in pattern:
    raise SourceError(f"config data.source=files:{pattern}: the pattern must hold {{split}} "
                      "(replaced by train and test), so that test files are never trained on")
  paths = sorted(glob.glob(os.path.expanduser(pattern.replace("{split}", split))))
  if not paths:
    raise SourceError(f"config data.source=files:{pattern}: no {split} file matches "
                      f"{pattern.replace('{split}', split)}")
  return paths


def _read_files(pattern: str, split: str) -> list[Example]:
  examples: list[Example] = []
  for path in _paths(pattern, split):
    try:
      if path.endswith((".jsonl", ".json")):
        examples += output.read_jsonl(path)
      else:
        examples += babi_format.stories_to_examples(babi_format.read_babi(path),
                                                    babi_format.task_from_filename(path))
    except (ValueError, KeyError, TypeError, json.JSONDecodeError) as e:
      raise SourceError(f"config data.source=files:{pattern}: {path} is neither a bAbI-format "
                        f"file nor JSON lines of Examples: {e}") from None
  return examples


def _read_tfds(name: str, split: str, tfds_dir: str) -> list[Example]:
  # TFDS is imported only by runs that read it (it takes seconds to import).
  import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel
  from memreasoner_jax.data import tfds_builder  # pylint: disable=import-outside-toplevel

  data_dir = os.path.expanduser(tfds_dir)
  if name.partition("/")[0] == _TFDS_NAME:
    config = _project_config(name)
    _check_split(name, split, dict(config.splits))  # before building anything
    builder = tfds_builder.build(config.name, data_dir)  # a no-op once built
  else:
    try:
      builder = tfds.builder(name, data_dir=data_dir)
    except Exception as e:  # pylint: disable=broad-except  (tfds raises many kinds here)
      raise SourceError(f"config data.source=tfds:{name}: {e}") from None
    if not builder.is_prepared():
      raise SourceError(f"config data.source=tfds:{name} is not built in {data_dir}")
  _check_split(name, split, builder.info.splits)
  source = tfds_builder.TfdsSource(builder, split)
  return [source[i] for i in range(len(source))]


def _check_split(name: str, split: str, splits) -> None:
  if split not in splits:
    raise SourceError(f"config data.source=tfds:{name} has no {split} split (it has "
                      f"{', '.join(splits)})")


def _project_config(name: str):
  """The project's TFDS config that `name` (memreasoner_tasks/CONFIG) names."""
  from memreasoner_jax.data import tfds_builder  # pylint: disable=import-outside-toplevel

  config = name.partition("/")[2]
  configs = {c.name: c for c in tfds_builder.MemreasonerTasks.BUILDER_CONFIGS}
  if config not in configs:
    raise SourceError(f"config data.source=tfds:{name}: {_TFDS_NAME} has no config "
                      f"{config!r}; choose one of {', '.join(configs)}")
  return configs[config]
