"""Hosts, devices, the mesh and shardings: data parallel over every device of every host.

The mesh has two axes, `data` x `fsdp`. The batch is split over both (every device gets its own
examples); parameters and optimizer state are replicated over `data` and, when `fsdp` > 1,
split over `fsdp` (for presets too large to replicate).

Both axes are `AxisType.Auto`, chosen on purpose: the model is written without sharding
annotations (modules never know the hardware), so the compiler propagates the shardings of the
jit's inputs and outputs through it. `Explicit` axes would make sharding part of every array's
type and require the model's reshapes and gathers (lines -> B*E sequences, top-k of lines,
take_along_axis) to state their output shardings.
"""

import collections
from collections.abc import Callable, Iterable
import dataclasses
import glob
import os
import shutil
import threading

from absl import logging
import jax
# JAX's cluster detection (SLURM, Cloud TPU, Open MPI, ...): what jax.distributed.initialize
# reads when given no addresses. Used directly to log and check a process's place before joining.
from jax._src import clusters
import ml_collections
import numpy as np

DATA = "data"
FSDP = "fsdp"
BATCH_AXES = (DATA, FSDP)


def _cluster_environment() -> str | None:
  """Names the multi-host launcher whose environment jax.distributed can read by itself."""
  env = os.environ
  # The variables JAX's SLURM detection reads; srun sets them for each task of a job step.
  slurm = ("SLURM_JOB_ID", "SLURM_STEP_NODELIST", "SLURM_PROCID", "SLURM_LOCALID")
  if int(env.get("SLURM_NTASKS", "1")) > 1 and all(v in env for v in slurm):
    return "SLURM"
  if "," in env.get("TPU_WORKER_HOSTNAMES", ""):
    return "Cloud TPU pod"
  if int(env.get("OMPI_COMM_WORLD_SIZE", "1")) > 1:
    return "Open MPI"
  return None


@dataclasses.dataclass(frozen=True)
class ProcessPlace:
  """Where this process sits in a multi-host run."""
  coordinator_address: str
  num_processes: int
  process_id: int
  local_device_ids: list[int] | None  # None: every local device
  source: str  # the flags, or the cluster whose environment said so

  def __str__(self) -> str:
    return (f"coordinator {self.coordinator_address} as process {self.process_id} of "
            f"{self.num_processes} (from {self.source})")


def process_place(coordinator_address: str = "", num_processes: int = 1, process_id: int = 0,
                  timeout_s: int = 300) -> ProcessPlace | None:
  """This process's place from the flags or the cluster environment; None for a single process.

  A cluster's environment is read by JAX's own detection, the code jax.distributed.initialize
  runs, so what is logged (and tested) is what the runtime is given.
  """
  cluster = _cluster_environment()
  if coordinator_address:
    return ProcessPlace(coordinator_address, num_processes, process_id, None, "the flags")
  if cluster is None:
    if num_processes != 1:
      raise ValueError(f"--num_processes={num_processes} needs --coordinator_address")
    return None
  address, count, index, device_ids = clusters.ClusterEnv.auto_detect_unset_distributed_params(
      coordinator_address=None, num_processes=None, process_id=None, local_device_ids=None,
      cluster_detection_method=None, initialization_timeout=timeout_s)
  return ProcessPlace(address, count, index, None if device_ids is None else list(device_ids),
                      f"the {cluster} environment")


def initialize_distributed(coordinator_address: str = "", num_processes: int = 1,
                           process_id: int = 0, timeout_s: int = 300) -> None:
  """Joins a multi-host run, or does nothing for a single process.

  With a coordinator address the flags say who is who; on SLURM, Cloud TPU pods and Open MPI
  the environment does. If not every process has joined within `timeout_s`, this process prints
  which run it waited for and exits with status 1, instead of hanging or dying inside the
  runtime with a bare RPC deadline.
  """
  place = process_place(coordinator_address, num_processes, process_id, timeout_s)
  if place is None:
    return
  logging.info("Joining the multi-host run at %s (timeout %ds)", place, timeout_s)

  def give_up():
    message = (f"ERROR: not every process joined the multi-host run at {place} within "
               f"{timeout_s}s; check that all processes were started with the same "
               "coordinator address and process count, and that the coordinator is reachable.")
    print(message, flush=True)
    logging.error(message)
    os._exit(1)  # The runtime is blocked in C++; only a hard exit ends the wait.

  watchdog = threading.Timer(timeout_s, give_up)
  watchdog.daemon = True
  watchdog.start()
  try:
    # The runtime's own deadline is a backstop past ours, so our message is the one seen.
    jax.distributed.initialize(place.coordinator_address, place.num_processes, place.process_id,
                               place.local_device_ids, initialization_timeout=timeout_s + 30)
  finally:
    watchdog.cancel()
  logging.info("Process %d of %d, %d local of %d devices", jax.process_index(),
               jax.process_count(), jax.local_device_count(), jax.device_count())


