"""The report's figures, each built from the tidy frames of :mod:`ntm_repro.report.read`;
a figure without data is not drawn at all."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402  (after choosing the backend)
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402
from matplotlib.ticker import FixedLocator, FuncFormatter, MaxNLocator, NullLocator, ScalarFormatter  # noqa: E402

from ntm_repro.report.traces import level_order, shortest_arc  # noqa: E402

PAGE = (11.69, 8.27)  # A4 landscape, inches
TASKS_PER_PAGE = 3
COST = "cost (bits per sequence)"
ERRORS = "bit errors per sequence"
SEQUENCES = "sequences seen"
LEVEL_AXES = {"length": "sequence length", "items": "number of items", "vectors": "number of vectors"}
OPTIMUM = "optimal_cost_bits"
TRAINING_RANGE = "#f4ecd2"  # shading of the training range
UNCONVERGED = {"ls": "--", "lw": 0.8, "marker": "o", "ms": 2.5, "alpha": 0.35}  # a run not converged (generalisation)
THOUSANDS = FuncFormatter(lambda value, _: f"{value:,.0f}")
KILO = FuncFormatter(lambda value, _: f"{value / 1000:g}k" if value else "0")  # narrow panels: 50k, not 50,000

Pages = Iterator[tuple[str, Figure]]


def use_report_style() -> None:
    """Seaborn's white grid, fonts embedded as text (searchable PDF)."""
    sns.set_theme(style="whitegrid", context="paper", font_scale=1.15)
    plt.rcParams.update({"pdf.fonttype": 42, "figure.dpi": 100, "legend.fontsize": 9})


def palette(labels: list[str]) -> dict[str, tuple]:
    """One colour per model (label), the same on every page."""
    return dict(zip(labels, sns.color_palette("tab10" if len(labels) <= 10 else "husl", len(labels))))


def chunks(items: list, size: int) -> list[list]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def _page_name(stem: str, index: int) -> str:
    return stem if index == 0 else f"{stem}_{index + 1}"


def _legend(fig: Figure, labels: pd.Series, colours: dict[str, tuple], extra: list = ()) -> None:
    """One legend for the page, below the panels: the models drawn on it, then the keys."""
    handles = [Line2D([], [], color=colours[label], lw=2, label=label) for label in colours if label in set(labels)]
    handles += list(extra)
    widths = [len(h.get_label()) * 0.065 + 0.6 for h in handles]  # inches, roughly, at the legend's font size
    columns = len(handles) if sum(widths) < PAGE[0] - 0.5 else max(1, int((PAGE[0] - 0.5) / max(widths)))
    fig.legend(handles=handles, loc="outside lower center", ncol=columns, frameon=False)


def _log_y(ax: plt.Axes) -> None:
    """Log y with plain numbers (no 8.4 x 10^1 on a narrow range)."""
    ax.set_yscale("log")
    plain = FuncFormatter(lambda value, _: f"{value:g}")
    ax.yaxis.set_major_formatter(plain)
    if np.log10(np.divide(*ax.get_ylim()[::-1])) < 1:  # less than a decade shown: label the minor ticks too
        ax.yaxis.set_minor_formatter(plain)


def _curves(ax: plt.Axes, frame: pd.DataFrame, y: str, colours: dict[str, tuple]) -> None:
    """Median across seeds with an interquartile band per model, each seed a faint line."""
    data = frame[np.isfinite(frame[y].astype(float))]
    common = dict(data=data, x="sequences", y=y, hue="label", palette=colours, legend=False, ax=ax)
    sns.lineplot(**common, units="run", estimator=None, lw=0.7, alpha=0.3)
    sns.lineplot(**common, estimator="median", errorbar=("pi", 50), lw=1.8)


def _bit_error_axis(ax: plt.Axes, criterion: float) -> None:
    """Symmetric-log y (linear below the criterion, so zero is shown) with the criterion."""
    drawn = [line.get_ydata() for line in ax.get_lines()]
    top = max([criterion * 10] + [np.nanmax(y) for y in drawn if np.isfinite(y).any()])
    ax.set_yscale("symlog", linthresh=criterion)
    ax.set_ylim(0, top * 1.6)
    ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    ax.axhline(criterion, color="0.3", ls="--", lw=1)
    ax.set_ylabel(ERRORS)


def _curve_legend_extras(criterion: float | None) -> list:
    extras = [
        Patch(color="0.6", alpha=0.4, label="interquartile range across seeds"),
        Line2D([], [], color="0.5", lw=0.7, alpha=0.6, label="one seed"),
    ]
    if criterion is not None:
        extras.append(Line2D([], [], color="0.3", ls="--", lw=1, label=f"criterion ({criterion:g} bit errors)"))
    return extras


