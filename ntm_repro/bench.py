"""Training throughput benchmark: sequences per second of a full optimisation step
(forward, backward, element-wise clipping, optimiser) on fixed-length episodes.

    python -m ntm_repro.bench                       # LSTM-NTM, copy length 20, batch 1 and 32
    python -m ntm_repro.bench --models ntm lstm --batch-sizes 1 8 32 --threads 1 2 --csv out.csv
    python -m ntm_repro.bench --models ntm ntm1 ntm2 ntm3 --task recall --level 6 --repeat 3

"vs first" is each model's time per sequence relative to the first model listed (same
batch size and threads), the ratio to compare on a noisy machine.

Figures are printed, never asserted: timings belong here, not in tests.
"""

from __future__ import annotations

import argparse
import csv
import statistics
import sys
import time

import torch
from hydra import compose, initialize_config_module
from omegaconf import DictConfig

from ntm_repro.models.factory import build_model
from ntm_repro.training.metrics import cost_nats
from ntm_repro.training.instantiate import build_task
from ntm_repro.training.run import compile_time_step


def load_config(model: str, task: str, controller: str, overrides: list[str]) -> DictConfig:
    with initialize_config_module(config_module="ntm_repro.conf", version_base="1.3"):
        return compose("config", overrides=[f"model={model}", f"task={task}", f"controller={controller}", *overrides])


def train_rate(cfg: DictConfig, batch_size: int, level: int, seconds: float, warmup: int = 3, compile_step: bool = False) -> float:
    """Training sequences per second at one task level (e.g. copy length). With
    ``compile_step`` the NTM's per-time-step function goes through ``torch.compile`` (its
    shapes do not depend on the sequence length, so lengths never recompile); the compile
    time is printed, not counted."""
    torch.manual_seed(0)
    task = build_task(cfg.task)
    model = build_model(cfg.model, cfg.controller, task.input_size, task.output_size)
    if compile_step:
        compile_time_step(model)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4, foreach=True)
    episode = task.episode(batch_size, level, torch.Generator().manual_seed(0))

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        cost_nats(model(episode.inputs), episode).backward()
        torch.nn.utils.clip_grad_value_(model.parameters(), 10.0)
        optimizer.step()

    start = time.perf_counter()
    for _ in range(warmup):
        step()
    if compile_step:
        print(f"compile and {warmup} warm-up steps: {time.perf_counter() - start:.1f} s", file=sys.stderr)
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        step()
        steps += 1
    return steps * batch_size / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m ntm_repro.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["ntm"])
    parser.add_argument("--task", default="copy")
    parser.add_argument("--controller", default="lstm")
    parser.add_argument("--level", type=int, default=20, help="task level, e.g. copy length (default 20)")
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[1, 32])
    parser.add_argument("--threads", nargs="+", type=int, default=[1])
    parser.add_argument("--seconds", type=float, default=5.0, help="timed seconds per configuration")
    parser.add_argument("--compile", action="store_true", help="torch.compile the NTM's time step (NTM models only)")
    parser.add_argument("--repeat", type=int, default=1, help="timed rounds per configuration (median reported)")
    parser.add_argument("--csv", help="also write the figures to this CSV file")
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides, e.g. model.memory.locations=64")
    args = parser.parse_args(argv)

    configs = [(model, threads, batch) for model in args.models for threads in args.threads for batch in args.batch_sizes]
    cfgs = {model: load_config(model, args.task, args.controller, args.overrides) for model in args.models}
    rates: dict[tuple, list[float]] = {c: [] for c in configs}
    for _ in range(args.repeat):  # round robin, so that a noisy machine disturbs every figure alike
        for model, threads, batch in configs:
            torch.set_num_threads(threads)
            rates[(model, threads, batch)].append(train_rate(cfgs[model], batch, args.level, args.seconds, compile_step=args.compile))
    rows = []
    print(f"{'model':<12}{'task':<8}{'level':>6}{'batch':>7}{'threads':>9}{'train seq/s':>14}{'vs first':>10}")
    for model, threads, batch in configs:
        rate = statistics.median(rates[(model, threads, batch)])
        first = statistics.median(rates[(args.models[0], threads, batch)])
        rows.append(dict(model=model, task=args.task, level=args.level, batch=batch, threads=threads,
                         train_seq_per_s=round(rate, 2), time_vs_first_model=round(first / rate, 3)))
        print(f"{model:<12}{args.task:<8}{args.level:>6}{batch:>7}{threads:>9}{rate:>14.1f}{first / rate:>9.2f}x")
    if args.csv:
        with open(args.csv, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        print(f"wrote {args.csv}", file=sys.stderr)


if __name__ == "__main__":
    main()
