"""The jitted train step over meshes of 1 and 8 devices, recompilation, batch checks, fsdp;
evaluation's decoding of questions and answers; how the devices are named."""

import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from memreasoner_jax.configs import babi
from memreasoner_jax.data import batching
from memreasoner_jax.data import tokenizers
from memreasoner_jax import evaluate
from memreasoner_jax.models import memreasoner as model_lib
from memreasoner_jax import optimizer as optimizer_lib
from memreasoner_jax import sharding as sharding_lib
from memreasoner_jax import train
from tests import data_fixtures
from tests import toy_batches


def _losses_and_step(devices, batches, config):
  """Losses of len(batches) steps on a data-parallel mesh over `devices`, and the jitted step."""
  mesh = sharding_lib.make_mesh(config.mesh, devices)
  model = model_lib.MemReasoner(config.model)
  tx, schedule = optimizer_lib.make_optimizer(config.optimizer, config.training.num_steps)
  init_rng, train_rng = jax.random.split(jax.random.key(0))
  init_fn = lambda: train.init_state(model, tx, init_rng, batches[0])
  sharding = sharding_lib.state_shardings(jax.eval_shape(init_fn), mesh, config.mesh.fsdp_min_size)
  state = jax.jit(init_fn, out_shardings=sharding)()
  step = train.jit_train_step(train.make_train_step(model, config.loss, tx, schedule, train_rng),
                              mesh, sharding)
  losses = []
  for batch in batches:
    state, metrics = step(state, sharding_lib.global_batch(batch, mesh))
    losses.append(float(metrics["loss"]))
  return np.array(losses), step, state


@pytest.fixture(scope="module")
def config():
  config = babi.get_config("qa1,tiny")
  config.optimizer.warmup_steps = 0  # every step moves the parameters
  config.model.memory.write_noise_std = 0.1  # exercises the per-step noise rng
  return config


def test_one_device_and_eight_devices_agree_and_no_recompile(config):
  assert jax.device_count() == 8
  batches = [toy_batches.qa1_batch(16, seed=s, lines=6, pad_lines=2) for s in range(3)]
  losses_8, step_8, state_8 = _losses_and_step(jax.devices(), batches, config)
  # One shape bucket: the step compiled once and was reused for steps 2 and 3.
  assert step_8._cache_size() == 1  # pylint: disable=protected-access
  assert int(state_8.step) == 3
  assert losses_8[2] < losses_8[0]
  losses_1, _, state_1 = _losses_and_step(jax.devices()[:1], batches, config)
  np.testing.assert_allclose(losses_1, losses_8, rtol=2e-5)
  # Parameters agree to within a fraction of one Adam step (lr = 1e-3): Adam divides by the
  # gradient's own scale, so float32 reduction-order noise in near-zero gradients (the memory
  # prior's) can move a weight by up to about lr.
  diff = jax.tree.map(lambda a, b: float(np.abs(np.asarray(a) - np.asarray(b)).max()),
                      state_1.params, state_8.params)
  assert max(jax.tree.leaves(diff)) < 3 * config.optimizer.learning_rate


def test_global_batch_that_does_not_divide_over_devices_is_an_error(config):
  mesh = sharding_lib.make_mesh(config.mesh)
  with pytest.raises(ValueError, match=r"data.global_batch=12 does not divide over the 8 devices"):
    sharding_lib.check_global_batch(12, mesh, "data.global_batch")


def test_mesh_sizes_are_checked(config):
  with config.unlocked():
    bad = config.mesh.copy_and_resolve_references()
  bad.fsdp = 3
  with pytest.raises(ValueError, match="mesh.fsdp=3"):
    sharding_lib.make_mesh(bad)


def _device(platform, kind):
  return types.SimpleNamespace(platform=platform, device_kind=kind)


def test_devices_are_named_by_count_and_kind():
  assert sharding_lib.describe_devices([_device("cpu", "cpu")]) == "1 CPU device"
  assert sharding_lib.describe_devices([_device("gpu", "NVIDIA H100 80GB HBM3")] * 8) == (
      "8 NVIDIA H100 80GB HBM3 devices")
  assert sharding_lib.describe_devices(jax.devices()) == "8 CPU devices"


def test_a_cpu_only_jax_on_a_gpu_or_tpu_host_is_warned_about():
  none = {"exists": lambda path: False, "which": lambda name: None, "find": lambda pattern: []}
  gpu = {**none, "exists": lambda path: path == "/dev/nvidia0"}
  tpu = {**none, "find": lambda pattern: ["/dev/accel0"] if pattern == "/dev/accel*" else []}
  assert "NVIDIA GPU" in sharding_lib.cpu_only_warning("cpu", **gpu)
  assert "'.[cuda]'" in sharding_lib.cpu_only_warning(
      "cpu", **{**none, "which": lambda name: "/usr/bin/nvidia-smi"})
  assert "'.[tpu]'" in sharding_lib.cpu_only_warning("cpu", **tpu)
  assert sharding_lib.cpu_only_warning("cpu", **none) is None
  assert sharding_lib.cpu_only_warning("gpu", **gpu) is None
  assert sharding_lib.cpu_only_warning("cpu", "cpu", **gpu) is None  # JAX_PLATFORMS chose it