def convergence_figures(metrics: pd.DataFrame, criterion: float, colours: dict[str, tuple]) -> Pages:
    """Validation cost (log) and bit errors against sequences seen, one column per task."""
    val = metrics[(metrics["split"] == "val") & metrics["bit_errors"].notna()]
    for index, tasks in enumerate(chunks(list(dict.fromkeys(val["task"])), TASKS_PER_PAGE)):
        fig, axes = plt.subplots(2, len(tasks), figsize=PAGE, layout="constrained", squeeze=False, sharex="col")
        for column, task in enumerate(tasks):
            data = val[val["task"] == task]
            cost_ax, error_ax = axes[:, column]
            _curves(cost_ax, data, "cost_bits", colours)
            _log_y(cost_ax)
            cost_ax.set_ylabel(COST)
            cost_ax.set_title(f"{task} ({data['run'].nunique()} runs)")
            _curves(error_ax, data, "bit_errors", colours)
            _bit_error_axis(error_ax, criterion)
            error_ax.set_xlabel(SEQUENCES)
            error_ax.xaxis.set_major_formatter(THOUSANDS)
        fig.suptitle("Validation cost and bit errors during training (median across seeds)")
        _legend(fig, val.loc[val["task"].isin(tasks), "label"], colours, _curve_legend_extras(criterion))
        yield _page_name("convergence", index), fig


def _level_positions(levels: pd.Series) -> tuple[pd.Series, bool]:
    """Numeric levels as they are, others (e.g. '10x20') as their order of appearance."""
    numbers = pd.to_numeric(levels, errors="coerce")
    if numbers.notna().all():
        return numbers, True
    order = {level: i for i, level in enumerate(dict.fromkeys(levels))}
    return levels.map(order).astype(float), False


def _training_range(
    task_runs: pd.DataFrame, level_name: str, data: pd.DataFrame, numeric: bool
) -> tuple[float, float] | None:
    """The config's min_<level>..max_<level> if it has them, else the span of the tested
    levels inside the training range."""
    task_config = task_runs["config"].iloc[0].get("task", {})
    low, high = task_config.get(f"min_{level_name}"), task_config.get(f"max_{level_name}")
    if numeric and isinstance(low, (int, float)) and isinstance(high, (int, float)):
        return float(low), float(high)
    flags = data.get("in_training_range", pd.Series(False, index=data.index))
    inside = data.loc[flags.astype(str).str.lower() == "true", "x"]
    if inside.empty:
        return None
    pad = 0.0 if numeric else 0.4
    return inside.min() - pad, inside.max() + pad


def _level_axis(ax: plt.Axes, data: pd.DataFrame, numeric: bool, level_name: str) -> None:
    """Ticks at the tested levels (log x if they span a factor of 4 or more), limits just
    around them (a shaded training range beyond them is cut off)."""
    ticks = sorted(data["x"].unique())
    if numeric and ticks[0] > 0 and ticks[-1] / ticks[0] >= 4:
        ax.set_xscale("log")
        ax.set_xlim(ticks[0] / 1.25, ticks[-1] * 1.25)
    else:
        pad = max(0.5, 0.05 * (ticks[-1] - ticks[0]))
        ax.set_xlim(ticks[0] - pad, ticks[-1] + pad)
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_minor_locator(NullLocator())
    if numeric:
        ax.xaxis.set_major_formatter(ScalarFormatter())
    else:
        labels = data.drop_duplicates("x").set_index("x")["level"].astype(str)
        ax.set_xticklabels([labels[t] for t in ticks])
    ax.set_xlabel(LEVEL_AXES.get(level_name, level_name))


def _per_seed_lines(ax: plt.Axes, data: pd.DataFrame, y: str, colours: dict[str, tuple]) -> None:
    """Each run in ``data`` as its own thin dashed line in its model's colour."""
    for (label, _), run in data.sort_values("x").groupby(["label", "run"], sort=False):
        ax.plot(run["x"], run[y], color=colours[label], **UNCONVERGED)


def _generalisation_panel(ax: plt.Axes, data: pd.DataFrame, y: str, colours: dict[str, tuple]) -> None:
    """Median and interquartile range over the converged runs per model (outcomes are often
    bimodal: a mean would sit between the modes); every other run
    its own thin dashed line (a model with no converged run: only those)."""
    data = data[np.isfinite(data[y].astype(float))]
    converged = data[data["converged"]]
    if len(converged):
        sns.lineplot(
            data=converged, x="x", y=y, hue="label", palette=colours, estimator="median", errorbar=("pi", 50),
            marker="o", legend=False, ax=ax,
        )
    _per_seed_lines(ax, data[~data["converged"]], y, colours)


