"""Graves' RMSProp (Graves 2013, "Generating sequences with recurrent neural networks",
eqs. 38-41), the optimizer of the NTM paper; torch's RMSprop is a different rule (eps
outside the square root, and uncentred unless asked)."""

from __future__ import annotations

import math

import torch


class GravesRMSprop(torch.optim.Optimizer):
    """Centred RMSProp with momentum, per parameter element:

        n    = decay n    + (1 - decay) g^2
        gbar = decay gbar + (1 - decay) g
        D    = momentum D - lr g / sqrt(n - gbar^2 + eps)
        theta += D

    with the paper's decay 0.95, momentum 0.9, eps 1e-4.
    """

    def __init__(self, params, lr: float = 1e-4, decay: float = 0.95, momentum: float = 0.9, eps: float = 1e-4):
        if not (0 < lr < math.inf and 0 <= decay < 1 and 0 <= momentum < 1 and 0 < eps < math.inf):  # NaN fails every test
            raise ValueError(f"GravesRMSprop: need lr > 0, 0 <= decay < 1, 0 <= momentum < 1, eps > 0 (got {lr}, {decay}, {momentum}, {eps})")
        super().__init__(params, dict(lr=lr, decay=decay, momentum=momentum, eps=eps))

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            grads = [p.grad for p in params]
            for p in params:
                if not self.state[p]:
                    self.state[p] = {name: torch.zeros_like(p) for name in ("square_avg", "grad_avg", "delta")}
            square_avg = [self.state[p]["square_avg"] for p in params]
            grad_avg = [self.state[p]["grad_avg"] for p in params]
            delta = [self.state[p]["delta"] for p in params]
            decay = group["decay"]
            torch._foreach_mul_(square_avg, decay)
            torch._foreach_addcmul_(square_avg, grads, grads, value=1 - decay)
            torch._foreach_lerp_(grad_avg, grads, 1 - decay)
            denom = torch._foreach_addcmul(square_avg, grad_avg, grad_avg, value=-1)
            torch._foreach_add_(denom, group["eps"])
            torch._foreach_sqrt_(denom)
            torch._foreach_mul_(delta, group["momentum"])
            torch._foreach_addcdiv_(delta, grads, denom, value=-group["lr"])
            torch._foreach_add_(params, delta)
        return loss
