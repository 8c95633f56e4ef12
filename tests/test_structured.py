"""Structured memory (Zhang, Yu & Zhou 2015) as topologies of the one NTM class, built from
the real configs model=ntm1/ntm2/ntm3."""

import re

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ntm_repro.errors import ConfigError
from ntm_repro.models.factory import build_model

N, W = 8, 5


def build(compose_cfg, model, *overrides, dtype=torch.float64):
    cfg = compose_cfg(
        f"model={model}", "task=recall", f"++model.memory.locations={N}", f"++model.memory.width={W}",
        "controller.size=7", *overrides, tiny=False,
    )
    torch.manual_seed(0)
    return build_model(cfg.model, cfg.controller, 8, 6).to(dtype)


def run(model, inputs):
    with torch.no_grad():
        return model(inputs, trace=True)


@pytest.fixture
def inputs():
    return torch.rand(3, 6, 8, generator=torch.Generator().manual_seed(1), dtype=torch.float64)


def test_ntm1_with_a0_b1_reads_exactly_what_the_plain_ntm_reads(compose_cfg, inputs):
    plain = build(compose_cfg, "ntm")
    ntm1 = build(compose_cfg, "ntm1", "model.topology.mix_init={a:0.0,b:1.0}", "model.topology.learn_mix=false")
    missing, unexpected = ntm1.load_state_dict(plain.state_dict(), strict=False)
    assert not unexpected and set(missing) == {"mixer.coefficients"} | ({"memory_init.bias"} & set(missing))
    logits_plain, trace_plain = run(plain, inputs)
    logits_ntm1, trace_ntm1 = run(ntm1, inputs)
    torch.testing.assert_close(trace_ntm1.read_weights, trace_plain.read_weights, rtol=0, atol=1e-12)
    torch.testing.assert_close(logits_ntm1, logits_plain, rtol=0, atol=1e-12)
    # Mh = 0 * Mh + 1 * Mc: both blocks hold the plain NTM's memory
    torch.testing.assert_close(trace_ntm1.memory[:, N:], trace_plain.memory, rtol=0, atol=1e-12)


def test_ntm2_with_a1_b0_reads_only_its_own_write_head(compose_cfg, inputs):
    ntm2 = build(compose_cfg, "ntm2", "model.topology.mix_init={a:1.0,b:0.0}", "model.topology.learn_mix=false")
    logits, _ = run(ntm2, inputs)
    # Rows of the projection that drive write head 0 (block M1): its addressing and erase/add.
    a = ntm2.address_width
    rows = list(range(0, a)) + list(range(3 * a, 3 * a + 2 * W))
    with torch.no_grad():
        ntm2.projections[0].weight[rows] = torch.randn(len(rows), 7, dtype=torch.float64) * 3
        ntm2.projections[0].bias[rows] = torch.randn(len(rows), dtype=torch.float64)
    changed, trace = run(ntm2, inputs)
    torch.testing.assert_close(changed, logits, rtol=0, atol=0)
    assert not torch.allclose(trace.memory[:, :N], run(build(compose_cfg, "ntm2"), inputs)[1].memory[:, :N])


def test_mixing_follows_the_writes(compose_cfg):
    """Mh(t) = a Mh(t-1) + b Mc(t): the hidden block mixes in the controlled block *after*
    this step's write, not before."""
    a, b = 0.3, 0.6
    ntm1 = build(
        compose_cfg, "ntm1", f"model.topology.mix_init={{a:{a},b:{b}}}", "model.topology.learn_mix=false", "model.topology.mixing=free"
    )
    with torch.no_grad():
        state = ntm1.initial_state(2)
        state = state._replace(memory=torch.rand_like(state.memory))  # distinct Mc(0), Mh(0)
        state = state._replace(norms=torch.linalg.vector_norm(state.memory, dim=-1))
        _, new = ntm1.step(torch.rand(2, 8, dtype=torch.float64), state, ntm1.mixer.level_plans())
    a, b = ntm1.mixer.coefficients[0].tolist()  # 0.3 and 0.6 as stored (float32, then float64)
    mc_before, mh_before = state.memory[:, 0], state.memory[:, 1]
    mc_after, mh_after = new.memory[:, 0], new.memory[:, 1]
    assert not torch.allclose(mc_after, mc_before)  # the write changed Mc
    torch.testing.assert_close(mh_after, a * mh_before + b * mc_after, rtol=0, atol=1e-12)
    assert not torch.allclose(mh_after, a * mh_before + b * mc_before)


