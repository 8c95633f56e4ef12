"""The benchmark runs and writes every figure (never asserts a speed)."""

import csv

from ntm_repro.bench import Bench, load_config, main
from ntm_repro.models.lstm_sequence import COMPILED_MAX_BATCH

TINY_MODEL = ["++model.memory.locations=16", "++model.memory.width=6", "controller.size=12"]


def test_bench_writes_every_figure(tmp_path, capsys):
    out = tmp_path / "bench.csv"
    main(["--models", "ntm", "ntm2", "--engine", "reference", "fused", "--batch-sizes", "2", "--seconds", "0.05",
          "--lightning-steps", "5", "--level", "3", "--seeds", "1", "3", "--csv", str(out), *TINY_MODEL])
    rows = list(csv.DictReader(open(out)))
    assert [(row["model"], row["engine"], row["seeds"]) for row in rows] == [
        (model, engine, seeds) for model in ("ntm", "ntm2") for engine in ("reference", "fused") for seeds in ("1", "3")]
    for row in rows:
        for key in ("train_seq_per_s", "eval_seq_per_s", "saved_for_backward_mb", "lightning_seq_per_s",
                    "matmul_flops_per_seq", "fraction_of_matmul_peak", "matmul_peak_gflops"):
            assert float(row[key]) > 0
    assert all(float(row["time_vs_first_model"]) == 1.0 for row in rows[:4])
    assert all(float(row["speedup_vs_first_engine"]) == 1.0 for row in rows if row["engine"] == "reference")
    # the FLOPs are the architecture's, whichever engine runs it; NTM2 adds a block and heads
    flops = {(row["model"], row["seeds"]): float(row["matmul_flops_per_seq"]) for row in rows}
    assert flops[("ntm", "1")] == flops[("ntm", "3")] < flops[("ntm2", "1")]
    out_text = capsys.readouterr().out
    assert "Lightning" in out_text and "vs ref" in out_text and "GFLOP/s" in out_text


def test_saved_memory_grows_with_sequence_length():
    """Autograd keeps per-step state: a 4x longer copy keeps about 4x the memory."""
    cfg = load_config("ntm", "copy", "lstm", TINY_MODEL)
    short, long = (Bench(cfg, 2, level, "cpu").saved_for_backward_mb() for level in ("5", "20"))
    assert 3 < long / short < 5


def test_lstm_flops_count_torchs_fused_layer_and_the_written_out_one():
    """One LSTM network above the compiled batch runs through torch's fused layer (which
    FlopCounterMode does not count unless the bench adds it); one network at batch 2 and
    three run through the written-out BPTT, whose compiled loops the bench counts as the
    torch steps they replace (whose recurrent product is in place): every count equals the
    gate and output products counted by hand, forward and twice that backward, except that
    the written-out backward skips the inputs' gradient, which torch's layer computes."""
    cfg = load_config("lstm", "copy", "lstm", ["controller.size=12", "controller.layers=1"])
    fused_layer = Bench(cfg, COMPILED_MAX_BATCH + 1, "5", "cpu").matmul_flops_per_sequence()
    one, three = (Bench(cfg, 2, "5", "cpu", seeds=seeds).matmul_flops_per_sequence() for seeds in (1, 3))
    bench = Bench(cfg, 2, "5", "cpu")
    _, steps, inputs = bench.episode.inputs.shape
    outputs, hidden = bench.episode.targets.shape[-1], 12
    forward = 2 * 4 * hidden * (inputs + hidden) + 2 * hidden * outputs
    inputs_gradient = 2 * 4 * hidden * inputs
    assert fused_layer == steps * 3 * forward
    assert one == three == steps * (3 * forward - inputs_gradient)