def generalisation_figures(
    generalisation: pd.DataFrame, runs: pd.DataFrame, criterion: float, colours: dict[str, tuple],
    converged: set[str],
) -> Pages:
    """Cost, bit errors and (where generalisation.csv records the target bits scored) bit
    errors per target bit against test length or item count: median and interquartile range
    across the ``converged`` runs, every other run a thin dashed line of its own,
    the training range shaded."""
    generalisation = generalisation.dropna(subset=["cost_bits", "bit_errors"], how="all")
    generalisation = generalisation.assign(converged=generalisation["run"].isin(converged))
    panels = ["cost_bits", "bit_errors"]
    if "scored_bits" in generalisation and generalisation["scored_bits"].notna().any():  # runs from before it: no such row
        generalisation["bit_error_rate"] = generalisation["bit_errors"] / generalisation["scored_bits"]
        panels.append("bit_error_rate")
    tasks = list(dict.fromkeys(generalisation["task"]))
    for index, page_tasks in enumerate(chunks(tasks, TASKS_PER_PAGE)):
        fig, axes = plt.subplots(len(panels), len(page_tasks), figsize=PAGE, layout="constrained", squeeze=False)
        has_optimum = False
        for column, task in enumerate(page_tasks):
            data = generalisation[generalisation["task"] == task].copy()
            data["x"], numeric = _level_positions(data["level"])
            task_runs = runs[runs["task"] == task]
            level_name = task_runs["level_name"].iloc[0]
            span = _training_range(task_runs, level_name, data, numeric)
            for ax, y in zip(axes[:, column], panels):
                if span:
                    ax.axvspan(*span, color=TRAINING_RANGE, zorder=0, lw=0)
                _generalisation_panel(ax, data, y, colours)
                _level_axis(ax, data, numeric, level_name)
            if OPTIMUM in data and data[OPTIMUM].notna().any():
                optimum = data.groupby("x")[OPTIMUM].mean()
                axes[0, column].plot(optimum.index, optimum.to_numpy(), "k--", lw=1.2, marker="_", ms=16)
                has_optimum = True
            _log_y(axes[0, column])
            axes[0, column].set_ylabel(COST)
            counts = data.drop_duplicates("run")["converged"]
            axes[0, column].set_title(f"{task} ({len(counts)} runs, {int(counts.sum())} converged)")
            _bit_error_axis(axes[1, column], criterion)
            if len(panels) > 2:
                axes[2, column].set_ylabel("bit errors per target bit")
                axes[2, column].set_ylim(bottom=0)
        on_page = generalisation[generalisation["task"].isin(page_tasks)]
        extras = [
            Patch(color=TRAINING_RANGE, label="training range"),
            Patch(color="0.6", alpha=0.4, label="interquartile range across converged seeds"),
        ]
        if not on_page["converged"].all():
            key = UNCONVERGED | {"alpha": 0.8}
            extras.append(Line2D([], [], color="0.4", **key, label="one run that did not converge"))
        if has_optimum:
            extras.append(Line2D([], [], color="k", ls="--", lw=1.2, label="optimal estimator"))
        fig.suptitle("Generalisation: test cost and bit errors beyond the training range (median across converged seeds)")
        _legend(fig, on_page["label"], colours, extras)
        yield _page_name("generalisation", index), fig


def optimum_figures(metrics: pd.DataFrame, colours: dict[str, tuple]) -> Pages:
    """Tasks with a known optimum (n-grams): the model's validation cost beside the optimal
    estimator's on the same sequences."""
    if OPTIMUM not in metrics:
        return
    val = metrics[(metrics["split"] == "val") & metrics[OPTIMUM].notna()]
    for index, tasks in enumerate(chunks(list(dict.fromkeys(val["task"])), TASKS_PER_PAGE)):
        fig, axes = plt.subplots(1, len(tasks), figsize=PAGE, layout="constrained", squeeze=False)
        for ax, task in zip(axes[0], tasks):
            data = val[val["task"] == task]
            _curves(ax, data, "cost_bits", colours)
            optimum = data.groupby("sequences")[OPTIMUM].median()
            ax.plot(optimum.index, optimum.to_numpy(), "k--", lw=1.5)
            ax.set(xlabel=SEQUENCES, ylabel=COST, title=f"{task} ({data['run'].nunique()} runs)")
            ax.xaxis.set_major_formatter(THOUSANDS)
        fig.suptitle("Validation cost against the optimal estimator's (median across seeds)")
        extras = [*_curve_legend_extras(None), Line2D([], [], color="k", ls="--", lw=1.5, label="optimal estimator")]
        _legend(fig, val.loc[val["task"].isin(tasks), "label"], colours, extras)
        yield _page_name("optimum", index), fig


