"""The generate command and the registry API."""

import os
import subprocess
import sys

import pytest

from memreasoner_jax.tasks import babi_format, output, registry

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(*flags: str) -> subprocess.CompletedProcess:
  return subprocess.run([sys.executable, "-m", "memreasoner_jax.tasks.generate", *flags],
                        cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_same_seed_same_bytes_and_files_read_back(tmp_path):
  common = ["--task=qa2", "--split=test", "--num=12", "--length=1k", "--seed=4"]
  for name, fmt in (("a.jsonl", "jsonl"), ("b.jsonl", "jsonl"), ("c.txt", "babi")):
    result = _run(*common, f"--format={fmt}", f"--out={tmp_path / name}")
    assert result.returncode == 0, result.stderr
  assert (tmp_path / "a.jsonl").read_bytes() == (tmp_path / "b.jsonl").read_bytes()
  examples = registry.generate("qa2", "test", 12, seed=4, length="1k")
  assert output.read_jsonl(tmp_path / "a.jsonl") == examples
  from_babi = babi_format.stories_to_examples(babi_format.read_babi(tmp_path / "c.txt"), "qa2")
  assert [(e.context, e.support, e.answer) for e in from_babi] == [
      (e.context, e.support, e.answer) for e in examples]
  result = _run(*common[:-1], "--seed=5", f"--out={tmp_path / 'd.jsonl'}")
  assert (tmp_path / "d.jsonl").read_bytes() != (tmp_path / "a.jsonl").read_bytes()


def test_short_babi_output_is_five_question_stories(tmp_path):
  assert _run("--task=qa1", "--num=10", "--format=babi", "--rename_answers",
              f"--out={tmp_path / 'qa1.txt'}").returncode == 0
  stories = babi_format.read_babi(tmp_path / "qa1.txt")
  assert [len(s) for s in stories] == [15, 15]
  assert stories == registry.generate_stories("qa1", "train", 10, rename_answers=True)


@pytest.mark.parametrize("flags, message", [
    (["--task=qa9"], "value should be one of"),
    (["--task=qa1", "--length=3k"], "value should be one of"),
    (["--task=qa1", "--length=1k", "--distractors=/no/such/books"], "no text files found"),
    (["--task=qa1", "--length=1k", "--distractors=tfds:c4"], "only pg19"),
    (["--task=qa1", "--num=0"], "--num=0"),
])
def test_errors_are_clear_and_leave_no_file(tmp_path, flags, message):
  result = _run(*flags, f"--out={tmp_path / 'out.jsonl'}")
  assert result.returncode != 0
  assert message in result.stderr
  assert "Traceback" not in result.stderr
  assert os.listdir(tmp_path) == []


def test_the_file_follows_the_umask_and_one_line_says_what_was_written(tmp_path):
  out = tmp_path / "qa1.jsonl"
  result = subprocess.run(
      ["sh", "-c", f"umask 022 && {sys.executable} -m memreasoner_jax.tasks.generate "
                   f"--task=qa1 --num=3 --out={out}"],
      cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
  assert result.returncode == 0, result.stderr
  assert os.stat(out).st_mode & 0o777 == 0o644
  assert result.stdout.splitlines() == [f"Wrote 3 qa1 train examples (0k, jsonl) to {out}"]


def test_help_explains_every_flag():
  text = _run("--helpshort").stdout
  for flag in ("task", "split", "num", "length", "distractors", "rename_answers", "seed",
               "format", "out", "max_line_chars", "tokenizer", "vt_chains"):
    assert f"--{flag}" in text or f"--[no]{flag}" in text, flag


def test_failed_write_leaves_no_file(tmp_path):
  with pytest.raises(UnicodeEncodeError):
    output.atomic_write_text(tmp_path / "x.txt", "ok\n\ud800")  # not encodable
  assert os.listdir(tmp_path) == []


def test_registry_api():
  short = registry.generate("qa1", "train", 7, seed=2)
  assert len(short) == 7 and [e.index for e in short] == list(range(7))
  assert short == babi_format.stories_to_examples(
      registry.generate_stories("qa1", "train", 7, seed=2), "qa1")
  assert registry.generate("qa1", "test", 7, seed=2) != short
  # Example i's haystack does not depend on how many examples are generated.
  assert registry.generate("qa2", "test", 3, length="2k")[:2] == registry.generate(
      "qa2", "test", 2, length="2k")
  for bad in (dict(task="qa3"), dict(split="valid"), dict(length="5k")):
    with pytest.raises(ValueError, match="unknown"):
      registry.generate(**{"task": "qa1", "split": "train", "num": 1, **bad})
