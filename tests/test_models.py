"""Models (ntm_repro.models): gradients of the whole NTM against finite differences, the
trace, parameter counts against the IFT6135 numbers, the LSTM controller against
torch.nn.LSTMCell, and the factory's config errors."""

from __future__ import annotations

import copy

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.func import functional_call

from ntm_repro.errors import ConfigError
from ntm_repro.models.controller import FeedforwardController, LSTMController
from ntm_repro.models.factory import build_model, count_parameters
from ntm_repro.models import lstm_kernels, lstm_sequence
from ntm_repro.models.lstm_sequence import COMPILED_MAX_BATCH
from ntm_repro.models.lstm_baseline import LSTMBaseline, stacked_logits
from ntm_repro.models.ntm import NTM

PLAIN_TOPOLOGY = {
    "blocks": ["M"],
    "write": [{"block": "M", "layer": -1}],
    "read": ["M"],
    "mix": {},
    "mix_init": {"a": 0.5, "b": 0.5},
    "learn_mix": True,
}


def ntm_cfg(locations=6, width=4, heads=1, init="constant", shifts=(-1, 0, 1), topology=None, **extra) -> dict:
    """The keys of conf/model/ntm.yaml."""
    cfg = {
        "type": "ntm",
        "heads": heads,
        "memory": {"locations": locations, "width": width, "init": init},
        "shifts": list(shifts),
        "learn_init_reads": True,
        "learn_init_weights": True,
        "topology": copy.deepcopy(topology or PLAIN_TOPOLOGY),
    }
    cfg.update(extra)
    return cfg


def lstm_cfg(size=5, layers=1, **extra) -> dict:
    """The keys of conf/controller/lstm.yaml."""
    cfg = {"type": "lstm", "size": size, "layers": layers, "skip": False, "bias": "double", "learn_init_state": True}
    cfg.update(extra)
    return cfg


def ff_cfg(size=5, layers=1, **extra) -> dict:
    """The keys of conf/controller/feedforward.yaml."""
    cfg = {"type": "feedforward", "size": size, "layers": layers, "activation": "sigmoid"}
    cfg.update(extra)
    return cfg


def gradcheck_model(model: nn.Module, inputs: torch.Tensor, fast: bool = False) -> None:
    """Finite differences against autograd for the inputs and every parameter at once
    (``fast``: torch's fast mode, random projections of the Jacobian, for the extra cases)."""
    names = [name for name, _ in model.named_parameters()]
    params = [p.detach().clone().requires_grad_() for _, p in model.named_parameters()]
    inputs = inputs.detach().clone().requires_grad_()

    def forward(x, *ps):
        return functional_call(model, dict(zip(names, ps)), (x,))

    assert torch.autograd.gradcheck(forward, (inputs, *params), eps=1e-6, atol=1e-6, rtol=1e-4, fast_mode=fast)


# --------------------------------------------------------------------------------------
# gradcheck
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "init, controller",
    [("constant", lstm_cfg(5)), ("learned", ff_cfg(5))],
    ids=["lstm_ntm_constant_memory", "feedforward_ntm_learned_memory"],
)
def test_gradcheck_ntm(init, controller):
    # memory 6 x 4, controller of 5 units, 1 read + 1 write head, 3 steps, batch 2
    torch.manual_seed(0)
    model = build_model(ntm_cfg(6, 4, init=init), controller, input_size=3, output_size=3).double()
    gradcheck_model(model, torch.rand(2, 3, 3, dtype=torch.float64))


def test_gradcheck_lstm_ntm_random_memory_two_heads():
    torch.manual_seed(4)
    model = build_model(ntm_cfg(5, 3, heads=2, init="random"), lstm_cfg(4), input_size=2, output_size=2).double()
    gradcheck_model(model, torch.rand(2, 3, 2, dtype=torch.float64), fast=True)