def _scored(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """(T, O) -> (O, T) with the unscored time steps blank."""
    return np.where(mask[:, None], values, np.nan).T


USED_WEIGHT = 0.01  # a location some head weights above this at some step is drawn


def used_locations(arrays: dict[str, np.ndarray], pad: int = 2) -> np.ndarray:
    """The locations to draw, in order: the shortest arc of the circular memory holding every
    location some head weights above USED_WEIGHT at some step, padded (Graves et al. Fig. 6
    shows only the locations in use), e.g. 126, 127, 0, 1, ... for heads that wrapped; every
    location if the arc is most of them; none without heads."""
    weights = [arrays[k] for k in ("write_weights", "read_weights") if k in arrays and arrays[k].size]
    if not weights:
        return np.arange(0)
    locations = weights[0].shape[-1]
    used = np.flatnonzero(np.max([w.max(axis=(0, 1)) for w in weights], axis=0) > USED_WEIGHT)
    if not len(used):
        return np.arange(locations)
    start, length = shortest_arc(used, locations)
    start, length = start - pad, length + 2 * pad
    return np.arange(locations) if length >= locations else (start + np.arange(length)) % locations


def attention_figure(path: Path, title: str) -> Figure:
    """Graves-style traces of one episode: input, target, output, each head's weighting over
    the locations in use (:func:`used_locations`) against time, and (an NTM's) memory after
    the last step."""
    with np.load(path) as npz:
        arrays = {key: npz[key] for key in npz.files}
    mask = arrays["mask"].astype(bool)
    rows = [
        ("input (black: 1)", arrays["inputs"].T),
        ("target (scored steps)", _scored(arrays["targets"], mask)),
        ("output probability (scored steps)", _scored(arrays["outputs"], mask)),
    ]
    shown_locations = used_locations(arrays)
    for kind in ("write", "read"):
        weights = arrays.get(f"{kind}_weights", np.zeros((0, 0, 0)))
        rows += [(f"{kind} weighting, head {h}", weights[:, h][:, shown_locations].T) for h in range(weights.shape[1])]
    memory = arrays.get("memory")
    fig = plt.figure(figsize=PAGE, layout="constrained")
    grid = fig.add_gridspec(len(rows), 1 if memory is None else 2, width_ratios=None if memory is None else [4, 1],
                            height_ratios=[2 if " head " in name else 1 for name, _ in rows])
    weight_axes = []
    for i, (name, image) in enumerate(rows):
        ax = fig.add_subplot(grid[i, 0])
        weighting = " head " in name
        cmap = "viridis" if weighting else "Greys"
        ax.imshow(image, aspect="auto", interpolation="nearest", cmap=cmap, vmin=0, vmax=1)
        if weighting:  # rows are the drawn locations: label them with their numbers
            ticks = np.unique(np.linspace(0, len(shown_locations) - 1, min(6, len(shown_locations))).round().astype(int))
            ax.set_yticks(ticks, [str(shown_locations[t]) for t in ticks])
            weight_axes.append(ax)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(name, loc="left", fontsize=9, pad=2)
        ax.set_ylabel("location" if weighting else "bit", fontsize=8)
        ax.grid(False)
        if i < len(rows) - 1:
            ax.set_xticklabels([])
    ax.set_xlabel("time step")
    if weight_axes:
        fig.colorbar(weight_axes[0].images[0], ax=weight_axes, shrink=0.8, label="weighting", location="left", pad=0.01)
    if memory is not None:
        ax = fig.add_subplot(grid[:, 1])
        limit = float(np.abs(memory).max()) or 1.0
        shown = ax.imshow(memory, aspect="auto", interpolation="nearest", cmap="RdBu_r", vmin=-limit, vmax=limit)
        locations = arrays["write_weights"].shape[-1]
        for boundary in range(locations, memory.shape[0], locations):
            ax.axhline(boundary - 0.5, color="k", lw=1)
        ax.set(title="memory after the last step", xlabel="element", ylabel="location (blocks stacked)")
        ax.grid(False)
        fig.colorbar(shown, ax=ax, shrink=0.5, label="value")
    fig.suptitle(title)
    return fig


def attention_figures(runs: pd.DataFrame) -> Pages:
    """The trace at the smallest traced level (the first test level) of the first seed with
    traces, for each task and model."""
    with_traces = runs[runs["attention"].map(len) > 0].sort_values(["task", "label", "seed"])
    for (task, label), group in with_traces.groupby(["task", "label"], sort=False):
        run = group.iloc[0]
        path = min(run["attention"], key=level_order)
        stem = Path(path).stem
        title = f"{task}: {label}, seed {run['seed']}, {stem.replace('_', ' ')}"
        yield f"attention_{task}_{label}_{stem}", attention_figure(Path(path), title)
