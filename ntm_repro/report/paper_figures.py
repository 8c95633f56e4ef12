"""Figures shaped like the papers': every seed visible. The share of seeds below the
criterion against sequences; each run's training loss as its own panel with its loss spikes
marked (Zhang et al. Fig. 2); targets and outputs at every traced level, model beside model
(Graves et al. Figs. 4-5); our curves beside the numbers a ledger claim reads off a
paper's figure (Graves et al. Figs. 3, 7, 10, 11, 13, 18)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from ntm_repro.report.figures import (
    COST, KILO, PAGE, SEQUENCES, THOUSANDS, TASKS_PER_PAGE, Pages, _legend, _log_y, _page_name, chunks,
)
from ntm_repro.report.stats import share_below
from ntm_repro.report.traces import level_order, priority_writes, r_squared

SEEDS_PER_ROW = 10  # training-loss panels per model on a page
SPIKE = {"marker": "v", "color": "crimson", "ms": 4, "ls": "none"}
PAPER = {"marker": "D", "ms": 8, "mfc": "none", "mew": 1.8, "ls": "none"}


def holding_figures(metrics: pd.DataFrame, criterion: float, colours: dict[str, tuple]) -> Pages:
    """The share of seeds below the criterion at each validation point (a seed that loses
    the task drops out) and the share holding below it from there to the end."""
    val = metrics[(metrics["split"] == "val") & metrics["bit_errors"].notna()]
    shares = share_below(val, criterion)
    for index, tasks in enumerate(chunks(list(dict.fromkeys(shares["task"])), TASKS_PER_PAGE)):
        fig, axes = plt.subplots(2, len(tasks), figsize=PAGE, layout="constrained", squeeze=False, sharex="col", sharey=True)
        for column, task in enumerate(tasks):
            data = shares[shares["task"] == task]
            for label, group in data.groupby("label", sort=False):
                for ax, y in zip(axes[:, column], ("below", "holding")):
                    ax.step(group["sequences"], group[y], where="post", color=colours[label], lw=1.8)
            axes[0, column].set_title(f"{task} ({val.loc[val['task'] == task, 'run'].nunique()} runs)")
            axes[1, column].set_xlabel(SEQUENCES)
            axes[1, column].xaxis.set_major_formatter(THOUSANDS)
        axes[0, 0].set_ylabel(f"share of seeds below {criterion:g} bit errors")
        axes[1, 0].set_ylabel("share holding below it to the end")
        for ax in axes.flat:
            ax.set_ylim(-0.03, 1.03)
        fig.suptitle("Seeds below the convergence criterion against sequences (top: at each validation point; "
                     "bottom: from there on)")
        _legend(fig, shares.loc[shares["task"].isin(tasks), "label"], colours)
        yield _page_name("seeds_below", index), fig


def training_loss_figures(metrics: pd.DataFrame, run_stats: pd.DataFrame, colours: dict[str, tuple]) -> Pages:
    """Zhang et al. Fig. 2: each run's training cost (every logged point) in a panel of its
    own, a row of seeds per model, its loss spikes marked; one page per task."""
    train = metrics[(metrics["split"] == "train") & metrics["cost_bits"].notna()]
    spikes = run_stats.set_index("run")["spike_sequences"]
    for task, data in train.groupby("task", sort=False):
        labels = list(dict.fromkeys(data.sort_values("label")["label"]))
        seeds = sorted(data["seed"].unique())[:SEEDS_PER_ROW]
        fig, cells = plt.subplots(len(labels), len(seeds) + 1, figsize=PAGE, layout="constrained", squeeze=False,
                                  sharex=True, sharey=True, width_ratios=[1.4] + [1] * len(seeds))
        axes = cells[:, 1:]  # column 0 names each row's model
        for row, label in enumerate(labels):
            cells[row, 0].set_axis_off()
            cells[row, 0].text(1, 0.5, "\n".join(textwrap.wrap(label, 26)), transform=cells[row, 0].transAxes,
                               ha="right", va="center", fontsize=7, color=colours[label])
            for column, seed in enumerate(seeds):
                ax = axes[row, column]
                run = data[(data["label"] == label) & (data["seed"] == seed)].sort_values("sequences")
                if row == 0:
                    ax.set_title(f"seed {seed}", fontsize=7, pad=2)
                if run.empty:
                    ax.set_axis_off()
                    continue
                ax.plot(run["sequences"], run["cost_bits"].clip(lower=1e-4), color=colours[label], lw=0.6)
                marked = run[run["sequences"].isin(spikes.get(run["run"].iloc[0], ()))]
                ax.plot(marked["sequences"], marked["cost_bits"].clip(lower=1e-4), **SPIKE)
                ax.tick_params(labelsize=6, labelleft=column == 0)  # column 0 of the cells holds no axis
                ax.xaxis.set_major_locator(MaxNLocator(2))
        _log_y(axes[0, 0])
        axes[-1, 0].xaxis.set_major_formatter(THOUSANDS)
        axes[-1, 0].set_xlabel(SEQUENCES, fontsize=7)
        fig.supylabel("training " + COST, fontsize=9)
        fig.suptitle(f"{task}: each run's training loss, its loss spikes marked (cf. Zhang et al. Fig. 2)")
        _legend(fig, data["label"], colours, [Line2D([], [], label="loss spike", **SPIKE)])
        yield f"training_loss_{task}", fig


def overlay_points(found: list, metrics: pd.DataFrame, generalisation: pd.DataFrame) -> list[tuple[str, dict, pd.DataFrame]]:
    """For each verdict whose claim has a ``figure``: our points for it, each run of one of
    the figure's groups (validation points against sequences, or test levels)."""
    from ntm_repro.report.verdicts import members  # verdicts import the ledger; figures need it only here

    overlays = []
    for verdict in found:
        figure = verdict.claim.figure
        if not figure:
            continue
        groups = dict.fromkeys(str(point["group"]) for point in figure["points"])
        owner = {run: group for group in groups for run in members(group, verdict.tags)}
        y = figure.get("y", "cost_bits")
        if figure.get("x", "sequences") == "sequences":
            rows = metrics[(metrics["split"] == "val") & metrics["run"].isin(owner)].assign(x=lambda f: f["sequences"])
        else:
            rows = generalisation[generalisation["run"].isin(owner)]
            rows = rows.assign(x=pd.to_numeric(rows["level"], errors="coerce")).dropna(subset=["x"])
        rows = rows.assign(y=rows[y], group=rows["run"].map(owner)).dropna(subset=["y"])
        if len(rows):
            overlays.append((verdict.claim.id, figure, rows[["run", "label", "group", "x", "y"]]))
    return overlays


