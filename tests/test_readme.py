"""The README's "Using the pieces" snippet runs as written; the README explains the install and
every key of metrics.jsonl."""

import functools
import pathlib
import re

import numpy as np

from memreasoner_jax import metric_writers

_README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


@functools.cache
def _snippet_scope() -> dict:
  text = _README.read_text(encoding="utf-8")
  section = text[text.index("## Using the pieces"):]
  code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
  scope: dict = {}
  exec(compile(code, "README.md", "exec"), scope)  # pylint: disable=exec-used
  return scope


def test_using_the_pieces_snippet_runs():
  scope = _snippet_scope()
  # The memory reads a written line back exactly (5 lines <= K = 8 slots).
  np.testing.assert_allclose(scope["readout_BxC"], scope["facts_BxExC"][:, 3], atol=1e-4)
  assert np.isfinite(float(scope["loss"]))
  assert scope["tokens_BxN"].shape == (4, 8)
  assert scope["sims_BxHxE"].shape[:2] == (4, scope["config"].model.hops.num_hops)


def test_install_lines_come_first_and_every_metrics_key_is_explained():
  text = _README.read_text(encoding="utf-8")
  top = text[:text.index("## Using the pieces")]
  assert "pip install -e '.[cuda]'" in top and "pip install -e '.[tpu]'" in top
  assert "Python 3.11" in top
  section = text[text.index("### metrics.jsonl"):]
  section = section[:section.index("\n## ")]
  train_keys = [*_snippet_scope()["metrics"], "grad_norm", "learning_rate"]  # as train.py logs
  perf_keys = metric_writers.Throughput(0, 10, 8, 1).report(1)
  for key in [f"train/{k}" for k in train_keys] + list(perf_keys):
    assert f"`{key}`" in section, key
  for key in [*_snippet_scope()["metrics"], "babilong", "ruler", "exact_match"]:
    assert f"`{key}`" in section, key
