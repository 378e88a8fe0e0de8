"""notebooks/quickstart.ipynb runs top to bottom in a headless kernel on the test checkpoint."""

import os

import pytest

nbclient = pytest.importorskip("nbclient")
nbformat = pytest.importorskip("nbformat")

NOTEBOOK = os.path.join(os.path.dirname(__file__), "..", "notebooks", "quickstart.ipynb")


def test_quickstart_notebook_runs(qa1_checkpoint, tmp_path, monkeypatch):
  root = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
  monkeypatch.setenv("MEMREASONER_CHECKPOINT", qa1_checkpoint.workdir)
  monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [root, os.environ.get(
      "PYTHONPATH")])))
  monkeypatch.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=1")
  notebook = nbformat.read(NOTEBOOK, as_version=4)
  nbclient.NotebookClient(notebook, timeout=600, kernel_name="python3",
                          resources={"metadata": {"path": str(tmp_path)}}).execute()
  outputs = {i: cell.get("outputs", []) for i, cell in enumerate(notebook.cells)}
  texts = {i: "".join(o.get("data", {}).get("text/plain", "") + o.get("text", "")
                      for o in out) for i, out in outputs.items()}
  assert "Reasoner(tiny preset" in texts[2]
  assert texts[7].startswith("Question: Where is Mary?\nHop 1:")
  assert any("image/png" in o.get("data", {}) for o in outputs[9])
  assert (tmp_path / "grid" / "results.png").exists()
