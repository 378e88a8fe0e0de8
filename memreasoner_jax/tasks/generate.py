r"""Generates a task split to a file.

  python -m memreasoner_jax.tasks.generate --task=qa2 --split=test --num=1000 \
      --length=16k --distractors=/data/books --seed=0 --format=jsonl --out=/tmp/qa2_16k.jsonl

The same flags give the same bytes. The file appears only once it is complete; a line says
what was written where.
"""

import os
import sys

from absl import app
from absl import flags

from memreasoner_jax.tasks import babi_format, haystack, output, registry, lengths

_TASK = flags.DEFINE_enum("task", None, registry.TASKS,
                          "bAbI qa1 (one supporting fact), qa2 (two), or variable tracking "
                          "vt1/vt2 (a chain of one or two assignments to follow).")
_SPLIT = flags.DEFINE_enum("split", "train", registry.SPLITS,
                           "Which split's random stream to draw from (train and test never "
                           "share one).")
_NUM = flags.DEFINE_integer("num", 1000, "Number of questions (examples) to generate.", lower_bound=1)
_LENGTH = flags.DEFINE_enum("length", "0k", lengths.LENGTHS,
                            "BABILong length: 0k = facts only; Nk = facts plus filler totalling "
                            "N*1000 - 300 tokens.")
_DISTRACTORS = flags.DEFINE_string(
    "distractors", None,
    "Filler source for lengths above 0k: builtin (offline generator, default for bAbI), "
    "builtin:train (its training half), noise (RULER's noise, default for vt), tfds:pg19[:SPLIT] "
    "(a local TFDS build; never downloads), or a text file, folder of *.txt files, or glob.")
_RENAME = flags.DEFINE_bool("rename_answers", False,
                            "Replace answer words by words training never saw (rooms -> cellar, "
                            "attic, ...; vt values -> 910000..999999).")
_SEED = flags.DEFINE_integer("seed", 0, "Random seed; same seed, same bytes.")
_FORMAT = flags.DEFINE_enum("format", "jsonl", ["babi", "jsonl"],
                            "babi: the bAbI text format (short qa1/qa2 as 5-question stories, "
                            "anything else one story per example); jsonl: one Example per line.")
_OUT = flags.DEFINE_string("out", None, "Output file path.")
_MAX_LINE_CHARS = flags.DEFINE_integer("max_line_chars", haystack.MAX_LINE_CHARS,
                                       "Filler sentences longer than this are cut into lines "
                                       "at word boundaries.", lower_bound=16)
_TOKENIZER = flags.DEFINE_string("tokenizer", None,
                                 "A Hugging Face tokenizer.json to count tokens exactly (e.g. "
                                 "GPT-2's); default: the estimate of 4 characters per token.")
_VT_CHAINS = flags.DEFINE_integer("vt_chains", 1, "Variable-tracking chains per example.",
                                  lower_bound=1)
flags.mark_flags_as_required(["task", "out"])


def render() -> str:
  """The output file's text for the current flags."""
  task, split, num, seed = _TASK.value, _SPLIT.value, _NUM.value, _SEED.value
  if _FORMAT.value == "babi" and task in registry.BABI_TASKS and _LENGTH.value == "0k":
    return babi_format.format_babi(
        registry.generate_stories(task, split, num, seed, _RENAME.value))
  count = lengths.tokenizer_counter(_TOKENIZER.value) if _TOKENIZER.value else lengths.estimate_tokens
  examples = registry.generate(task, split, num, seed, _LENGTH.value, _DISTRACTORS.value,
                               _RENAME.value, count, _MAX_LINE_CHARS.value, _VT_CHAINS.value)
  if _FORMAT.value == "babi":
    return babi_format.format_babi(babi_format.examples_to_stories(examples))
  return output.format_jsonl(examples)


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  try:
    text = render()
  except (ValueError, FileNotFoundError, NotImplementedError) as e:  # bad flags or sources
    sys.exit(f"generate: error: {e}")
  os.makedirs(os.path.dirname(os.path.abspath(_OUT.value)), exist_ok=True)
  output.atomic_write_text(_OUT.value, text)
  print(f"Wrote {_NUM.value} {_TASK.value} {_SPLIT.value} examples ({_LENGTH.value}, "
        f"{_FORMAT.value}) to {os.path.abspath(_OUT.value)}")


if __name__ == "__main__":
  app.run(main)
