"""``ntm-repro-report --wandb``: the report (PDF, HTML) and its CSV tables logged to W&B
as one ``report`` run in the sweep's group (the group the sweep's training runs have: the
sweep folder's name), each table also as a W&B table and the files as a ``report``
artifact. Offline unless ``WANDB_MODE`` says otherwise; the W&B files go to
``<sweep folder>/wandb/`` (``wandb sync`` uploads them)."""

from __future__ import annotations

import os
from pathlib import Path

from ntm_repro.errors import ConfigError


def log_report(name: str, files: list[Path], tables: list[Path], group: str, save_dir: Path) -> str:
    """Log the report's ``files`` and ``tables`` (CSV) to a W&B run of ``group``; returns
    a line saying where."""
    import pandas as pd

    from ntm_repro.training.wandb_logger import _mode, _one_line, import_wandb

    wandb = import_wandb("--wandb")

    mode = _mode(os.environ.get("WANDB_MODE", "offline"))
    save_dir.mkdir(parents=True, exist_ok=True)
    try:
        run = wandb.init(
            project=os.environ.get("WANDB_PROJECT", "ntm-repro"), entity=os.environ.get("WANDB_ENTITY"), dir=str(save_dir),
            mode=mode, group=group, job_type="report", name=f"report {name}", reinit="create_new",
            settings=wandb.Settings(silent=True, console="off", x_disable_stats=True, save_code=False),
        )
    except Exception as error:  # noqa: BLE001 - e.g. online without login
        raise ConfigError(f"--wandb: wandb.init failed ({_one_line(error)}); leave --wandb out, or run `wandb login` for online mode") from None
    try:
        for table in tables:
            frame = pd.read_csv(table)
            run.log({f"report/{table.stem}": wandb.Table(dataframe=frame.astype(object).where(frame.notna(), None))})
        artifact = wandb.Artifact(f"report-{name}", type="report")
        for path in [*files, *tables]:
            artifact.add_file(str(path), name=path.name)
        run.log_artifact(artifact)
    finally:
        run.finish()
    return f"W&B ({mode}): run 'report {name}' in group {group}, files in {save_dir}/wandb/"
