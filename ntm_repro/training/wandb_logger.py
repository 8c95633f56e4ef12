"""Weights & Biases logging (``logger=wandb`` or ``logger=csv_wandb``), offline by default.

One W&B run per training run: the resolved config as the run config, every metrics row
(``train/*``, ``val/*`` against ``sequences``), and at the end the summary (status,
parameter count, final metrics) and the generalisation test as a table. The W&B files go
to ``<run folder>/wandb/``; an offline run is uploaded later with
``wandb sync <run folder>/wandb/offline-run-*``. Jobs of one ``-m`` sweep share a group,
the name of the sweep folder. A completed run's final checkpoint is logged as a ``model``
artifact; system metrics and the console are recorded (each configurable). The run's id is
kept in ``<run folder>/wandb_id``: ``resume=true`` continues the same W&B run.

``wandb`` is imported only when this logger is built, so ``ntm-repro`` starts as fast
without it.
"""

from __future__ import annotations

import hashlib
import math
import logging
from pathlib import Path
from typing import Any, Mapping, Sequence

from pytorch_lightning.loggers.logger import Logger
from pytorch_lightning.utilities import rank_zero_only

from ntm_repro.console import say
from ntm_repro.errors import ConfigError
from ntm_repro.training.run_folder import Status, configuration

MODES = ("offline", "online", "disabled")
_LEGACY_MODES = {"dryrun": "offline", "run": "online"}  # older spellings WANDB_MODE accepts
_SUMMARY_KEYS = ("status", "reason", "num_parameters", "sequences_seen", "steps", "wall_time_s", "level_name")
ID_FILE = "wandb_id"  # in the run folder: the W&B run a resumed run continues
ONLINE_FIX = "logger.wandb.mode=online needs `wandb login` (or WANDB_API_KEY) and network; use logger.wandb.mode=offline and `wandb sync` later"

_open_runs: list[Any] = []  # runs of this process not finished yet (a job that failed before training)


def _read_config(save_dir: str) -> dict[str, Any]:
    """The resolved config that run.py writes to the run folder before building loggers."""
    path = Path(save_dir) / "config.yaml"
    if not path.is_file():
        return {}
    from omegaconf import OmegaConf

    config = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
    return config if isinstance(config, dict) else {}


def import_wandb(feature: str) -> Any:
    """The ``wandb`` module, or a ConfigError naming the extra that installs it."""
    try:
        import wandb
    except ImportError:
        raise ConfigError(f"{feature} needs the wandb extra; install it with pip install -e '.[wandb]'") from None
    return wandb


def finish_open_runs() -> None:
    """Finish the W&B runs an earlier job of this process left open (it failed before
    training); called before a job builds its loggers."""
    while _open_runs:
        try:
            _open_runs.pop().finish(exit_code=1)
        except Exception:  # noqa: BLE001
            pass


JOB_TYPE_LENGTH = 64  # W&B's limit


def _hydra_record(save_dir: str) -> tuple[list[str], dict[str, Any]]:
    """The job's command-line overrides and Hydra's config-group choices (the experiment
    preset among them), from the run folder's ``.hydra/`` (none outside Hydra)."""
    from omegaconf import OmegaConf

    folder = Path(save_dir) / ".hydra"
    overrides = OmegaConf.to_container(OmegaConf.load(folder / "overrides.yaml")) if (folder / "overrides.yaml").is_file() else []
    record = OmegaConf.load(folder / "hydra.yaml") if (folder / "hydra.yaml").is_file() else None
    choices = OmegaConf.to_container(OmegaConf.select(record, "hydra.runtime.choices") or {}) if record else {}
    return [str(o) for o in overrides or []], {k: v for k, v in (choices or {}).items() if not str(k).startswith("hydra/")}


def job_type(config: Mapping[str, Any], overrides: Sequence[str]) -> str | None:
    """``<model>_<task>`` and the configuration's other overrides (seed and settings that do
    not change what it learns left out): the seeds of one configuration share it, so W&B
    groups them as the report does. Cut to W&B's 64 characters with a hash of the rest."""
    name = _default_name({**config, "seed": 0})
    if name is None:
        return None
    words = [w for w in configuration(overrides) if not w.startswith(("model=", "task="))]
    text = " ".join([name.removesuffix("_s0"), *words])
    if len(text) <= JOB_TYPE_LENGTH:
        return text
    digest = hashlib.sha1(text.encode()).hexdigest()[:8]
    return f"{text[: JOB_TYPE_LENGTH - 9]}~{digest}"


def _default_name(config: Mapping[str, Any]) -> str | None:
    model, task = (config.get("model") or {}).get("name"), (config.get("task") or {}).get("name")
    if model is None or task is None or config.get("seed") is None:
        return None
    return f"{model}_{task}_s{config['seed']}"


