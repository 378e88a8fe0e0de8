"""The one record every task produces and every pipeline consumes."""

import dataclasses


@dataclasses.dataclass(frozen=True)
class Example:
  """One question over a context of lines.

  Attributes:
    context: the context's lines in document order (facts and any distractor sentences).
    question: the question text, e.g. "Where is Mary?".
    answer: the target answer text, e.g. "bathroom".
    support: indices into `context` of the supporting facts in hop order: `support[t]` is the
      line hop t should read (for bAbI, the released support-id order).
    task: the task name, e.g. "qa1".
    index: the example's position in its split; `sf_fraction` picks the supervised subset
      from it, so the subset is the same every epoch.
  """

  context: tuple[str, ...]
  question: str
  answer: str
  support: tuple[int, ...]
  task: str
  index: int
