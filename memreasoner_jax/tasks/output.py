"""Writing generated data: JSON lines, and files that appear whole or not at all."""

import dataclasses
import json
import os
import tempfile
from typing import Iterable

from memreasoner_jax.tasks.example import Example


def example_to_json(example: Example) -> str:
  return json.dumps(dataclasses.asdict(example), ensure_ascii=False)


def example_from_json(line: str) -> Example:
  fields = json.loads(line)
  return Example(**{**fields, "context": tuple(fields["context"]),
                    "support": tuple(fields["support"])})


def format_jsonl(examples: Iterable[Example]) -> str:
  return "".join(example_to_json(e) + "\n" for e in examples)


def read_jsonl(path: str | os.PathLike) -> list[Example]:
  """Every Example of a JSON lines file; a malformed record is an error naming its line."""
  examples = []
  with open(path, encoding="utf-8") as f:
    for number, line in enumerate(f, 1):
      if not line.strip():
        continue
      try:
        examples.append(example_from_json(line))
      except (ValueError, KeyError, TypeError) as e:  # JSONDecodeError is a ValueError
        raise ValueError(f"{os.fspath(path)}:{number}: not a JSON Example record ({e!r}): "
                         f"{line.strip()[:80]!r}") from None
  return examples


def _umask() -> int:
  umask = os.umask(0)  # reading the umask means setting it; put it back at once
  os.umask(umask)
  return umask


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
  """Writes `text` to a temporary file beside `path`, then renames it into place, with the
  mode a plain open() would give (mkstemp's files are 0600 whatever the umask)."""
  path = os.fspath(path)
  fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(path)),
                             prefix=f".{os.path.basename(path)}.", suffix=".tmp")
  try:
    os.fchmod(fd, 0o666 & ~_umask())
    with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
      f.write(text)
    os.replace(tmp, path)
  except BaseException:
    os.unlink(tmp)
    raise
