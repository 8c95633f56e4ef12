"""The fused engine against the autograd reference (:class:`ntm_repro.models.ntm.NTM`):
outputs and every parameter's gradient equal in float64 to 1e-9 relative, over random
architectures, populations and lengths."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ntm_repro.models.factory import build_model
from ntm_repro.models.fused import fused_forward

INPUTS, OUTPUTS = 6, 4


def networks(compose_cfg, overrides: list[str], population: int, dtype=torch.float64) -> list:
    cfg = compose_cfg(*overrides, "model.engine=reference", "++model.memory.locations=8", "++model.memory.width=5", "controller.size=7", tiny=False)
    nets = []
    for seed in range(population):
        torch.manual_seed(seed)
        nets.append(build_model(cfg.model, cfg.controller, INPUTS, OUTPUTS).to(dtype))
    return nets


def compare(nets: list, inputs: torch.Tensor, tolerance: float) -> None:
    """Outputs and the gradients of a random projection of them, fused against reference."""
    reference = torch.stack([net(inputs[k]) for k, net in enumerate(nets)])
    fused = fused_forward(nets, inputs)
    torch.testing.assert_close(fused, reference, rtol=tolerance, atol=tolerance)
    target = torch.randn(reference.shape, generator=torch.Generator().manual_seed(3), dtype=reference.dtype)
    params = [p for net in nets for p in net.parameters()]
    expected = torch.autograd.grad((reference * target).sum(), params, allow_unused=True)
    got = torch.autograd.grad((fused * target).sum(), params, allow_unused=True)
    names = [name for net in nets for name, _ in net.named_parameters()]
    for name, e, g in zip(names, expected, got):
        e = torch.zeros_like(g) if e is None else e
        g = torch.zeros_like(e) if g is None else g
        scale = e.abs().max().clamp_min(1e-12)
        assert ((g - e).abs().max() / scale).item() < tolerance, name


architectures = st.sampled_from(
    [
        ["model=ntm"],
        ["model=ntm_2heads"],  # two write heads on one block: the erase product
        ["model=ntm1"],
        ["model=ntm2"],
        ["model=ntm2", "model.topology.mixing=free"],
        ["model=ntm2", "model.topology.learn_mix=false"],  # fixed a, b: a buffer, not a parameter
        ["model=ntm3"],  # write heads fed by layers 1 and 2
        ["model=ntm", "controller=feedforward"],
        ["model=ntm1", "controller=feedforward", "controller.layers=2", "controller.activation=tanh"],
        ["model=ntm", "controller.layers=2", "++controller.skip=true", "controller.bias=single"],
        ["model=ntm", "controller.learn_init_state=false", "model.learn_init_reads=false", "model.learn_init_weights=false"],
    ]
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    architecture=architectures,
    shifts=st.sampled_from(["[-1,0,1]", "[0,1]", "[-2,-1,0,1,2]"]),
    init=st.sampled_from(["constant", "learned", "random"]),
    population=st.sampled_from([1, 3]),
    batch=st.integers(1, 2),
    length=st.integers(1, 50),
)
def test_fused_equals_the_reference_in_float64(compose_cfg, architecture, shifts, init, population, batch, length):
    nets = networks(compose_cfg, [*architecture, f"model.shifts={shifts}", f"model.memory.init={init}"], population)
    inputs = torch.rand(population, batch, length, INPUTS, generator=torch.Generator().manual_seed(length), dtype=torch.float64)
    compare(nets, inputs, 1e-9)


@pytest.mark.parametrize("architecture", [["model=ntm"], ["model=ntm3"]])
def test_fused_float32_follows_the_reference(compose_cfg, architecture):
    nets = networks(compose_cfg, architecture, 2, dtype=torch.float32)
    compare(nets, torch.rand(2, 3, 12, INPUTS, generator=torch.Generator().manual_seed(0)), 1e-4)


def test_a_population_member_is_the_network_alone(compose_cfg):
    """Network k of a population of 3 computes what it computes in a population of one."""
    nets = networks(compose_cfg, ["model=ntm2"], 3)
    inputs = torch.rand(3, 2, 7, INPUTS, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    together = fused_forward(nets, inputs)
    for k, net in enumerate(nets):
        torch.testing.assert_close(together[k], fused_forward([net], inputs[k : k + 1])[0], rtol=0, atol=1e-15)


def test_training_with_the_fused_engine_follows_the_reference(compose_cfg, tmp_path, monkeypatch):
    """The same run (a structured memory, so mixing is trained too) with either engine:
    the same loss curve, validation and generalisation to float32 rounding."""
    import pandas as pd

    from ntm_repro.models import fused
    from ntm_repro.training.run import train

    calls = []
    apply = fused.FusedSequence.apply
    monkeypatch.setattr(fused.FusedSequence, "apply", lambda *args: calls.append(1) or apply(*args))
    for engine in ("reference", "fused"):
        assert train(compose_cfg("model=ntm1", f"model.engine={engine}"), tmp_path / engine)["status"] == "completed"
        assert bool(calls) == (engine == "fused")  # the fused run went through the engine, the other did not
    for name in ("metrics.csv", "generalisation.csv"):
        fused, reference = (pd.read_csv(tmp_path / engine / name).drop(columns="time_s", errors="ignore") for engine in ("fused", "reference"))
        pd.testing.assert_frame_equal(fused, reference, rtol=1e-4, atol=1e-5)


def _assert_without_numba(script: str, stdout: str, notice: str) -> None:
    """``script`` run in a fresh Python in which ``import numba`` fails exits 0, prints
    ``stdout``, and ``notice`` is the one line of its stderr that names what fell back."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", "import sys; sys.modules['numba'] = None\n" + script],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == stdout
    reason = "ModuleNotFoundError: import of numba halted; None in sys.modules"
    assert [line for line in done.stderr.splitlines() if reason in line] == [notice.format(reason=reason)]