def test_ntm3_first_write_head_gets_gradients_from_layer_one_only(compose_cfg):
    ntm3 = build(compose_cfg, "ntm3")
    assert ntm3.controller.num_layers == 2
    state = ntm3.initial_state(2)
    _, new = ntm3.step(torch.rand(2, 8, dtype=torch.float64), state, ntm3.mixer.level_plans())
    first_head, second_head = new.write_weights[:, 0], new.write_weights[:, 1]
    layer1 = [ntm3.controller.weight_ih[0], ntm3.controller.weight_hh[0]]
    layer2 = [ntm3.controller.weight_ih[1], ntm3.controller.weight_hh[1]]
    target = torch.randn_like(first_head)
    grads = torch.autograd.grad((first_head * target).sum(), layer1 + layer2, allow_unused=True, retain_graph=True)
    assert all(g is not None and g.abs().sum() > 0 for g in grads[:2])
    assert all(g is None or g.abs().sum() == 0 for g in grads[2:])
    grads = torch.autograd.grad((second_head * target).sum(), layer2)
    assert all(g.abs().sum() > 0 for g in grads)


def test_structured_models_share_the_plain_keys(compose_cfg):
    """Controller width, head count and memory size come from the same keys for every variant."""
    for name in ("ntm1", "ntm2", "ntm3"):
        model = build(compose_cfg, name, "model.heads=2")
        assert model.locations == N and model.width == W
        assert model.num_read == 2
        assert model.num_write == (2 if name == "ntm1" else 4)


def test_structured_variants_cost_about_one_block_more(compose_cfg):
    plain = sum(p.numel() for p in build(compose_cfg, "ntm").parameters())
    ntm1 = sum(p.numel() for p in build(compose_cfg, "ntm1").parameters())
    assert ntm1 == plain + 1  # theta (a = sigmoid(theta), b = 1 - a)
    free = sum(p.numel() for p in build(compose_cfg, "ntm1", "model.topology.mixing=free").parameters())
    assert free == plain + 2  # a and b


def test_ntm3_with_a_one_layer_controller_names_the_layer(compose_cfg):
    with pytest.raises(ConfigError, match=r"model.topology.write\[1\]: controller layer 2 does not exist; the controller has 1 layer"):
        build(compose_cfg, "ntm3", "controller.layers=1")


@pytest.mark.parametrize(
    "override, message",
    [
        ("model.topology.read=[Mx]", "model.topology.read[0]: block 'Mx' does not exist; blocks are M1, M2"),
        ("model.topology.mix={M2:M3}", "model.topology.mix.M2: block 'M3' does not exist"),
        ("++model.topology.mix={M2:M1,M1:M2}", "model.topology.mix: mixing sources form a cycle (M2 -> M1 -> M2)"),
    ],
)
def test_bad_topologies_fail_with_one_line(compose_cfg, override, message):
    with pytest.raises(ConfigError, match=re.escape(message)) as caught:
        build(compose_cfg, "ntm2", override)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("model_name", ["ntm1", "ntm2", "ntm3", "ntm_2heads"])