def test_gradcheck_two_block_ntm_with_learned_mixing():
    # NTM2 of Zhang et al.: two write heads (M1, M2), M2 <- a M2 + b M1, read M2.
    torch.manual_seed(2)
    topology = {
        "blocks": ["M1", "M2"],
        "write": [{"block": "M1"}, {"block": "M2"}],
        "read": ["M2"],
        "mix": {"M2": "M1"},
        "mix_init": {"a": 0.6, "b": 0.4},
        "learn_mix": True,
    }
    model = build_model(ntm_cfg(4, 3, topology=topology, init="random"), lstm_cfg(4), 2, 2).double()
    gradcheck_model(model, torch.rand(2, 3, 2, dtype=torch.float64), fast=True)


def test_gradcheck_lstm_baseline():
    torch.manual_seed(3)
    model = build_model({"type": "lstm"}, lstm_cfg(4, layers=2, skip=True), 3, 2).double()
    gradcheck_model(model, torch.rand(2, 3, 3, dtype=torch.float64), fast=True)


# --------------------------------------------------------------------------------------
# trace
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("controller", [lstm_cfg(6), ff_cfg(6)], ids=["lstm", "feedforward"])
@pytest.mark.parametrize("heads", [1, 2])
def test_trace_weightings_sum_to_one_every_step(controller, heads):
    torch.manual_seed(0)
    model = build_model(ntm_cfg(8, 4, heads=heads), controller, input_size=3, output_size=2)
    x = torch.randint(0, 2, (3, 7, 3)).float()
    logits, trace = model(x, trace=True)
    assert logits.shape == (3, 7, 2)
    assert trace.write_weights.shape == (3, 7, heads, 8)
    assert trace.read_weights.shape == (3, 7, heads, 8)
    assert trace.memory.shape == (3, 8, 4)
    for weights in (trace.write_weights, trace.read_weights):
        assert (weights >= 0).all()
        torch.testing.assert_close(weights.sum(-1), torch.ones(3, 7, heads), atol=1e-5, rtol=0)
    # the traced forward gives the same logits as the plain one
    torch.testing.assert_close(model(x), logits)


@pytest.mark.parametrize("shifts", [(0, 1), (-2, -1, 0, 1, 2), (1,)])
def test_trace_weightings_sum_to_one_with_other_shift_sets(shifts):
    torch.manual_seed(1)
    model = build_model(ntm_cfg(6, 3, shifts=shifts), lstm_cfg(4), 2, 2)
    assert model.shift_index.shape == (len(shifts), 6)
    _, trace = model(torch.rand(2, 5, 2), trace=True)
    for weights in (trace.write_weights, trace.read_weights):
        assert (weights >= 0).all()
        torch.testing.assert_close(weights.sum(-1), torch.ones(2, 5, 1), atol=1e-5, rtol=0)


def test_trace_two_blocks_within_block_weightings():
    torch.manual_seed(0)
    topology = {
        "blocks": ["Mc", "Mh"],
        "write": [{"block": "Mc"}],
        "read": ["Mh"],
        "mix": {"Mh": "Mc"},
        "mix_init": {"a": 0.5, "b": 0.5},
        "learn_mix": False,
    }
    model = build_model(ntm_cfg(5, 3, topology=topology), lstm_cfg(4), 2, 2)
    _, trace = model(torch.rand(2, 4, 2), trace=True)
    assert trace.write_weights.shape == (2, 4, 1, 5)
    assert trace.memory.shape == (2, 10, 3)
    torch.testing.assert_close(trace.write_weights.sum(-1), torch.ones(2, 4, 1))
    torch.testing.assert_close(trace.read_weights.sum(-1), torch.ones(2, 4, 1))


# --------------------------------------------------------------------------------------
# parameter counts (IFT6135, seed 004; SPEC section 1)
# --------------------------------------------------------------------------------------

