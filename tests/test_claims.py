"""The claims ledger: one entry per claim of shared/CLAIMS.md, each well formed, each
experiment a command that composes, and ``ntm-repro-claims`` listing them."""

import itertools
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from hydra import compose, initialize_config_module

from ntm_repro.claims import Claim, LedgerError, _claim, load_ledger

CLAIMS_MD = Path(__file__).resolve().parents[2] / "shared" / "CLAIMS.md"
LEDGER = load_ledger()


@pytest.mark.skipif(not CLAIMS_MD.is_file(), reason="../shared/CLAIMS.md is not beside the checkout")
def test_the_ledger_has_every_claim_of_claims_md_and_no_other():
    ids = re.findall(r"^\| ([GZNI]\d+) \|", CLAIMS_MD.read_text(), flags=re.M)
    assert len(ids) == 36
    assert [claim.id for claim in LEDGER] == ids


def items(value):
    """A sweep value's items: split at commas outside brackets."""
    out, depth, start = [], 0, 0
    for i, char in enumerate(value):
        depth += 1 if char in "[{" else -1 if char in "]}" else 0
        if char == "," and depth == 0:
            out.append(value[start:i])
            start = i + 1
    return out + [value[start:]]


def jobs(overrides):
    """Every job of a sweep's overrides but the seeds (a range's first seed stands for all)."""
    choices = []
    for override in overrides:
        key, value = override.split("=", 1)
        values = [value.split("-")[0]] if key == "seed" else items(value)
        choices.append([f"{key}={v}" for v in values])
    return list(itertools.product(*choices))


@pytest.mark.parametrize("claim", [c for c in LEDGER if c.experiment], ids=lambda c: c.id)
def test_every_job_of_every_experiment_composes(claim):
    with initialize_config_module(config_module="ntm_repro.conf", version_base="1.3"):
        for job in jobs(claim.experiment):
            assert compose("config", overrides=list(job)).seed == 0
    assert claim.command.startswith("ntm-repro -m ")


def test_a_claim_is_settled_in_exactly_one_way():
    entry = {"id": "X1", "source": "s", "claim": "c", "paper": "p", "statistic": "s", "rule": "r", "deviations": []}
    with pytest.raises(LedgerError, match="X1: give exactly one of experiment, command, not_run"):
        _claim(entry, "f.yaml")
    with pytest.raises(LedgerError, match="found experiment, not_run"):
        _claim({**entry, "experiment": ["seed=0"], "not_run": "why"}, "f.yaml")
    with pytest.raises(LedgerError, match="X1: missing rule"):
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
    assert one.returncode == 0 and "rule: NTM1 and NTM2 each vs the NTM, one-sided Fisher exact" in one.stdout
    bad = subprocess.run([command, "Z99"], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and bad.stderr.startswith("ntm-repro-claims: error: no claim Z99; the ids are G1, G2")
