"""What a run's attention trace (the episode traced at its first test level) says about the
algorithm it learned: Graves et al.'s copy algorithm (Fig. 6: writes move one location per
step, reads start where writes started and move the same way, weightings sharp) and
priority sort's writes placed by priority (Fig. 17)."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pandas as pd

from ntm_repro.claims import TRACE, TRACE_STATISTICS


def level_order(path: str) -> tuple[int, ...]:
    """A trace file's level as numbers, for ordering: ``length_x_repeats_10x20.npz`` -> (10, 20)."""
    return tuple(int(n) for n in re.findall(r"\d+", Path(path).stem.rsplit("_", 1)[-1]))


def _moves_one(locations: np.ndarray, size: int) -> float:
    """The share of steps that move exactly one location on, in the steps' majority direction
    (circular memory of ``size`` locations); NaN with fewer than two steps."""
    if len(locations) < 2:
        return math.nan
    steps = (np.diff(locations) + size) % size
    return float(max(np.mean(steps == 1), np.mean(steps == size - 1)))


def shortest_arc(locations: np.ndarray, size: int) -> tuple[int, int]:
    """The shortest arc of a circle of ``size`` locations that holds every one of
    ``locations`` (the circle cut at the largest gap between them): its first location and
    its length."""
    used = np.unique(locations)
    gaps = np.diff(np.concatenate([used, [used[0] + size]]))  # from each used location to the next, around
    after = int(np.argmax(gaps))  # the largest gap follows used[after]
    return int(used[(after + 1) % len(used)]), size - int(gaps[after]) + 1


def unwrap(locations: np.ndarray, size: int) -> np.ndarray:
    """Locations on a circle laid out on a line cut at the largest gap between used ones."""
    return (locations - shortest_arc(locations, size)[0]) % size


def input_steps(mask: np.ndarray) -> np.ndarray:
    """The steps that present the input: those before the delimiter step that precedes the
    first scored one (copy, priority sort)."""
    scored = np.flatnonzero(mask)
    return np.arange(max(int(scored[0]) - 1, 0) if len(scored) else max(len(mask) - 1, 0))


def normalised_entropy(weightings: np.ndarray) -> float:
    """The mean over rows of -sum w log w / log N (N the row's length): 0 for one location,
    1 for a uniform weighting (Nielsen's failure mode); NaN for no rows."""
    if not len(weightings) or weightings.shape[-1] < 2:
        return math.nan
    w = np.clip(weightings / weightings.sum(-1, keepdims=True), 1e-300, None)
    return float((-(w * np.log(w)).sum(-1) / math.log(weightings.shape[-1])).mean())


def r_squared(x: np.ndarray, y: np.ndarray) -> float:
    """R^2 of the least-squares line of ``y`` on ``x`` (NaN if either is constant)."""
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return math.nan
    return float(np.corrcoef(x, y)[0, 1] ** 2)


def trace_statistics(path: str) -> dict[str, float]:
    """The trace statistics of one ``attention/*.npz``; NaN where the trace has no heads (an
    LSTM) or the statistic does not apply (priorities outside priority sort)."""
    with np.load(path) as npz:
        arrays = {key: npz[key] for key in npz.files}
    result = dict.fromkeys(TRACE_STATISTICS, math.nan)
    if "write_weights" not in arrays or not arrays["write_weights"].size:
        return result
    write, read, mask = arrays["write_weights"], arrays["read_weights"], arrays["mask"].astype(bool)
    size = write.shape[-1]
    scored, inputs = np.flatnonzero(mask), input_steps(mask)
    writes, reads = write[:, 0].argmax(-1), read[:, 0].argmax(-1)
    result["write_moves_one"] = _moves_one(writes[inputs], size)
    result["read_moves_one"] = _moves_one(reads[scored], size)
    if len(inputs) and len(scored):
        distance = abs(int(reads[scored[0]]) - int(writes[inputs[0]])) % size
        result["read_starts_at_write_start"] = float(min(distance, size - distance) <= 1)
    # sharpness where each head does its work: an idle head's weighting may spread
    working = np.concatenate([write[inputs, 0], read[scored, 0]])
    result["max_weight"] = float(working.max(-1).mean())
    result["weight_entropy"] = normalised_entropy(working)
    writes_by_priority = priority_writes(arrays)
    if writes_by_priority is not None:
        result["write_priority_r2"] = r_squared(*writes_by_priority)
    return result


def priority_writes(arrays: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray] | None:
    """Priority sort (Graves et al. Fig. 17): each input vector's priority and the location
    head 1 writes it to (its most weighted, the circle unwrapped); None for other tasks."""
    if str(arrays.get("task")) != "priority_sort" or "write_weights" not in arrays:
        return None
    inputs = input_steps(arrays["mask"].astype(bool))
    if len(inputs) < 3:
        return None
    write = arrays["write_weights"]
    priority = arrays["inputs"][inputs, -2]  # the priority channel, before the delimiter's
    return priority, unwrap(write[inputs, 0].argmax(-1), write.shape[-1]).astype(float)


def per_run_traces(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per run with traces: the statistics of its first traced level's episode, as
    columns ``trace.<statistic>``."""
    rows = [{"run": run.run, **{TRACE + k: v for k, v in trace_statistics(min(run.attention, key=level_order)).items()}}
            for run in runs.itertuples() if len(run.attention)]
    return pd.DataFrame(rows, columns=["run", *(TRACE + name for name in TRACE_STATISTICS)])