# conf/experiment/ift6135/*.yaml over conf/model/*.yaml and conf/controller/*.yaml
IFT6135 = {
    "lstm": (
        {"type": "lstm"},
        {"type": "lstm", "size": 100, "layers": 1, "skip": False, "bias": "double", "learn_init_state": False},
        45_208,
    ),
    "lstm_ntm": (
        ntm_cfg(128, 20, heads=1, learn_init_reads=False, learn_init_weights=False),
        {"type": "lstm", "size": 100, "layers": 1, "skip": False, "bias": "double", "learn_init_state": True},
        62_860,
    ),
    "mlp_ntm": (
        ntm_cfg(128, 20, heads=1, learn_init_reads=False, learn_init_weights=False),
        {"type": "feedforward", "size": 100, "layers": 1, "activation": "sigmoid"},
        13_260,
    ),
}


@pytest.mark.parametrize("name", list(IFT6135))
def test_ift6135_parameter_counts(name):
    model_cfg, controller_cfg, expected = IFT6135[name]
    model = build_model(model_cfg, controller_cfg, input_size=9, output_size=8)
    assert count_parameters(model) == expected


@pytest.mark.parametrize("name", list(IFT6135))
def test_ift6135_parameter_counts_from_the_experiment_configs(name, compose_cfg):
    # The same counts from the real YAML files, composed by Hydra.
    cfg = compose_cfg(f"experiment=ift6135/{name}", tiny=False)
    model = build_model(cfg.model, cfg.controller, input_size=cfg.task.bits + 1, output_size=cfg.task.bits)
    assert count_parameters(model) == IFT6135[name][2]


def test_lstm_ntm_parameter_count_by_hand():
    # controller input 9 + 20 (one read) = 29; LSTM 4*100*(29 + 100) + 8*100 = 52,400;
    # learned h0, c0: 200; head projection: 2 heads * (20 + 1 + 1 + 3 + 1) + 2*20 = 92 outputs,
    # 100*92 + 92 = 9,292; output (100 + 20)*8 + 8 = 968. Total 62,860.
    model = build_model(*IFT6135["lstm_ntm"][:2], input_size=9, output_size=8)
    sizes = {name: p.numel() for name, p in model.named_parameters()}
    assert sum(v for k, v in sizes.items() if k.startswith("controller.") and "init_state" not in k) == 52_400
    assert sizes["controller.init_state"] == 200
    assert sum(v for k, v in sizes.items() if k.startswith("projections.")) == 9_292
    assert sizes["output.weight"] + sizes["output.bias"] == 968


# --------------------------------------------------------------------------------------
# LSTMController against torch.nn.LSTMCell
# --------------------------------------------------------------------------------------


def test_lstm_controller_double_bias_matches_lstm_cell():
    torch.manual_seed(0)
    ctrl = LSTMController(3, 4, layers=1, bias="double", learn_init_state=False)
    cell = nn.LSTMCell(3, 4)
    with torch.no_grad():
        cell.weight_ih.copy_(ctrl.weight_ih[0])
        cell.weight_hh.copy_(ctrl.weight_hh[0])
        cell.bias_ih.copy_(ctrl.bias_ih[0])
        cell.bias_hh.copy_(ctrl.bias_hh[0])
    xs = torch.randn(5, 2, 3)
    state = ctrl.initial_state(2)
    h, c = torch.zeros(2, 4), torch.zeros(2, 4)
    for x in xs:
        outputs, state = ctrl.step(x, state)
        h, c = cell(x, (h, c))
        assert len(outputs) == 1
        torch.testing.assert_close(outputs[0], h)
        torch.testing.assert_close(state[0][1], c)


def test_lstm_controller_learned_initial_state_is_used():
    torch.manual_seed(0)
    ctrl = LSTMController(3, 4, layers=1, learn_init_state=True)
    cell = nn.LSTMCell(3, 4)
    with torch.no_grad():
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(cell, name).copy_(getattr(ctrl, name)[0])
    x = torch.randn(2, 3)
    h0 = ctrl.init_state[0, 0].expand(2, -1)
    c0 = ctrl.init_state[0, 1].expand(2, -1)
    outputs, _ = ctrl.step(x, ctrl.initial_state(2))
    torch.testing.assert_close(outputs[0], cell(x, (h0, c0))[0])


