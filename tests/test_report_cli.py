"""End to end: a real tiny sweep by the installed ``ntm-repro``, then ``ntm-repro-report``
on it in a subprocess, before and after damaging its run folders."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import TINY

pypdf = pytest.importorskip("pypdf")

NTM_REPRO, REPORT = shutil.which("ntm-repro"), shutil.which("ntm-repro-report")
pytestmark = pytest.mark.skipif(None in (NTM_REPRO, REPORT), reason="console scripts not installed (pip install -e .)")
MODELS = ("ntm", "lstm")


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> Path:
    """ntm-repro -m model=ntm,lstm seed=0,1 with the tests' tiny sizes: four runs."""
    root = tmp_path_factory.mktemp("report_sweep")
    folder = root / "sweep"
    result = subprocess.run(
        [NTM_REPRO, "-m", f"model={','.join(MODELS)}", "seed=0,1", *TINY, f"hydra.sweep.dir={folder}"],
        cwd=root, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr
    return folder


def report(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([REPORT, *args], cwd=cwd, capture_output=True, text=True, timeout=300)


def trace_pages(sweep: Path) -> int:
    """Attention pages (one per model whose runs traced) and, where runs traced more than one
    test level, the page of outputs against targets."""
    traced = {model: [len(list((run / "attention").glob("*.npz"))) for run in sweep.glob(f"*_{model}_copy_s*")]
              for model in MODELS}
    attention = sum(any(counts) for counts in traced.values())
    return attention + any(n > 1 for counts in traced.values() for n in counts)


def pdf_text(path: Path) -> tuple[int, str]:
    reader = pypdf.PdfReader(path)
    return len(reader.pages), "\n".join(page.extract_text() for page in reader.pages)


def test_report_of_a_sweep_then_of_the_same_sweep_damaged(sweep, tmp_path):
    result = report(tmp_path, str(sweep), "--out", "out", "--note", "made by the end-to-end test")
    assert result.returncode == 0, result.stderr
    pdf = tmp_path / "out" / "sweep.pdf"
    pages, text = pdf_text(pdf)
    assert "Note by the report's maker: made by the end-to-end test" in text and "Wall time" in text
    # overview, convergence, seeds below, training loss, generalisation, traces, tables
    assert trace_pages(sweep) == 3  # both models traced at both test levels
    assert pages == 6 + trace_pages(sweep)
    assert "ntm-repro -m model=ntm,lstm seed=0,1" in text
    for words in ("ntm", "lstm", "copy", "0 / 2", "4 read, 0 skipped", "Every run folder was read without a caveat",
                  "neither converged: no comparison", "--window 0.1 --min-points 5 --spike-bits 1 --spike-window 50"):
        assert words in text, words
    figures = tmp_path / "out" / "sweep"
    assert len(list(figures.glob("*.png"))) == pages
    assert {p.name for p in figures.glob("*.csv")} == {
        "runs.csv", "summary.csv", "comparisons.csv", "generalisation.csv", "issues.csv"
    }

    damaged = tmp_path / "damaged"
    shutil.copytree(sweep, damaged, ignore=shutil.ignore_patterns("attention", "*.ckpt"))  # no trace pages: quicker
    (garbled,) = damaged.glob("*_lstm_copy_s0")
    (garbled / "metrics.csv").write_bytes(b"\x00\x13\x07 not a csv")
    (anonymous,) = damaged.glob("*_ntm_copy_s1")
    (anonymous / "summary.json").unlink()
    result = report(tmp_path, str(damaged), "--name", "damaged", "--out", "out")
    assert result.returncode == 0, result.stderr
    assert "(1 skipped)" in result.stdout
    pages, text = pdf_text(tmp_path / "out" / "damaged.pdf")
    assert pages == 6  # overview, convergence, seeds below, training loss, generalisation, tables
    for words in (
        "3 read, 1 skipped",
        "Runs skipped or read with a caveat (2)",
        garbled.name,
        "metrics.csv unreadable",
        anonymous.name,
        "no summary.json",
    ):
        assert words in text, words


@pytest.mark.parametrize("flag", ["--criterion", "--window", "--min-points", "--spike-bits", "--spike-window"])
def test_criteria_must_be_positive(flag):
    from ntm_repro.report.cli import parse_args

    with pytest.raises(SystemExit):
        parse_args(["runs", flag, "0"])
    assert parse_args(["runs", flag, "3"]).__dict__[flag[2:].replace("-", "_")] == 3


def test_criteria_from_the_command_line():
    from ntm_repro.report.cli import parse_args

    args = parse_args(["runs", "--window", "0.2", "--min-points", "3", "--spike-bits", "2", "--spike-window", "10"])
    assert (args.window, args.min_points, args.spike_bits, args.spike_window) == (0.2, 3, 2.0, 10)
    assert isinstance(args.min_points, int) and isinstance(args.spike_window, int)
    with pytest.raises(SystemExit):
        parse_args(["runs", "--min-points", "2.5"])  # a count of points is an integer


@pytest.mark.parametrize("make", [lambda p: p / "nowhere", lambda p: p])
def test_a_path_without_runs_exits_2_with_one_line(tmp_path, make):
    result = report(tmp_path, str(make(tmp_path)))
    assert result.returncode == 2
    assert result.stderr.startswith("ntm-repro-report: error: ") and result.stderr.count("\n") == 1
    assert not (tmp_path / "reports").exists()


def test_report_logged_to_wandb_in_the_sweeps_group(sweep, tmp_path):
    from test_wandb import _read_offline_run, wandb_free_env

    copy = tmp_path / sweep.name  # its wandb/ folder stays out of the shared sweep
    shutil.copytree(sweep, copy)
    result = subprocess.run([REPORT, str(copy), "--out", "out", "--format", "pdf", "--wandb"], cwd=tmp_path, capture_output=True,
                            text=True, timeout=300, env=wandb_free_env(tmp_path))
    assert result.returncode == 0, result.stderr
    assert f"run 'report sweep' in group {copy.name}" in result.stdout
    (log,) = copy.glob("wandb/offline-run-*/run-*.wandb")
    run = _read_offline_run(copy, log)
    assert run["run"].run_group == copy.name and run["run"].job_type == "report"
    (artifact,) = [a for a in run["artifacts"] if a.type == "report"]
    tables = sorted(path.name for path in (tmp_path / "out" / "sweep").glob("*.csv"))
    assert tables and sorted(entry.path for entry in artifact.manifest.contents) == sorted(["sweep.pdf", *tables])
    logged = {key.rsplit("/", 1)[0] for key in run["summary"] if key.endswith("/_type")}
    assert {f"report/{Path(name).stem}" for name in tables} <= logged  # each table also as a W&B table


def test_a_report_made_again_from_its_archive_has_the_same_tables(sweep, tmp_path):
    import filecmp
    import tarfile

    first = report(tmp_path, str(sweep), "--out", "first", "--format", "pdf", "--archive")
    assert first.returncode == 0, first.stderr
    archive = tmp_path / "first" / "sweep" / "runs.tar.xz"
    assert f"{archive.relative_to(tmp_path)}: the 4 run folders behind it" in first.stdout
    with tarfile.open(archive) as tar:
        names = tar.getnames()
    assert not [n for n in names if n.endswith(".ckpt") or "/wandb/" in n]  # what the report reads, no checkpoints
    assert {f"sweep/{run.name}/metrics.csv" for run in sweep.iterdir() if (run / "summary.json").is_file()} <= set(names)
    again = report(tmp_path, str(archive), "--name", "sweep", "--out", "again", "--format", "pdf")
    assert again.returncode == 0, again.stderr
    tables = sorted(path.name for path in (tmp_path / "first" / "sweep").glob("*.csv"))
    assert tables
    _, mismatch, errors = filecmp.cmpfiles(tmp_path / "first" / "sweep", tmp_path / "again" / "sweep", tables, shallow=False)
    assert not mismatch and not errors  # every table, run names and wall times included, as from the sweep folder