def describe_devices(devices: Iterable[jax.Device]) -> str:
  """Count and kind, e.g. '1 CPU device', '8 TPU v4 devices', '8 NVIDIA H100 80GB HBM3 devices'."""
  counts = collections.Counter(
      d.platform.upper() if d.device_kind.lower() == d.platform else d.device_kind
      for d in devices)
  return ", ".join(f"{n} {kind} device{'s' if n > 1 else ''}" for kind, n in counts.items())


def cpu_only_warning(backend: str, jax_platforms: str = "",
                     exists: Callable[[str], bool] = os.path.exists,
                     which: Callable[[str], str | None] = shutil.which,
                     find: Callable[[str], list[str]] = glob.glob) -> str | None:
  """A warning when JAX runs on the CPU of a host with an NVIDIA GPU or a TPU (the usual cause:
  a CPU-only jax installed), unless JAX_PLATFORMS (`jax_platforms`) chose the CPU."""
  if backend != "cpu" or jax_platforms:
    return None
  if exists("/dev/nvidia0") or which("nvidia-smi"):
    found, extra = "an NVIDIA GPU", "cuda"
  elif find("/dev/accel*"):
    found, extra = "a TPU", "tpu"
  else:
    return None
  return (f"This host has {found} but JAX runs on the CPU: the installed jax has no {extra} "
          f"support. Install it with pip install -e '.[{extra}]'.")


class MeshConfigError(ValueError):
  """The config's mesh or batch sizes do not fit the devices this run has."""


def make_mesh(cfg: ml_collections.ConfigDict,
              devices: list[jax.Device] | None = None) -> jax.sharding.Mesh:
  """The `data` x `fsdp` mesh over `devices` (default: every device of every host)."""
  devices = jax.devices() if devices is None else list(devices)
  n = len(devices)
  if cfg.fsdp < 1 or n % cfg.fsdp:
    raise MeshConfigError(f"config mesh.fsdp={cfg.fsdp} must be >= 1 and divide the {n} devices")
  data = n // cfg.fsdp if cfg.data == -1 else cfg.data
  if data < 1 or data * cfg.fsdp != n:
    raise MeshConfigError(f"config mesh.data={cfg.data} x mesh.fsdp={cfg.fsdp} must equal the {n} "
                     "devices (mesh.data=-1 takes all that fsdp leaves)")
  return jax.make_mesh((data, cfg.fsdp), (DATA, FSDP),
                       axis_types=(jax.sharding.AxisType.Auto,) * 2, devices=devices)


def replicated(mesh: jax.sharding.Mesh) -> jax.sharding.NamedSharding:
  return jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())


def batch_sharding(mesh: jax.sharding.Mesh) -> jax.sharding.NamedSharding:
  """Leading (batch) dimension split over every device."""
  return jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(BATCH_AXES))


def local_batch_shards(mesh: jax.sharding.Mesh) -> int:
  """The parts this host's batch rows are split into: one per local device (every mesh axis
  splits the batch)."""
  return len(mesh.local_devices)


def check_global_batch(global_batch: int, mesh: jax.sharding.Mesh, name: str) -> None:
  """A global batch must split evenly over the devices and over the hosts."""
  devices, hosts = mesh.devices.size, jax.process_count()
  if global_batch % devices or global_batch % hosts:
    raise MeshConfigError(
        f"config {name}={global_batch} does not divide over the {devices} devices of "
        f"{hosts} host(s); use a multiple of {np.lcm(devices, hosts)}")


def state_shardings(abstract_state, mesh: jax.sharding.Mesh, min_size: int):
  """Replicated leaves, except that large arrays are split over `fsdp` along their largest
  dimension that divides evenly (ZeRO-3 style); optimizer moments follow their parameters
  because the rule depends only on the shape."""
  fsdp = mesh.shape[FSDP]

  def rule(leaf):
    spec = [None] * leaf.ndim
    if fsdp > 1 and leaf.size >= min_size:
      for dim in sorted(range(leaf.ndim), key=lambda d: -leaf.shape[d]):
        if leaf.shape[dim] % fsdp == 0:
          spec[dim] = FSDP
          break
    return jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(*spec))

  return jax.tree.map(rule, abstract_state)


def global_batch(local_batch: dict[str, np.ndarray],
                 mesh: jax.sharding.Mesh) -> dict[str, jax.Array]:
  """One global array per key from every host's own rows (no host sees the others' data)."""
  sharding = batch_sharding(mesh)
  return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v))
          for k, v in local_batch.items()}

