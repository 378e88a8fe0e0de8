"""Splitting over-long context lines before they are counted, stored or batched.

A line must fit T - 2 tokens (BOS and EOS). Book sentences in haystacks can be far longer; rather
than truncate, a distractor line is cut at spaces into pieces of at most `max_bytes` UTF-8 bytes.
A byte bound fits every tokenizer here: no token of the byte, WordPiece or byte-level BPE
tokenizers covers less than one byte, so T - 2 >= max_bytes guarantees the pieces fit.
Supporting lines are never split (a fact too long to fit is an error).
"""

import dataclasses

from memreasoner_jax.tasks.example import Example


def split_line(line: str, max_bytes: int) -> list[str]:
  """Pieces of `line` of at most `max_bytes` bytes, cut at spaces (inside a word only if needed)."""
  if len(line.encode("utf-8")) <= max_bytes:
    return [line]
  pieces, current = [], ""
  for word in line.split(" "):
    candidate = f"{current} {word}" if current else word
    if len(candidate.encode("utf-8")) <= max_bytes:
      current = candidate
      continue
    if current:
      pieces.append(current)
    current = ""
    while len(word.encode("utf-8")) > max_bytes:  # One word longer than a piece: cut it.
      head = word.encode("utf-8")[:max_bytes].decode("utf-8", errors="ignore")
      pieces.append(head)
      word = word[len(head):]
    current = word
  if current:
    pieces.append(current)
  return pieces


def split_long_lines(example: Example, max_bytes: int) -> Example:
  """The example with every over-long non-supporting line split, support indices moved along."""
  if max_bytes < 4:
    raise ValueError(f"max_bytes must be >= 4 (one UTF-8 character), got {max_bytes}")
  context, new_index = [], []
  for i, line in enumerate(example.context):
    new_index.append(len(context))
    pieces = split_line(line, max_bytes)
    if len(pieces) > 1 and i in example.support:
      raise ValueError(f"Supporting line {i} of example {example.task}[{example.index}] has "
                       f"{len(line.encode('utf-8'))} bytes, over max_bytes={max_bytes}")
    context.extend(pieces)
  if len(context) == len(example.context):
    return example
  return dataclasses.replace(example, context=tuple(context),
                             support=tuple(new_index[i] for i in example.support))
