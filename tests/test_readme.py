"""The README's "Using the pieces" snippet runs as written."""

import pathlib
import re

import numpy as np

_README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def test_using_the_pieces_snippet_runs():
  text = _README.read_text(encoding="utf-8")
  section = text[text.index("## Using the pieces"):]
  code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
  scope: dict = {}
  exec(compile(code, "README.md", "exec"), scope)  # pylint: disable=exec-used
  # The memory reads a written line back exactly (5 lines <= K = 8 slots).
  np.testing.assert_allclose(scope["readout_BxC"], scope["facts_BxExC"][:, 3], atol=1e-4)
  assert np.isfinite(float(scope["loss"]))
  assert scope["tokens_BxN"].shape == (4, 8)
  assert scope["sims_BxHxE"].shape[:2] == (4, scope["config"].model.hops.num_hops)
