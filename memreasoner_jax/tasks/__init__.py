"""Task generators, file formats and metrics (bAbI qa1/qa2, variable tracking, haystacks).

Everything is generated locally and deterministically from a seed; nothing is downloaded.

  from memreasoner_jax.tasks import registry, metrics, rename

  # list[Example]; task in qa1 | qa2 | vt1 | vt2, split in train | test.
  examples = registry.generate("qa2", "test", num=1000, seed=0, length="16k",
                               distractors_spec="builtin", rename_answers=False)
  # bAbI stories (five questions each) for writing real-format files.
  stories = registry.generate_stories("qa1", "train", num=10000, seed=0)

  # Scoring: BABILong's label match (labels: the task's answer set, renamed or not) and RULER's.
  labels = rename.answer_labels("qa2", renamed=False)
  score = metrics.babilong_score(outputs, [e.answer for e in examples],
                                 [e.question for e in examples], labels)
  vt_score = metrics.ruler_score(outputs, [e.answer for e in vt_examples])

  # Filler for training stories, from a source the test filler never uses.
  from memreasoner_jax.tasks import distractors, haystack
  source = distractors.get_source("builtin:train")       # or a folder of held-out books
  noisy = haystack.add_filler(example, num_sentences=rng.randint(0, 20), source=source, rng=rng)

  # Real bAbI files (any task number) and JSON lines.
  from memreasoner_jax.tasks import babi_format, output
  stories = babi_format.read_babi(path)                   # byte-identical via format_babi
  examples = babi_format.stories_to_examples(stories, babi_format.task_from_filename(path))
  examples = output.read_jsonl(path)

Command line: python -m memreasoner_jax.tasks.generate --help.

Modules: example (the Example record), vocab (bAbI words and templates), babi_format,
babi_generators, variable_tracking, sentences (book text), builtin_text (offline filler),
distractors (filler sources), tokens (length rule), haystack, rename, metrics, output, registry,
generate, reference_data (where test-only reference files live).
"""
