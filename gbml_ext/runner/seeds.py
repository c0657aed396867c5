"""Every seed of a run derives from the config's `seed` here, and nowhere else.

- `stream_seed(seed, split, rank)`: the private generator of a task source. Splits get
  `1000·seed + {train: 0, validation: 1, test: 2}`, so seeds 0..999 never share a stream; each
  distributed rank adds `17·rank` to the training stream only, so ranks draw different
  training tasks and the same evaluation tasks.
- `process_seed(seed, rank)`: the global Python / NumPy / torch generators of a process once
  the model is built (`seed + 7919·rank`; 7919 is prime, so ranks never collide with another
  run's seed in practice). Rank 0 keeps the run's own seed.

The model's initialization uses the global generators seeded with `seed` itself, before the
task sources exist.
"""
from __future__ import annotations

__all__ = ["SPLIT_OFFSETS", "process_seed", "stream_seed"]

SPLIT_OFFSETS = {"train": 0, "validation": 1, "test": 2}


def stream_seed(seed: int, split: str, rank: int = 0) -> int:
    """The seed of `split`'s task stream for run `seed` on distributed `rank`.

    Example:
        >>> stream_seed(3, "test"), stream_seed(3, "train", rank=2)
        (3002, 3034)
    """
    return 1000 * seed + SPLIT_OFFSETS[split] + (17 * rank if split == "train" else 0)


def process_seed(seed: int, rank: int = 0) -> int:
    """The seed of the global generators of distributed `rank`'s process."""
    return seed + 7919 * rank
