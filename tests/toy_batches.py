"""Small bAbI-like batches for model tests, built without the data pipeline."""

import numpy as np

from memreasoner_jax.data import special_tokens

ACTORS = ("John", "Mary", "Sandra", "Daniel")
ROOMS = ("bathroom", "bedroom", "garden", "hallway", "kitchen", "office")


def _encode(text: str, width: int) -> np.ndarray:
  ids = [special_tokens.BOS_ID] + [b + 4 for b in text.encode()] + [special_tokens.EOS_ID]
  assert len(ids) <= width, text
  return np.pad(np.array(ids, np.int32), (0, width - len(ids)))


def qa1_batch(batch_size: int, seed: int = 0, lines: int = 6, pad_lines: int = 0,
              line_width: int = 40, query_width: int = 24, answer_width: int = 40,
              supervised: float = 1.0) -> dict[str, np.ndarray]:
  """Stories of `lines` moves; the question asks where one mentioned actor is."""
  rng = np.random.default_rng(seed)
  e = lines + pad_lines
  batch = {
      "context_BxExT": np.zeros((batch_size, e, line_width), np.int32),
      "line_mask_BxE": np.zeros((batch_size, e), bool),
      "query_BxQ": np.zeros((batch_size, query_width), np.int32),
      "answer_BxA": np.zeros((batch_size, answer_width), np.int32),
      "answer_mask_BxA": np.zeros((batch_size, answer_width), bool),
      "prompt_len_B": np.zeros((batch_size,), np.int32),
      "support_BxS": np.full((batch_size, 2), -1, np.int32),
      "answer_lines_BxE": np.zeros((batch_size, e), bool),
      "question_lines_BxE": np.zeros((batch_size, e), bool),
      "sf_weight_B": (np.arange(batch_size) < supervised * batch_size).astype(np.float32),
      "example_weight_B": np.ones((batch_size,), np.float32),
  }
  for b in range(batch_size):
    where, last, rooms, actors = {}, {}, [], []
    for i in range(lines):
      actor = ACTORS[rng.integers(len(ACTORS))]
      room = ROOMS[rng.integers(len(ROOMS))]
      rooms.append(room)
      actors.append(actor)
      where[actor], last[actor] = room, i
      batch["context_BxExT"][b, i] = _encode(f"{actor} went to the {room}.", line_width)
      batch["line_mask_BxE"][b, i] = True
    actor = sorted(where)[rng.integers(len(where))]
    question = f"Where is {actor}?"
    batch["query_BxQ"][b] = _encode(question, query_width)
    prompt = [special_tokens.BOS_ID] + [c + 4 for c in (question + " ").encode()]
    answer = [c + 4 for c in where[actor].encode()] + [special_tokens.EOS_ID]
    seq = prompt + answer
    batch["answer_BxA"][b, :len(seq)] = seq
    batch["answer_mask_BxA"][b, len(prompt):len(seq)] = True
    batch["prompt_len_B"][b] = len(prompt)
    batch["support_BxS"][b, 0] = last[actor]
    batch["answer_lines_BxE"][b, :lines] = [room == where[actor] for room in rooms]
    batch["question_lines_BxE"][b, :lines] = [a == actor for a in actors]
  return batch
