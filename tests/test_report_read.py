"""Reading run folders for the report: hand-made folders with every kind of damage."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ntm_repro.report.read import NoRuns, read_runs, read_tolerant_csv

SEQUENCES = np.arange(0, 10_001, 1000)


def make_run(
    root: Path,
    name: str,
    model: str = "ntm",
    task: str = "copy",
    seed: int = 0,
    status: str | None = "completed",
    bit_errors: np.ndarray | None = None,
    overrides: tuple[str, ...] = (),
    level_name: str = "length",
    levels: tuple = (10, 20, 30),
    optimum: bool = False,
    traces: bool = False,
    choices: dict | None = None,
    budget: int | None = None,
) -> Path:
    """A run folder as ``ntm-repro`` writes it (status None: no summary.json; choices:
    Hydra's config group choices, none: no .hydra/hydra.yaml; budget: train.sequences,
    none: not in the config)."""
    run = root / name
    (run / ".hydra").mkdir(parents=True)
    if choices is not None:
        (run / ".hydra" / "hydra.yaml").write_text(json.dumps({"hydra": {"runtime": {"choices": choices}}}))
    task_config = "  name: copy\n  min_length: 1\n  max_length: 20\n" if task == "copy" else f"  name: {task}\n"
    train_config = "" if budget is None else f"train:\n  sequences: {budget}\n  log_every: 1000\n"
    (run / "config.yaml").write_text(
        f"seed: {seed}\nmodel:\n  name: {model}\ntask:\n{task_config}controller:\n  size: 100\n{train_config}"
    )
    (run / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in (f"model={model}", f"task={task}", f"seed={seed}", *overrides)))
    errors = 40 * np.exp(-SEQUENCES / 2000.0) if bit_errors is None else np.asarray(bit_errors, dtype=float)
    seqs = SEQUENCES[: len(errors)]
    val = pd.DataFrame({"step": seqs // 10, "sequences": seqs, "time_s": seqs / 100, "split": "val", "cost_bits": 2 * errors + 0.01, "bit_errors": errors})
    train = val.assign(split="train", cost_bits=val["cost_bits"] * 1.1)
    metrics = pd.concat([train, val]).sort_values(["step", "split"])
    if optimum:
        metrics["optimal_cost_bits"] = 1.5
    metrics.to_csv(run / "metrics.csv", index=False)
    gen = pd.DataFrame({"level": list(levels), "in_training_range": [i == 0 for i in range(len(levels))], "sequences": 4,
                        "cost_bits": [1.0 + i for i in range(len(levels))], "bit_errors": [0.5 * i for i in range(len(levels))]})
    if optimum:
        gen["optimal_cost_bits"] = 1.5
    gen.to_csv(run / "generalisation.csv", index=False)
    if status is not None:
        summary = {"status": status, "reason": "loss is nan" if status == "diverged" else None, "model": model, "task": task,
                   "seed": seed, "level_name": level_name, "versions": {"commit": "abc1234"}, "final": {}}
        (run / "summary.json").write_text(json.dumps(summary))
    if traces:
        (run / "attention").mkdir()
        steps, rng = 12, np.random.default_rng(seed)
        weights = rng.dirichlet(np.ones(16), size=(steps, 1))
        np.savez(run / "attention" / f"{level_name}_4.npz", inputs=rng.integers(0, 2, (steps, 9)).astype(float),
                 targets=rng.integers(0, 2, (steps, 8)).astype(float), mask=np.arange(steps) >= 6,
                 outputs=rng.random((steps, 8)), write_weights=weights, read_weights=weights,
                 memory=rng.normal(size=(16, 6)), level=4, model=model, task=task)
    return run


def issue(reading, run: str) -> dict:
    (row,) = reading.issues[reading.issues["run"] == run].to_dict("records")
    return row


def test_a_clean_sweep_reads_without_caveats(tmp_path):
    for seed in range(2):
        make_run(tmp_path, f"{seed}_ntm_copy_s{seed}", seed=seed)
        make_run(tmp_path, f"{seed + 2}_lstm_copy_s{seed}", model="lstm", seed=seed)
    reading = read_runs([str(tmp_path)])
    assert len(reading.runs) == 4 and reading.issues.empty and reading.folders_found == 4
    assert set(reading.runs["label"]) == {"ntm", "lstm"} and reading.varying == []
    assert set(reading.metrics["split"]) == {"train", "val"}
    assert {"run", "task", "label", "seed", "cost_bits"} <= set(reading.metrics.columns)
    assert len(reading.generalisation) == 4 * 3


def test_truncated_csv_drops_the_partial_last_line(tmp_path):
    run = make_run(tmp_path, "0_ntm_copy_s0", status="running")
    text = (run / "metrics.csv").read_text()
    (run / "metrics.csv").write_text(text[: text.rfind("\n", 0, -1) + 12])  # half of the last row
    reading = read_runs([str(tmp_path)])
    assert len(reading.metrics) == 2 * len(SEQUENCES) - 1
    row = issue(reading, "0_ntm_copy_s0")
    assert row["handling"] == "read" and "dropped a partial last line" in row["reason"] and "status running" in row["reason"]


def test_read_tolerant_csv_drops_malformed_rows(tmp_path):
    path = tmp_path / "metrics.csv"
    path.write_text("step,sequences,split,cost_bits,bit_errors\n1,4,val,2.0,1.0\nx,y,val,1,1\n2,8,val,1.0,0.5,9,9\n3,12,val,nan,0.1\n")
    frame, notes = read_tolerant_csv(path, ("step", "sequences"))
    assert list(frame["step"]) == [1, 3] and np.isnan(frame["cost_bits"].iloc[1])
    assert notes == ["metrics.csv: dropped 2 malformed row(s)"]


def test_missing_and_corrupt_summaries_are_read_with_a_caveat(tmp_path):
    make_run(tmp_path, "0_ntm_copy_s0", status=None)
    run = make_run(tmp_path, "1_ntm_copy_s1", seed=1)
    (run / "summary.json").write_text('{"status": "compl')
    reading = read_runs([str(tmp_path)])
    assert len(reading.runs) == 2 and set(reading.runs["status"]) == {"unknown"}
    assert "no summary.json" in issue(reading, "0_ntm_copy_s0")["reason"]
    assert "summary.json unreadable (JSONDecodeError" in issue(reading, "1_ntm_copy_s1")["reason"]


def test_diverged_and_failed_runs_stay_counted_as_not_converged(tmp_path):
    make_run(tmp_path, "0_ntm_copy_s0", status="diverged", bit_errors=[40, 20, np.nan])
    run = make_run(tmp_path, "1_ntm_copy_s1", seed=1, status="failed")
    (run / "metrics.csv").unlink()
    reading = read_runs([str(tmp_path)])
    assert len(reading.runs) == 2
    assert issue(reading, "0_ntm_copy_s0")["handling"] == "not converged"
    assert issue(reading, "0_ntm_copy_s0")["reason"].startswith("diverged: loss is nan")
    assert issue(reading, "1_ntm_copy_s1")["handling"] == "not converged" and "no metrics.csv" in issue(reading, "1_ntm_copy_s1")["reason"]


def test_unusable_folders_are_skipped_with_their_reason(tmp_path):
    make_run(tmp_path, "0_ntm_copy_s0")
    garbage = make_run(tmp_path, "1_ntm_copy_s1", seed=1)
    (garbage / "metrics.csv").write_text("\x00\x01garbage\n")
    anonymous = make_run(tmp_path, "2_ntm_copy_s2", seed=2, status=None)
    (anonymous / "config.yaml").write_text("seed: [unclosed\n")
    reading = read_runs([str(tmp_path)])
    assert list(reading.runs["run"]) == ["0_ntm_copy_s0"]
    assert issue(reading, "1_ntm_copy_s1")["handling"] == "skipped"
    assert "metrics.csv unreadable" in issue(reading, "1_ntm_copy_s1")["reason"]
    assert issue(reading, "2_ntm_copy_s2") == {
        "run": "2_ntm_copy_s2", "status": "unknown", "handling": "skipped",
        "reason": "no summary.json (killed before writing it?); config.yaml missing or unreadable; model, task or seed unknown",
    }


def test_variants_come_from_the_overrides_that_differ(tmp_path):
    make_run(tmp_path / "a", "0_ntm_copy_s0", overrides=("controller=feedforward", "train.batch_size=4"))
    make_run(tmp_path / "a", "1_ntm_copy_s1", seed=1, overrides=("controller=feedforward", "train.batch_size=4"))
    make_run(tmp_path / "b", "0_ntm_copy_s0", overrides=("controller.size=100", "train.batch_size=4"), choices={"controller": "lstm"})
    make_run(tmp_path / "c", "0_ntm_copy_s0", overrides=("train.batch_size=4",))  # no Hydra record of its choices
    reading = read_runs([str(tmp_path / p) for p in "abc"])
    assert reading.varying == ["controller"]  # controller.size=100 is the config's value in all
    labels = dict(zip(reading.runs["run"], reading.runs["label"]))
    assert labels == {
        "a/0_ntm_copy_s0": "ntm (controller=feedforward)",
        "a/1_ntm_copy_s1": "ntm (controller=feedforward)",
        "b/0_ntm_copy_s0": "ntm (controller=lstm)",
        "c/0_ntm_copy_s0": "ntm (controller=default)",
    }


def test_settings_that_do_not_change_the_science_do_not_split_runs(tmp_path):
    make_run(tmp_path, "0_ntm1_copy_s0", model="ntm1", overrides=(
        "model.topology.mixing=convex", "threads=1", "logger=csv", "resume=false", "seed_batch.enabled=true",
        "train.compile=true", "model.engine=fused",
    ))
    make_run(tmp_path, "1_ntm1_copy_s1", model="ntm1", seed=1, overrides=(
        "model.topology.mixing=convex", "threads=4", "logger=csv_wandb", "logger.wandb.mode=offline", "resume=true",
        "seed_batch.enabled=false", "seed_batch.jobs=1", "train.compile=false", "train.checkpoint_every=0",
        "hydra.launcher.n_jobs=2", "model.engine=reference",
    ))
    make_run(tmp_path, "2_ntm1_copy_s0", model="ntm1", overrides=("model.topology.mixing=free", "threads=1"))
    reading = read_runs([str(tmp_path)])
    assert reading.varying == ["model.topology.mixing"]
    assert dict(zip(reading.runs["run"], reading.runs["label"])) == {
        "0_ntm1_copy_s0": "ntm1 (model.topology.mixing=convex)",
        "1_ntm1_copy_s1": "ntm1 (model.topology.mixing=convex)",
        "2_ntm1_copy_s0": "ntm1 (model.topology.mixing=free)",
    }


def test_the_budget_is_the_configs_train_sequences(tmp_path):
    make_run(tmp_path, "0_ntm_copy_s0", budget=20_000)
    make_run(tmp_path, "1_ntm_copy_s1", seed=1)
    budgets = dict(zip(*read_runs([str(tmp_path)]).runs[["run", "budget"]].to_numpy().T))
    assert budgets["0_ntm_copy_s0"] == 20_000 and np.isnan(budgets["1_ntm_copy_s1"])


def test_commands_come_from_the_provenance_log_refused_ones_left_out(tmp_path):
    """Hydra rewrites .hydra/ even for a command the run then refuses; provenance.jsonl
    keeps each invocation, and the report lists the ones that trained."""
    run = make_run(tmp_path, "0_ntm_copy_s0")
    (run / ".hydra" / "hydra.yaml").write_text("hydra:\n  overrides:\n    hydra: [hydra.mode=RUN]\n    task: [train.sequences=9]\n")
    entries = [("started", ["ntm-repro", "seed=0"]), ("completed", ["ntm-repro", "seed=0"]),
               ("refused", ["ntm-repro", "train.sequences=9"]), ("started", ["ntm-repro", "seed=0", "resume=true"])]
    (run / "provenance.jsonl").write_text("".join(json.dumps({"outcome": o, "argv": a}) + "\n" for o, a in entries) + "not json\n")
    assert read_runs([str(tmp_path)]).commands == ["ntm-repro seed=0", "ntm-repro seed=0 resume=true"]


def test_commands_come_from_hydras_records(tmp_path):
    sweep = tmp_path / "sweep"
    make_run(sweep, "0_ntm_copy_s0")
    (sweep / "multirun.yaml").write_text(
        "hydra:\n  overrides:\n    hydra: [hydra.mode=MULTIRUN, hydra.sweep.dir=x]\n    task: [model=ntm, 'seed=range(0,2)', 'task.test_lengths=[2,6]']\n"
    )
    single = make_run(tmp_path, "single_run")
    (single / ".hydra" / "hydra.yaml").write_text("hydra:\n  overrides:\n    hydra: [hydra.mode=RUN]\n    task: [seed=3]\n")
    reading = read_runs([str(tmp_path)])
    assert sorted(reading.commands) == ["ntm-repro -m model=ntm 'seed=range(0,2)' 'task.test_lengths=[2,6]' hydra.sweep.dir=x", "ntm-repro seed=3"]


@pytest.mark.parametrize("make", [lambda p: str(p / "missing"), lambda p: str(p), lambda p: ""])
def test_a_path_without_runs_is_an_error(tmp_path, make):
    with pytest.raises(NoRuns, match="no such file|no run folders"):
        read_runs([make(tmp_path)])


def test_no_readable_run_is_an_error(tmp_path):
    (make_run(tmp_path, "0_ntm_copy_s0") / "metrics.csv").write_text("")
    with pytest.raises(NoRuns, match="no readable run; 1 folder"):
        read_runs([str(tmp_path)])


def test_unreadable_attention_traces_are_left_out_and_said(tmp_path):
    run = make_run(tmp_path, "0_ntm_copy_s0", traces=True)
    (run / "attention" / "length_9.npz").write_bytes(b"PK\x03\x04 half a zip")
    np.savez(run / "attention" / "length_8.npz", inputs=np.zeros((2, 2)))
    reading = read_runs([str(tmp_path)])
    assert [Path(p).name for p in reading.runs.loc[0, "attention"]] == ["length_4.npz"]
    reason = issue(reading, "0_ntm_copy_s0")["reason"]
    assert "attention/length_9.npz not drawn (unreadable: BadZipFile)" in reason
    assert "attention/length_8.npz not drawn (no targets, mask, outputs)" in reason


def test_a_loggers_folder_inside_a_run_is_not_a_run(tmp_path):
    run = make_run(tmp_path, "0_ntm_copy_s0")
    (run / "wandb" / "offline-run-1" / "files").mkdir(parents=True)
    (run / "wandb" / "offline-run-1" / "files" / "config.yaml").write_text("model:\n  value: {}\n")
    reading = read_runs([str(tmp_path)])
    assert reading.folders_found == 1 and reading.issues.empty


def test_the_first_page_gives_the_wall_time_while_any_run_trained(tmp_path):
    """Started: the config's write, ended: the summary's last write; two runs overlapping
    from 10:00 to 11:30 took 1 h 30 min; a part run the next day adds its 45 min."""
    import os
    from datetime import datetime

    from ntm_repro.report.pages import wall_time

    first, second = make_run(tmp_path, "0_ntm_copy_s0"), make_run(tmp_path, "1_ntm_copy_s1", seed=1)
    stamp = lambda text: datetime.fromisoformat(text).timestamp()  # noqa: E731
    for run, start, end in ((first, "2026-01-01T10:00", "2026-01-01T11:00"), (second, "2026-01-01T10:20", "2026-01-01T11:30")):
        os.utime(run / "config.yaml", (stamp(start), stamp(start)))
        os.utime(run / "summary.json", (stamp(end), stamp(end)))
    runs = read_runs([str(tmp_path)]).runs
    assert wall_time(runs) == "Wall time 1 h 30 min (5,400 s), from the first run's start to the last run's end (2026-01-01 11:30)."
    # a part run a day later adds its own span, not the day between
    third = make_run(tmp_path, "2_ntm_copy_s2", seed=2)
    os.utime(third / "config.yaml", (stamp("2026-01-02T09:00"), stamp("2026-01-02T09:00")))
    os.utime(third / "summary.json", (stamp("2026-01-02T09:45"), stamp("2026-01-02T09:45")))
    assert wall_time(read_runs([str(tmp_path)]).runs) == (
        "Wall time 2 h 15 min (8,100 s) while any run was training, in 2 separate spans, the first from 2026-01-01 10:00, "
        "the last ending 2026-01-02 09:45.")
    (third / "summary.json").unlink()
    (second / "summary.json").unlink()  # a run without a summary has no end: the others' still count
    assert "1 h 00 min" in wall_time(read_runs([str(tmp_path)]).runs)


def test_the_wall_time_comes_from_the_provenance_log_not_from_file_times(tmp_path):
    """A folder copied without its file times (cp -r, scp) keeps its log's times: a run
    stopped at 11:00 and resumed from 13:00 to 13:30 trained 1 h 30 min, not 3 h 30 min; a
    start with no outcome after it (a killed process) ends at the metrics' last write."""
    import os
    from datetime import datetime

    from ntm_repro.report.pages import wall_time

    run = make_run(tmp_path, "0_ntm_copy_s0")
    log = [("2026-01-01T10:00:00", "started"), ("2026-01-01T11:00:00", "interrupted"),
           ("2026-01-01T12:00:00", "refused"), ("2026-01-01T13:00:00", "started"),
           ("2026-01-01T13:30:00", "completed")]
    (run / "provenance.jsonl").write_text(
        "".join(json.dumps({"time": t, "outcome": o, "argv": ["ntm-repro"]}) + "\n" for t, o in log))
    assert wall_time(read_runs([str(tmp_path)]).runs) == (
        "Wall time 1 h 30 min (5,400 s) while any run was training, in 2 separate spans, the first from 2026-01-01 10:00, "
        "the last ending 2026-01-01 13:30.")
    killed = make_run(tmp_path, "1_ntm_copy_s1", seed=1)
    (killed / "provenance.jsonl").write_text(json.dumps({"time": "2026-01-02T09:00:00", "outcome": "started"}) + "\n")
    last_write = datetime.fromisoformat("2026-01-02T09:20:00").timestamp()
    os.utime(killed / "metrics.csv", (last_write, last_write))
    assert wall_time(read_runs([str(tmp_path)]).runs).startswith("Wall time 1 h 50 min (6,600 s)")


def test_run_names_are_short_even_when_the_runs_live_far_apart():
    from pathlib import Path

    from ntm_repro.report.read import _names

    assert _names([Path("/m/sweep/0_ntm_s0"), Path("/m/sweep/1_ntm_s1")]) == ["0_ntm_s0", "1_ntm_s1"]
    assert _names([Path("/m/a/0_ntm_s0"), Path("/m/b/0_ntm_s0")]) == ["a/0_ntm_s0", "b/0_ntm_s0"]
    # an archive unpacked under /tmp beside a sweep folder: <sweep>/<run>, not the whole paths
    assert _names([Path("/tmp/ntm-repro-runs-x/part1/0_ntm_s0"), Path("/work/multirun/part2/0_ntm_s0")]) == ["part1/0_ntm_s0", "part2/0_ntm_s0"]
    # the same <sweep>/<run> twice: the longer names that tell them apart
    assert len(set(_names([Path("/x/p/s/r"), Path("/y/q/s/r")]))) == 2
