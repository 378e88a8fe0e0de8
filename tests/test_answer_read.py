"""The answer-read loss: a read signal from the answer's words, with no supporting-fact label."""

import types

import numpy as np
import pytest

from memreasoner_jax.models import losses
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

  last = losses._answer_read_loss(r, batch, 0.1, "last")
  every = losses._answer_read_loss(r, batch, 0.1, "all")
  np.testing.assert_allclose(last, nll(sims_BxHxE[0, 1, :3], [2]), rtol=1e-4)
  np.testing.assert_allclose(every, (nll(sims_BxHxE[0, 0, :3], [1, 2])
                                     + nll(sims_BxHxE[0, 1, :3], [2])
                                     + nll(sims_BxHxE[3, 0], [1])) / 3, rtol=1e-4)
  with pytest.raises(ValueError, match="answer_read_hops.*'first'"):
    losses._answer_read_loss(r, batch, 0.1, "first")


def test_question_read_is_minus_log_first_hop_mass_on_question_lines():
  sims_BxHxE = np.array([[[0.1, 0.5, 0.2], [0.9, 0.1, 0.1]],
                         [[0.3, 0.3, 0.3], [0.1, 0.1, 0.1]]], np.float32)
  batch = {"question_lines_BxE": np.array([[1, 0, 1], [0, 0, 0]], bool),
           "line_mask_BxE": np.ones((2, 3), bool), "example_weight_B": np.ones(2, np.float32)}
  r = types.SimpleNamespace(sims_BxHxE=sims_BxHxE)
  p = np.exp(sims_BxHxE[0, 0] / 0.1) / np.exp(sims_BxHxE[0, 0] / 0.1).sum()
  # Only example 0 has question lines; only the first hop counts.
  np.testing.assert_allclose(losses._question_read_loss(r, batch, 0.1), -np.log(p[0] + p[2]),
                             rtol=1e-5)


def test_read_learns_the_supporting_line_from_the_answer_alone():
  # Six lines, so a read at random is on the supporting line 1 time in 6. No example carries a
  # label; only the answer's word points at candidate lines (the fact and other moves there).
  with_loss = toy_training.read_accuracy_after_training(1.0, steps=150)[0][6]
  without = toy_training.read_accuracy_after_training(0.0, steps=150)[0][6]
  assert with_loss > 60.0 and with_loss > without + 25.0, (with_loss, without)