def _recorded_sweep_group(save_dir: str | None) -> str | None:
    """The sweep folder's name from the run folder's own Hydra record (``.hydra/hydra.yaml``)
    when it is a job of a ``-m`` sweep (taken as the run folder's parent), else None."""
    record = Path(save_dir or ".") / ".hydra" / "hydra.yaml"
    if not record.is_file():
        return None
    from omegaconf import OmegaConf

    mode = OmegaConf.select(OmegaConf.load(record), "hydra.mode")
    return Path(save_dir).absolute().parent.name if str(mode) == "MULTIRUN" else None


def sweep_group(save_dir: str | None = None) -> str | None:
    """The name of the sweep folder when running under ``ntm-repro -m``, else None (a single
    run, or no Hydra at all, e.g. ``train()`` called from a test).

    Read from the job's own output folder (``<sweep dir>/<subdir>``) rather than by
    re-resolving ``hydra.sweep.dir``, whose ``${now:...}`` a job in another process
    (joblib, submitit) could resolve to another second."""
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        if not HydraConfig.initialized():  # e.g. a seed group trained in a worker process
            return _recorded_sweep_group(save_dir)
        hydra_cfg = HydraConfig.get()
        if hydra_cfg.mode != RunMode.MULTIRUN:
            return None
        output = Path(str(hydra_cfg.runtime.output_dir))
        depth = len(Path(str(hydra_cfg.sweep.subdir)).parts)
        if depth and len(output.parts) > depth:
            return output.parents[depth - 1].name
        return Path(str(hydra_cfg.sweep.dir)).name
    except Exception:  # noqa: BLE001 - a missing group must never stop a run
        return None


def _mode(mode: Any) -> str:
    mode = _LEGACY_MODES.get(str(mode).lower(), str(mode).lower()) if mode is not None else "offline"
    if mode not in MODES:
        raise ConfigError(f"logger.wandb.mode={mode!r}: unknown; choose one of {', '.join(MODES)}")
    return mode


def _one_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}".rstrip(": ")


def _scalar(value: Any) -> Any:
    """Plain Python numbers for W&B (tensors and numpy scalars included)."""
    if hasattr(value, "item"):
        try:
            value = value.item()
        except (TypeError, ValueError, RuntimeError):
            return value
    return value


