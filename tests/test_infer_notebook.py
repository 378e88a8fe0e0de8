"""notebooks/quickstart.ipynb runs top to bottom in a fresh headless kernel by its train route,
with the form's TRAIN_STEPS set small as a user would set it."""

import os

import pytest

nbclient = pytest.importorskip("nbclient")
nbformat = pytest.importorskip("nbformat")

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
NOTEBOOK = os.path.join(ROOT, "notebooks", "quickstart.ipynb")


def _set_form_field(notebook, name, value):
  (cell,) = [c for c in notebook.cells if f"\n{name} = " in f"\n{c.source}"]
  lines = cell.source.splitlines()
  (i,) = [i for i, line in enumerate(lines) if line.startswith(f"{name} = ")]
  lines[i] = f"{name} = {value!r}  " + lines[i].split("  ", 1)[1]
  cell.source = "\n".join(lines)


def _text(cell):
  return "".join(o.get("data", {}).get("text/plain", "") + o.get("text", "")
                 for o in cell.get("outputs", []))


def test_quickstart_notebook_runs_all_by_its_train_route(tmp_path, monkeypatch):
  monkeypatch.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=1")
  monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [ROOT, os.environ.get(
      "PYTHONPATH")])))  # this checkout's package, whatever the environment has installed
  notebook = nbformat.read(NOTEBOOK, as_version=4)
  assert 'REPO_URL = ""  # @param {type:"string"}' in notebook.cells[1].source
  assert 'ROUTE = "train"  # @param ["train", "upload", "drive"]' in notebook.cells[3].source
  _set_form_field(notebook, "TRAIN_STEPS", 12)
  # memreasoner_jax is importable, so the install cell installs nothing.
  nbclient.NotebookClient(notebook, timeout=600, kernel_name="python3",
                          resources={"metadata": {"path": str(tmp_path)}}).execute()
  texts = [_text(cell) for cell in notebook.cells]
  assert "CPU device(s)" in texts[1]
  assert "qa1 held-out accuracy:" in texts[4]
  (load,) = [t for t in texts if t.startswith("Reasoner(tiny preset")]
  assert "step 12" in load
  assert any(t.startswith("Question: Where is Mary?\nHop 1:") for t in texts)
  figures = [c for c in notebook.cells if any("image/png" in o.get("data", {})
                                              for o in c.get("outputs", []))]
  assert len(figures) == 1
  assert sorted(os.listdir(tmp_path / "runs")) == ["qa1_tiny_12_steps"]
  assert sorted(os.listdir(tmp_path / "grid")) == ["qa1_tiny_12_steps_step_12_0k_1k_n8"]
  assert (tmp_path / "grid" / "qa1_tiny_12_steps_step_12_0k_1k_n8" / "results.png").exists()
