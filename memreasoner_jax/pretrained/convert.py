r"""Converts Hugging Face BERT / GPT-2 checkpoints once into this model's config and parameters.

`convert(config, encoder_dir, decoder_dir)` returns the config shaped after the checkpoints (with
their directories recorded as `init_from` and as the tokenizers the data must use) and the full
parameter pytree: encoder and decoder from the checkpoints, everything else initialised as usual.

As a command it writes an orbax checkpoint (step 0) that training resumes from and
`memreasoner_jax.load` reads: it is a zero-step run of the training main, so the checkpoint has
exactly the layout, metadata and data position training writes.

  python -m memreasoner_jax.pretrained.convert --encoder=DIR --decoder=DIR \
      --config=configs/babi.py:qa1,base --out=DIR
"""

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import ml_collections
from ml_collections import config_flags

from memreasoner_jax.models import memreasoner as model_lib
from memreasoner_jax.pretrained import hf_import
from memreasoner_jax import train

def convert(config: ml_collections.ConfigDict, encoder_dir: str = "", decoder_dir: str = "", *,
            seed: int = 0) -> tuple[ml_collections.ConfigDict, model_lib.Params]:
  """(config, params) of a model starting from the given checkpoints ("" keeps a part random).

  `config` is a full config (with `model` and `data`) or a `model` section; it is copied, never
  changed. Parts with no counterpart are initialised from `seed`, as training would.
  """
  config = config.copy_and_resolve_references()
  model_cfg = hf_import.model_section(config)
  model_cfg.encoder.init_from = encoder_dir
  model_cfg.decoder.init_from = decoder_dir
  config = hf_import.configure(config)
  if "data" in config:
    hf_import.record_tokenizers(config)
  model = model_lib.MemReasoner(hf_import.model_section(config))
  # Parameters depend only on the batch's shapes: the smallest stand-in batch will do.
  batch = {k: jnp.zeros(s.shape, s.dtype) for k, s in model_lib.batch_shapes(
      lines=1, line_tokens=4, query_tokens=4, answer_tokens=4).items()}
  params = model.init(jax.random.key(seed), batch)
  return config, hf_import.apply_init_from(config, params)



def convert_to_checkpoint(config: ml_collections.ConfigDict, encoder_dir: str, decoder_dir: str,
                          out: str) -> None:
  """Writes `out/checkpoints/0`: the pretrained start of a training run, before any step."""
  if not (encoder_dir or decoder_dir):
    raise ValueError("convert needs an encoder directory, a decoder directory or both")
  config = config.copy_and_resolve_references()
  config.model.encoder.init_from = encoder_dir
  config.model.decoder.init_from = decoder_dir
  config.training.num_steps = 0
  config.optimizer.warmup_steps = 0  # no step is taken; the optimizer state is Adam's zeros
  config.data.eval_examples = 0  # nothing to evaluate before training
  train.train_and_evaluate(config, out)


def main(argv) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  f = flags.FLAGS
  convert_to_checkpoint(f.config, f.encoder, f.decoder, f.out)


if __name__ == "__main__":
  # Flags are defined only when run as a command, so importing `convert` next to the training
  # main (tests, notebooks) never defines --config twice.
  config_flags.DEFINE_config_file("config", None, "Training config file, e.g. "
                                  "configs/babi.py:qa1,base.", lock_config=True)
  flags.DEFINE_string("encoder", "", "Hugging Face BERT-family directory ('' = random).")
  flags.DEFINE_string("decoder", "", "Hugging Face GPT-2-family directory ('' = random).")
  flags.DEFINE_string("out", None, "Workdir to write the step-0 checkpoint into.")
  flags.mark_flags_as_required(["config", "out"])
  app.run(main)
