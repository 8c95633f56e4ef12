"""Memory topologies as data (ntm_repro.memory.topology): resolution and its errors, the
mixing order, block placement and the mixer."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ntm_repro.memory.topology import BlockPlacement, Mixer, Topology, TopologyError

PLAIN = {"blocks": ["M"], "write": [{"block": "M", "layer": -1}], "read": ["M"], "mix": {}}


def topo(blocks, write, read, mix=None, heads=1, layers=1) -> Topology:
    return Topology.from_config({"blocks": blocks, "write": write, "read": read, "mix": mix or {}}, heads, layers)


# --------------------------------------------------------------------------------------
# from_config: valid topologies
# --------------------------------------------------------------------------------------


def test_plain_ntm_is_one_block():
    top = Topology.from_config(PLAIN, heads=1, controller_layers=1)
    assert top.blocks == ("M",)
    assert top.write_blocks == (0,)
    assert top.write_layers == (0,)
    assert top.read_blocks == (0,)
    assert top.read_layer == 0
    assert dict(top.mix_sources) == {}
    assert top.mix_levels == ()


def test_plain_ntm_without_mix_key():
    cfg = {k: v for k, v in PLAIN.items() if k != "mix"}
    assert Topology.from_config(cfg, 1, 1).mix_levels == ()


def test_each_entry_stands_for_heads_heads():
    top = Topology.from_config(PLAIN, heads=2, controller_layers=3)
    assert top.write_blocks == (0, 0)
    assert top.write_layers == (2, 2)  # layer -1 = the top of 3 layers, 0-based 2
    assert top.read_blocks == (0, 0)
    assert top.read_layer == 2


def test_ntm1_hidden_memory_read():
    # NTM1: write Mc, read Mh, Mh <- a Mh + b Mc
    top = topo(["Mc", "Mh"], [{"block": "Mc"}], ["Mh"], {"Mh": "Mc"})
    assert top.write_blocks == (0,) and top.read_blocks == (1,)
    assert dict(top.mix_sources) == {1: 0}
    assert top.mix_levels == ((1,),)


def test_ntm3_write_layers_are_zero_based():
    # NTM3: layer 1 writes M1, layer 2 writes M2; controller layers numbered from 1.
    top = topo(["M1", "M2"], [{"block": "M1", "layer": 1}, {"block": "M2", "layer": 2}], ["M2"], {"M2": "M1"}, layers=2)
    assert top.write_blocks == (0, 1)
    assert top.write_layers == (0, 1)
    assert top.read_layer == 1


def test_mix_levels_chain():
    # C <- B <- A: B mixes from A (level 1), C mixes from B, which must be final first (level 2).
    for mix in ({"C": "B", "B": "A"}, {"B": "A", "C": "B"}):
        top = topo(["A", "B", "C"], [{"block": "A"}], ["C"], mix)
        assert dict(top.mix_sources) == {2: 1, 1: 0}
        assert top.mix_levels == ((1,), (2,))


def test_mix_levels_siblings_share_a_level():
    # B <- A and C <- A: both depend only on the unmixed A, one level.
    top = topo(["A", "B", "C"], [{"block": "A"}], ["C"], {"C": "A", "B": "A"})
    assert top.mix_levels == ((1, 2),)


# --------------------------------------------------------------------------------------
# from_config: errors
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "cfg",
    [
        {"blocks": ["M"], "write": [{"block": "X"}], "read": ["M"], "mix": {}},
        {"blocks": ["M"], "write": [{"block": "M"}], "read": ["X"], "mix": {}},
        {"blocks": ["M", "N"], "write": [{"block": "M"}], "read": ["N"], "mix": {"X": "M"}},
        {"blocks": ["M", "N"], "write": [{"block": "M"}], "read": ["N"], "mix": {"N": "X"}},
    ],
    ids=["write", "read", "mix-target", "mix-source"],
)
def test_unknown_block_raises(cfg):
    """The memory layer names the entry within the topology, never a config key (the
    config layer adds ``model.topology.``: tests/test_structured.py)."""
    with pytest.raises(TopologyError, match="'X' does not exist") as caught:
        Topology.from_config(cfg, 1, 1)
    assert caught.value.where in ("write[0]", "read[0]", "mix", "mix.N") and "model." not in str(caught.value)


def test_mixing_cycle_raises():
    with pytest.raises(TopologyError, match="cycle"):
        topo(["A", "B"], [{"block": "A"}], ["B"], {"A": "B", "B": "A"})


def test_longer_mixing_cycle_raises():
    with pytest.raises(TopologyError, match="cycle"):
        topo(["A", "B", "C", "D"], [{"block": "A"}], ["B"], {"B": "C", "C": "D", "D": "B"})


def test_self_source_raises():
    with pytest.raises(TopologyError, match="cycle"):
        topo(["A", "B"], [{"block": "A"}], ["B"], {"B": "B"})


@pytest.mark.parametrize("layer,layers", [(2, 1), (3, 2), (0, 1), (-2, 2)])
def test_write_layer_outside_the_controller_raises(layer, layers):
    with pytest.raises(TopologyError, match="controller layer") as caught:
        topo(["M"], [{"block": "M", "layer": layer}], ["M"], layers=layers)
    assert caught.value.where == "write[0]" and caught.value.layer == layer


@pytest.mark.parametrize(
    "cfg",
    [
        {"blocks": [], "write": [{"block": "M"}], "read": ["M"]},
        {"blocks": ["M", "M"], "write": [{"block": "M"}], "read": ["M"]},
        {"blocks": ["M"], "write": [], "read": ["M"]},
        {"blocks": ["M"], "write": [{"block": "M"}], "read": []},
    ],
    ids=["no-blocks", "duplicate-blocks", "no-write", "no-read"],
)
def test_degenerate_topologies_raise(cfg):
    with pytest.raises(TopologyError):
        Topology.from_config(cfg, 1, 1)


# --------------------------------------------------------------------------------------
# BlockPlacement
# --------------------------------------------------------------------------------------


def test_block_placement_spread_by_hand():
    # 2 blocks of N = 3; head 0 lives in block 1, head 1 in block 0.
    place = BlockPlacement([1, 0], num_blocks=2, locations=3)
    w = torch.tensor([[[0.2, 0.3, 0.5], [0.6, 0.4, 0.0]]])
    spread = place.spread(w)
    assert spread.shape == (1, 2, 6)
    assert torch.equal(spread, torch.tensor([[[0, 0, 0, 0.2, 0.3, 0.5], [0.6, 0.4, 0.0, 0, 0, 0]]]))


def test_block_placement_select_by_hand():
    place = BlockPlacement([1, 0], num_blocks=2, locations=3)
    per_location = torch.arange(12.0).view(1, 2, 6)
    # head 0: its row [0..5], block 1 -> [3, 4, 5]; head 1: row [6..11], block 0 -> [6, 7, 8]
    assert torch.equal(place.select(per_location), torch.tensor([[[3.0, 4.0, 5.0], [6.0, 7.0, 8.0]]]))


def test_block_placement_round_trip_two_blocks():
    place = BlockPlacement([0, 1, 1], num_blocks=2, locations=4)
    w = torch.softmax(torch.randn(3, 3, 4, generator=torch.Generator().manual_seed(0)), -1)
    torch.testing.assert_close(place.select(place.spread(w)), w)
    # the spread weighting is zero outside the head's block and still sums to 1
    spread = place.spread(w).view(3, 3, 2, 4)
    assert torch.equal(spread[:, 0, 1], torch.zeros(3, 4))
    assert torch.equal(spread[:, 1, 0], torch.zeros(3, 4))
    assert torch.equal(spread[:, 2, 0], torch.zeros(3, 4))
    torch.testing.assert_close(place.spread(w).sum(-1), torch.ones(3, 3))


def test_block_placement_one_block_is_identity():
    place = BlockPlacement([0, 0], num_blocks=1, locations=5)
    w = torch.rand(2, 2, 5)
    assert place.spread(w) is w
    assert place.select(w) is w


def test_block_placement_float64():
    place = BlockPlacement([1], num_blocks=2, locations=2)
    w = torch.tensor([[[0.25, 0.75]]], dtype=torch.float64)
    spread = place.spread(w)
    assert spread.dtype == torch.float64
    assert torch.equal(spread, torch.tensor([[[0.0, 0.0, 0.25, 0.75]]], dtype=torch.float64))


# --------------------------------------------------------------------------------------
# Mixer
# --------------------------------------------------------------------------------------


def test_mixer_two_blocks_by_hand():
    # blocks [M1, M2], M2 <- a M2 + b M1 with a = 0.25, b = 2; N = 2, W = 1.
    #   M1 = [1, 2]  (unchanged)
    #   M2 = 0.25 [10, 20] + 2 [1, 2] = [2.5 + 2, 5 + 4] = [4.5, 9]
    top = topo(["M1", "M2"], [{"block": "M1"}], ["M2"], {"M2": "M1"})
    mixer = Mixer(top, a=0.25, b=2.0, learnable=False, form="free")
    assert mixer.active
    blocks = [torch.tensor([[[1.0], [2.0]]]), torch.tensor([[[10.0], [20.0]]])]
    out = Mixer.mix(blocks, mixer.level_plans())
    assert torch.equal(torch.cat(out, 1), torch.tensor([[[1.0], [2.0], [4.5], [9.0]]]))


def test_mixer_chain_uses_the_final_source():
    # blocks [A, B, C] (N = 1, W = 1), B <- A, C <- B, a = 0.5, b = 2:
    #   level 1: B = 0.5 * 10 + 2 * 1 = 7
    #   level 2: C = 0.5 * 100 + 2 * 7 = 64   (with the stale B = 10 it would be 70)
    top = topo(["A", "B", "C"], [{"block": "A"}], ["C"], {"C": "B", "B": "A"})
    mixer = Mixer(top, a=0.5, b=2.0, learnable=False, form="free")
    out = Mixer.mix([torch.tensor([[[v]]]) for v in (1.0, 10.0, 100.0)], mixer.level_plans())
    assert torch.equal(torch.cat(out, 1), torch.tensor([[[1.0], [7.0], [64.0]]]))


def test_mixer_batch_and_width():
    # batch 2, W = 2: each element mixed on its own. a = 1, b = -1: M2 <- M2 - M1.
    top = topo(["M1", "M2"], [{"block": "M1"}], ["M2"], {"M2": "M1"})
    plans = Mixer(top, a=1.0, b=-1.0, learnable=False, form="free").level_plans()
    memory = torch.tensor([[[1.0, 2.0], [5.0, 5.0]], [[0.0, 1.0], [3.0, 4.0]]])  # N = 1 per block
    out = Mixer.mix(list(memory.split(1, dim=1)), plans)
    assert torch.equal(torch.cat(out, 1), torch.tensor([[[1.0, 2.0], [4.0, 3.0]], [[0.0, 1.0], [3.0, 3.0]]]))


def test_mixer_free_learnable_coefficients_are_parameters():
    top = topo(["M1", "M2"], [{"block": "M1"}], ["M2"], {"M2": "M1"})
    learnable = Mixer(top, a=0.3, b=0.7, learnable=True, form="free")
    assert isinstance(learnable.coefficients, nn.Parameter)
    torch.testing.assert_close(learnable.coefficients.detach(), torch.tensor([[0.3, 0.7]]))
    fixed = Mixer(top, a=0.3, b=0.7, learnable=False, form="free")
    assert list(fixed.parameters()) == []
    # gradient reaches a and b: d/da sum(a M2 + b M1) = sum M2, d/db = sum M1
    blocks = [torch.tensor([[[1.0], [2.0]]]), torch.tensor([[[10.0], [20.0]]])]
    sum(b.sum() for b in Mixer.mix(blocks, learnable.level_plans())).backward()
    torch.testing.assert_close(learnable.coefficients.grad, torch.tensor([[30.0, 3.0]]))


def test_convex_mixer_by_hand():
    # a = sigmoid(theta) = 0.2 at init (theta = log(0.2 / 0.8)), b = 1 - a = 0.8; N = 2, W = 1:
    #   M2 = 0.2 [10, 20] + 0.8 [1, 2] = [2 + 0.8, 4 + 1.6] = [2.8, 5.6]
    # d/dtheta sum(M2) = a (1 - a) sum(M2 - M1) = 0.16 * (30 - 3) = 4.32
    top = topo(["M1", "M2"], [{"block": "M1"}], ["M2"], {"M2": "M1"})
    mixer = Mixer(top, a=0.2, b=0.8, learnable=True, form="convex").double()
    assert [name for name, _ in mixer.named_parameters()] == ["theta"]
    torch.testing.assert_close(mixer.effective().detach(), torch.tensor([[0.2, 0.8]], dtype=torch.float64))
    assert mixer.figures(["M1", "M2"]) == pytest.approx({"mix_M2_a": 0.2, "mix_M2_b": 0.8})
    blocks = [torch.tensor([[[1.0], [2.0]]], dtype=torch.float64), torch.tensor([[[10.0], [20.0]]], dtype=torch.float64)]
    out = Mixer.mix(blocks, mixer.level_plans())
    torch.testing.assert_close(out[1], torch.tensor([[[2.8], [5.6]]], dtype=torch.float64))
    out[1].sum().backward()
    torch.testing.assert_close(mixer.theta.grad, torch.tensor([4.32], dtype=torch.float64))


@pytest.mark.parametrize("a, b", [(0.3, 0.6), (1.0, 0.0)])
def test_convex_mixer_refuses_what_it_cannot_represent(a, b):
    top = topo(["M1", "M2"], [{"block": "M1"}], ["M2"], {"M2": "M1"})
    with pytest.raises(ValueError, match="convex mixing"):
        Mixer(top, a=a, b=b, learnable=True, form="convex")


def test_mixer_without_mixing_is_identity():
    top = Topology.from_config(PLAIN, 1, 1)
    mixer = Mixer(top, a=0.5, b=0.5, learnable=True, form="convex")
    assert not mixer.active
    assert list(mixer.parameters()) == []
    blocks = [torch.rand(2, 4, 3)]
    assert Mixer.mix(blocks, mixer.level_plans()) is blocks
