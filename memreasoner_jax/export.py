r"""Exports one self-contained inference-only checkpoint: parameters, config and tokenizer files.

  python -m memreasoner_jax.export --checkpoint=/tmp/qa1_tiny --out=/tmp/qa1_model.zip

--checkpoint is a workdir (its newest readable step) or one step directory; --out a folder, or a
.zip of one. The export holds state/ (the parameters and the step, no optimizer state), config/,
metadata/ and tokenizers/ with the files the config names, which it refers to by relative paths,
so the folder or zip can be moved anywhere; `memreasoner_jax.load(out)` answers with it.
"""

import os
import shutil
import sys
import tempfile

from absl import app
from absl import flags
import jax
import ml_collections

from memreasoner_jax import checkpointing
from memreasoner_jax import inference


def define_flags() -> None:
  """Defines the command's flags; only run as a command, so importing this module next to other
  commands (tests, notebooks) never defines a flag twice."""
  global _CHECKPOINT, _OUT
  _CHECKPOINT = flags.DEFINE_string("checkpoint", None, "A training workdir or one step "
                                    "directory (checkpoints/<step>), or a zip of one.")
  _OUT = flags.DEFINE_string("out", None, "The folder to write, or a .zip file.")
  flags.mark_flags_as_required(["checkpoint", "out"])


TOKENIZERS = "tokenizers"  # the export's folder of tokenizer files


def bundle_tokenizers(config: ml_collections.ConfigDict
                      ) -> tuple[ml_collections.ConfigDict, list[tuple[str, str]]]:
  """A copy of `config` naming its tokenizer files by paths relative to the export
  (`tokenizers/<field>/...`), and the (source, relative path) of each file or folder to copy
  there ("byte" needs no file)."""
  config = ml_collections.ConfigDict(config.to_dict())
  copies = []
  for field in checkpointing.TOKENIZER_FIELDS:
    spec = config.data.get(field, "")
    if not spec or spec == "byte":
      continue
    source = spec.removeprefix("hf:")
    relative = os.path.join(TOKENIZERS, field)
    if not os.path.isdir(source):
      relative = os.path.join(relative, os.path.basename(source))
    copies.append((source, relative))
    config.data[field] = relative
  config.lock()
  return config, copies


def export(checkpoint: str, out: str) -> checkpointing.RestoredParams:
  """Writes the newest readable step of `checkpoint` to `out` (a folder, or a .zip file, that
  must not exist yet); returns what was read."""
  out = os.path.abspath(out)
  if os.path.exists(out):
    raise FileExistsError(f"{out} already exists; choose a new --out")
  if os.path.isfile(checkpoint):
    with checkpointing.unzipped(checkpoint) as root:
      return export(root, out)
  mesh = inference.replicated_mesh(jax.local_devices()[:1])
  restored = checkpointing.restore_params(
      checkpoint, lambda config: inference.abstract_params(config, mesh))
  name = os.path.basename(out).removesuffix(".zip")
  os.makedirs(os.path.dirname(out), exist_ok=True)
  # Written beside `out` and moved into place, so `out` appears whole or not at all.
  with tempfile.TemporaryDirectory(dir=os.path.dirname(out), prefix=f".{name}.") as tmp:
    staging = os.path.join(tmp, name)
    config, copies = bundle_tokenizers(restored.config)
    checkpointing.save_params(staging, restored.params, restored.step, config, restored.metadata)
    for source, relative in copies:
      if os.path.isdir(source):
        shutil.copytree(source, os.path.join(staging, relative))
      else:
        os.makedirs(os.path.dirname(os.path.join(staging, relative)), exist_ok=True)
        shutil.copy2(source, os.path.join(staging, relative))
    if out.endswith(".zip"):
      os.replace(shutil.make_archive(os.path.join(tmp, name), "zip", tmp, name), out)
    else:
      os.rename(staging, out)
  return restored


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  checkpointing.quiet_orbax_logs()
  try:
    restored = export(_CHECKPOINT.value, _OUT.value)
  except (FileNotFoundError, FileExistsError, checkpointing.UnreadableCheckpointError,
          checkpointing.IncompatibleCheckpointError) as e:
    sys.exit(f"export: error: {e}")
  print(f"Exported step {restored.step} of {restored.directory} "
        f"({restored.metadata['num_params']:,} parameters) to {os.path.abspath(_OUT.value)}")


if __name__ == "__main__":
  define_flags()
  app.run(main)
