"""Graves' RMSProp (ntm_repro.training.optim.GravesRMSprop) against the equations of its
docstring (Graves 2013, eqs. 38-41), worked by hand."""

from __future__ import annotations

import math

import pytest
import torch

from ntm_repro.training.optim import GravesRMSprop


def run(optimizer_factory, grads, start=1.0):
    """Apply ``grads`` one step each to a scalar parameter; return its value after each step."""
    p = torch.nn.Parameter(torch.tensor([start], dtype=torch.float64))
    opt = optimizer_factory([p])
    values = []
    for g in grads:
        opt.zero_grad()
        p.grad = torch.tensor([g], dtype=torch.float64)
        opt.step()
        values.append(p.item())
    return values, opt, p


def test_two_steps_by_hand():
    # lr = 0.1, decay 0.95, momentum 0.9, eps 1e-4; theta_0 = 1; grads g1 = 2, g2 = -1.
    # step 1:
    #   n    = 0.95 * 0 + 0.05 * 2^2        = 0.2
    #   gbar = 0.95 * 0 + 0.05 * 2          = 0.1
    #   sqrt(n - gbar^2 + eps) = sqrt(0.2 - 0.01 + 0.0001) = sqrt(0.1901) = 0.43600459
    #   D    = 0.9 * 0 - 0.1 * 2 / 0.43600459 = -0.45871077
    #   theta = 1 - 0.45871077              = 0.54128923
    # step 2:
    #   n    = 0.95 * 0.2 + 0.05 * 1        = 0.24
    #   gbar = 0.95 * 0.1 + 0.05 * (-1)     = 0.045
    #   sqrt(0.24 - 0.002025 + 0.0001) = sqrt(0.238075) = 0.48792930
    #   D    = 0.9 * (-0.45871077) + 0.1 / 0.48792930 = -0.41283969 + 0.20494772 = -0.20789197
    #   theta = 0.54128923 - 0.20789197     = 0.33339726
    values, opt, p = run(lambda ps: GravesRMSprop(ps, lr=0.1, decay=0.95, momentum=0.9, eps=1e-4), [2.0, -1.0])
    d1 = -0.1 * 2 / math.sqrt(0.2 - 0.1**2 + 1e-4)
    d2 = 0.9 * d1 + 0.1 / math.sqrt(0.24 - 0.045**2 + 1e-4)
    assert values[0] == pytest.approx(1 + d1, abs=1e-12)
    assert values[1] == pytest.approx(1 + d1 + d2, abs=1e-12)
    assert values == pytest.approx([0.54128923, 0.33339726], abs=1e-8)
    state = opt.state[p]
    assert state["square_avg"].item() == pytest.approx(0.24, abs=1e-15)
    assert state["grad_avg"].item() == pytest.approx(0.045, abs=1e-15)
    assert state["delta"].item() == pytest.approx(d2, abs=1e-12)


def test_defaults_are_the_papers():
    opt = GravesRMSprop([torch.nn.Parameter(torch.zeros(1))])
    group = opt.param_groups[0]
    assert (group["lr"], group["decay"], group["momentum"], group["eps"]) == (1e-4, 0.95, 0.9, 1e-4)


def test_elementwise_on_a_vector():
    # Each element follows its own scalar recursion: a vector of the two hand cases above.
    p = torch.nn.Parameter(torch.tensor([1.0, 1.0], dtype=torch.float64))
    opt = GravesRMSprop([p], lr=0.1)
    for g in ([2.0, -1.0], [-1.0, 2.0]):
        p.grad = torch.tensor(g, dtype=torch.float64)
        opt.step()
    a, _, _ = run(lambda ps: GravesRMSprop(ps, lr=0.1), [2.0, -1.0])
    b, _, _ = run(lambda ps: GravesRMSprop(ps, lr=0.1), [-1.0, 2.0])
    assert p.tolist() == pytest.approx([a[-1], b[-1]], abs=1e-12)


def test_parameters_without_gradient_are_untouched():
    used = torch.nn.Parameter(torch.ones(2))
    unused = torch.nn.Parameter(torch.ones(2))
    opt = GravesRMSprop([used, unused], lr=0.1)
    used.grad = torch.ones(2)
    opt.step()
    assert torch.equal(unused.detach(), torch.ones(2))
    assert not torch.equal(used.detach(), torch.ones(2))


def test_differs_from_torch_centered_rmsprop():
    # torch.optim.RMSprop(centered=True) divides by sqrt(n - gbar^2) + eps (eps outside
    # the root); Graves by sqrt(n - gbar^2 + eps). Step 1 of torch, same gradient 2:
    #   sqrt(0.19) + 1e-4 = 0.43598899 -> D = -0.2 / 0.43598899 = -0.45872719 (vs -0.45871077)
    grads = [2.0, -1.0, 0.5]
    graves, _, _ = run(lambda ps: GravesRMSprop(ps, lr=0.1, decay=0.95, momentum=0.9, eps=1e-4), grads)
    torch_centered, _, _ = run(
        lambda ps: torch.optim.RMSprop(ps, lr=0.1, alpha=0.95, momentum=0.9, eps=1e-4, centered=True), grads
    )
    assert torch_centered[0] == pytest.approx(1 - 0.2 / (math.sqrt(0.19) + 1e-4), abs=1e-12)
    for ours, theirs in zip(graves, torch_centered):
        assert abs(ours - theirs) > 1e-6


def test_same_as_torch_centered_rmsprop_when_eps_vanishes():
    # With a negligible eps the only difference (its placement) disappears: the rest of
    # the rule (centred second moment, momentum on the scaled gradient) is torch's.
    grads = [2.0, -1.0, 0.5, 3.0]
    graves, _, _ = run(lambda ps: GravesRMSprop(ps, lr=0.1, decay=0.95, momentum=0.9, eps=1e-14), grads)
    torch_centered, _, _ = run(
        lambda ps: torch.optim.RMSprop(ps, lr=0.1, alpha=0.95, momentum=0.9, eps=1e-14, centered=True), grads
    )
    assert graves == pytest.approx(torch_centered, abs=1e-9)


def test_differs_from_torch_uncentred_rmsprop():
    grads = [2.0, -1.0]
    graves, _, _ = run(lambda ps: GravesRMSprop(ps, lr=0.1, eps=1e-14), grads)
    plain, _, _ = run(lambda ps: torch.optim.RMSprop(ps, lr=0.1, alpha=0.95, momentum=0.9, eps=1e-14), grads)
    # uncentred step 1: sqrt(0.2) instead of sqrt(0.19): -0.2 / 0.4472136 = -0.4472136
    assert plain[0] == pytest.approx(1 - 0.2 / math.sqrt(0.2), abs=1e-12)
    assert abs(graves[0] - plain[0]) > 1e-3


@pytest.mark.parametrize(
    "kwargs",
    [{"lr": 0.0}, {"lr": -1.0}, {"decay": 1.0}, {"decay": -0.1}, {"momentum": 1.0}, {"eps": 0.0},
     {"lr": math.nan}, {"lr": math.inf}, {"decay": math.nan}, {"momentum": math.nan}, {"eps": math.nan}, {"eps": math.inf}],
)
def test_bad_hyperparameters_raise(kwargs):
    with pytest.raises(ValueError):
        GravesRMSprop([torch.nn.Parameter(torch.zeros(1))], **kwargs)
