"""One check per parameter, shared by the runner and every notebook, run before any file is written."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from .data import check_dataset_arg
from .devices import resolve_device
from .models import ARCHS, arch_spec


class ParameterError(ValueError):
    """A parameter value that cannot work; the message names it and says what to give instead."""


def _int(name: str, value: Any, low: int) -> int:
    """An integer parameter at least `low`."""
    try:
        as_int = int(value)
        if as_int != float(value):
            raise ValueError
    except (TypeError, ValueError):
        raise ParameterError(f"{name}={value!r}: must be an integer ≥ {low}.") from None
    if as_int < low:
        raise ParameterError(f"{name}={value!r}: must be an integer ≥ {low}.")
    return as_int


def validate(params: dict[str, Any]) -> dict[str, Any]:
    """Check every known parameter in `params`; return resolved values (e.g. the torch device)."""
    resolved: dict[str, Any] = {}
    if "run_id" in params:
        rid = str(params["run_id"])
        if not rid or "/" in rid or "\\" in rid or rid.startswith("."):
            raise ParameterError(f"run_id={rid!r}: must be a plain folder name (no slashes, not hidden).")
    if "dataset" in params:
        check_dataset_arg(str(params["dataset"]))
    if "arch" in params:
        try:
            arch_spec(params["arch"])
        except ValueError as exc:
            raise ParameterError(str(exc)) from None
    if "research_archs" in params:
        unknown = [a for a in parse_list(params["research_archs"]) if a not in ARCHS]
        if unknown:
            raise ParameterError(f"research_archs has unknown {unknown}; choose from: {', '.join(ARCHS)}.")
    if "weights" in params:
        w = str(params["weights"])
        if w not in ("imagenet", "none") and not Path(w).expanduser().is_file():
            raise ParameterError(f"weights={w!r}: no such file; give imagenet, none, or the path of a "
                                 "state-dict file.")
    if "device" in params:
        resolved["device"] = resolve_device(str(params["device"]))
    for name, low in (("batch_size", 1), ("epochs", 0), ("head_epochs", 0), ("image_size", 0), ("patience", 0),
                      ("bakeoff_epochs", 0), ("workers", -1)):
        if name in params:
            _int(name, params[name], low)
    if params.get("image_size") not in (None, 0) and int(params["image_size"]) < 32:
        raise ParameterError(f"image_size={params['image_size']}: use 0 (automatic) or at least 32 pixels.")
    if "init" in params and params["init"] not in ("weights", "best", "last"):
        raise ParameterError(f"init={params['init']!r}: use weights, best or last.")
    if "lang" in params and params["lang"] not in ("ru", "en"):
        raise ParameterError(f"lang={params['lang']!r}: use ru or en.")
    for name in ("val_ratio", "test_ratio"):
        if name in params and not 0 < float(params[name]) < 0.5:
            raise ParameterError(f"{name}={params[name]!r}: must be between 0 and 0.5.")
    for name in ("lr", "backbone_lr_scale"):
        if name in params and not (float(params[name]) > 0 and math.isfinite(float(params[name]))):
            raise ParameterError(f"{name}={params[name]!r}: must be a positive number.")
    return resolved


def parse_list(value: str | list[str]) -> list[str]:
    """A comma-separated parameter as a list of stripped names."""
    if isinstance(value, (list, tuple)):
        return [str(v).strip() for v in value if str(v).strip()]
    return [v.strip() for v in str(value).split(",") if v.strip()]


def auto_image_size(arch: str, median_side: float | None) -> int:
    """image_size=0: the arch's native size, or less for small images (about three times their side, ≥ 64)."""
    native = arch_spec(arch).native_size
    if not median_side:
        return native
    # Upscaling small images about 3x gives the ImageNet filters enough pixels; more only costs time
    # (28 px Fashion-MNIST: 64 px reached 0.89-0.90 test accuracy, 80 px 0.90-0.91, 128 px no better).
    return int(min(native, max(64, round(3 * median_side / 16) * 16)))