def test_lstm_controller_single_bias_matches_lstm_cell_with_zero_hh_bias():
    torch.manual_seed(0)
    ctrl = LSTMController(3, 4, layers=1, bias="single", learn_init_state=False)
    assert ctrl.bias_hh is None
    cell = nn.LSTMCell(3, 4)
    with torch.no_grad():
        cell.weight_ih.copy_(ctrl.weight_ih[0])
        cell.weight_hh.copy_(ctrl.weight_hh[0])
        cell.bias_ih.copy_(ctrl.bias_ih[0])
        cell.bias_hh.zero_()
    x = torch.randn(2, 3)
    outputs, _ = ctrl.step(x, ctrl.initial_state(2))
    torch.testing.assert_close(outputs[0], cell(x)[0])


@pytest.mark.parametrize("layers", [1, 2])
def test_lstm_controller_single_bias_has_4h_fewer_parameters_per_layer(layers):
    h = 7
    double = LSTMController(5, h, layers=layers, bias="double")
    single = LSTMController(5, h, layers=layers, bias="single")
    assert count_parameters(double) - count_parameters(single) == 4 * h * layers
    # one layer, no learned state: 4H(I + H) + 8H (double) vs + 4H (single)
    assert count_parameters(LSTMController(5, h, bias="double", learn_init_state=False)) == 4 * h * (5 + h) + 8 * h
    assert count_parameters(LSTMController(5, h, bias="single", learn_init_state=False)) == 4 * h * (5 + h) + 4 * h


def test_lstm_controller_skip_feeds_input_to_every_layer():
    ctrl = LSTMController(3, 4, layers=3, skip=True)
    assert [w.shape[1] for w in ctrl.weight_ih] == [3, 3 + 4, 3 + 4]
    outputs, state = ctrl.step(torch.randn(2, 3), ctrl.initial_state(2))
    assert [o.shape for o in outputs] == [torch.Size([2, 4])] * 3
    assert len(state) == 3


def test_feedforward_controller_by_hand():
    ctrl = FeedforwardController(2, 1, layers=1, activation="sigmoid")
    with torch.no_grad():
        ctrl.layers[0].weight.copy_(torch.tensor([[1.0, -2.0]]))
        ctrl.layers[0].bias.fill_(0.5)
    # sigmoid(1*1 - 2*0.25 + 0.5) = sigmoid(1) = 0.7310586
    outputs, state = ctrl.step(torch.tensor([[1.0, 0.25]]), ctrl.initial_state(1))
    assert state == ()
    torch.testing.assert_close(outputs[0], torch.tensor([[0.7310586]]))


def test_build_model_types():
    assert isinstance(build_model({"type": "lstm"}, lstm_cfg(4), 3, 2), LSTMBaseline)
    assert isinstance(build_model(ntm_cfg(), lstm_cfg(4), 3, 2), NTM)
    assert isinstance(build_model(ntm_cfg(), ff_cfg(4), 3, 2).controller, FeedforwardController)


# --------------------------------------------------------------------------------------
# factory errors
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "shifts,locations",
    [((-2, -1, 0, 1, 2), 4), ((-1, 0, 1), 2), ((0, 5), 5), ((-3, 3), 6)],
)
def test_shift_range_wider_than_memory_raises(shifts, locations):
    with pytest.raises(ConfigError, match="model.shifts"):
        build_model(ntm_cfg(locations, 4, shifts=shifts), lstm_cfg(4), 3, 2)


def test_shift_range_as_wide_as_memory_is_allowed():
    build_model(ntm_cfg(3, 4, shifts=(-1, 0, 1)), lstm_cfg(4), 3, 2)


@pytest.mark.parametrize("shifts", [1, "0,1"])
def test_shifts_that_are_not_a_list_raise_in_one_line(shifts):
    cfg = ntm_cfg(6, 4)
    cfg["shifts"] = shifts  # e.g. model.shifts=1 on the command line
    with pytest.raises(ConfigError, match=r"model.shifts=.*: give a list of distinct integer shifts, e.g. \[-1, 0, 1\]"):
        build_model(cfg, lstm_cfg(4), 3, 2)


