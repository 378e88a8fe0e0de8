"""RULER-style variable tracking: follow a chain of assignments back to a value.

A chain is `VAR ABCDE = 12345` followed by one `VAR FGHIJ = VAR ABCDE ` per hop (the trailing
space is RULER's). Names are five distinct random capitals, distinct across all chains; each
chain has its own value in 10000..99999. The chains' lines are merged in a random interleaving
that keeps each chain's order, then spread over RULER's noise sentences at sorted random gaps.

Question (our wording, since MemReasoner's is not published): "Find all variables that are
assigned the value 12345 in the text above." Answer: the asked chain's names in chain order,
space-joined. Support: the asked chain's lines in hop order (the value line first).
"""

import random
import string

from memreasoner_jax.tasks.distractors import RULER_NOISE
from memreasoner_jax.tasks.example import Example
from memreasoner_jax.tasks import haystack

VALUE_RANGE = (10000, 99999)
NOISE_UNITS = 4  # noise units around the chains of a short ("0k") example


def question(value: str) -> str:
  return f"Find all variables that are assigned the value {value} in the text above."


def value_line(name: str, value: str) -> str:
  return f"VAR {name} = {value}"


def copy_line(name: str, source: str) -> str:
  return f"VAR {name} = VAR {source} "


def _names(rng: random.Random, num: int) -> list[str]:
  names: list[str] = []
  while len(names) < num:
    name = "".join(rng.choices(string.ascii_uppercase, k=5))
    if name not in names:
      names.append(name)
  return names


def chains_example(rng: random.Random, num_hops: int, num_chains: int = 1, task: str = "",
                   index: int = 0) -> Example:
  """The chain lines alone: `num_chains` chains of `num_hops` copies each; one is asked."""
  names = _names(rng, num_chains * (num_hops + 1))
  chain_names = [names[c * (num_hops + 1):(c + 1) * (num_hops + 1)] for c in range(num_chains)]
  values = rng.sample(range(VALUE_RANGE[0], VALUE_RANGE[1] + 1), num_chains)
  chains = [[value_line(chain[0], str(value))] + [copy_line(b, a) for a, b in zip(chain, chain[1:])]
            for chain, value in zip(chain_names, values)]
  # A random interleaving that keeps each chain's order.
  order = [c for c in range(num_chains) for _ in range(num_hops + 1)]
  rng.shuffle(order)
  context: list[str] = []
  position: dict[tuple[int, int], int] = {}  # (chain, hop) -> index into context
  next_hop = [0] * num_chains
  for c in order:
    position[(c, next_hop[c])] = len(context)
    context.append(chains[c][next_hop[c]])
    next_hop[c] += 1
  asked = rng.randrange(num_chains)
  return Example(
      context=tuple(context), question=question(str(values[asked])),
      answer=" ".join(chain_names[asked]),
      support=tuple(position[(asked, h)] for h in range(num_hops + 1)), task=task, index=index)


def vt_example(rng: random.Random, num_hops: int, num_chains: int = 1, task: str = "",
               index: int = 0, noise_units: int = NOISE_UNITS) -> Example:
  """A short variable-tracking example: the chains spread over `noise_units` noise units."""
  example = chains_example(rng, num_hops, num_chains, task, index)
  return haystack.insert_facts(example, list(RULER_NOISE) * noise_units, rng)
