"""``ntm-repro-eval``: evaluate trained runs again, without retraining, from each run
folder's ``config.yaml`` and ``last.ckpt``.

    ntm-repro-eval multirun/<sweep>/0_ntm_copy_s0 --levels 10 20 40 80 --trace 10 40
    ntm-repro-eval multirun/<sweep>/*                # the config's test levels again
    ntm-repro-eval multirun/<sweep>/* --along        # every checkpoint kept along the run

Rows of generalisation.csv at the given levels are replaced (others kept); traces go to
``attention/<level name>_<level>.npz``. With ``--along``, each checkpoint the run kept
(``train.keep_checkpoints``) is evaluated at the levels instead, into
``generalisation_along.csv`` (a row per checkpoint and level, ``sequences_trained`` first),
and traced on one held-out episode of the first level, into
``attention_along/sequences_<N>.npz`` (its outputs through training: the report draws
them). Levels are lengths or item counts, or ``LENGTHxREPEATS`` for repeat copy.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import torch

from ntm_repro.errors import ConfigError
from ntm_repro.tasks.base import Task


def checked_levels(texts: list[str], task: Task) -> list[Any]:
    """Parsed levels, each tried on one episode so an impossible one fails here, in one line."""
    levels = [task.parse_level(text) for text in texts]
    for level, text in zip(levels, texts):
        try:
            task.episode(1, level, torch.Generator().manual_seed(0))
        except Exception as error:
            raise ConfigError(f"level {text}: task {task.name} cannot make an episode of it ({error})") from None
    return levels


def evaluate_along(run_dir: Path, levels: list[str] | None, sequences: int | None) -> str:
    """Every kept checkpoint of the run at the test levels, into generalisation_along.csv,
    and its trace of one episode of the first level, into attention_along/."""
    from ntm_repro.models.population import Population
    from ntm_repro.training.evaluation import (
        generalisation_rows, kept_checkpoints, load_trained, load_weights, write_attention,
    )
    from ntm_repro.training.run_folder import ALONG, ATTENTION_ALONG, KEPT, along_trace_path, write_generalisation

    kept = kept_checkpoints(run_dir)
    if not kept:
        raise ConfigError(f"{run_dir}: no checkpoints kept in {KEPT}/ (train with train.keep_checkpoints=N)")
    cfg, task, model = load_trained(run_dir, checkpoint=kept[0][1])
    test_levels = checked_levels(levels, task) if levels else task.test_levels
    traced = test_levels[0] if levels else task.trace_level  # the level the run's own trace is at
    rows = []
    for trained, path in kept:
        load_weights(model, path, run_dir / "config.yaml")
        (found,) = generalisation_rows(Population([model]), task, test_levels, sequences or int(cfg.train.test_batch_size))
        rows += [{"sequences_trained": trained, **row} for row in found]
        write_attention(model, task, traced, along_trace_path(run_dir, trained))
    write_generalisation(run_dir, rows, ALONG)
    return f"{run_dir}: {len(kept)} kept checkpoints evaluated into {ALONG} and traced into {ATTENTION_ALONG}/"


def evaluate_run(run_dir: Path, levels: list[str] | None, traces: list[str] | None, sequences: int | None) -> str:
    from ntm_repro.models.population import Population
    from ntm_repro.training.evaluation import (
        attention_path, generalisation_rows, load_trained, merge_generalisation, write_attention,
    )

    cfg, task, model = load_trained(run_dir)
    per_level = sequences or int(cfg.train.test_batch_size)
    test_levels = checked_levels(levels, task) if levels else task.test_levels
    trace_levels = checked_levels(traces, task) if traces else ([] if levels else [task.trace_level])
    (rows,) = generalisation_rows(Population([model]), task, test_levels, per_level)
    merge_generalisation(run_dir, rows)
    written = [write_attention(model, task, level, attention_path(run_dir, task, level)).name for level in trace_levels]
    labels = ", ".join(str(task.level_label(level)) for level in test_levels)
    return f"{run_dir}: {task.level_name} {labels} evaluated on {per_level} sequences each" + (
        f"; traces {', '.join(written)}" if written else ""
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ntm-repro-eval", description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run folders (each with config.yaml and last.ckpt)")
    parser.add_argument("--levels", nargs="+", help="test levels (default: the config's test levels)")
    parser.add_argument("--trace", nargs="+", help="levels to record attention at (default: the first test level)")
    parser.add_argument("--sequences", type=int, help="held-out sequences per level (default: train.test_batch_size)")
    parser.add_argument("--along", action="store_true",
                        help="evaluate every checkpoint kept along the run instead (into generalisation_along.csv)")
    args = parser.parse_args(argv)
    if args.sequences is not None and args.sequences < 1:
        parser.error(f"--sequences {args.sequences}: give a positive number")
    if args.along and args.trace:
        parser.error("--along evaluates kept checkpoints; --trace records the last one's attention: give one of them")
    failures = 0
    for run_dir in args.runs:
        try:
            done = (evaluate_along(run_dir, args.levels, args.sequences) if args.along
                    else evaluate_run(run_dir, args.levels, args.trace, args.sequences))
            print(done, file=sys.stderr)
        except ConfigError as error:
            print(f"ntm-repro-eval: error: {error}", file=sys.stderr)
            failures += 1
    return 2 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
