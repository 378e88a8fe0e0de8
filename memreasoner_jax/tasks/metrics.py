"""Scoring model outputs: BABILong's label match, exact match, RULER's string_match_all.

All scores are on the 0..100 scale used in the BABILong and RULER papers.
"""

from typing import Sequence


def compare_answers(output: str, target: str, question: str, labels: Sequence[str]) -> bool:
  """BABILong's check: the target is the only candidate label in the output's first sentence.

  The output is lower-cased and cut before `<context>`, `<example>` and the first period; the
  labels found in it, less those that occur in the question, must be exactly {target}. `labels`
  is the task's answer set (e.g. rename.answer_labels(task, renamed)), so renamed splits score
  with their own words. Matching is by substring, as in BABILong.
  """
  text = output.lower()
  for stop in ("<context>", "<example>", "."):
    text = text.split(stop, 1)[0]
  question = question.lower()
  found = {l.lower() for l in labels if l.lower() in text and l.lower() not in question}
  return found == {target.lower()}


def exact_match(output: str, target: str) -> bool:
  """Case-insensitive equality after stripping spaces and one final period."""
  def norm(s: str) -> str:
    s = s.strip().lower()
    return s[:-1].rstrip() if s.endswith(".") else s
  return norm(output) == norm(target)


def string_match_all(output: str, references: Sequence[str]) -> float:
  """RULER's per-sample score: the share of references found case-insensitively in `output`."""
  if not references:
    raise ValueError(f"string_match_all: no reference to find in {output!r}")
  text = output.lower()
  return sum(r.lower() in text for r in references) / len(references)


def babilong_score(outputs: Sequence[str], targets: Sequence[str], questions: Sequence[str],
                   labels: Sequence[str]) -> float:
  return 100 * _mean([compare_answers(o, t, q, labels)
                      for o, t, q in zip(outputs, targets, questions, strict=True)])


def exact_match_score(outputs: Sequence[str], targets: Sequence[str]) -> float:
  return 100 * _mean([exact_match(o, t) for o, t in zip(outputs, targets, strict=True)])


def ruler_score(outputs: Sequence[str], answers: Sequence[str]) -> float:
  """RULER's string_match_all over a split; each answer is space-joined names (our VT answers)."""
  return 100 * _mean([string_match_all(o, a.split()) for o, a in zip(outputs, answers, strict=True)])


def _mean(values: Sequence[float]) -> float:
  if not values:
    raise ValueError("no samples to score")
  return sum(values) / len(values)
