"""What trains: the seeds' networks as one :class:`~ntm_repro.models.population.Population`,
its time step compiled with ``torch.compile`` when ``train.compile=true`` (checked here:
an NTM, and a C++ compiler on a CPU machine)."""

from __future__ import annotations

import shutil

import torch

from ntm_repro.errors import ConfigError
from ntm_repro.models.ntm import NTM
from ntm_repro.models.population import Population

#: Compilers torch.compile's CPU backend (Inductor) can build with.
CXX_COMPILERS = ("g++", "c++", "clang++")


def check_compile(model: torch.nn.Module) -> None:
    """``train.compile=true`` compiles the NTM's per-time-step function (``torch.compile``).
    Its shapes do not depend on the sequence length, so variable lengths never recompile;
    each batch size compiles once (tens of seconds), which pays off on long runs (about 2.3x
    at batch 1, 2x at batch 32). Checked here: an NTM, and a C++ compiler on a CPU machine."""
    if not isinstance(model, NTM):
        raise ConfigError("train.compile=true: only NTM models (model.type=ntm) have a compiled time step")
    if not torch.cuda.is_available() and not any(shutil.which(cxx) for cxx in CXX_COMPILERS):
        raise ConfigError(
            "train.compile=true: torch.compile needs a C++ compiler on the CPU (none of "
            f"{', '.join(CXX_COMPILERS)} is on PATH); install one (e.g. apt install g++) or set train.compile=false"
        )
    # A fresh start for each model: compiled entries of earlier models in this process (the
    # jobs before it in a sweep, the configurations before it in a benchmark) would otherwise
    # use up Dynamo's recompile limit and silently leave this one running eagerly.
    torch.compiler.reset()


def trainable_model(networks: list[torch.nn.Module], compiled: bool) -> Population:
    """What trains: the seeds' networks as a :class:`Population`, its time step compiled
    when ``compiled`` (checked first: :func:`check_compile`)."""
    if compiled:
        check_compile(networks[0])
    return Population(networks, compile_step=compiled)
