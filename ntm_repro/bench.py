"""Throughput benchmark: training sequences per second of a full optimisation step
(forward, backward, element-wise clipping, optimiser) on fixed-length episodes, evaluation
sequences per second, the memory autograd keeps for backward, and (``--lightning-steps``)
the overhead of running the same steps through Lightning's Trainer.

    python -m ntm_repro.bench                       # LSTM-NTM, copy length 20, batch 1 and 32
    python -m ntm_repro.bench --models ntm lstm --batch-sizes 1 8 32 --threads 1 2 --csv out.csv
    python -m ntm_repro.bench --models ntm ntm1 ntm2 ntm3 --task recall --level 6 --repeat 3
    python -m ntm_repro.bench --batch-sizes 32 --lightning-steps 60 --device cuda
    python -m ntm_repro.bench --seeds 1 5 --compile   # alone, and 5 seeds trained as one batch
    python -m ntm_repro.bench --engine reference fused --seeds 1 5   # both engines, and their ratio

"vs first" is each model's time per sequence relative to the first model listed (same
engine, batch size, threads and seeds), and "vs <engine>" each engine's speed-up over the
first engine listed: the ratios to compare on a noisy machine. "of peak" is the fraction
of the arithmetic limit a training step reaches: the matrix-product FLOPs of one training
sequence (the reference engine's forward and backward, counted by torch's
FlopCounterMode, with torch's fused LSTM layer counted as its gate products and in-place
batched products as the out-of-place ones; element-wise work is not counted) times the
sequences per second, over a float32 matrix product's FLOP/s measured in the same run. With ``--seeds K``
the K seeds train on the same fixed episode (a real seed batch pads each step to its
longest sequence; ``ntm-repro`` runs measure that).

Figures are printed, never asserted: timings belong here, not in tests.
"""

from __future__ import annotations

import argparse
import csv
import math
import statistics
import sys
import time

from functools import partial

import pytorch_lightning as pl
import torch
from hydra import compose, initialize_config_module
from omegaconf import DictConfig
from torch.utils.data import DataLoader, IterableDataset
from torch.utils.flop_counter import FlopCounterMode

from ntm_repro.models import lstm_sequence
from ntm_repro.tasks.base import Episode
from ntm_repro.training.metrics import cost_nats
from ntm_repro.training.instantiate import build_task
from ntm_repro.training.module import SequenceLearner
from ntm_repro.training.build import build_networks, trainer_arguments
from ntm_repro.training.run import collector_frozen, quiet_lightning
from ntm_repro.training.trainable import trainable_model


def load_config(model: str, task: str, controller: str, overrides: list[str]) -> DictConfig:
    with initialize_config_module(config_module="ntm_repro.conf", version_base="1.3"):
        return compose("config", overrides=[f"model={model}", f"task={task}", f"controller={controller}", *overrides])


class Bench:
    """One model (or ``seeds`` copies of it trained as a batch) on one fixed episode: timed
    training steps (forward, backward, element-wise clipping, Adam), evaluation passes, and
    the memory autograd keeps for backward. Rates count every seed's sequences."""

    def __init__(self, cfg: DictConfig, batch_size: int, level: str, device: str, compile_step: bool = False, seeds: int = 1):
        self.task = build_task(cfg.task)
        networks = [network.to(device) for network in build_networks(cfg, self.task, range(seeds))]
        self.model = trainable_model(networks, compile_step).to(device)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=1e-4, fused=True)
        episode = self.task.episode(batch_size, self.task.parse_level(level), torch.Generator().manual_seed(0))
        self.episode = Episode(*(tensor.to(device) for tensor in episode))
        # every seed on the same episode; the loss sees the seeds' sequences side by side
        self.inputs = self.episode.inputs.expand(seeds, *episode.inputs.shape)
        self.scored = Episode(*(tensor.repeat(seeds, *[1] * (tensor.dim() - 1)) for tensor in self.episode))
        self.seeds, self.batch_size, self.device = seeds, batch_size, torch.device(device)

    def loss(self) -> torch.Tensor:
        return cost_nats(self.model(self.inputs).reshape(self.scored.targets.shape[0], *self.scored.targets.shape[1:]), self.scored)

    def step(self) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        self.loss().backward()
        torch.nn.utils.clip_grad_value_(self.model.parameters(), 10.0)
        self.optimizer.step()

    @torch.no_grad()
    def forward(self) -> None:
        self.model(self.inputs)

    def rate(self, work, seconds: float, warmup: int = 3) -> float:
        """Sequences per second of ``work`` (called repeatedly for ``seconds``), the garbage
        collector as in training (:func:`~ntm_repro.training.run.collector_frozen`)."""
        for _ in range(warmup):
            work()
        self._sync()
        with collector_frozen():
            calls, start = 0, time.perf_counter()
            while time.perf_counter() - start < seconds:
                work()
                calls += 1
            self._sync()
            return calls * self.batch_size * self.seeds / (time.perf_counter() - start)

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize()

    def matmul_flops_per_sequence(self) -> float:
        """Matrix-product FLOPs of one training sequence's forward and backward (the
        model's own torch operations: count on a reference-engine model; an LSTM layer's
        compiled loops counted as the torch steps they replace)."""
        counter = FlopCounterMode(display=False, custom_mapping=UNCOUNTED_FLOPS)
        with counter, lstm_sequence.torch_steps():
            self.loss().backward()
        self.optimizer.zero_grad(set_to_none=True)
        return counter.get_total_flops() / (self.batch_size * self.seeds)

    def saved_for_backward_mb(self) -> float:
        """Megabytes of distinct tensors autograd saves for backward in one training forward
        pass: the memory that grows with sequence length and batch size."""
        seen: dict[tuple, int] = {}

        def pack(tensor: torch.Tensor) -> torch.Tensor:
            storage = tensor.untyped_storage()
            seen[(storage.data_ptr(), tensor.device)] = storage.nbytes()
            return tensor

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
            self.loss()
        return sum(seen.values()) / 2**20

    def lightning_rate(self, steps: int, trainer_cfg: DictConfig) -> float:
        """Sequences per second of the same steps through Lightning's Trainer and our
        module (its metric bookkeeping included), without logging or validation."""
        learner = SequenceLearner(
            self.model, partial(torch.optim.Adam, lr=1e-4, fused=True), [self.episode], self.batch_size,
            log_every_steps=steps + 1, val_every_steps=steps + 1,
        )
        learner.on_train_start = lambda: None  # no validation before the first step
        learner.on_train_end = lambda: None
        trainer = pl.Trainer(
            **trainer_arguments(trainer_cfg)[0], max_steps=steps, logger=False,
            enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
            num_sanity_val_steps=0, limit_val_batches=0,
        )
        clock = StepClock(warmup=3)
        trainer.callbacks.append(clock)
        with collector_frozen():
            trainer.fit(learner, train_dataloaders=DataLoader(Repeat([self.episode] * self.seeds), batch_size=None))
        self._sync()
        return (steps - clock.warmup) * self.batch_size * self.seeds / (time.perf_counter() - clock.start)