@pytest.mark.parametrize("shifts", [(), (0, 0), (0.5, 1), (True, 0)])
def test_bad_shift_lists_raise(shifts):
    with pytest.raises(ConfigError, match="model.shifts"):
        build_model(ntm_cfg(6, 4, shifts=shifts), lstm_cfg(4), 3, 2)


@pytest.mark.parametrize("value", [0, -1])
@pytest.mark.parametrize(
    "key",
    ["controller.size", "controller.layers", "model.memory.locations", "model.memory.width", "model.heads"],
)
@pytest.mark.parametrize("controller", ["lstm", "feedforward"])
def test_non_positive_size_raises(key, value, controller):
    model = ntm_cfg(6, 4)
    ctrl = lstm_cfg(4) if controller == "lstm" else ff_cfg(4)
    group, *path = key.split(".")
    target = ctrl if group == "controller" else model
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = value
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        build_model(model, ctrl, 3, 2)


@pytest.mark.parametrize("key,value", [("size", 0), ("size", -5), ("layers", 0), ("size", 2.5), ("size", True)])
def test_lstm_baseline_non_positive_size_raises(key, value):
    ctrl = lstm_cfg(4)
    ctrl[key] = value
    with pytest.raises(ConfigError, match=f"controller.{key}"):
        build_model({"type": "lstm"}, ctrl, 3, 2)


def test_unknown_choices_raise():
    with pytest.raises(ConfigError, match="model.type"):
        build_model({"type": "dnc"}, lstm_cfg(4), 3, 2)
    with pytest.raises(ConfigError, match="controller.type"):
        build_model(ntm_cfg(), {"type": "gru", "size": 4, "layers": 1}, 3, 2)
    with pytest.raises(ConfigError, match="model.memory.init"):
        build_model(ntm_cfg(init="zeros"), lstm_cfg(4), 3, 2)
    with pytest.raises(ConfigError, match="controller.bias"):
        build_model(ntm_cfg(), lstm_cfg(4, bias="triple"), 3, 2)
    with pytest.raises(ConfigError, match="controller=lstm"):
        build_model({"type": "lstm"}, ff_cfg(4), 3, 2)


# --------------------------------------------------------------------------------------
# NTM wiring
# --------------------------------------------------------------------------------------


def test_read_at_step_t_sees_the_memory_written_at_step_t():
    # One step, feedforward controller (no hidden state):
    #   h_1 = controller([x_1, r_0]);  M_1 = write(M_0, ...);  r_1 = w_read_1 M_1
    #   y_1 = W_o [h_1, r_1] + b_o
    # so with the traced M_1 and w_read_1 the logits can be rebuilt; had the read used
    # M_0 (read before write) the rebuilt logits would differ.
    torch.manual_seed(0)
    model = build_model(ntm_cfg(6, 4, init="constant"), ff_cfg(5), input_size=3, output_size=2).double()
    x = torch.rand(2, 1, 3, dtype=torch.float64)
    with torch.no_grad():
        logits, trace = model(x, trace=True)
        reads0 = model.init_reads.unsqueeze(0).expand(2, -1)
        h1 = model.controller.step(torch.cat((x[:, 0], reads0), -1), None)[0][-1]
        r1 = torch.bmm(trace.read_weights[:, 0], trace.memory).reshape(2, -1)
        torch.testing.assert_close(logits[:, 0], model.output(torch.cat((h1, r1), -1)))
        r1_stale = torch.bmm(trace.read_weights[:, 0], model.memory_init(2)).reshape(2, -1)
        assert not torch.allclose(logits[:, 0], model.output(torch.cat((h1, r1_stale), -1)))
    # and the memory did change during the step
    assert not torch.allclose(trace.memory, model.memory_init(2).to(trace.memory))


