"""The claims ledger: one entry per claim of shared/CLAIMS.md, each well formed, each
experiment a command that composes, and ``ntm-repro-claims`` listing them."""

import itertools
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from hydra import compose, initialize_config_module

from ntm_repro.claims import Claim, LedgerError, _claim, load_ledger, sweep_items

CLAIMS_MD = Path(__file__).resolve().parents[2] / "shared" / "CLAIMS.md"
LEDGER = load_ledger()


@pytest.mark.skipif(not CLAIMS_MD.is_file(), reason="../shared/CLAIMS.md is not beside the checkout")
def test_the_ledger_has_every_claim_of_claims_md_and_no_other():
    ids = re.findall(r"^\| ([GZNI]\d+) \|", CLAIMS_MD.read_text(), flags=re.M)
    assert len(ids) == 36
    assert [claim.id for claim in LEDGER] == ids


def jobs(claim):
    """Every job of a claim's sweep but the seeds (a range's first seed stands for all)."""
    choices = [[f"{key}={value.split('-')[0] if key == 'seed' else value}" for value in values]
               for key, values in claim.sweep.items()]
    return list(itertools.product(*choices))


@pytest.mark.parametrize("claim", [c for c in LEDGER if c.experiment], ids=lambda c: c.id)
def test_every_job_of_every_experiment_composes(claim):
    with initialize_config_module(config_module="ntm_repro.conf", version_base="1.3"):
        for job in jobs(claim):
            assert compose("config", overrides=list(job)).seed == 0
    assert claim.command.startswith("ntm-repro -m ")


def test_a_claim_is_settled_in_exactly_one_way():
    entry = {"id": "X1", "source": "s", "claim": "c", "paper": "p", "statistic": "s", "rule": "r", "deviations": []}
    with pytest.raises(LedgerError, match="X1: give exactly one of experiment, command, not_run"):
        _claim(entry, "f.yaml")
    with pytest.raises(LedgerError, match="found experiment, not_run"):
        _claim({**entry, "experiment": ["seed=0"], "not_run": "why"}, "f.yaml")
    with pytest.raises(LedgerError, match=r"X1: missing rule \(or test\)"):
        _claim({**{k: v for k, v in entry.items() if k != "rule"}, "not_run": "why"}, "f.yaml")
    assert isinstance(_claim({**entry, "command": "ntm-repro-params"}, "f.yaml"), Claim)


