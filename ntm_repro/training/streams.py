"""Independent random streams: every draw the suite makes (training batch ``i`` of run seed
``s``, a network's initialisation, the held-out sets) comes from its own generator state,
and no two purposes or keys ever share one.

Why not ``manual_seed``: torch's CPU generator is an MT19937 whose ``manual_seed`` keeps only
the low 32 bits of the seed, so a seed such as ``(s << 32) + i`` is ``i`` for every ``s``
(every run seed then trained on the same batches). Here the whole 624-word state is set:

    key   = purpose << 62 | a << 31 | b          (injective: a, b < 2^31, purpose < 4)
    words = SplitMix64(key), 312 outputs = 624 32-bit words

SplitMix64 (Steele, Lea & Flood 2014) is the generator recommended for seeding large-state
generators; its output function is a bijection of its 64-bit counter, so word pair 1
(``mix(key + 2 * golden)``, state words 2-3, both fully used by MT19937) already differs
between any two keys: distinct keys give distinct generator states by construction, e.g.
a held-out set (purpose 1) is never any run's training batch (purpose 0).
"""

from __future__ import annotations

from enum import IntEnum

import numpy as np
import torch

#: largest value of either key field (a run seed, a batch index, a held-out salt)
MAX_FIELD = 2**31 - 1

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_STATE_WORDS = 624  # MT19937
_COUNTERS = np.arange(1, _STATE_WORDS // 2 + 1, dtype=np.uint64)


class Purpose(IntEnum):
    """What a stream is for; part of its key, so streams of different purposes never meet."""

    TRAIN = 0  # a = run seed, b = training batch (step) index
    HELDOUT = 1  # a = salt (0 validation, 1 tests), b = 0
    INIT = 2  # a = run seed, b = 0: the network's initial parameters


def _template() -> np.ndarray:
    """The byte layout of a seeded CPU generator's state (CPUGeneratorImplState): the
    initial seed (uint64), left = 1, seeded = 1, next = 0 (uint64), then the 624 MT19937
    words as uint64 from byte 24, then the cached normal samples (not valid)."""
    state = torch.Generator().manual_seed(1).get_state().numpy().copy()
    words = state[24 : 24 + 8 * _STATE_WORDS].view(np.uint64)
    if state.size != 5056 or words[0] != 1 or words[1] != 1812433254:  # MT19937 init_genrand(1)
        raise RuntimeError(
            f"torch {torch.__version__}: unexpected CPU generator state layout; ntm_repro.training.streams "
            "needs updating for this torch version"
        )
    return state


_TEMPLATE = _template()


def stream_key(purpose: Purpose, a: int, b: int) -> int:
    """The 64-bit key of stream (purpose, a, b); one-to-one."""
    for name, value in (("a", a), ("b", b)):
        if isinstance(value, bool) or not 0 <= int(value) <= MAX_FIELD:
            raise ValueError(f"stream {Purpose(purpose).name}: {name}={value} must be an integer from 0 to {MAX_FIELD}")
    return int(purpose) << 62 | int(a) << 31 | int(b)


def splitmix64(key: int, count: int) -> np.ndarray:
    """The first ``count`` outputs of SplitMix64 started at ``key`` (uint64 arithmetic
    wraps modulo 2^64)."""
    z = np.uint64(key) + _GOLDEN * _COUNTERS[:count]
    z = (z ^ (z >> np.uint64(30))) * _MIX1
    z = (z ^ (z >> np.uint64(27))) * _MIX2
    return z ^ (z >> np.uint64(31))


def stream_state(purpose: Purpose, a: int, b: int) -> torch.Tensor:
    """A CPU generator state (for ``Generator.set_state`` or ``torch.set_rng_state``) that
    starts stream (purpose, a, b)."""
    key = stream_key(purpose, a, b)
    state = _TEMPLATE.copy()
    state[:8].view(np.uint64)[0] = key  # reported by initial_seed()
    words = splitmix64(key, _STATE_WORDS // 2).view(np.uint32).astype(np.uint64)
    state[24 : 24 + 8 * _STATE_WORDS] = words.view(np.uint8)
    return torch.from_numpy(state)


def seek(generator: torch.Generator, purpose: Purpose, a: int, b: int) -> torch.Generator:
    """Put ``generator`` at the start of stream (purpose, a, b); returns it."""
    generator.set_state(stream_state(purpose, a, b))
    return generator


def stream(purpose: Purpose, a: int, b: int) -> torch.Generator:
    """A new generator at the start of stream (purpose, a, b)."""
    return seek(torch.Generator(), purpose, a, b)


def seed_initialisation(seed: int) -> None:
    """Seed torch's global generator, from which networks draw their initial parameters,
    with run ``seed``'s initialisation stream."""
    torch.set_rng_state(stream_state(Purpose.INIT, seed, 0))