def test_ntm3_heads_are_fed_by_their_own_controller_layer():
    # NTM3: layer 1 drives write head 0 (block M1), layer 2 drives write head 1 (M2~) and
    # the read head. Canonical layout of the projected vector (A = W + 1 + 1 + S + 1):
    #   [0, A) write head 0 addressing     <- layer 1
    #   [A, 2A) write head 1 addressing    <- layer 2
    #   [2A, 3A) read head addressing      <- layer 2
    #   [3A, 3A + 2W) write head 0 erase/add  <- layer 1
    #   [3A + 2W, 3A + 4W) write head 1 erase/add <- layer 2
    topology = {
        "blocks": ["M1", "M2"],
        "write": [{"block": "M1", "layer": 1}, {"block": "M2", "layer": 2}],
        "read": ["M2"],
        "mix": {"M2": "M1"},
    }
    w, s = 4, 3
    model = build_model(ntm_cfg(6, w, topology=topology), lstm_cfg(5, layers=2), 3, 2)
    a = w + 1 + 1 + s + 1
    total = 3 * a + 4 * w
    h1, h2 = torch.randn(1, 5), torch.randn(1, 5)
    j1, j2 = torch.autograd.functional.jacobian(lambda u, v: model._project([u, v]), (h1, h2))
    from_layer1 = j1[0, :, 0].abs().sum(-1) > 0  # which of the `total` outputs depend on layer 1
    from_layer2 = j2[0, :, 0].abs().sum(-1) > 0
    expected1 = torch.zeros(total, dtype=torch.bool)
    expected1[0:a] = True
    expected1[3 * a : 3 * a + 2 * w] = True
    assert from_layer1.shape == (total,)
    assert torch.equal(from_layer1, expected1)
    assert torch.equal(from_layer2, ~expected1)
    # the model runs and its weightings are distributions
    _, trace = model(torch.rand(2, 3, 3), trace=True)
    torch.testing.assert_close(trace.write_weights.sum(-1), torch.ones(2, 3, 2))


@pytest.mark.parametrize("layers, skip, bias, learn_init", [
    (1, False, "double", True), (3, True, "double", True), (3, False, "single", False), (2, True, "single", True),
])
def test_lstm_baseline_over_whole_sequences_equals_stepping(layers, skip, bias, learn_init):
    """The baseline's forward (layer by layer over the whole sequence) and its
    step-by-step form: the same outputs and parameter gradients in float64."""
    torch.manual_seed(layers)
    net = LSTMBaseline(LSTMController(5, 6, layers, skip=skip, bias=bias, learn_init_state=learn_init), 4).double()
    inputs = torch.rand(3, 9, 5, dtype=torch.float64)
    target = torch.randn(3, 9, 4, dtype=torch.float64)
    params = list(net.parameters())
    whole, stepped = net(inputs), net._stepped(inputs)
    torch.testing.assert_close(whole, stepped, rtol=1e-12, atol=1e-12)
    for g_whole, g_stepped in zip(torch.autograd.grad((whole * target).sum(), params), torch.autograd.grad((stepped * target).sum(), params)):
        torch.testing.assert_close(g_whole, g_stepped, rtol=1e-10, atol=1e-12)


@settings(max_examples=25, deadline=None)
@given(layers=st.integers(1, 3), skip=st.booleans(), bias=st.sampled_from(["double", "single"]), learn_init=st.booleans(),
       seeds=st.integers(1, 3), batch=st.sampled_from([1, 2, 3, COMPILED_MAX_BATCH + 1]), length=st.integers(1, 12),
       data=st.integers(0, 2**16))
