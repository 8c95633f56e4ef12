"""The benchmark runs and writes every figure (never asserts a speed)."""

import csv

from ntm_repro.bench import Bench, load_config, main

TINY_MODEL = ["++model.memory.locations=16", "++model.memory.width=6", "controller.size=12"]


def test_bench_writes_every_figure(tmp_path, capsys):
    out = tmp_path / "bench.csv"
    main(["--models", "ntm", "ntm2", "--batch-sizes", "2", "--seconds", "0.05", "--lightning-steps", "5",
          "--level", "3", "--seeds", "1", "3", "--csv", str(out), *TINY_MODEL])
    rows = list(csv.DictReader(open(out)))
    assert [(row["model"], row["seeds"]) for row in rows] == [("ntm", "1"), ("ntm", "3"), ("ntm2", "1"), ("ntm2", "3")]
    for row in rows:
        for key in ("train_seq_per_s", "eval_seq_per_s", "saved_for_backward_mb", "lightning_seq_per_s"):
            assert float(row[key]) > 0
    assert float(rows[0]["time_vs_first_model"]) == float(rows[1]["time_vs_first_model"]) == 1.0
    assert "Lightning" in capsys.readouterr().out


def test_saved_memory_grows_with_sequence_length():
    """Autograd keeps per-step state: a 4x longer copy keeps about 4x the memory."""
    cfg = load_config("ntm", "copy", "lstm", TINY_MODEL)
    short, long = (Bench(cfg, 2, level, "cpu").saved_for_backward_mb() for level in ("5", "20"))
    assert 3 < long / short < 5
