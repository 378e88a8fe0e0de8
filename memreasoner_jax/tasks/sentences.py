"""Splitting real book text into sentences (and sentences into bounded lines) for haystacks.

Book files come hard-wrapped, with Project Gutenberg boilerplate, title pages, chapter headings,
`[Illustration]` marks and typographic quotes. `book_sentences` keeps only running prose and
splits it at sentence ends, not after common abbreviations (Mr., Mrs., Dr., St., ...) or initials,
and keeps closing quotes and brackets with their sentence. A model's line encoder has a bounded
width, so `wrap_line` cuts very long sentences at word boundaries.
"""

import re
import textwrap

_GUTENBERG_START = re.compile(r"^\*\*\* ?START OF (THE|THIS) PROJECT GUTENBERG.*$", re.M | re.I)
_GUTENBERG_END = re.compile(
    r"^(\*\*\* ?END OF (THE|THIS) PROJECT GUTENBERG|End of (the )?Project Gutenberg).*$",
    re.M | re.I)
_BRACKETED = re.compile(r"\[[^\]]*\]")  # [Illustration: ...], [Emma by Jane Austen 1816]
_HEADING = re.compile(
    r"(?i:chapter|book|volume|part|section|stave|letter|canto)\s+(?:[IVXLCDM]+|\d+)\b.{0,60}")
_PARAGRAPH_END = re.compile(r"[.!?][\"'”’)\]_]*$")
# A sentence end: terminal punctuation, closing quotes/brackets, space, then an upper-case start.
_BOUNDARY = re.compile(r"[.!?]+[\"'”’)\]_]*\s+(?=[\"“‘'(\[_]*[^\W_])")
ABBREVIATIONS = frozenset(
    "mr mrs ms messrs dr st mt jr sr prof rev hon capt col gen lt sgt maj gov no vol ch fig "
    "esq viz cf vs e.g i.e".split())
_MIN_PROSE_CHARS = 60  # a shorter paragraph without a sentence end is a title or a caption


def strip_boilerplate(text: str) -> str:
  """The book between Project Gutenberg's START and END markers, with LF line ends."""
  text = text.replace("\r\n", "\n").replace("\r", "\n")
  start = _GUTENBERG_START.search(text)
  if start:
    text = text[start.end():]
  end = _GUTENBERG_END.search(text)
  return text[:end.start()] if end else text


def _is_heading(line: str) -> bool:
  line = line.strip()
  return bool(line) and (not any(c.islower() for c in line) or bool(_HEADING.fullmatch(line)))


def paragraphs(text: str) -> list[str]:
  """Prose paragraphs, unwrapped to one line each, headings and captions removed."""
  text = _BRACKETED.sub(" ", strip_boilerplate(text))
  out = []
  for block in re.split(r"\n\s*\n", text):
    lines = [l for l in block.split("\n") if not _is_heading(l)]
    paragraph = " ".join(" ".join(lines).split())
    if len(paragraph) >= _MIN_PROSE_CHARS or _PARAGRAPH_END.search(paragraph):
      out.append(paragraph)
  return out


def _ends_with_abbreviation(text: str) -> bool:
  """True if `text` (ending just before a '.') ends with an abbreviation or an initial."""
  word = re.search(r"[\w.]*$", text)[0]
  return word.lower() in ABBREVIATIONS or (len(word) == 1 and word.isupper())


def split_sentences(paragraph: str) -> list[str]:
  """Sentences of one unwrapped paragraph."""
  sentences, start = [], 0
  for m in _BOUNDARY.finditer(paragraph):
    punctuation = m[0].rstrip()
    if punctuation == "." and _ends_with_abbreviation(paragraph[start:m.start()]):
      continue
    next_char = paragraph[m.end():].lstrip("\"“‘'([_")[:1]
    if not (next_char.isupper() or next_char.isdigit()):
      continue
    sentences.append(paragraph[start:m.start() + len(punctuation)])
    start = m.end()
  if paragraph[start:]:
    sentences.append(paragraph[start:])
  return sentences


def book_sentences(text: str) -> list[str]:
  """All prose sentences of a book, in order."""
  return [s for p in paragraphs(text) for s in split_sentences(p)]


def wrap_line(sentence: str, max_chars: int) -> list[str]:
  """`sentence` as lines of at most `max_chars`, cut at spaces (a longer word is cut inside)."""
  if len(sentence) <= max_chars:
    return [sentence]
  return textwrap.wrap(sentence, max_chars, break_on_hyphens=False)