class StepClock(pl.Callback):
    """Starts the clock after ``warmup`` steps (Trainer set-up is not per-step overhead)."""

    def __init__(self, warmup: int):
        self.warmup, self.start = warmup, 0.0

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
        if trainer.global_step == self.warmup:
            self.start = time.perf_counter()


class Repeat(IterableDataset):
    """The same batch (one episode per seed), endlessly."""

    def __init__(self, batch: list[Episode]):
        self.batch = batch

    def __iter__(self):
        while True:
            yield self.batch


def _lstm_layer_flops(input_shape, w_ih_shape, w_hh_shape, *args, **kwargs) -> int:
    """Gate products of torch's fused LSTM layer (``aten::mkldnn_rnn_layer``, which
    FlopCounterMode does not count): ``2 (|W_ih| + |W_hh|)`` per time step and sequence."""
    steps_times_batch = math.prod(input_shape) // input_shape[-1]
    return 2 * steps_times_batch * (math.prod(w_ih_shape) + math.prod(w_hh_shape))


def _lstm_layer_backward_flops(input_shape, w_ih_shape, w_hh_shape, *args, **kwargs) -> int:
    """Backward of :func:`_lstm_layer_flops`: the gradients of the inputs and of the
    weights, two products of the forward's size."""
    return 2 * _lstm_layer_flops(input_shape, w_ih_shape, w_hh_shape)


def _in_place_baddbmm_flops(self_shape, a_shape, b_shape, *args, **kwargs) -> int:
    """``baddbmm_`` (which FlopCounterMode does not count): ``2 b m n k``, as ``baddbmm``."""
    batch, m, k = a_shape
    return 2 * batch * m * k * b_shape[-1]


UNCOUNTED_FLOPS = {torch.ops.aten.mkldnn_rnn_layer: _lstm_layer_flops,
                   torch.ops.aten.mkldnn_rnn_layer_backward: _lstm_layer_backward_flops,
                   torch.ops.aten.baddbmm_: _in_place_baddbmm_flops}