def test_lstm_baselines_stacked_equal_each_network_stepped_alone(layers, skip, bias, learn_init, seeds, batch, length, data):
    """K baselines run together over whole sequences (BPTT written out; compiled loops, torch
    steps above the compiled batch, ``torch.lstm`` for one network there) give each network
    what stepping it alone through :meth:`LSTMController.step` gives: outputs, and the
    gradients of every parameter, in float64."""
    torch.manual_seed(data)
    nets = [LSTMBaseline(LSTMController(3, 4, layers, skip=skip, bias=bias, learn_init_state=learn_init), 2).double()
            for _ in range(seeds)]
    inputs = torch.rand(seeds, batch, length, 3, dtype=torch.float64)
    target = torch.randn(seeds, batch, length, 2, dtype=torch.float64)
    stacked = {name: torch.stack([dict((*n.named_parameters(), *n.named_buffers()))[name] for n in nets]).detach().requires_grad_()
               for name, _ in (*nets[0].named_parameters(), *nets[0].named_buffers())}
    logits = stacked_logits(nets[0], stacked, inputs)
    (logits * target).sum().backward()
    for k, net in enumerate(nets):
        alone = net._stepped(inputs[k])
        torch.testing.assert_close(logits[k], alone, rtol=1e-12, atol=1e-12)
        (alone * target[k]).sum().backward()
        for name, param in net.named_parameters():
            torch.testing.assert_close(stacked[name].grad[k], param.grad, rtol=1e-9, atol=1e-12, msg=name)


@settings(max_examples=25, deadline=None)
@given(seeds=st.integers(1, 3), batch=st.integers(1, 3), length=st.integers(1, 12), hidden=st.integers(1, 9),
       data=st.integers(0, 2**16))
def test_lstm_compiled_loops_equal_torch_steps(seeds, batch, length, hidden, data):
    """The compiled time loops of an LSTM layer (:mod:`lstm_kernels`) against the same
    recurrence as torch operations per step, forward (gates, h, c, tanh c) and backward (the
    gates' gradients and the initial state's), in float64 to rounding."""
    torch.manual_seed(data)
    K, B, T, H = seeds, batch, length, hidden
    a = torch.randn(T, K, B, 4 * H, dtype=torch.float64)
    w_hh = torch.randn(K, 4 * H, H, dtype=torch.float64)
    h0, c0 = torch.randn(K, B, H, dtype=torch.float64), torch.randn(K, B, H, dtype=torch.float64)
    dh_all = torch.randn(T, K, B, H, dtype=torch.float64)
    runs = []
    for compiled in (True, False):
        gates, tanh_c = a.clone(), torch.empty(T, K, B, H, dtype=torch.float64)
        hs, cs = torch.empty(T + 1, K, B, H, dtype=torch.float64), torch.empty(T + 1, K, B, H, dtype=torch.float64)
        hs[0], cs[0] = h0, c0
        dh, da, dh0, dc0 = dh_all.clone(), torch.empty_like(a), torch.empty_like(h0), torch.empty_like(c0)
        if compiled:
            lstm_kernels.forward(gates.numpy(), w_hh.numpy(), hs.numpy(), cs.numpy(), tanh_c.numpy())
            lstm_kernels.backward(gates.numpy(), w_hh.numpy(), cs.numpy(), tanh_c.numpy(), dh.numpy(), da.numpy(), dh0.numpy(), dc0.numpy())
        else:
            lstm_sequence._forward_steps(gates, w_hh, hs, cs, tanh_c)
            lstm_sequence._backward_steps(gates, w_hh, cs, tanh_c, dh, da, dh0, dc0)
        runs.append((gates, hs, cs, tanh_c, da, dh0, dc0))
    for name, compiled, stepped in zip(("gates", "h", "c", "tanh c", "d gates", "d h0", "d c0"), *runs):
        torch.testing.assert_close(compiled, stepped, rtol=1e-12, atol=1e-12, msg=name)


def test_lstm_baseline_runs_under_bf16_autocast_in_bf16():
    """Under CPU bf16 autocast (``trainer.precision=bf16-mixed``) the baseline's layers run in
    bf16, near the float32 outputs, and the float32 parameters get finite gradients."""
    torch.manual_seed(0)
    net = LSTMBaseline(LSTMController(3, 8, 2, skip=True), 2)
    inputs = torch.rand(2, 6, 3)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = net(inputs)
    assert logits.dtype == torch.bfloat16
    torch.testing.assert_close(logits.float(), net(inputs), rtol=0.05, atol=0.05)
    logits.float().sum().backward()
    assert all(p.grad is not None and p.grad.dtype == torch.float32 and torch.isfinite(p.grad).all() for p in net.parameters())
