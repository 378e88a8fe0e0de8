"""Small hand-written qa1/qa2-like Examples and a GPT-2-style tokenizer for the data tests."""

import pytest

from memreasoner_jax.data import tokenizers
from memreasoner_jax.tasks.example import Example

_ACTORS = ("Mary", "John", "Sandra", "Daniel")
_ROOMS = ("bathroom", "bedroom", "garden", "hallway", "kitchen", "office")


def qa1_examples(num: int, max_lines: int = 10) -> list[Example]:
  """`num` qa1-like Examples with 1..max_lines lines; deterministic, answers consistent."""
  examples = []
  for index in range(num):
    lines, where = [], {}
    for j in range(1 + index % max_lines):
      actor, room = _ACTORS[(index + j) % 4], _ROOMS[(3 * index + j) % 6]
      lines.append(f"{actor} moved to the {room}.")
      where[actor] = (room, j)
    actor = _ACTORS[index % 4]
    room, line = where[actor]
    examples.append(Example(tuple(lines), f"Where is {actor}?", room, (line,), "qa1", index))
  return examples


QA2_STORY = Example(
    context=("Mary got the milk there.", "John moved to the bedroom.",
             "Mary travelled to the hallway.", "Über café naïve.", "Sandra went to the garden."),
    question="Where is the milk?", answer="hallway", support=(0, 2), task="qa2", index=3)


def gpt2_style_tokenizer(directory) -> tokenizers.Tokenizer:
  """A small byte-level BPE saved as GPT-2's vocab.json + merges.txt (BOS = EOS = PAD), offline."""
  hf = pytest.importorskip("tokenizers")
  bpe = hf.Tokenizer(hf.models.BPE())
  bpe.pre_tokenizer = hf.pre_tokenizers.ByteLevel(add_prefix_space=False)
  trainer = hf.trainers.BpeTrainer(vocab_size=300, special_tokens=["<|endoftext|>"],
                                   initial_alphabet=hf.pre_tokenizers.ByteLevel.alphabet())
  text = " ".join(f"{a} moved to the {r}. Where is {a}? {r}" for a, r in zip(_ACTORS, _ROOMS))
  bpe.train_from_iterator([text] * 20, trainer)
  bpe.model.save(str(directory))
  return tokenizers.from_spec(str(directory))
