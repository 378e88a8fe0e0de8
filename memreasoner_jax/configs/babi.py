r"""Train MemReasoner on generated bAbI-style tasks (qa1, qa2, vt1, vt2 and mixtures).

The argument is "<tasks>,<preset>[,baseline][,long][,runlocal]": tasks is one task or a '+'
mixture (qa1, qa2, vt1, vt2, e.g. qa1+qa2), preset one of tiny, small, base, large; baseline
trains the full-attention baseline of the preset's decoder instead of MemReasoner (model.kind);
long trains for facts hidden in long distractor text (filler in training, chunked memory,
supporting-fact loss, decoder conditioned on the read facts; evaluated on 1k haystacks); runlocal
shrinks the run to a smoke test that finishes in about a minute on a laptop CPU.

Launch (one host, every local device):

  python -m memreasoner_jax.main --config=configs/babi.py:qa1,tiny --workdir=/tmp/qa1_tiny
  python -m memreasoner_jax.main --config=configs/babi.py:qa1,tiny,baseline --workdir=/tmp/qa1_fa
  python -m memreasoner_jax.main --config=configs/babi.py:qa1,tiny,long --workdir=/tmp/qa1_long

Any field can be overridden on the command line, e.g. `--config.training.num_steps=2000`; the
config is locked, so a misspelled key fails at once.

The paper's grid (`get_sweep`): supporting-fact fraction x task x temporal encoding x update rule,
128 runs of the argument's preset:

  python launch/sweep.py --config=configs/babi.py:qa1,tiny --dry_run
  python launch/sweep.py --config=configs/babi.py:qa1,small --workdir=/tmp/grid --parallel=2
"""

import ml_collections

from memreasoner_jax.models import hops
from memreasoner_jax.models import losses
from memreasoner_jax.models import presets

TASKS = ("qa1", "qa2", "vt1", "vt2")
TWO_HOP_TASKS = ("qa2", "vt2")
# Reads each task's answer needs, one per line holding part of it: qa2 reads the object's holder,
# then where the holder went; a vt chain's answer names every variable of the chain, one more in
# each line (the value line, then each copy line), so vt1 needs 2 reads and vt2 needs 3.
_READS = {"qa1": 1, "qa2": 2, "vt1": 2, "vt2": 3}
SWEEP_SF_FRACTIONS = (0.0, 0.01, 0.1, 1.0)  # supporting-fact supervision: none, 1%, 10%, all
SWEEP_TEMPORAL = ("bigru", "none")  # temporal encoding on and off
OPTIONS = ("baseline", "long", "runlocal")
# The baseline's sequence (BOS + context lines + question + answer + EOS, byte tokens) for each
# task's stories without filler: the longest of the 10,000 training and 1,000 held-out ones is
# 350 (qa1), 2,175 (qa2), 486 (vt1), 515 (vt2).
_BASELINE_SEQUENCE = {"qa1": 512, "qa2": 2304, "vt1": 640, "vt2": 640}

# preset: (global batch, train steps, peak learning rate, compute dtype, fsdp axis size)
_PRESET_TRAINING = {
    "tiny": (32, 400, 1e-3, "float32", 1),
    "small": (64, 2000, 1e-3, "float32", 1),
    "base": (256, 20000, 1e-4, "bfloat16", 1),
    "large": (256, 20000, 5e-5, "bfloat16", 8),
}


def _parse(arg: str) -> tuple[tuple[str, ...], str, set[str]]:
  parts = [p.strip() for p in (arg or "qa1,tiny").split(",")]
  options = set(parts[2:])
  if len(parts) < 2 or not options <= set(OPTIONS) or len(options) != len(parts) - 2:
    raise ValueError(f"config argument {arg!r} must be "
                     "'<tasks>,<preset>[,baseline][,long][,runlocal]', "
                     "e.g. 'qa1,tiny' or 'qa1+qa2,small,runlocal'")
  tasks = tuple(parts[0].split("+"))
  unknown = [t for t in tasks if t not in TASKS]
  if unknown or len(set(tasks)) != len(tasks):
    raise ValueError(f"config argument {arg!r}: tasks must be distinct names from {TASKS}, "
                     f"got {parts[0]!r}")
  if parts[1] not in presets.PRESETS:
    raise ValueError(f"config argument {arg!r}: preset must be one of {presets.PRESETS}")
  return tasks, parts[1], options


