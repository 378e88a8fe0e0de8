"""Test setup: eight fake CPU devices, set before JAX starts."""

import os

os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import pytest  # pylint: disable=wrong-import-position  (after the environment is set)


@pytest.fixture(scope="session")
def qa1_checkpoint(tmp_path_factory):
  """A learned qa1 tiny checkpoint trained on 8 fake devices, once per test run (see
  tests/infer_testing.py); pytest-xdist workers share it."""
  from tests import infer_testing  # pylint: disable=import-outside-toplevel
  run_dir = tmp_path_factory.getbasetemp()
  if os.environ.get("PYTEST_XDIST_WORKER"):
    run_dir = run_dir.parent  # shared by the workers of this run
  return infer_testing.trained_once(str(run_dir))
