"""The launchers: local (two processes over 127.0.0.1), SLURM, Cloud TPU pods and GKE.

Cluster tools are replaced by small fakes on PATH (srun runs its command as the task the
simulated SLURM variables describe; gcloud records its arguments), so the scripts run as they
would there, up to the point where a real cluster would be needed.
"""

import json
import os
import re
import shlex
import shutil
import subprocess
import sys

import pytest
import yaml

from launch import gke_jobset
from launch import sweep
from memreasoner_jax import sharding
from memreasoner_jax.configs import babi
from tests import train_testing

train_testing.use_compilation_cache()

SCRIPTS = ["launch/local.sh", "launch/slurm.sbatch", "launch/tpu_pod.sh", "launch/env.sh",
           "launch/gpu_wheels.sh", "launch/gpu_benchmark.sh"]
JOB_ID = 4242
SLURM_PORT = JOB_ID % 2**12 + 65535 - 2**12 + 1  # the port JAX derives from the job id


@pytest.mark.parametrize("script", SCRIPTS)
def test_scripts_parse(script):
  result = subprocess.run(["bash", "-n", script], cwd=sweep.REPO, capture_output=True, text=True,
                          check=False)
  assert result.returncode == 0, result.stderr


def _fake_tool(bin_dir, name: str, body: str) -> None:
  bin_dir.mkdir(exist_ok=True)
  (bin_dir / name).write_text(f"#!/usr/bin/env bash\n{body}\n")
  (bin_dir / name).chmod(0o755)


