"""Random streams: every run seed trains on its own batches, every batch is reproducible,
held-out sets and initialisations come from streams no training batch uses.

The old scheme seeded batch i of seed s with ``(s << 32) + i``, which torch's 32-bit
``manual_seed`` turned into ``i`` for every s: these tests fail on it."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ntm_repro.tasks.copy import CopyTask
from ntm_repro.training.data import MAX_SEED, EpisodeStream, heldout
from ntm_repro.training.streams import MAX_FIELD, Purpose, splitmix64, stream, stream_key, stream_state

TASK = CopyTask(bits=8, min_length=1, max_length=20)


def batches(seed: int, count: int, start: int = 0, batch_size: int = 4) -> list[torch.Tensor]:
    """The inputs of the first ``count`` training batches of ``seed`` from step ``start``."""
    stream_ = iter(EpisodeStream(TASK, batch_size, [seed], start))
    return [next(stream_)[0].inputs for _ in range(count)]


def same(x: torch.Tensor, y: torch.Tensor) -> bool:
    return x.shape == y.shape and torch.equal(x, y)


def test_the_old_seeding_collided():
    """Why the state is set whole: manual_seed keeps 32 bits, so (3 << 32) + 5 draws as 5."""
    old = lambda seed: torch.rand(4, generator=torch.Generator().manual_seed(seed))  # noqa: E731
    assert torch.equal(old((3 << 32) + 5), old(5))
    assert not torch.equal(torch.rand(4, generator=stream(Purpose.TRAIN, 3, 5)), torch.rand(4, generator=stream(Purpose.TRAIN, 0, 5)))


def test_seeds_train_on_different_batches():
    """Seeds 0, 1 and the largest seed: none of their first 20 batches coincide."""
    streams = {seed: batches(seed, 20) for seed in (0, 1, MAX_SEED)}
    for (s, xs), (t, ys) in itertools.combinations(streams.items(), 2):
        assert not any(same(x, y) for x, y in zip(xs, ys)), (s, t)


def test_seeds_together_draw_what_each_draws_alone():
    together = iter(EpisodeStream(TASK, 3, [0, 1, 7]))
    alone = {seed: batches(seed, 5, batch_size=3) for seed in (0, 1, 7)}
    for step in range(5):
        row = next(together)
        for k, seed in enumerate((0, 1, 7)):
            assert same(row[k].inputs, alone[seed][step])


def test_a_batch_is_reproducible_from_its_index():
    """Batch i is the same whether the stream starts at 0 or at i (resume), in any process
    state (the global generator is not involved)."""
    whole = batches(5, 12)
    torch.manual_seed(123)
    torch.rand(100)
    assert all(same(x, y) for x, y in zip(batches(5, 4, start=8), whole[8:]))
    assert all(same(x, y) for x, y in zip(batches(5, 12), whole))


def test_heldout_sets_are_no_training_batch():
    validation = heldout(TASK, TASK.validation_levels, 4)
    tests = heldout(TASK, [5, 10], 4, salt=1)
    for seed in range(4):
        for x in batches(seed, 30):
            assert not any(same(x, v.inputs) for v in validation + tests)
    assert not same(validation[4].inputs, tests[0].inputs)  # both length 5: different episodes
    again = heldout(TASK, TASK.validation_levels, 4)
    assert all(same(v.inputs, w.inputs) for v, w in zip(validation, again))


fields = st.integers(0, MAX_FIELD)
keys = st.tuples(st.sampled_from(list(Purpose)), fields, fields)


@settings(max_examples=200, deadline=None)
@given(keys, keys)
def test_distinct_keys_give_distinct_generator_states(k1, k2):
    """The key packs (purpose, a, b) one-to-one, and MT19937 state words 2-3 (SplitMix64's
    second output, a bijection of the key) already tell any two keys apart."""
    s1, s2 = (stream_state(*k)[24:].numpy().view(np.uint64) for k in (k1, k2))
    assert (stream_key(*k1) == stream_key(*k2)) == (k1 == k2)
    assert ((s1[2], s1[3]) == (s2[2], s2[3])) == (k1 == k2)


def test_streams_refuse_keys_that_would_alias():
    for a, b in [(MAX_FIELD + 1, 0), (0, MAX_FIELD + 1), (-1, 0), (2**32, 0)]:
        with pytest.raises(ValueError, match="must be an integer from 0 to"):
            stream_key(Purpose.TRAIN, a, b)


def test_splitmix64_reference_values():
    """SplitMix64 from state 0: the published first outputs (Vigna's splitmix64.c)."""
    assert splitmix64(0, 3).tolist() == [0xE220A8397B1DCDAF, 0x6E789E6AA1B965F4, 0x06C45D188009454F]


def test_streams_draw_uniformly():
    """A stream is a proper MT19937 state, not a degenerate one: uniform draws from 20
    streams have the mean and variance of U(0, 1)."""
    draws = torch.cat([torch.rand(5000, generator=stream(Purpose.TRAIN, s, i), dtype=torch.float64) for s in range(4) for i in range(5)])
    assert abs(draws.mean().item() - 0.5) < 0.01
    assert abs(draws.var().item() - 1 / 12) < 0.005


def test_seeds_initialise_differently_and_reproducibly(compose_cfg):
    from ntm_repro.training.build import build_networks
    from ntm_repro.training.instantiate import build_task

    def weights(seed):
        cfg = compose_cfg(f"seed={seed}")
        (network,) = build_networks(cfg, build_task(cfg.task), [cfg.seed])
        return torch.cat([p.detach().flatten() for p in network.parameters()])

    first = {seed: weights(seed) for seed in (0, 1, MAX_SEED)}
    for s, t in itertools.combinations(first, 2):
        assert not torch.equal(first[s], first[t])
    assert torch.equal(weights(1), first[1])