def test_without_numba_the_model_falls_back_to_the_reference_in_one_line():
    """A process in which numba cannot be imported builds the default (fused) model on the
    reference engine and says so once, on one line."""
    _assert_without_numba(
        "from hydra import compose, initialize_config_module\n"
        "from ntm_repro.models.factory import build_model\n"
        "with initialize_config_module(config_module='ntm_repro.conf', version_base='1.3'):\n"
        "    cfg = compose('config')\n"
        "nets = [build_model(cfg.model, cfg.controller, 9, 8) for _ in range(2)]\n"
        "print(cfg.model.engine, [net.engine for net in nets])\n",
        "fused ['reference', 'reference']",
        "ntm-repro: model.engine=fused is unavailable here ({reason}); using the reference engine")



def test_batches_the_loops_cannot_take_run_on_the_reference(compose_cfg):
    """A fused model given a bf16 batch (as under CPU autocast) computes it with the
    reference's operations, not by failing inside numpy."""
    from ntm_repro.models import fused

    net = networks(compose_cfg, ["model=ntm"], 1, dtype=torch.bfloat16)[0]
    net.engine = "fused"
    calls = []
    original = fused.FusedSequence.apply
    fused.FusedSequence.apply = lambda *args: calls.append(1) or original(*args)
    try:
        out = net(torch.rand(2, 5, INPUTS, dtype=torch.bfloat16))
    finally:
        fused.FusedSequence.apply = original
    assert out.dtype == torch.bfloat16 and out.shape == (2, 5, OUTPUTS) and not calls