def test_fsdp_splits_large_arrays_and_replicates_small_ones(config):
  mesh_cfg = config.mesh.copy_and_resolve_references()
  mesh_cfg.fsdp, mesh_cfg.data = 4, 2
  mesh = sharding_lib.make_mesh(mesh_cfg)
  tree = {"big": jax.ShapeDtypeStruct((6, 1024), np.float32),
          "odd": jax.ShapeDtypeStruct((3, 5), np.float32)}
  shardings = sharding_lib.state_shardings(tree, mesh, min_size=1000)
  assert shardings["big"].spec == jax.sharding.PartitionSpec(None, sharding_lib.FSDP)
  assert shardings["odd"].spec == jax.sharding.PartitionSpec(None, None)


def test_fsdp_training_matches_data_parallel_training(config):
  # Parameters and Adam moments split over a 4-way fsdp axis (2-way data) train to the same
  # losses as one device.
  fsdp_config = config.copy_and_resolve_references()
  fsdp_config.mesh.fsdp, fsdp_config.mesh.data = 4, 2
  fsdp_config.mesh.fsdp_min_size = 4096
  batches = [toy_batches.qa1_batch(16, seed=s, lines=6) for s in range(3)]
  losses_fsdp, _, state = _losses_and_step(jax.devices(), batches, fsdp_config)
  sharded = [a for a in jax.tree.leaves(state) if sharding_lib.FSDP in tuple(a.sharding.spec)]
  assert len(sharded) >= 10, "too few arrays were split over the fsdp axis"
  assert all(a.addressable_shards[0].data.size == a.size // 4 for a in sharded)
  losses_1, _, _ = _losses_and_step(jax.devices()[:1], batches, config)
  np.testing.assert_allclose(losses_1, losses_fsdp, rtol=2e-5)


def test_evaluation_decodes_questions_with_the_encoder_tokenizer(config, tmp_path, monkeypatch):
  hf = pytest.importorskip("tokenizers")
  bpe = hf.Tokenizer(hf.models.BPE())  # GPT-2-style answers, byte lines and questions
  bpe.pre_tokenizer = hf.pre_tokenizers.ByteLevel(add_prefix_space=False)
  bpe.decoder = hf.decoders.ByteLevel()
  trainer = hf.trainers.BpeTrainer(vocab_size=300, special_tokens=["<|endoftext|>"],
                                   initial_alphabet=hf.pre_tokenizers.ByteLevel.alphabet())
  bpe.train_from_iterator(["Where is Mary? kitchen garden office bathroom hallway"] * 20, trainer)
  bpe.save(str(tmp_path / "tokenizer.json"))
  shape = batching.BatchShape(line_tokens=40, query_tokens=24, answer_tokens=40, supports=2,
                              line_buckets=(16,))
  batcher = batching.Batcher(shape, tokenizers.ByteTokenizer(),
                             tokenizers.from_spec(str(tmp_path / "tokenizer.json")))
  mesh = sharding_lib.make_mesh(config.mesh, jax.devices()[:1])

  @jax.jit
  def answers_step(params, batch):  # "generates" each target answer and its EOS
    del params
    after_prompt = jax.vmap(lambda a_A, p: jnp.roll(a_A, -p))
    return ({"count": jnp.sum(batch["example_weight_B"])},
            after_prompt(batch["answer_BxA"], batch["prompt_len_B"]))

  examples = data_fixtures.qa1_examples(3)
  scored = []
  monkeypatch.setattr(evaluate, "score", lambda task, output, target, question, renamed=False:
                      scored.append((output, target, question)) or {"exact_match": 1.0})
  evaluate.evaluate(answers_step, {}, "qa1", examples, batcher, 4, mesh)
  assert scored == [(ex.answer, ex.answer, ex.question) for ex in examples]


def test_packed_lines_over_eight_devices_train_as_padded_lines_do(config):
  # Each device gathers the real lines of its own two examples (one row of line_rows_SxM).
  examples = data_fixtures.qa1_examples(32, max_lines=6)
  make = lambda **kw: batching.Batcher(batching.BatchShape(48, 32, 48, 3, **kw),
                                       tokenizers.ByteTokenizer())
  plain = [make()(examples[i:i + 16]) for i in (0, 16)]
  packer = make(token_multiple=8, pack_lines=True)
  packed = [packer(examples[i:i + 16], shards=8) for i in (0, 16)]
  assert packed[0]["line_rows_SxM"].shape[0] == 8
  losses_plain, _, _ = _losses_and_step(jax.devices(), plain, config)
  losses_packed, _, _ = _losses_and_step(jax.devices(), packed, config)
  np.testing.assert_allclose(losses_packed, losses_plain, rtol=2e-5)
