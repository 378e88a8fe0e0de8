"""The answer-read loss: a read signal from the answer's words, with no supporting-fact label."""

import types

import jax
import numpy as np
import pytest

from memreasoner_jax.configs import babi
from memreasoner_jax.data import batching
from memreasoner_jax import input_pipeline as input_lib
from memreasoner_jax import models
from memreasoner_jax.models import losses
from tests import data_fixtures
from tests import toy_training


def _batch(answer_lines_BxE, line_mask_BxE, example_weight_B):
  return {"answer_lines_BxE": np.array(answer_lines_BxE), "line_mask_BxE": np.array(line_mask_BxE),
          "example_weight_B": np.array(example_weight_B, np.float32)}


def test_loss_is_minus_log_mass_on_answer_lines_not_read_before():
  pad = -1e4  # the model's similarity of a padding line
  sims_BxHxE = np.array([[[0.1, 0.5, 0.2, pad], [0.3, 0.8, 0.1, pad]],
                         [[0.2, 0.2, 0.2, 0.2], [0.6, 0.1, 0.3, 0.2]],
                         [[0.5, 0.1, 0.3, 0.2], [0.1, 0.2, 0.3, 0.4]],
                         [[0.1, 0.7, 0.2, 0.3], [0.2, 0.6, 0.4, 0.1]]], np.float32)
  # Example 0: lines 1 and 2 hold the answer; hop 0 reads line 1, so hop 1's target is line 2.
  # Example 1: no line holds the answer. Example 2: batch padding. Example 3: only line 1
  # holds it and hop 0 read it, so hop 1 has no target left.
  batch = _batch([[0, 1, 1, 0], [0, 0, 0, 0], [1, 0, 0, 0], [0, 1, 0, 0]],
                 [[1, 1, 1, 0], [1, 1, 1, 1], [1, 1, 1, 1], [1, 1, 1, 1]], [1, 1, 0, 1])
  r = types.SimpleNamespace(sims_BxHxE=sims_BxHxE)

  def nll(scores, targets):
    p = np.exp(scores / 0.1) / np.exp(scores / 0.1).sum()
    return -np.log(p[list(targets)].sum())

  last = losses._answer_read_loss(r, batch, 0.1, "last", foreign="")
  every = losses._answer_read_loss(r, batch, 0.1, "all", foreign="")
  np.testing.assert_allclose(last, nll(sims_BxHxE[0, 1, :3], [2]), rtol=1e-4)
  np.testing.assert_allclose(every, (nll(sims_BxHxE[0, 0, :3], [1, 2])
                                     + nll(sims_BxHxE[0, 1, :3], [2])
                                     + nll(sims_BxHxE[3, 0], [1])) / 3, rtol=1e-4)
  with pytest.raises(ValueError, match="answer_read_hops.*'first'"):
    losses._answer_read_loss(r, batch, 0.1, "first", foreign="")


def test_question_read_is_minus_log_first_hop_mass_on_question_lines():
  sims_BxHxE = np.array([[[0.1, 0.5, 0.2], [0.9, 0.1, 0.1]],
                         [[0.3, 0.3, 0.3], [0.1, 0.1, 0.1]]], np.float32)
  batch = {"question_lines_BxE": np.array([[1, 0, 1], [0, 0, 0]], bool),
           "line_mask_BxE": np.ones((2, 3), bool), "example_weight_B": np.ones(2, np.float32)}
  r = types.SimpleNamespace(sims_BxHxE=sims_BxHxE)
  p = np.exp(sims_BxHxE[0, 0] / 0.1) / np.exp(sims_BxHxE[0, 0] / 0.1).sum()
  # Only example 0 has question lines; only the first hop counts.
  np.testing.assert_allclose(losses._question_read_loss(r, batch, 0.1, foreign=""),
                             -np.log(p[0] + p[2]), rtol=1e-5)


def test_read_learns_the_supporting_line_from_the_answer_alone():
  # Six lines, so a read at random is on the supporting line 1 time in 6. No example carries a
  # label; only the answer's word points at candidate lines (the fact and other moves there).
  with_loss = toy_training.read_accuracy_after_training(1.0, steps=150)[0][6]
  without = toy_training.read_accuracy_after_training(0.0, steps=150)[0][6]
  assert with_loss > 60.0 and with_loss > without + 25.0, (with_loss, without)


def _words_batch():
  """Three examples of two lines each; example 1's second line is padding."""
  ids = lambda *words: batching.word_ids(list(words)).tolist()
  line_words_BxExW = np.zeros((3, 2, 3), np.int32)
  for (b, e), words in {(0, 0): ("mary", "went", "garden"), (0, 1): ("the", "sea"),
                        (1, 0): ("john", "kitchen"), (2, 0): ("sun", "rose"),
                        (2, 1): ("mary", "slept")}.items():
    line_words_BxExW[b, e, :len(words)] = ids(*words)
  read_words_BxK = np.zeros((3, 4), np.int32)
  read_words_BxK[0, :2] = ids("mary", "garden")  # "Where is Mary?" garden
  read_words_BxK[1, :2] = ids("john", "kitchen")
  read_words_BxK[2, :2] = ids("sun", "garden")
  return {"line_words_BxExW": line_words_BxExW, "read_words_BxK": read_words_BxK,
          "line_mask_BxE": np.array([[1, 1], [1, 0], [1, 1]], bool)}


