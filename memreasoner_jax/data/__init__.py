"""Input pipeline: tokenizers, batching, TFDS ArrayRecord datasets and per-host iterators."""
