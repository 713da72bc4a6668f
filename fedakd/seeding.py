"""Every random stream of the suite, derived from the config's seed and a fixed tag.

One seed fixes a whole job (METHOD.md §5). Each consumer asks for its own stream by naming it with
integer parts -- (seed, stage) for a partition stage, (seed, round, purpose, client) in the engine
-- so changing one stage's parameters never shifts the draws of another, and a job resumed after
round r draws exactly what an uninterrupted one draws. All streams come from NumPy's SeedSequence,
which hashes its entropy, so nearby seeds give unrelated streams.

Two spellings exist for historical reasons and are kept because the saved partitions and results
depend on them: the partition's streams are ``stream(seed, stage)``; the engine's are
``stream(len(parts), *parts)`` (``derive_seed``), the count guarding against SeedSequence
ignoring trailing zeros, so (1, 2) and (1, 2, 0) differ.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch


def stream(*parts: int) -> np.random.SeedSequence:
    """The seed sequence named by ``parts``: the one place entropy enters the suite."""
    return np.random.SeedSequence([int(part) for part in parts])


def numpy_rng(*parts: int) -> np.random.Generator:
    """A NumPy generator for the stream named by ``parts``."""
    return np.random.default_rng(stream(*parts))


def derive_seed(*parts: int) -> int:
    """A 63-bit integer seed from integer parts, stable across processes and platforms (the engine's streams)."""
    state = stream(len(parts), *parts).generate_state(2, dtype=np.uint32)
    return int(state.view(np.uint64)[0] >> 1)


def torch_generator(*parts: int) -> "torch.Generator":
    """A CPU torch generator for the engine's stream ``parts``: index permutations are drawn on the host."""
    import torch

    generator = torch.Generator()
    generator.manual_seed(derive_seed(*parts))
    return generator