@settings(max_examples=40, deadline=None)
@given(values=st.lists(st.floats(-700, 700), min_size=1, max_size=300))
def test_the_vectorised_exp_is_exp_to_float_rounding(values):
    """The kernels' exp (Cody-Waite reduction, Taylor polynomial, exponent bits): within a few
    float64 ulps of math.exp, and within 2 float32 ulps in float32; sigmoid and tanh built on it."""
    from ntm_repro.models.fused_kernels import _exp_inplace, _sigmoid_inplace, _tanh_inplace

    x = np.array(values)
    buf = np.empty(8 * len(x), np.uint8)
    got = x.copy()
    _exp_inplace(got, len(x), buf)
    np.testing.assert_allclose(got, np.exp(x), rtol=1e-15, atol=0)
    small = np.clip(x, -80, 80).astype(np.float32)
    got32 = small.copy()
    _exp_inplace(got32, len(x), buf)
    np.testing.assert_allclose(got32, np.exp(small.astype(np.float64)), rtol=2 * np.finfo(np.float32).eps, atol=0)
    for inplace, exact in ((_sigmoid_inplace, lambda v: 1 / (1 + np.exp(-v))), (_tanh_inplace, np.tanh)):
        got = x.copy()
        inplace(got, 0, len(x), buf)
        np.testing.assert_allclose(got, exact(x), rtol=1e-14, atol=1e-15)


def test_the_vectorised_exp_clamps_to_normal_floats():
    from ntm_repro.models.fused_kernels import _exp_inplace

    x = np.array([-1e4, -745.0, 0.0, 1e-300, 1e4])
    _exp_inplace(x, len(x), np.empty(40, np.uint8))
    assert x[2] == 1.0 and x[3] == 1.0 and np.isfinite(x).all() and (x > 0).all()
    assert x[0] == x[1] == pytest.approx(np.exp(-708.0), rel=1e-15) and x[4] == pytest.approx(np.exp(709.0), rel=1e-15)


@settings(max_examples=40, deadline=None)
@given(exponents=st.lists(st.floats(-300, 300), min_size=1, max_size=300))
def test_the_vectorised_log_is_log_to_float_rounding(exponents):
    """The kernels' log (exponent and mantissa bits, atanh series) within a few float64 ulps
    of math.log from 1e-300 to 1e300, exact at 1 and at powers of two; float32 to rounding."""
    from ntm_repro.models.fused_kernels import _log_inplace

    x = 10.0 ** np.array(exponents)
    buf = np.empty(8 * len(x), np.uint8)
    got = x.copy()
    _log_inplace(got, len(x), buf)
    np.testing.assert_allclose(got, np.log(x), rtol=1e-15, atol=1e-15)
    small = np.clip(x, 1e-30, 1e30).astype(np.float32)
    got32 = small.copy()
    _log_inplace(got32, len(x), buf)
    np.testing.assert_allclose(got32, np.log(small.astype(np.float64)), rtol=2 * np.finfo(np.float32).eps, atol=1e-6)
    exact = np.array([1.0, 2.0, 0.5, 1024.0])
    _log_inplace(exact, 4, np.empty(32, np.uint8))
    assert exact.tolist() == [0.0, math.log(2.0), -math.log(2.0), 10 * math.log(2.0)]


def test_without_numba_the_lstm_baseline_steps_in_torch_in_one_line():
    """A process in which numba cannot be imported trains the LSTM baseline with its layers
    stepping in torch (the same outputs as stepping the cells), and says so once, on one line."""
    _assert_without_numba(
        "import torch\n"
        "from ntm_repro.models.controller import LSTMController\n"
        "from ntm_repro.models.lstm_baseline import LSTMBaseline\n"
        "net = LSTMBaseline(LSTMController(3, 4, 2, skip=True), 2).double()\n"
        "inputs = torch.rand(1, 5, 3, dtype=torch.float64)\n"
        "for _ in range(2):\n"
        "    net(inputs).sum().backward()\n"
        "print(torch.allclose(net(inputs), net._stepped(inputs), rtol=1e-12, atol=1e-12), all(p.grad is not None for p in net.parameters()))\n",
        "True True",
        "ntm-repro: the LSTM's compiled loops are unavailable here ({reason}); its layers step in torch")