def overlay_figures(overlays: list[tuple[str, dict, pd.DataFrame]], colours: dict[str, tuple], level_name: str = "") -> Pages:
    """One page per ledger claim with a ``figure``: our runs (each faint, the median bold)
    beside the paper's numbers read off its figure (diamonds), per group of the claim.
    ``overlays``: (claim id, its figure entry, our points with label, run, x, y and group)."""
    for claim_id, figure, ours in overlays:
        fig, ax = plt.subplots(figsize=PAGE, layout="constrained")
        by_group = {}
        for (group, label), data in ours.groupby(["group", "label"], sort=False):
            colour = colours[label]
            by_group[group] = colour
            for _, run in data.groupby("run"):
                ax.plot(run["x"], run["y"], color=colour, lw=0.7, alpha=0.3)
            median = data.groupby("x")["y"].median()
            ax.plot(median.index, median.to_numpy(), color=colour, lw=2)
        for point in figure["points"]:
            ax.plot(point["x"], point["y"], color=by_group.get(str(point["group"]), "0.3"), **PAPER)
        sequences = figure.get("x", "sequences") == "sequences"
        ax.set_xlabel(SEQUENCES if sequences else level_name or "test level")
        ax.set_ylabel(figure.get("ylabel", COST))
        if sequences:
            ax.xaxis.set_major_formatter(THOUSANDS)
        if figure.get("log_y", True):
            _log_y(ax)
        fig.suptitle(f"{claim_id}: {figure['title']}")
        extras = [Line2D([], [], color="0.3", label="paper (read off its figure)", **PAPER),
                  Line2D([], [], color="0.5", lw=0.7, alpha=0.5, label="one seed (ours)"),
                  Line2D([], [], color="0.3", lw=2, label="median across seeds (ours)")]
        _legend(fig, ours["label"], colours, extras)
        yield f"paper_{claim_id}", fig


