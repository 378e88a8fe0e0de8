r"""A Kubernetes JobSet manifest that trains on a GKE TPU slice or on GPU nodes, one pod per host.

  python launch/gke_jobset.py --name=qa1-base --image=IMAGE --accelerator=tpu \
      --tpu_type=tpu-v5p-slice --tpu_topology=2x2x4 --nodes=4 --chips_per_node=4 \
      -- --config=configs/babi.py:qa1,base --workdir=/data/qa1_base | kubectl apply -f -

Flags after `--` go to memreasoner_jax.main. The image holds the project installed with the
right extra (launch/Dockerfile); the workdir must be storage every pod sees (a GCS FUSE or
Filestore volume, added to the manifest as the cluster provides it). Pods find each other
through the JobSet's headless service: pod 0 of the job is the coordinator, and each pod's
process id is its Indexed Job completion index. Needs the JobSet controller in the cluster.
"""

from collections.abc import Sequence
import json

from absl import app
from absl import flags

COORDINATOR_PORT = 8476

def define_flags() -> None:
  """Defines the command's flags; only run as a command, so importing this module next
  to other commands (tests, notebooks) never defines a flag twice."""
  global _NAME, _IMAGE, _ACCELERATOR, _NODES, _CHIPS, _TPU_TYPE, _TPU_TOPOLOGY, _GPU_TYPE
  _NAME = flags.DEFINE_string("name", "memreasoner", "JobSet name (also its service's name).")
  _IMAGE = flags.DEFINE_string("image", None, "Container image with memreasoner_jax installed.")
  _ACCELERATOR = flags.DEFINE_enum("accelerator", "tpu", ["tpu", "gpu"], "Kind of node.")
  _NODES = flags.DEFINE_integer("nodes", 1, "Hosts (pods), one training process each.")
  _CHIPS = flags.DEFINE_integer("chips_per_node", 4, "TPU chips or GPUs per host.")
  _TPU_TYPE = flags.DEFINE_string("tpu_type", "tpu-v5p-slice", "GKE TPU accelerator "
                                  "(node label cloud.google.com/gke-tpu-accelerator).")
  _TPU_TOPOLOGY = flags.DEFINE_string("tpu_topology", "2x2x1", "TPU slice topology "
                                      "(node label cloud.google.com/gke-tpu-topology).")
  _GPU_TYPE = flags.DEFINE_string("gpu_type", "nvidia-h100-80gb", "GKE GPU accelerator "
                                  "(node label cloud.google.com/gke-accelerator).")


def manifest(name: str, image: str, accelerator: str, nodes: int, chips_per_node: int,
             node_selector: dict[str, str], main_args: Sequence[str]) -> str:
  """The JobSet as YAML text (strings are JSON-quoted, which YAML reads as they are)."""
  resource = "google.com/tpu" if accelerator == "tpu" else "nvidia.com/gpu"
  command = ["python", "-m", "memreasoner_jax.main",
             f"--coordinator_address={name}-workers-0-0.{name}:{COORDINATOR_PORT}",
             f"--num_processes={nodes}", "--process_id=$(JOB_COMPLETION_INDEX)", *main_args]
  selector = "\n".join(f"              {json.dumps(k)}: {json.dumps(v)}"
                       for k, v in node_selector.items())
  return f"""apiVersion: jobset.x-k8s.io/v1alpha2
kind: JobSet
metadata:
  name: {json.dumps(name)}
spec:
  failurePolicy:
    maxRestarts: 3  # a restarted job resumes from the workdir's latest checkpoint
  replicatedJobs:
  - name: workers
    replicas: 1
    template:
      spec:
        parallelism: {nodes}
        completions: {nodes}
        completionMode: Indexed
        backoffLimit: 0
        template:
          spec:
            restartPolicy: Never
            nodeSelector:
{selector}
            containers:
            - name: train
              image: {json.dumps(image)}
              command: {json.dumps(command)}
              ports:
              - containerPort: {COORDINATOR_PORT}
              resources:
                limits:
                  {json.dumps(resource)}: {chips_per_node}
"""


def main(argv: Sequence[str]) -> None:
  if _ACCELERATOR.value == "tpu":
    selector = {"cloud.google.com/gke-tpu-accelerator": _TPU_TYPE.value,
                "cloud.google.com/gke-tpu-topology": _TPU_TOPOLOGY.value}
  else:
    selector = {"cloud.google.com/gke-accelerator": _GPU_TYPE.value}
  print(manifest(_NAME.value, _IMAGE.value, _ACCELERATOR.value, _NODES.value, _CHIPS.value,
                 selector, argv[1:]), end="")


if __name__ == "__main__":
  define_flags()
  flags.mark_flag_as_required("image")
  app.run(main)