def test_block_placements_agree_with_the_general_form(compose_cfg, inputs, model_name):
    """The 'single' and 'diagonal' placements are shortcuts: forcing every head group onto
    the 'general' (spread over all blocks) form must give the same outputs and memories."""
    import copy

    fast = build(compose_cfg, model_name)
    general = copy.deepcopy(fast)
    for place in (general.write_place, general.read_place):
        place.kind, place.block = "general", None
    assert {fast.write_place.kind, fast.read_place.kind} != {"general"}
    logits_fast, trace_fast = run(fast, inputs)
    logits_general, trace_general = run(general, inputs)
    torch.testing.assert_close(logits_fast, logits_general, rtol=0, atol=1e-12)
    torch.testing.assert_close(trace_fast.memory, trace_general.memory, rtol=0, atol=1e-12)


def _largest_memory_and_bound(model, raw_mix: float, add_scale: float, steps: int = 1000):
    """Run ``steps`` steps on random inputs with every raw mixing parameter set to
    ``raw_mix`` and every add vector scaled by ``add_scale``. Returns the largest |M| at
    the end per sequence and the bound that erase-then-add with convex mixing implies:

        max|M_t| <= max|M_{t-1}| + sum_h max|a_h,t|

    (the erase factors 1 - w e lie in [0, 1], each head adds at most max|a_h| at a
    location since w <= 1, and a convex mix never leaves the range of its two blocks),
    so max|M_T| <= max|M_0| + sum_t sum_h max|a_h,t|."""
    with torch.no_grad():
        for parameter in model.mixer.parameters():
            parameter.fill_(raw_mix)
    added = []
    write = model.write_place.write

    def scaled_write(memory, weights, erase, add):
        add = add * add_scale
        added.append(add.abs().amax(dim=-1).sum(dim=-1))  # sum over heads of max |a_h|, (B,)
        return write(memory, weights, erase, add)

    model.write_place.write = scaled_write
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        state = model.initial_state(2)
        start = state.memory.abs().amax(dim=(1, 2, 3))
        plans = model.mixing_plans()
        for _ in range(steps):
            _, state = model.step(torch.rand(2, 8, generator=generator, dtype=torch.float64), state, plans)
    return state.memory.abs().amax(dim=(1, 2, 3)), start + torch.stack(added).sum(0)


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(model=st.sampled_from(["ntm1", "ntm2", "ntm3"]), raw_mix=st.floats(-30, 30), add_scale=st.floats(1, 1e3))
def test_default_mixing_keeps_memory_under_the_write_bound(compose_cfg, model, raw_mix, add_scale):
    """Whatever its raw parameters, the default mixing cannot make memory grow faster
    than the writes put into it (the free form with a > 1 grows geometrically)."""
    largest, bound = _largest_memory_and_bound(build(compose_cfg, model), raw_mix, add_scale)
    assert torch.isfinite(largest).all()
    assert (largest <= bound * (1 + 1e-9)).all(), (largest, bound)


def test_free_mixing_with_a_above_one_breaks_the_bound(compose_cfg):
    """The free form is what the bound excludes: a = b = 1.5 grows as 1.5^t."""
    largest, bound = _largest_memory_and_bound(build(compose_cfg, "ntm1", "model.topology.mixing=free"), 1.5, 1.0, steps=100)
    assert (largest > 1e6 * bound).all()


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["model.topology.mix_init={a:0.3,b:0.6}"], r"model.topology.mixing=convex, learn_mix=true: convex mixing has b = 1 - a; set b=0.7"),
        (["model.topology.mix_init={a:1.0,b:0.0}"], r"learnable convex mixing needs 0 < a < 1"),
    ],
)
def test_mixing_the_convex_form_cannot_represent_is_one_line_naming_the_keys(compose_cfg, overrides, message):
    with pytest.raises(ConfigError, match=r"model\.topology\.mix_init=\{a: .*" + message):
        build(compose_cfg, "ntm1", *overrides)
    build(compose_cfg, "ntm1", *overrides, "model.topology.mixing=free")  # the free form takes any a, b
    build(compose_cfg, "ntm", *overrides)  # no mixed block: nothing to check
