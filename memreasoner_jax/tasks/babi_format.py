"""The bAbI QA file format: read, write (byte-identical round trip) and turn into Examples.

A file is a list of stories; line ids restart at 1 for each story (the restart is the only story
delimiter). Statement lines are `ID text`; question lines are `ID question<pad>\\tANSWER\\tIDS`,
where the released files put one space in <pad>, several answers are comma-separated (e.g. qa8,
qa19) and IDS are the supporting statements' ids in the release's order. The support field may
be absent or empty in other files; both are kept so that writing back reproduces the input.
"""

import dataclasses
import os
import re
from typing import Iterable, Sequence

from memreasoner_jax.tasks.example import Example


@dataclasses.dataclass(frozen=True)
class Statement:
  id: int
  text: str


@dataclasses.dataclass(frozen=True)
class Question:
  """A question line. `support` is None when the line has no third field."""

  id: int
  text: str
  answer: str
  support: tuple[int, ...] | None
  pad: str = " "


Line = Statement | Question
Story = tuple[Line, ...]

_STATEMENT_RE = re.compile(r"(\d+) ([^\t]*[^\t ][^\t]*)")  # may end in spaces (RULER's lines)
_QUESTION_RE = re.compile(r"(\d+) ([^\t]*?[^\t ])( *)\t([^\t]*)(?:\t((?:\d+(?: \d+)*)?))?")


class BabiFormatError(ValueError):
  """A line that is not valid bAbI; the message names the file and the line number."""


def parse_line(line: str) -> Line | None:
  """Parses one line (without its newline); None if it does not match the format."""
  m = _QUESTION_RE.fullmatch(line) if "\t" in line else _STATEMENT_RE.fullmatch(line)
  if m is None:
    return None
  if "\t" not in line:
    return Statement(int(m[1]), m[2])
  support = None if m[5] is None else tuple(int(i) for i in m[5].split())
  return Question(int(m[1]), m[2], m[4], support, m[3])


def parse_babi(text: str, name: str = "<string>") -> list[Story]:
  """Parses a whole bAbI file; raises BabiFormatError naming `name` and the line number."""
  if not text:
    return []
  if not text.endswith("\n"):
    raise BabiFormatError(f"{name}: file does not end with a newline")
  stories: list[list[Line]] = []
  for number, raw in enumerate(text[:-1].split("\n"), start=1):
    line = parse_line(raw)
    if line is None:
      raise BabiFormatError(f"{name}:{number}: not a bAbI line: {raw!r}")
    if line.id == 1:
      stories.append([])
    elif not stories or line.id != stories[-1][-1].id + 1:
      raise BabiFormatError(f"{name}:{number}: line id {line.id} does not follow the previous line")
    if isinstance(line, Question):
      statement_ids = {l.id for l in stories[-1] if isinstance(l, Statement)}
      bad = [i for i in line.support or () if i not in statement_ids]
      if bad:
        raise BabiFormatError(f"{name}:{number}: support ids {bad} are not earlier statements")
    stories[-1].append(line)
  return [tuple(s) for s in stories]


def read_babi(path: str | os.PathLike) -> list[Story]:
  with open(path, encoding="utf-8", newline="") as f:
    return parse_babi(f.read(), os.fspath(path))


def format_line(line: Line) -> str:
  """One line of the file, without its newline; text that cannot round-trip raises ValueError."""
  if (not line.text.strip() or "\t" in line.text or "\n" in line.text
      or isinstance(line, Question) and line.text.endswith(" ")):
    raise ValueError(f"line {line.id}: text must be one non-empty line without tabs (and a "
                     f"question without trailing spaces): {line.text!r}")
  if isinstance(line, Statement):
    return f"{line.id} {line.text}"
  out = f"{line.id} {line.text}{line.pad}\t{line.answer}"
  if line.support is not None:
    out += "\t" + " ".join(str(i) for i in line.support)
  return out


def format_babi(stories: Iterable[Story]) -> str:
  """The file text of `stories`; `format_babi(parse_babi(t)) == t` for every valid file."""
  return "".join(format_line(line) + "\n" for story in stories for line in story)


def story_examples(story: Story, task: str, first_index: int = 0) -> list[Example]:
  """One Example per question: the context is every earlier statement of the story."""
  context: list[str] = []
  position: dict[int, int] = {}  # statement id -> index into context
  examples = []
  for line in story:
    if isinstance(line, Statement):
      position[line.id] = len(context)
      context.append(line.text)
    else:
      examples.append(Example(
          context=tuple(context), question=line.text, answer=line.answer,
          support=tuple(position[i] for i in line.support or ()), task=task,
          index=first_index + len(examples)))
  return examples


def stories_to_examples(stories: Iterable[Story], task: str) -> list[Example]:
  examples: list[Example] = []
  for story in stories:
    examples += story_examples(story, task, first_index=len(examples))
  return examples


def example_to_story(example: Example) -> Story:
  """An Example as a story of its own (context lines, then the question), e.g. for haystacks."""
  n = len(example.context)
  lines: list[Line] = [Statement(i + 1, text) for i, text in enumerate(example.context)]
  lines.append(Question(n + 1, example.question, example.answer,
                        tuple(i + 1 for i in example.support)))
  return tuple(lines)


def task_from_filename(path: str | os.PathLike) -> str:
  """'qa2_two-supporting-facts_train.txt' -> 'qa2'."""
  return os.path.basename(os.fspath(path)).split("_", 1)[0]


def examples_to_stories(examples: Sequence[Example]) -> list[Story]:
  return [example_to_story(e) for e in examples]