def test_foreign_lines_are_the_other_examples_real_lines_sharing_no_question_word():
  foreign_BxBxE = np.asarray(losses.foreign_lines(_words_batch()))
  # Example 0 (Mary, garden): John's line is foreign, "mary slept" is not; its own never are.
  np.testing.assert_array_equal(foreign_BxBxE[0], [[0, 0], [1, 0], [1, 0]])
  # Example 1 (John, kitchen): every real line of the others (padding never).
  np.testing.assert_array_equal(foreign_BxBxE[1], [[1, 1], [0, 0], [1, 1]])
  # Example 2 (sun, garden): "mary went garden" and "sun rose" share a word with it.
  np.testing.assert_array_equal(foreign_BxBxE[2], [[0, 1], [1, 0], [0, 0]])


def test_foreign_negatives_join_the_read_softmax_by_cosine():
  batch = {**_words_batch(), "example_weight_B": np.ones(3, np.float32),
           "question_lines_BxE": np.array([[1, 0], [1, 0], [0, 1]], bool)}
  rng = np.random.default_rng(0)
  zt_BxExC = rng.normal(size=(3, 2, 4)).astype(np.float32)
  readouts_BxHxC = rng.normal(size=(3, 2, 4)).astype(np.float32)
  sims_BxHxE = rng.normal(size=(3, 2, 2)).astype(np.float32)
  sims_BxHxE[1, :, 1] = -1e4  # padding
  r = types.SimpleNamespace(sims_BxHxE=sims_BxHxE, readouts_BxHxC=readouts_BxHxC,
                            zt_BxExC=zt_BxExC)
  unit = lambda x: x / np.linalg.norm(x)
  foreign_BxBxE = np.asarray(losses.foreign_lines(batch))

  def nll(b):
    own = [sims_BxHxE[b, 0, e] / 0.1 for e in range(2) if batch["line_mask_BxE"][b, e]]
    others = [unit(readouts_BxHxC[b, 0]) @ unit(zt_BxExC[x, e]) / 0.1
              for x in range(3) for e in range(2) if foreign_BxBxE[b, x, e]]
    target = [sims_BxHxE[b, 0, e] / 0.1 for e in range(2) if batch["question_lines_BxE"][b, e]]
    return np.log(np.exp(own + others).sum()) - np.log(np.exp(target).sum())

  with_foreign = losses._question_read_loss(r, batch, 0.1, foreign="all")
  np.testing.assert_allclose(with_foreign, np.mean([nll(b) for b in range(3)]), rtol=1e-4)
  assert with_foreign > losses._question_read_loss(r, batch, 0.1, foreign="")
  with pytest.raises(ValueError, match="foreign_negatives needs.*read_words=True"):
    losses._question_read_loss(r, {k: v for k, v in batch.items() if k != "line_words_BxExW"},
                               0.1, foreign="all")


def test_foreign_negatives_train_the_line_encoder_through_a_real_batch():
  # A real Batcher batch and the tiny model: the foreign term adds to both read losses, and
  # its gradient reaches the line encoder (the filler lines' latents are pushed away).
  cfg = babi.get_config("qa1,tiny")
  cfg.loss.answer_read_weight = cfg.loss.question_read_weight = 1.0
  batcher = input_lib.make_batcher(cfg.data, read_words=True)
  batch = batcher(data_fixtures.qa1_examples(4))
  model = models.build(cfg.model)
  params = model.init(jax.random.PRNGKey(0), batch)

  def read_losses(p, foreign):
    cfg.loss.foreign_negatives = foreign
    metrics = losses.loss_fn(model, p, batch, None, 0, cfg.loss)[1]
    return metrics["answer_read_loss"] + metrics["question_read_loss"]

  assert read_losses(params, True) > read_losses(params, False) + 1e-3
  grads = jax.grad(lambda p: read_losses(p, True) - read_losses(p, False))(params)
  assert any(float(np.abs(g).max()) > 0 for g in jax.tree.leaves(grads["encoder"]))


def test_foreign_negatives_of_the_first_hop_leave_later_hops_as_they_were():
  batch = {**_words_batch(), "example_weight_B": np.ones(3, np.float32),
           "answer_lines_BxE": np.array([[1, 0], [1, 0], [0, 1]], bool)}
  rng = np.random.default_rng(1)
  # Far-apart sims: every hop reads its best line, and no line holding the answer is read
  # before the last hop, so each hop's target stays the answer's lines.
  sims_BxHxE = np.array([[[0.1, 0.9], [0.8, 0.2]], [[0.3, -1e4], [0.6, -1e4]],
                         [[0.7, 0.1], [0.2, 0.5]]], np.float32)
  r = types.SimpleNamespace(sims_BxHxE=sims_BxHxE,
                            readouts_BxHxC=rng.normal(size=(3, 2, 4)).astype(np.float32),
                            zt_BxExC=rng.normal(size=(3, 2, 4)).astype(np.float32))
  loss = lambda hops, foreign: float(losses._answer_read_loss(r, batch, 0.1, hops, foreign))
  # The last hop alone: "first" weighs no foreign line there.
  assert loss("last", "first") == pytest.approx(loss("last", ""))
  assert loss("last", "all") > loss("last", "") + 1e-3
  # Every hop: "first" lies between none and all.
  assert loss("all", "") + 1e-3 < loss("all", "first") < loss("all", "all") - 1e-3
  with pytest.raises(ValueError, match="foreign_hops must be one of.*'second'"):
    loss("all", "second")
