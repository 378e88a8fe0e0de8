"""Answer-renamed splits: no training answer word left, stories still consistent."""

import re

import pytest

from memreasoner_jax.tasks import babi_format, registry, rename, vocab


@pytest.mark.parametrize("task", ["qa1", "qa2"])
@pytest.mark.parametrize("length", ["0k", "1k"])
def test_renamed_babi_has_no_training_room(task, length):
  plain = registry.generate(task, "test", 200, seed=3, length=length)
  renamed = registry.generate(task, "test", 200, seed=3, length=length, rename_answers=True)
  rooms = re.compile(r"\b(%s)\b" % "|".join(vocab.ROOMS))
  for p, r in zip(plain, renamed):
    # The same haystack, only the story's rooms changed (built-in filler has no room words).
    assert r.context == tuple(rename.rename_rooms_in(line) for line in p.context)
    assert not any(rooms.search(line) for line in r.context)
    assert r.answer == rename.ROOM_RENAMES[p.answer] and r.answer in vocab.RENAMED_ROOMS
    assert r.question == p.question and r.support == p.support
    # Consistent: the last support line names the renamed answer.
    assert r.context[r.support[-1]].endswith(f" {r.answer}.")
  assert {r.answer for r in renamed} == set(vocab.RENAMED_ROOMS)


def test_renamed_vocabulary_is_disjoint_from_training():
  assert not set(vocab.RENAMED_ROOMS) & vocab.BABI_WORDS
  labels = vocab.ROOMS + vocab.RENAMED_ROOMS
  assert not [a for a in labels for b in labels if a != b and a in b]  # no label inside another


def test_renamed_stories_written_in_babi_format():
  stories = registry.generate_stories("qa2", "test", 10, seed=0, rename_answers=True)
  text = babi_format.format_babi(stories)
  assert not re.search(r"\b(%s)\b" % "|".join(vocab.ROOMS), text)
  plain = babi_format.stories_to_examples(registry.generate_stories("qa2", "test", 10), "qa2")
  again = babi_format.stories_to_examples(babi_format.parse_babi(text), "qa2")
  assert [rename.ROOM_RENAMES[e.answer] for e in plain] == [e.answer for e in again]


def test_renamed_vt_values_leave_the_training_range():
  plain = registry.generate("vt1", "test", 50, seed=0)
  renamed = registry.generate("vt1", "test", 50, seed=0, rename_answers=True)
  for p, r in zip(plain, renamed):
    value = re.search(r"value (\d+) ", r.question)[1]
    assert len(value) == 6 and int(value) >= 910000
    assert r.context[r.support[0]].endswith(f" = {value}")
    assert r.answer == p.answer
    assert not re.search(r"(?<!\d)\d{5}(?!\d)", " ".join(r.context) + r.question)


def test_training_rename_uses_fresh_pseudo_words_consistently_and_never_the_test_words():
  import random  # pylint: disable=import-outside-toplevel
  stories = registry.generate("qa1", "train", 30, seed=0)
  seen = set()
  for example in stories:
    renamed = rename.rename_rooms_randomly(example, random.Random(example.index))
    again = rename.rename_rooms_randomly(example, random.Random(example.index))
    assert renamed == again  # a function of the rng
    mapping = rename.pseudo_rooms(random.Random(example.index))
    assert len(set(mapping.values())) == len(vocab.ROOMS)
    assert renamed.answer == mapping[example.answer]
    assert renamed.context[renamed.support[-1]].endswith(f" {renamed.answer}.")
    seen |= set(mapping.values())
  assert not seen & (set(vocab.RENAMED_ROOMS) | vocab.BABI_WORDS)
  assert len(seen) > 100  # fresh words per story, not a fixed second vocabulary


def test_doubled_pseudo_rooms_repeat_a_letter_at_the_share_asked():
  import random  # pylint: disable=import-outside-toplevel
  has_double = lambda word: bool(re.search(r"(.)\1", word))
  plain = [w for seed in range(200) for w in rename.pseudo_rooms(random.Random(seed)).values()]
  doubled = [w for seed in range(200)
             for w in rename.pseudo_rooms(random.Random(seed), doubled=0.5).values()]
  share = lambda words: sum(map(has_double, words)) / len(words)
  assert share(plain) < 0.25  # uniform letters double one in about one word in six
  assert 0.5 <= share(doubled) < 0.7  # half doubled on purpose, plus the ones that happen to
  assert max(map(len, doubled)) == 9 and not set(doubled) & (set(vocab.RENAMED_ROOMS)
                                                              | vocab.BABI_WORDS)
  example = registry.generate("qa2", "train", 1, seed=0)[0]
  renamed = rename.rename_rooms_randomly(example, random.Random(7), doubled=1.0)
  assert has_double(renamed.answer)
  assert renamed.context[renamed.support[-1]].endswith(f" {renamed.answer}.")


def test_training_value_rename_varies_the_length_and_never_gives_a_test_value():
  import random  # pylint: disable=import-outside-toplevel
  examples = registry.generate("vt2", "train", 60, seed=0)
  lengths = set()
  for example in examples:
    renamed = rename.rename_values_randomly(example, random.Random(example.index))
    assert renamed == rename.rename_values_randomly(example, random.Random(example.index))
    value = re.search(r"value (\d+) ", renamed.question)[1]
    assert renamed.context[renamed.support[0]].endswith(f" = {value}")
    assert renamed.answer == example.answer
    assert not (len(value) == 6 and int(value) >= rename.VALUE_OFFSET)
    values = re.findall(r"= (\d+)$", "\n".join(renamed.context), flags=re.M)
    assert len(set(values)) == len(values) == len(re.findall(r"= \d+$", "\n".join(example.context), flags=re.M))
    lengths.add(len(value))
  assert lengths == set(range(3, 9))