MODELS_PER_PAGE = 4
MAX_LEVELS = 6
MAX_CHECKPOINTS = 10  # rows of the outputs-along page


def _shown_run(group: pd.DataFrame, converged: set[str]) -> pd.Series:
    """The run whose traces stand for a model: its first converged seed, else its first seed."""
    ordered = group.sort_values("seed")
    chosen = ordered[ordered["run"].isin(converged)]
    return (chosen if len(chosen) else ordered).iloc[0]


def _scored_bits(trace: str) -> tuple[np.ndarray, np.ndarray]:
    """A trace's targets and output probabilities on its scored steps, (bits, steps) each."""
    with np.load(trace) as npz:
        mask = npz["mask"].astype(bool)
        return npz["targets"][mask].T, npz["outputs"][mask].T


def _bits(ax: plt.Axes, image: np.ndarray, name: str) -> None:
    """Bits as an image (white 0, black 1), named on the left, no ticks."""
    ax.imshow(image, aspect="auto", interpolation="nearest", cmap="Greys", vmin=0, vmax=1)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.grid(False)
    ax.set_ylabel(name, fontsize=6)


def _evenly(items: tuple[str, ...], most: int) -> list[str]:
    """At most ``most`` of ``items``, evenly spaced, the first and the last included."""
    if len(items) <= most:
        return list(items)
    return [items[i] for i in sorted(set(np.linspace(0, len(items) - 1, most).round().astype(int)))]


def outputs_along_figures(runs: pd.DataFrame, converged: set[str]) -> Pages:
    """The IFT6135 answer's outputs through training: for each task, the targets of one
    held-out episode and, under them, the outputs of each checkpoint kept along one seed per
    model (its first converged one; ``ntm-repro-eval --along``), models side by side."""
    traced = runs[runs["attention_along"].map(len) > 0]
    for task, task_runs in traced.groupby("task", sort=False):
        shown = [_shown_run(group, converged) for _, group in task_runs.groupby("label", sort=True)]
        for index, page in enumerate(chunks(shown, MODELS_PER_PAGE)):
            chosen = [_evenly(run["attention_along"], MAX_CHECKPOINTS) for run in page]
            fig, axes = plt.subplots(1 + max(map(len, chosen)), len(page), figsize=PAGE, layout="constrained", squeeze=False)
            for ax in axes.flat:
                ax.axis("off")
            for column, (run, traces) in enumerate(zip(page, chosen)):
                state = "converged" if run["run"] in converged else "not converged"
                for row, trace in enumerate(traces):
                    targets, outputs = _scored_bits(trace)
                    if row == 0:
                        axes[0, column].axis("on")
                        _bits(axes[0, column], targets, "target")
                        axes[0, column].set_title(f"{run['label']}, seed {run['seed']} ({state})", fontsize=7, pad=2)
                    axes[row + 1, column].axis("on")
                    trained = int(Path(trace).stem.removeprefix("sequences_"))
                    _bits(axes[row + 1, column], outputs, f"{trained / 1000:g}k")
            fig.suptitle(f"{task}: outputs on one held-out episode from the checkpoints kept along training "
                         "(rows: sequences trained; cf. the IFT6135 answer)")
            yield _page_name(f"outputs_along_{task}", index), fig


def outputs_figures(runs: pd.DataFrame, converged: set[str]) -> Pages:
    """Graves et al. Figs. 4-5: for each task, the targets over the outputs of one seed per
    model (its first converged one) on the scored steps of the episode traced at each test
    level, a row per level, models side by side. Drawn where runs traced more than one level."""
    traced = runs[runs["attention"].map(len) > 1]
    for task, task_runs in traced.groupby("task", sort=False):
        shown = [_shown_run(group, converged) for _, group in task_runs.groupby("label", sort=True)]
        for index, page in enumerate(chunks(shown, MODELS_PER_PAGE)):
            levels = sorted({Path(p).name for run in page for p in run["attention"]}, key=level_order)[:MAX_LEVELS]
            fig = plt.figure(figsize=PAGE, layout="constrained")
            grid = fig.add_gridspec(len(levels), len(page))
            for column, run in enumerate(page):
                files = {Path(p).name: p for p in run["attention"]}
                for row, level in enumerate(levels):
                    cell = grid[row, column].subgridspec(2, 1, hspace=0.05)
                    if level not in files:
                        continue
                    targets, outputs = _scored_bits(files[level])
                    for part, (name, image) in enumerate((("target", targets), ("output", outputs))):
                        ax = fig.add_subplot(cell[part])
                        _bits(ax, image, name)
                        if part == 0:
                            state = "converged" if run["run"] in converged else "not converged"
                            heading = f"{run['label']}, seed {run['seed']} ({state})\n" if row == 0 else ""
                            ax.set_title(f"{heading}{level[:-4].replace('_', ' ')}", fontsize=7, pad=2)
            fig.suptitle(f"{task}: targets and outputs on the scored steps at each test level (cf. Graves et al. Figs. 4-5)")
            yield _page_name(f"outputs_{task}", index), fig