class WandbLogger(Logger):
    """A Lightning logger writing one W&B run per training run (``wandb`` used directly).

    ``mode`` ``offline`` (the default: no account, no network; ``wandb sync`` uploads
    later), ``online`` (needs ``wandb login``) or ``disabled``. ``group`` None means the
    sweep folder's name under ``-m`` and no group otherwise; ``name`` None means
    ``<model>_<task>_s<seed>`` from the run folder's ``config.yaml``. ``log_checkpoint``:
    a completed run's ``last.ckpt`` as a ``model`` artifact; ``system_metrics`` and
    ``console``: W&B's CPU/memory sampling and its copy of the run's console output.
    ``resume`` (set by the run, from ``resume=true``): continue the W&B run whose id the run
    folder keeps.
    """

    def __init__(
        self,
        save_dir: str,
        project: str = "ntm-repro",
        entity: str | None = None,
        mode: str = "offline",
        group: str | None = None,
        name: str | None = None,
        tags: Sequence[str] | None = None,
        init_timeout: float = 60.0,
        log_checkpoint: bool = True,
        system_metrics: bool = True,
        console: bool = True,
        resume: bool = False,
    ):
        super().__init__()
        self._log_checkpoint = bool(log_checkpoint)
        self._save_dir = str(save_dir)
        self._mode = _mode(mode)
        self._config = _read_config(self._save_dir)
        overrides, choices = _hydra_record(self._save_dir)
        self._job_type = job_type(self._config, overrides)
        if choices:
            self._config["hydra_choices"] = choices  # e.g. which experiment preset, by name
        self._name = name or _default_name(self._config)
        self._group = group or sweep_group(self._save_dir)
        self._results_logged = False
        self._run = self._init_run(
            project=project or "ntm-repro",
            entity=entity,
            tags=[str(tag) for tag in (tags or [])],
            init_timeout=float(init_timeout),
            system_metrics=bool(system_metrics),
            console=bool(console),
            resume=bool(resume),
        )

    def _init_run(
        self, project: str, entity: str | None, tags: list[str], init_timeout: float, system_metrics: bool, console: bool, resume: bool
    ) -> Any:
        wandb = import_wandb("logger.wandb")

        settings = dict(
            silent=True,  # no banners, no "View run at" lines
            console="auto" if console else "off",  # output.log: what the console showed
            x_disable_stats=not system_metrics,  # the system-metrics sampling thread
            save_code=False,
            init_timeout=init_timeout,
        )
        id_file = Path(self._save_dir) / ID_FILE
        same_run = {"id": id_file.read_text().strip(), "resume": "allow"} if resume and id_file.is_file() else {}
        if self._mode == "online":
            # wandb.init would prompt for an API key on a terminal and wait: check first.
            wandb.setup(settings=wandb.Settings(silent=True, mode="online"))
            if not wandb.login(prompt=False, verify=False):
                raise ConfigError(ONLINE_FIX)
        wandb_dir = Path(self._save_dir)
        wandb_dir.mkdir(parents=True, exist_ok=True)
        try:
            run = wandb.init(
                project=project,
                entity=entity,
                dir=str(wandb_dir),
                mode=self._mode,
                group=self._group,
                job_type=self._job_type,
                name=self._name,
                tags=tags,
                config=self._config,
                reinit="create_new",  # each job of a sweep is its own run, even in one process
                settings=wandb.Settings(**settings),
                **same_run,
            )
        except Exception as error:  # noqa: BLE001 - e.g. no login, no network, a bad entity
            hint = ONLINE_FIX if self._mode == "online" else "logger=csv trains without W&B"
            raise ConfigError(f"logger.wandb: wandb.init failed ({_one_line(error)}); {hint}") from None
        if self._mode != "disabled":
            id_file.write_text(run.id)
            run.define_metric("sequences")
            for pattern in ("train/*", "val/*", "time_s", "step"):
                run.define_metric(pattern, step_metric="sequences")
        _open_runs.append(run)
        return run

    @property
    def name(self) -> str:
        return "wandb"

    @property
    def version(self) -> str:
        return getattr(self._run, "id", "") or ""

    @property
    def save_dir(self) -> str:
        return self._save_dir

    @property
    def group(self) -> str | None:
        return self._group

    @property
    def run_name(self) -> str | None:
        return self._name

    @property
    def experiment(self) -> Any:
        """The ``wandb`` run (e.g. for ``logger.experiment.log``)."""
        return self._run

    @rank_zero_only
    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        """The resolved config is already the run's config (read from ``config.yaml``)."""

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        if self._run is None:
            return
        row = {key: _scalar(value) for key, value in metrics.items()}
        if step is not None:
            row["step"] = step
        self._run.log(row)

    @rank_zero_only
    def log_results(self, summary: Mapping[str, Any], rows: Sequence[Mapping[str, Any]]) -> None:
        """Called by ``train`` once the run has ended: the summary (status, parameter count,
        final metrics) into the W&B run summary, the generalisation rows as a table. A W&B
        problem here is reported on one line and never costs the run folder its summary."""
        self._results_logged = True
        if self._run is None:
            return
        try:
            import wandb

            values = {key: summary.get(key) for key in _SUMMARY_KEYS if key in summary}
            for key, value in (summary.get("final") or {}).items():
                value = _scalar(value)
                if not (isinstance(value, float) and not math.isfinite(value)):
                    values[f"final/{key}"] = value
            self._run.summary.update(values)
            if summary.get("versions"):
                self._run.config.update({"versions": dict(summary["versions"])}, allow_val_change=True)
            if rows:
                columns = list(dict.fromkeys(key for row in rows for key in row))
                data = [[_scalar(row.get(column)) for column in columns] for row in rows]
                self._run.log({"generalisation": wandb.Table(columns=columns, data=data)})
            checkpoint = Path(self._save_dir) / "last.ckpt"
            if self._log_checkpoint and summary.get("status") == Status.COMPLETED and checkpoint.is_file():
                artifact = wandb.Artifact(f"model-{self._run.id}", type="model", metadata={"sequences_seen": summary.get("sequences_seen")})
                artifact.add_file(str(checkpoint), name="last.ckpt")
                self._run.log_artifact(artifact, aliases=["final"])
        except Exception as error:  # noqa: BLE001
            say(f"ntm-repro: warning: W&B results not logged ({_one_line(error)})", logging.WARNING)

    @rank_zero_only
    def finalize(self, status: str) -> None:
        """Finish the W&B run (exit code 0 for ``completed``, 1 otherwise), once ``train``
        has logged the results. Lightning's own ``finalize`` at the end of ``fit`` comes
        before that and is ignored, so the results still reach this run."""
        if self._run is None or not self._results_logged:
            return
        run, self._run = self._run, None
        if run in _open_runs:
            _open_runs.remove(run)
        try:
            run.finish(exit_code=0 if status == Status.COMPLETED else 1)
        except Exception as error:  # noqa: BLE001
            say(f"ntm-repro: warning: W&B run not finished cleanly ({_one_line(error)})", logging.WARNING)
