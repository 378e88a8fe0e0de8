"""CI: .ci/run is the README's test command with CI=true, under which a skip fails naming why."""

import os
import pathlib
import re
import subprocess
import sys

REPO = pathlib.Path(__file__).resolve().parents[1]

_SKIPPING = {
    "test_marks.py": """
import pytest

def test_skipped_inside():
  pytest.skip("no widget here")

@pytest.mark.skipif(True, reason="marked off")
def test_skip_mark():
  pass

def test_passes():
  pass

@pytest.mark.xfail(reason="a known bug", strict=True)
def test_expected_failure():
  assert False
""",
    "test_module.py": """
import pytest

pytest.importorskip("no_module_of_that_name", reason="gadget not installed")

def test_never_collected():
  pass
""",
}


def test_ci_runs_the_readme_test_command_with_ci_true():
  ci = (REPO / ".ci" / "run").read_text(encoding="utf-8")
  readme = (REPO / "README.md").read_text(encoding="utf-8")
  (command,) = re.findall(r"^python -m pytest .*$", ci, re.M)
  assert f"pip install -e '.[test]' && {command}\n" in readme
  assert "-rs" in command.split()  # skipped tests are listed with their reasons
  assert re.search(r"^export CI=true$", ci, re.M)


def _pytest(directory, ci: bool) -> subprocess.CompletedProcess:
  env = {k: v for k, v in os.environ.items() if k != "CI"}
  env["PYTHONPATH"] = str(REPO)
  if ci:
    env["CI"] = "true"
  return subprocess.run(
      [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", "-p", "no:xdist",
       "-p", "tests.conftest", str(directory)],
      cwd=directory, env=env, capture_output=True, text=True, timeout=120, check=False)


def test_skips_are_listed_outside_ci_and_fail_naming_their_reason_under_ci_true(tmp_path):
  for name, text in _SKIPPING.items():
    (tmp_path / name).write_text(text, encoding="utf-8")
  local = _pytest(tmp_path, ci=False)
  assert local.returncode == 0, local.stdout
  assert "1 passed, 3 skipped, 1 xfailed" in local.stdout
  for reason in ("no widget here", "marked off", "gadget not installed"):
    assert re.search(rf"SKIPPED \[1\] .*{reason}", local.stdout), local.stdout

  ci = _pytest(tmp_path, ci=True)
  assert ci.returncode == 1, ci.stdout
  assert "1 failed, 1 passed, 1 xfailed, 2 errors" in ci.stdout  # the module and the mark
  assert "skipped" not in ci.stdout.splitlines()[-1]
  for reason in ("no widget here", "marked off", "gadget not installed"):
    assert f"skipped under CI=true, where nothing may skip: Skipped: {reason}" in ci.stdout
