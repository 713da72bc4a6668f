"""Every random stream of the suite, derived from the config's seed and a fixed tag.

One seed fixes a whole job (docs/method-card.md §5). Each consumer asks for its own stream by naming it with
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


# -- every tag, in one table (tests/test_seeding.py checks that no two streams of a family share one) -----
#: A partition's stages: numpy_rng(seed, tag).
PARTITION_TRANSFER, PARTITION_IMBALANCE, PARTITION_SPLIT, PARTITION_VALIDATION = 1, 2, 3, 4
#: The engine's streams: derive_seed(seed, INIT) and derive_seed(seed, SAMPLE, round) once per job and round;
#: then, within a round, RoundContext.generator(tag, ...) = torch_generator(seed, round, tag, ...).
INIT, SAMPLE = 11, 23
LOCAL, SERVER = 37, 53  # local SGD (with the client and the pass), a server step on the transfer set
CCVR = 71  # CCVR's virtual features
CREFF_INIT, CREFF_CLIENT, CREFF_SERVER = 81, 83, 89  # CReFF's first classifier, its clients' batches, its server
#: Passes of local SGD (the ``tag`` of RoundContext.local_sgd): the plain one, FedAKD's client-side distillation.
LOCAL_PLAIN, LOCAL_CLIENT_KD = 0, 1


def client_preparation_seed(seed: int, client_id: int) -> int:
    """The seed of a client's one-off data preparation (SMOTE, random over/under-sampling)."""
    return derive_seed(seed, client_id)


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
