"""Optional experiment tracking: each training cycle's parameters, per-epoch metrics and figures, also in
MLflow or TensorBoard for users who have one installed.

`tracking=none` (the default) imports nothing and changes nothing; asking for a tracker that is not
installed is one sentence before anything runs. The run's own files (cycles.csv, history.csv) stay the record.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any, Mapping

from helpers.utils import paths

# the package each tracker needs (TensorBoard: torch ships the writer, the `tensorboard` package the format)
PACKAGES = {"mlflow": "mlflow", "tensorboard": "tensorboard"}


class TrackingError(ValueError):
    """A tracker was asked for that cannot be used here."""


def check_available(kind: str) -> None:
    """Fail in one sentence when `kind` names a tracker whose package is not installed (imports nothing)."""
    if kind == "none":
        return
    if kind not in PACKAGES:
        raise TrackingError(f"tracking={kind!r}: use none, mlflow or tensorboard.")
    if importlib.util.find_spec(PACKAGES[kind]) is None:
        raise TrackingError(f"tracking={kind}: the {PACKAGES[kind]} package is not installed in this environment; "
                            f"install it (.venv/bin/pip install {PACKAGES[kind]}) or use tracking=none.")


class Tracker:
    """The no-op tracker of tracking=none; the real ones override these three calls."""

    def log_epoch(self, metrics: Mapping[str, Any], step: int) -> None:
        """Log one epoch's numeric metrics at `step`."""

    def log_figure(self, path: Path) -> None:
        """Attach a saved figure (PNG)."""

    def finish(self, summary: Mapping[str, Any] | None = None) -> None:
        """Log the cycle's summary (its ledger row) and close."""


def _numbers(values: Mapping[str, Any]) -> dict[str, float]:
    """The finite numeric entries of a row (trackers take numbers only)."""
    out = {}
    for k, v in values.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            continue
        if v == v and abs(v) != float("inf"):
            out[k] = float(v)
    return out


class MlflowTracker(Tracker):
    """One MLflow run per training cycle, in an experiment named after the study's run_id."""

    def __init__(self, run_id: str, cycle: int, params: Mapping[str, Any]) -> None:
        import mlflow
        self.mlflow = mlflow
        # without a tracking server, keep the store beside runs/ (not in whatever the working directory is)
        if not os.environ.get("MLFLOW_TRACKING_URI"):
            mlflow.set_tracking_uri((paths.home() / "mlruns").as_uri())
        mlflow.set_experiment(run_id)
        mlflow.start_run(run_name=f"cycle-{cycle}")
        mlflow.log_params({k: str(v) for k, v in params.items()})

    def log_epoch(self, metrics: Mapping[str, Any], step: int) -> None:
        self.mlflow.log_metrics(_numbers(metrics), step=step)

    def log_figure(self, path: Path) -> None:
        self.mlflow.log_artifact(str(path), artifact_path="figures")

    def finish(self, summary: Mapping[str, Any] | None = None) -> None:
        if summary:
            self.mlflow.log_metrics({f"cycle_{k}": v for k, v in _numbers(summary).items()})
        self.mlflow.end_run()


class TensorboardTracker(Tracker):
    """Event files under runs/<run_id>/tensorboard/cycle-<N> (`tensorboard --logdir runs/<run_id>/tensorboard`)."""

    def __init__(self, run_dir: Path, cycle: int, params: Mapping[str, Any]) -> None:
        from torch.utils.tensorboard import SummaryWriter
        self.writer = SummaryWriter(log_dir=str(Path(run_dir) / "tensorboard" / f"cycle-{cycle}"))
        self.params = dict(params)
        self.writer.add_text("parameters", "\n".join(f"    {k} = {v}" for k, v in sorted(self.params.items())))

    def log_epoch(self, metrics: Mapping[str, Any], step: int) -> None:
        for name, value in _numbers(metrics).items():
            self.writer.add_scalar(name, value, step)

    def log_figure(self, path: Path) -> None:
        import numpy as np
        from PIL import Image
        with Image.open(path) as img:
            self.writer.add_image(Path(path).stem, np.asarray(img.convert("RGB")), dataformats="HWC")

    def finish(self, summary: Mapping[str, Any] | None = None) -> None:
        if summary:
            hparams = {k: v if isinstance(v, (int, float, str, bool)) else str(v) for k, v in self.params.items()}
            self.writer.add_hparams(hparams, {f"cycle/{k}": v for k, v in _numbers(summary).items()})
        self.writer.close()


def start(kind: str, run_dir: Path, cycle: int, params: Mapping[str, Any]) -> Tracker:
    """A tracker for one training cycle: a no-op for `none`, else MLflow or TensorBoard."""
    check_available(kind)
    if kind == "none":
        return Tracker()
    if kind == "mlflow":
        return MlflowTracker(Path(run_dir).name, cycle, params)
    return TensorboardTracker(run_dir, cycle, params)


def log_figure(kind: str, run_dir: Path, cycle: int, path: Path) -> None:
    """Attach a figure saved after the cycle ended (03's training curves) to that cycle's tracked run."""
    if kind == "none":
        return
    check_available(kind)
    if kind == "tensorboard":
        tracker = TensorboardTracker.__new__(TensorboardTracker)  # reopen the cycle's event folder, no new text
        from torch.utils.tensorboard import SummaryWriter
        tracker.writer = SummaryWriter(log_dir=str(Path(run_dir) / "tensorboard" / f"cycle-{cycle}"))
        tracker.log_figure(path)
        tracker.writer.close()
        return
    import mlflow
    if not os.environ.get("MLFLOW_TRACKING_URI"):
        mlflow.set_tracking_uri((paths.home() / "mlruns").as_uri())
    found = mlflow.search_runs(experiment_names=[Path(run_dir).name], output_format="list",
                               filter_string=f"tags.mlflow.runName = 'cycle-{cycle}'")
    if found:
        with mlflow.start_run(run_id=found[0].info.run_id):
            mlflow.log_artifact(str(path), artifact_path="figures")