def priority_figures(runs: pd.DataFrame, converged: set[str], colours: dict[str, tuple]) -> Pages:
    """Graves et al. Fig. 17: where each model (its first converged seed, else its first)
    writes each input vector of its traced priority-sort episode, against the vector's
    priority, with the least-squares line and its R^2."""
    traced = runs[(runs["task"] == "priority_sort") & (runs["attention"].map(len) > 0)]
    shown = []
    for _, group in traced.groupby("label", sort=True):
        run = _shown_run(group, converged)
        with np.load(min(run["attention"], key=level_order)) as npz:
            points = priority_writes({key: npz[key] for key in npz.files})
        if points is not None:
            shown.append((run, points))
    if not shown:
        return
    fig, axes = plt.subplots(1, len(shown), figsize=PAGE, layout="constrained", squeeze=False, sharey=True)
    for ax, (run, (priority, location)) in zip(axes[0], shown):
        ax.plot(priority, location, "o", color=colours[run["label"]], ms=6)
        slope, intercept = np.polyfit(priority, location, 1)
        line = np.array([priority.min(), priority.max()])
        ax.plot(line, slope * line + intercept, color="0.3", lw=1)
        state = "converged" if run["run"] in converged else "not converged"
        fit = r_squared(priority, location)
        ax.set_title(f"{run['label']}, seed {run['seed']} ({state}): R^2 {'-' if np.isnan(fit) else f'{fit:.2f}'}", fontsize=9)
        ax.set_xlabel("priority of the input vector")
    axes[0, 0].set_ylabel("write location (head 1's most weighted, from the first used)")
    fig.suptitle("priority_sort: write location against priority (cf. Graves et al. Fig. 17)")
    yield "priority_writes", fig


def along_figures(along: pd.DataFrame, converged: set[str], colours: dict[str, tuple]) -> Pages:
    """Generalisation along training (Nielsen; IFT6135's outputs through training): bit
    errors per sequence at each test level of the checkpoints kept along each run (ntm-repro-eval
    --along) against the sequences they had trained on; converged runs solid, others dashed."""
    for task, data in along.groupby("task", sort=False):
        levels = sorted(data["level"].astype(str).unique(), key=lambda level: level_order(f"_{level}"))[:MAX_LEVELS]
        fig, axes = plt.subplots(1, len(levels), figsize=PAGE, layout="constrained", squeeze=False, sharey=True)
        for ax, level in zip(axes[0], levels):
            at = data[data["level"].astype(str) == level]
            for (label, run), points in at.sort_values("sequences_trained").groupby(["label", "run"], sort=False):
                style = "-" if run in converged else "--"
                ax.plot(points["sequences_trained"], points["bit_errors"], style, color=colours[label], marker="o", ms=3, lw=1)
            ax.set_title(f"level {level}", fontsize=9)
            ax.set_xlabel("sequences trained")
            ax.xaxis.set_major_locator(MaxNLocator(4))
            ax.xaxis.set_major_formatter(KILO)
            ax.set_yscale("symlog", linthresh=1)  # errors span 0 to hundreds across the levels
        axes[0, 0].set_ylabel("bit errors per sequence (linear below 1)")
        axes[0, 0].set_ylim(bottom=0)
        fig.suptitle(f"{task}: generalisation of the checkpoints kept along each run (solid: converged runs)")
        _legend(fig, data["label"], colours)
        yield f"along_{task}", fig