def matmul_peak_flops(seconds: float = 1.0, size: int = 512) -> float:
    """FLOP/s of a float32 ``size`` x ``size`` matrix product on this machine, now."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    for _ in range(3):
        a @ b
    calls, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        a @ b
        calls += 1
    return calls * 2 * size**3 / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m ntm_repro.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["ntm"])
    parser.add_argument("--task", default="copy")
    parser.add_argument("--controller", default="lstm")
    parser.add_argument("--level", default="20", help="task level, e.g. copy length 20 or repeat copy 10x5 (default 20)")
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[1, 32])
    parser.add_argument("--threads", nargs="+", type=int, default=[1])
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--engine", nargs="+", choices=["reference", "fused"], default=["fused"],
                        help="NTM engines to time (model.engine), e.g. reference fused")
    parser.add_argument("--seconds", type=float, default=5.0, help="timed seconds per configuration")
    parser.add_argument("--compile", action="store_true", help="torch.compile the NTM's time step (NTM models only)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[1], help="seeds trained as one batch, e.g. 1 5 (rates count every seed's sequences)")
    parser.add_argument("--lightning-steps", type=int, default=0, help="also time this many steps through the Trainer")
    parser.add_argument("--repeat", type=int, default=1, help="timed rounds per configuration (median reported)")
    parser.add_argument("--csv", help="also write the figures to this CSV file")
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides, e.g. model.memory.locations=64")
    args = parser.parse_args(argv)
    if min(args.seeds) < 1:
        parser.error(f"--seeds {min(args.seeds)}: give positive numbers")
    if 0 < args.lightning_steps <= 3:
        parser.error("--lightning-steps: give more than 3 (the first 3 steps are warm-up)")
    quiet_lightning()

    configs = [(m, e, t, b, k) for m in args.models for e in args.engine for k in args.seeds for t in args.threads for b in args.batch_sizes]
    cfgs = {(model, engine): load_config(model, args.task, args.controller, [*args.overrides, f"++model.engine={engine}"])
            for model in args.models for engine in [*args.engine, "reference"]}
    figures: dict[tuple, dict[str, list[float]]] = {c: {} for c in configs}
    flops = {}  # matrix-product FLOPs per training sequence, counted on the reference engine
    peak = []
    for _ in range(args.repeat):  # round robin, so that a noisy machine disturbs every figure alike
        peak.append(matmul_peak_flops())
        for model, engine, threads, batch, seeds in configs:
            torch.set_num_threads(threads)
            if (model, batch, seeds) not in flops:
                flops[(model, batch, seeds)] = Bench(cfgs[(model, "reference")], batch, args.level, args.device, seeds=seeds).matmul_flops_per_sequence()
            start = time.perf_counter()
            bench = Bench(cfgs[(model, engine)], batch, args.level, args.device, compile_step=args.compile and engine == "reference", seeds=seeds)
            measured = {"train": bench.rate(bench.step, args.seconds)}
            if args.compile:
                print(f"{model} batch {batch} seeds {seeds}: compile and timing {time.perf_counter() - start:.1f} s", file=sys.stderr)
            measured["eval"] = bench.rate(bench.forward, args.seconds)
            measured["saved_mb"] = bench.saved_for_backward_mb()
            if args.lightning_steps:
                measured["lightning"] = bench.lightning_rate(args.lightning_steps, cfgs[(model, engine)].trainer)
            for name, value in measured.items():
                figures[(model, engine, threads, batch, seeds)].setdefault(name, []).append(value)

    peak_flops = statistics.median(peak)
    print(f"float32 matrix product (512 x 512): {peak_flops / 1e9:.1f} GFLOP/s on {torch.get_num_threads()} thread(s)")
    rows = []
    base = args.engine[0]
    versus = f"vs {base[:3]}"
    header = (f"{'model':<12}{'engine':<11}{'task':<10}{'level':>6}{'batch':>6}{'threads':>8}{'seeds':>6}{'train seq/s':>13}{'vs first':>9}"
              f"{versus:>8}{'of peak':>9}{'eval seq/s':>12}{'saved MB':>10}")
    print(header + (f"{'Lightning':>11}" if args.lightning_steps else ""))
    for model, engine, threads, batch, seeds in configs:
        median = {name: statistics.median(values) for name, values in figures[(model, engine, threads, batch, seeds)].items()}
        first = statistics.median(figures[(args.models[0], engine, threads, batch, seeds)]["train"])
        speedup = median["train"] / statistics.median(figures[(model, base, threads, batch, seeds)]["train"])
        of_peak = flops[(model, batch, seeds)] * median["train"] / peak_flops
        row = dict(model=model, engine=engine, task=args.task, level=args.level, batch=batch, threads=threads, device=args.device,
                   compiled=args.compile, seeds=seeds, train_seq_per_s=round(median["train"], 2), time_vs_first_model=round(first / median["train"], 3),
                   speedup_vs_first_engine=round(speedup, 3), matmul_flops_per_seq=round(flops[(model, batch, seeds)]),
                   fraction_of_matmul_peak=round(of_peak, 4), matmul_peak_gflops=round(peak_flops / 1e9, 1),
                   eval_seq_per_s=round(median["eval"], 2), saved_for_backward_mb=round(median["saved_mb"], 2))
        line = (f"{model:<12}{engine:<11}{args.task:<10}{args.level:>6}{batch:>6}{threads:>8}{seeds:>6}{median['train']:>13.1f}{first / median['train']:>8.2f}x"
                f"{speedup:>7.2f}x{of_peak:>9.1%}{median['eval']:>12.1f}{median['saved_mb']:>10.1f}")
        if args.lightning_steps:
            overhead = 1 - median["lightning"] / median["train"]
            row.update(lightning_seq_per_s=round(median["lightning"], 2), lightning_overhead=round(overhead, 3))
            line += f"{overhead:>10.0%}"
        rows.append(row)
        print(line)
    if args.csv:
        with open(args.csv, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        print(f"wrote {args.csv}", file=sys.stderr)


if __name__ == "__main__":
    main()