def get_config(arg: str = "qa1,tiny") -> ml_collections.ConfigDict:
  """The full, locked config for one task mixture and model preset."""
  tasks, preset, options = _parse(arg)
  runlocal = "runlocal" in options
  batch, steps, lr, dtype, fsdp = _PRESET_TRAINING[preset]
  two_hop = any(t in TWO_HOP_TASKS for t in tasks)
  vt = any(t.startswith("vt") for t in tasks)
  config = ml_collections.ConfigDict()
  config.arg = arg  # the argument this config was built from (recorded with every checkpoint)

  config.model = presets.model_config(preset)
  config.model.dtype = dtype  # compute dtype: bfloat16 on accelerators for the big presets
  config.model.hops.num_hops = max(_READS[t] for t in tasks)  # reads of the longest chain

  config.loss = losses.loss_config()
  # Every read of a variable chain lands on a line naming one of the answer's variables.
  config.loss.answer_read_hops = "all" if vt else "last"

  config.data = ml_collections.ConfigDict()
  config.data.tasks = "+".join(tasks)  # '+'-separated tasks, trained as one shuffled mixture
  # Where examples come from: generated | files:PATTERN (with {split}) | tfds:NAME[/CONFIG]
  # (data/sources.py). Only `generated` uses the generation fields below (sizes, seeds, filler).
  config.data.source = "generated"
  config.data.tfds_dir = "~/tensorflow_datasets"  # where tfds: datasets are built and read
  config.data.train_examples = 10000  # generated training questions per task (bAbI's 10k)
  config.data.eval_examples = 1000  # generated held-out questions per task
  config.data.train_seed = 0  # generation seed of the training split
  config.data.eval_seed = 1  # generation seed of the held-out split (differs from train_seed)
  # Supporting-fact supervision on this fraction of examples (the paper: none for 1-hop tasks,
  # 1% for 2-hop tasks); the subset is fixed by the example index.
  config.data.sf_fraction = 0.01 if two_hop else 0.0
  config.data.global_batch = batch  # examples per step over all hosts and devices
  config.data.eval_batch = 2 * batch  # examples per evaluation step over all hosts
  config.data.line_bucket = 16  # E buckets are line_bucket * 2^i: few shapes, few compiles
  config.data.max_lines = 128  # longest context in lines; a longer one is an error, not cut
  config.data.line_tokens = 48  # T: tokens per line, BOS and EOS included (longer lines split)
  # Variable tracking asks long questions and answers several names.
  config.data.query_tokens = 80 if vt else 32  # Q: tokens per question, BOS and EOS included
  config.data.answer_tokens = 104 if vt else 48  # A: BOS + question + " " + answer + EOS
  config.data.supports = 3  # S: supporting-fact slots (vt2 chains have three)
  # Less padding (data/batching.py): each batch's T, Q and A shrink to the smallest multiple of
  # token_multiple holding its longest text (0 keeps the widths above), and pack_lines has the
  # encoder read only real lines (line_rows_SxM) instead of every slot of the E bucket. On for
  # the accelerator presets (WordPiece qa1 pads 12 tokens per real one without) and the `long`
  # option; off for clean stories on the CPU presets, where each new shape costs a compilation
  # that the saved work does not repay.
  accelerator = preset in ("base", "large")
  config.data.token_multiple = 4 if accelerator else 0  # 0: fixed T, Q, A
  config.data.pack_lines = accelerator  # the encoder reads real lines only
  # Training batches carry each example's lines back to back and the train step pads them on the
  # device (data/device_padding.py): the padded lines are a long context's largest array, and
  # building them is most of the feeding process's work. Off on CPU, where the device is the
  # same cores.
  config.data.device_padding = accelerator
  # Training stories get 0..train_filler_max filler sentences at random gaps, from a text the
  # evaluation filler never uses (0: clean stories, as the paper trains).
  config.data.train_filler_max = 0
  # Where that filler comes from (a distractor spec: builtin:train, a book file or folder...);
  # the built-in generator's training half shares no text with evaluation's builtin:test.
  config.data.train_filler = "builtin:train"
  # Share of a bAbI story's filler sentences that open with a made-up look-alike of an actor's
  # name ("Danvek ..."), so that the read learns the whole name, not its first letter
  # (tasks/lookalikes.py).
  config.data.lookalike_fraction = 0.0
  # Share of bAbI training stories whose rooms become random pseudo-words (never the renamed
  # splits' words): answers the decoder cannot spell from memory, so it learns to copy them
  # (with model.decoder.copy).
  config.data.rename_fraction = 0.0
  # Share of those pseudo-words that repeat a letter ("kellmo"), as bathroom, bedroom, office
  # and hallway do: the copy of a doubled letter is learnt only from words that have one.
  config.data.rename_doubled = 0.0
  # Share of variable-tracking training examples whose values get 3 to 8 digits (never the
  # renamed splits' six-digit values): with five digits only, the copy learns where a name
  # sits from the value line's length, and a longer value shifts it.
  config.data.value_rename_fraction = 0.0
  config.data.eval_length = "0k"  # held-out haystack length: 0k (clean) or 1k..128k tokens
  # Tokenizer of lines and questions: "byte", or a Hugging Face tokenizer file or directory
  # (set from model.encoder.init_from when starting from a pretrained encoder).
  config.data.encoder_tokenizer = "byte"
  config.data.decoder_tokenizer = ""  # tokenizer of answers; "" uses encoder_tokenizer
  config.data.prefetch = 2  # batches built ahead (per process), by Grain
  # Grain worker processes building batches (0: a thread of the training process); long
  # contexts spend more time tokenizing and padding than a small model's step takes.
  config.data.workers = 0
  # Full-attention baseline only: L, the decoder tokens of BOS + context lines + question +
  # answer + EOS (the batch's sequence_BxL); 0 builds no sequence. L + eval.max_new_tokens must
  # fit model.decoder.max_len. Longer eval_length haystacks need it raised (4 bytes per token).
  config.data.sequence_tokens = 0
  # Each batch's L: the smallest multiple of this holding its longest sequence (0: L is
  # sequence_tokens). The baseline's cost grows with L, and most batches' longest story is
  # about half the longest of all (qa2: 1,077 of 1,948 tokens on average, batch 32).
  config.data.sequence_multiple = 0

  config.optimizer = ml_collections.ConfigDict()
  config.optimizer.learning_rate = lr  # peak learning rate of AdamW
  config.optimizer.warmup_steps = min(1000, steps // 10)  # linear warm-up from 0 to the peak
  config.optimizer.decay = "cosine"  # after warm-up: cosine, linear or constant
  config.optimizer.final_lr_fraction = 0.1  # decay ends at this fraction of the peak
  config.optimizer.b1 = 0.9  # Adam first-moment decay
  config.optimizer.b2 = 0.999  # Adam second-moment decay
  config.optimizer.eps = 1e-8  # Adam denominator epsilon
  config.optimizer.weight_decay = 0.01  # decoupled; biases, norms and embeddings are excluded
  config.optimizer.clip_norm = 1.0  # global gradient-norm clip (0 disables)

  config.training = ml_collections.ConfigDict()
  config.training.num_steps = steps  # optimizer steps in the whole run
  config.training.log_every = 20  # steps between metric lines (the only host syncs)
  config.training.eval_every = 200  # steps between held-out evaluations (and at the end)
  config.training.checkpoint_every = 200  # steps between checkpoints (and at the end)
  config.training.keep_checkpoints = 3  # most recent checkpoints kept on disk
  config.training.seed = 0  # parameter init and training noise: fold_in(seed, step)
  # Steps traced by jax.profiler after the first (compiling) one, into workdir/tensorboard
  # (TensorBoard's profile tab); 0 traces nothing.
  config.training.profile_steps = 0

  config.mesh = ml_collections.ConfigDict()
  config.mesh.data = -1  # data-parallel axis size; -1 takes every device fsdp leaves
  # Parameter/optimizer-state sharding axis; the batch is split over data x fsdp devices.
  config.mesh.fsdp = fsdp
  config.mesh.fsdp_min_size = 2 ** 18  # smaller arrays stay replicated on the fsdp axis

  config.eval = ml_collections.ConfigDict()
  # Greedy answer tokens generated per held-out question (A + this must fit decoder.max_len).
  config.eval.max_new_tokens = 24 if vt else 16
  # The answer loss scores as many positions after the prompt as are generated.
  config.loss.answer_positions = config.eval.max_new_tokens
  config.eval.num_samples = 3  # decoded held-out answers printed at each evaluation

  if "baseline" in options:
    config.model.kind = "baseline"  # the decoder alone, reading context + question
    config.data.sequence_tokens = max(_BASELINE_SEQUENCE[t] for t in tasks)  # longest story fits
    config.data.sequence_multiple = 256  # at most 9 shapes to compile up to qa2's 2,304
    # Positions for the whole sequence and the generated answer.
    config.model.decoder.max_len = config.data.sequence_tokens + config.eval.max_new_tokens

  if "long" in options:
    # The remedy DESIGN.md measured for distractors: trained on clean stories the BiGRU and the
    # decoder never see filler, and one memory blurs a haystack's lines together. Chunk
    # selection needs the readout to point at its line (supporting-fact loss), and the decoder
    # reads that line's own latent, which filler around it does not blur.
    config.data.train_filler_max = 30  # 0..30 filler sentences around each story
    # A long qa2 story (up to about 100 lines) with 30 filler sentences, some split in two,
    # passes 128 lines.
    config.data.max_lines = 256
    config.data.sf_fraction = 1.0  # the read is supervised on every example
    config.data.eval_length = "1k"  # held-out questions hidden in 1k tokens of filler
    config.model.memory.mode = "chunked"  # one memory per 16 lines, the best-read one kept
    config.model.decoder.condition = "facts"  # the latent of each hop's nearest line
    # Contexts of 0..30 filler lines fill a 64- or 128-line bucket about a third: the encoder
    # reads only the real lines (a train step 2.1x faster on CPU, BUILD_NOTES.md).
    config.data.pack_lines = True
    # With filler the decoder starts to follow its conditioning later (about step 280 of tiny).
    config.training.num_steps = max(steps, 600)

  if runlocal:
    config.data.train_examples = 500
    config.data.eval_examples = 64
    config.data.global_batch = 16
    config.data.eval_batch = 32
    config.training.num_steps = 20
    config.optimizer.warmup_steps = 2
    config.training.log_every = 5
    config.training.eval_every = 10
    config.training.checkpoint_every = 10
    config.mesh.fsdp = 1

  config.lock()
  return config


def get_sweep(arg: str = "qa1,tiny") -> list[dict[str, object]]:
  """The paper's grid, one dict of overrides per run (launch/sweep.py runs them).

  The task is part of the config argument, so each run carries its own: the key "arg" replaces
  the tasks of `arg` with one task and keeps its preset and options. The other keys are config
  fields; sf_fraction overrides the per-task default.
  """
  _, preset, options = _parse(arg)
  rest = ",".join([preset] + [o for o in OPTIONS if o in options])
  return [{"arg": f"{task},{rest}", "data.sf_fraction": sf, "model.temporal.kind": temporal,
           "model.hops.update_rule": rule}
          for task in TASKS for sf in SWEEP_SF_FRACTIONS for temporal in SWEEP_TEMPORAL
          for rule in hops.PAPER_UPDATE_RULES]
