"""``ntm-repro-report``: run folders -> tidy frames -> statistics, verdicts -> figures,
tables -> PDF (and PNG, HTML).

In a notebook, :func:`read_runs` loads run folders into pandas frames (``runs``, ``metrics``,
``generalisation``, ``along``, ``issues``)::

    from ntm_repro.report import read_runs
    reading = read_runs(["multirun/2026-01-01_12-00-00"])
    reading.metrics.query("split == 'val'")
"""

from ntm_repro.report.read import read_runs

__all__ = ["read_runs"]
