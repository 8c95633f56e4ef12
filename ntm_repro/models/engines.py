"""Which engine runs an NTM's time loop: ``reference`` (torch operations per step, the
oracle; any device and dtype) or ``fused`` (the whole sequence in the numba-compiled loops
of :mod:`ntm_repro.models.fused`; CPU, float32 and float64).

``fused`` is the default. Where numba is missing or cannot compile, the model is built on
the reference engine and one line says so; where a batch is on a GPU or in another dtype
(e.g. bf16 autocast), that batch runs on the reference engine (same parameters, same
equations)."""

from __future__ import annotations

import functools
import logging

import torch

from ntm_repro.console import say

ENGINES = ("reference", "fused")
FUSED_DTYPES = (torch.float32, torch.float64)


@functools.cache
def fused_unavailable() -> str | None:
    """Why the fused engine cannot run in this process, or None when it can."""
    try:
        from ntm_repro.models import fused_kernels  # noqa: F401  (imports numba, loads or compiles the loops)
    except Exception as error:  # ImportError without numba; numba's own errors on a broken install
        return f"{type(error).__name__}: {error}".splitlines()[0]
    return None


@functools.cache
def resolve_engine(requested: str) -> str:
    """The engine a model asking for ``requested`` gets: ``fused`` falls back to the
    reference, with one line on stderr (once per process), where it cannot run."""
    if requested == "fused" and (reason := fused_unavailable()):
        say(f"ntm-repro: model.engine=fused is unavailable here ({reason}); using the reference engine", logging.WARNING)
        return "reference"
    return requested


def fused_takes(inputs: torch.Tensor) -> bool:
    """Whether the fused loops can run a batch ``inputs`` (on the CPU, float32 or float64);
    a fused model's other batches run on the reference operations."""
    return inputs.device.type == "cpu" and inputs.dtype in FUSED_DTYPES