def test_the_command_lists_every_claim_and_refuses_an_unknown_id():
    command = shutil.which("ntm-repro-claims")
    if command is None:
        pytest.skip("ntm-repro-claims is not installed (pip install -e .)")
    listed = subprocess.run([command], capture_output=True, text=True, timeout=120)
    assert listed.returncode == 0, listed.stderr
    assert re.findall(r"^([GZNI]\d+)  ", listed.stdout, flags=re.M) == [claim.id for claim in LEDGER]
    assert "ntm-repro -m experiment=graves/copy_ff_ntm,graves/copy_lstm_ntm,graves/copy_lstm seed=0-4" in listed.stdout
    one = subprocess.run([command, "Z7"], capture_output=True, text=True, timeout=120)
    assert one.returncode == 0 and "rule: (1) ntm1 converges in more runs than ntm: one-sided Fisher exact test" in one.stdout
    bad = subprocess.run([command, "Z99"], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and bad.stderr.startswith("ntm-repro-claims: error: no claim Z99; the ids are G1, G2")


def test_sweep_values_split_at_commas_outside_brackets():
    assert sweep_items("a,[1,2],{x: 1, y: 2}") == ["a", "[1,2]", "{x: 1, y: 2}"]
    claim = next(c for c in LEDGER if c.id == "I5")
    assert claim.sweep["task.test_lengths"] == ("[10,20,30,40,50,60,70,80,90,100]",) and claim.seeds == 5


def test_the_claims_that_only_prose_decides_are_these():
    """Adding a claim without a machine rule (or dropping one's rule) is a deliberate change."""
    prose = {claim.id for claim in LEDGER if not claim.checks}
    assert prose == {"G10", "I1", "N7"}  # G10, I1: decided from reports/parameters.csv
    assert all(LEDGER[i].prose_rule for i, c in enumerate(LEDGER) if c.id in prose)


def test_every_deviation_is_one_sentence_not_a_flow_list_split_at_its_commas():
    """A YAML flow list ``[budget 200k sequences, not 1M]`` is two items; the ledger quotes."""
    for claim in LEDGER:
        for deviation in claim.deviations:
            assert not deviation.startswith(("not ", "0", "000")), (claim.id, deviation)


def test_parameter_counts_decide_their_claims_from_the_committed_table(tmp_path):
    from ntm_repro.report.index import index_markdown, parameter_verdicts

    header = "preset,claim,table,task,model,widths,paper,ours,difference,paper_widths,ours_at_paper_widths\n"
    rows = ["graves/copy_lstm,G10,3,copy,LSTM,\"9, 8\",1352969,1349128,-3841,\"10, 9\",1352969",  # equal at the paper's widths
            "graves/recall_lstm,G10,3,recall,LSTM,\"8, 6\",1344518,1344518,0,\"8, 6\",1344518",
            "graves/copy_ff_ntm,G10,1,copy,\"NTM, feedforward controller\",\"9, 8\",17162,13536,-3626,,",
            "ift6135/lstm,I1,,copy,LSTM,\"9, 8\",45208,45208,0,,"]
    assert parameter_verdicts(tmp_path) == {}  # no table: not run
    (tmp_path / "parameters.csv").write_text(header + "\n".join(rows) + "\n")
    found = parameter_verdicts(tmp_path)
    assert found["I1"][0]["verdict"] == "confirmed" and found["I1"][0]["ours"] == "1 of 1 presets equal to the paper's count"
    assert found["G10"][0]["verdict"] == "contradicted"
    assert found["G10"][0]["ours"] == ("2 of 3 presets equal to the paper's count (1 at the paper's input and output widths); "
                                       "differ (ours vs paper): graves/copy_ff_ntm 13,536 vs 17,162")
    index = index_markdown(load_ledger(), tmp_path)
    assert "| I1 | Parameter counts - LSTM 45,208, LSTM-NTM 62,860, MLP-NTM 13,260. | confirmed | [parameters](parameters.csv) |" in index


def test_the_index_drops_a_reports_not_run_row_when_another_report_decides_the_claim(tmp_path):
    from ntm_repro.report.index import index_markdown

    header = "id,claim,paper,ours,verdict,power,deviations,runs,page\n"
    tables = {"adam_runs": ["I3,c,p,not run: no runs of rmsprop,not run,,,5,1", "I7,c,p,not run: no runs with shifts,not run,,,5,1"],
              "optimizers": ["I3,c,p,inconclusive: rmsprop 0/10 vs adam 0/10,inconclusive,,,20,1"],
              "shifts_again": ["I7,c,p,not run: no converged runs,not run,,,5,2"]}
    for name, lines in tables.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "verdicts.csv").write_text(header + "\n".join(lines) + "\n")
        (tmp_path / f"{name}.pdf").write_bytes(b"%PDF")
    index = index_markdown(load_ledger(), tmp_path)
    i3 = [line for line in index.splitlines() if line.startswith("| I3 |")]
    assert len(i3) == 1 and "| inconclusive | [optimizers](optimizers.pdf) p. 1 |" in i3[0]
    # a claim that no report decides keeps every report's reason
    i7 = [line for line in index.splitlines() if line.startswith("| I7 |")]
    assert len(i7) == 2 and all("| not run |" in line for line in i7)
    rows = index.count("\n| ") - 1  # less the header row
    assert f"{len(load_ledger())} claims, {rows} rows" in index and "inconclusive 1" in index
