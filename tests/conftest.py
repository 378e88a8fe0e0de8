"""Test setup: eight fake CPU devices, set before JAX starts; under CI=true no test may skip."""

import os

os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import pytest  # pylint: disable=wrong-import-position  (after the environment is set)


def _in_ci() -> bool:
  return os.environ.get("CI", "").lower() in ("true", "1")


def _fail_if_skipped(report) -> None:
  """Under CI=true a skip (a skip mark, importorskip, pytest.skip) is a failure naming why: CI
  installs everything the tests need, so a skip there means something is missing."""
  if not (_in_ci() and report.skipped) or hasattr(report, "wasxfail"):
    return
  reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
  report.outcome = "failed"
  report.longrepr = f"skipped under CI=true, where nothing may skip: {reason}"


def pytest_configure(config):
  if _in_ci():  # a module that would have skipped fails, and the other modules still run
    config.option.continue_on_collection_errors = True


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):  # pylint: disable=unused-argument
  outcome = yield
  _fail_if_skipped(outcome.get_result())


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):  # pylint: disable=unused-argument
  """Module-level skips (importorskip at import, a skipping module) happen at collection."""
  outcome = yield
  _fail_if_skipped(outcome.get_result())


@pytest.fixture(scope="session")
def qa1_checkpoint(tmp_path_factory):
  """A learned qa1 tiny checkpoint trained on 8 fake devices, once per test run (see
  tests/infer_testing.py); pytest-xdist workers share it."""
  from tests import infer_testing  # pylint: disable=import-outside-toplevel
  run_dir = tmp_path_factory.getbasetemp()
  if os.environ.get("PYTEST_XDIST_WORKER"):
    run_dir = run_dir.parent  # shared by the workers of this run
  return infer_testing.trained_once(str(run_dir))