def _slurm_env(procid: int, ntasks: int, nodelist: str) -> dict[str, str]:
  """What srun sets for one task of a job step."""
  return {"SLURM_JOB_ID": str(JOB_ID), "SLURM_NTASKS": str(ntasks), "SLURM_PROCID": str(procid),
          "SLURM_LOCALID": str(procid % 8), "SLURM_NODEID": str(procid // 8),
          "SLURM_STEP_NODELIST": nodelist, "SLURM_NODELIST": nodelist,
          "SLURM_JOB_NODELIST": nodelist, "SLURM_STEP_NUM_TASKS": str(ntasks),
          "SLURM_NNODES": str(max(1, ntasks // 8)), "SLURM_SUBMIT_DIR": sweep.REPO}


@pytest.mark.parametrize("procid", [0, 1])
def test_slurm_script_starts_main_as_its_task(tmp_path, procid):
  """The batch script's srun task joins as process `procid` of 2 at the first node; nobody
  else is started, so it gives up after --join_timeout. Like slurmd, the script runs from a
  copy elsewhere and finds the checkout through SLURM_SUBMIT_DIR."""
  bin_dir, spooled = tmp_path / "bin", tmp_path / "slurm_script"
  shutil.copy(os.path.join(sweep.REPO, "launch/slurm.sbatch"), spooled)
  _fake_tool(bin_dir, "srun", 'while [[ "$1" == -* ]]; do shift; done\nexec "$@"')
  env = {**train_testing.one_device_env(), **_slurm_env(procid, 2, "127.0.0.1"),
         "PATH": f"{bin_dir}:{os.environ['PATH']}"}
  command = ["timeout", "120", "bash", str(spooled),
             "--config=configs/babi.py:qa1,tiny,runlocal", f"--workdir={tmp_path / 'run'}",
             "--join_timeout=3"]
  result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=150, check=False)
  log = result.stdout + result.stderr
  assert result.returncode == 1, log[-3000:]
  assert (f"Joining the multi-host run at coordinator 127.0.0.1:{SLURM_PORT} as process "
          f"{procid} of 2 (from the SLURM environment)") in log
  assert "not every process joined the multi-host run" in log


@pytest.mark.parametrize("env,place", [
    (_slurm_env(9, 16, "gpu[003-004],head7"), ("gpu003", 16, 9, [1])),
    (_slurm_env(0, 1, "gpu007"), None),  # one task: a single-process run
    ({**_slurm_env(3, 16, "gpu[003-004]"), "SLURM_STEP_NODELIST": None}, None),  # not in srun
])
def test_process_place_follows_jax_cluster_detection(monkeypatch, env, place):
  for key in list(os.environ):
    if key.startswith(("SLURM_", "TPU_", "OMPI_")):
      monkeypatch.delenv(key)
  for key, value in env.items():
    if value is not None:
      monkeypatch.setenv(key, value)
  got = sharding.process_place()
  if place is None:
    assert got is None
  else:
    host, count, index, device_ids = place
    assert got.coordinator_address == f"{host}:{SLURM_PORT}"
    assert (got.num_processes, got.process_id, got.local_device_ids) == (count, index, device_ids)


def test_process_place_from_flags_wins():
  got = sharding.process_place("10.1.1.1:1234", 4, 2)
  assert str(got) == "coordinator 10.1.1.1:1234 as process 2 of 4 (from the flags)"
  with pytest.raises(ValueError, match="needs --coordinator_address"):
    sharding.process_place("", 2, 0)


@pytest.mark.slow
def test_local_launcher_runs_two_processes_that_agree(tmp_path):
  command = ["timeout", "420", "bash", "launch/local.sh", "--processes=2",
             f"--workdir={tmp_path}", "--join_timeout=120", *train_testing.MULTIHOST_FLAGS]
  result = subprocess.run(command, cwd=sweep.REPO, env=train_testing.one_device_env(),
                          capture_output=True, text=True, timeout=450, check=False)
  log = result.stdout + result.stderr
  assert result.returncode == 0, log[-4000:]
  lines = log.splitlines()
  first = "\n".join(line for line in lines if not line.startswith("[1] "))
  second = "\n".join(line for line in lines if line.startswith("[1] "))
  assert re.search(r"Joining the multi-host run at coordinator 127.0.0.1:\d+ as process 0 of 2",
                   first)
  assert "as process 1 of 2 (from the flags)" in second
  assert "Mesh {'data': 2, 'fsdp': 1} over 2 devices of 2 process(es)" in first
  losses = train_testing.logged_losses(first)
  assert len(losses) == train_testing.MULTIHOST_STEPS
  assert losses == train_testing.logged_losses(second)
  assert (tmp_path / "checkpoints" / str(train_testing.MULTIHOST_STEPS)).is_dir()


@pytest.mark.slow
def test_gpu_benchmark_script_smoke_run_on_cpu(tmp_path):
  """GPU_BENCHMARK_SMOKE=1: one tiny train benchmark (1 step) and one tiny context benchmark
  (1k) end to end on one CPU device, merged into gpu_results.json; no wheels, nothing installed."""
  out = tmp_path / "results"
  env = {**train_testing.one_device_env(), "GPU_BENCHMARK_SMOKE": "1", "PYTHON": sys.executable,
         "GPU_BENCHMARK_WHEELS": str(tmp_path / "no_wheels")}
  env.pop("OUT", None)
  result = subprocess.run(["timeout", "600", "bash", "launch/gpu_benchmark.sh", str(out)],
                          cwd=sweep.REPO, env=env, capture_output=True, text=True, timeout=630,
                          check=False)
  log = result.stdout + result.stderr
  assert result.returncode == 0, log[-4000:]
  assert "No wheels in" in log and "nvidia-smi: not found" in log
  merged = json.loads((out / "gpu_results.json").read_text())
  assert merged["device_kind"] == "cpu" and merged["smoke"]
  assert merged["device"]["configured_batches"]["base"] == babi.get_config(
      "qa1,base").data.global_batch
  assert sorted(merged["benchmarks"]) == ["context_tiny", "train_tiny"]
  train = merged["benchmarks"]["train_tiny"]
  assert train["status"] == "ok" and [a["exit"] for a in train["attempts"]] == [0]
  assert train["result"]["preset"] == "tiny" and train["result"]["global_batch"] == 2
  assert train["result"]["step_s"] > 0
  context = merged["benchmarks"]["context_tiny"]
  assert context["status"] == "ok"
  assert [row["length"] for row in context["result"]["rows"]] == ["1k"]
  assert context["result"]["rows"][0]["memreasoner"]["median_s"] > 0
  assert "train_tiny: ok" in log and "context_tiny: ok" in log


def test_tpu_pod_script_ships_the_checkout_and_starts_every_worker(tmp_path):
  bin_dir, calls = tmp_path / "bin", tmp_path / "calls"
  # gcloud records each call; the ssh command must be valid bash.
  _fake_tool(bin_dir, "gcloud", f'printf "%s\\n" "$@" >> {calls}; echo --- >> {calls}\n'
             'for a in "$@"; do [[ "$a" == --command=* ]] && bash -n -c "${a#--command=}"; done\n'
             'exit 0')
  env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "TPU_NAME": "pod-1",
         "ZONE": "us-east5-a", "PROJECT": "proj"}
  main_args = ["--config=configs/babi.py:qa1,large", "--workdir=/mnt/shared/my run",
               "--config.data.global_batch=512"]
  result = subprocess.run(["bash", "launch/tpu_pod.sh", *main_args], cwd=sweep.REPO, env=env,
                          capture_output=True, text=True, check=False)
  assert result.returncode == 0, result.stderr
  scp, ssh = [c.strip().splitlines() for c in calls.read_text().split("---") if c.strip()]
  assert scp[:4] == ["compute", "tpus", "tpu-vm", "scp"]
  assert scp[5] == "pod-1:/tmp/memreasoner_jax.tar.gz" and "--worker=all" in scp
  assert ssh[:5] == ["compute", "tpus", "tpu-vm", "ssh", "pod-1"]
  assert {"--worker=all", "--zone=us-east5-a", "--project=proj"} <= set(ssh)
  remote = next(a for a in ssh if a.startswith("--command="))
  setup, _, launched = remote.partition(" && MEMREASONER_EXTRA=tpu bash launch/local.sh ")
  assert "tar -xzf /tmp/memreasoner_jax.tar.gz -C ~/memreasoner_jax" in setup
  assert shlex.split(launched) == main_args


def test_tpu_pod_script_needs_its_variables():
  env = {k: v for k, v in os.environ.items() if k not in ("TPU_NAME", "ZONE")}
  result = subprocess.run(["bash", "launch/tpu_pod.sh"], cwd=sweep.REPO, env=env,
                          capture_output=True, text=True, check=False)
  assert result.returncode != 0 and "TPU_NAME" in result.stderr


@pytest.mark.parametrize("accelerator,resource,label", [
    ("tpu", "google.com/tpu", "cloud.google.com/gke-tpu-topology"),
    ("gpu", "nvidia.com/gpu", "cloud.google.com/gke-accelerator"),
])
def test_gke_jobset_manifest(accelerator, resource, label):
  command = [sys.executable, "launch/gke_jobset.py", "--name=qa1", "--image=reg/img:1",
             f"--accelerator={accelerator}", "--nodes=4", "--chips_per_node=8", "--",
             "--config=configs/babi.py:qa1,base", "--workdir=/data/qa1"]
  text = subprocess.run(command, cwd=sweep.REPO, capture_output=True, text=True,
                        check=True).stdout
  jobset = yaml.safe_load(text)
  assert jobset["kind"] == "JobSet" and jobset["metadata"]["name"] == "qa1"
  job = jobset["spec"]["replicatedJobs"][0]
  assert job["name"] == "workers"
  spec = job["template"]["spec"]
  assert spec["parallelism"] == spec["completions"] == 4 and spec["completionMode"] == "Indexed"
  pod = spec["template"]["spec"]
  assert label in pod["nodeSelector"]
  container = pod["containers"][0]
  assert container["resources"]["limits"] == {resource: 8}
  assert container["command"] == [
      "python", "-m", "memreasoner_jax.main",
      f"--coordinator_address=qa1-workers-0-0.qa1:{gke_jobset.COORDINATOR_PORT}",
      "--num_processes=4", "--process_id=$(JOB_COMPLETION_INDEX)",
      "--config=configs/babi.py:qa1,base", "--workdir=/data/qa1"]
