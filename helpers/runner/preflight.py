"""The preflight: checks of the world (the dataset is there, Kaggle credentials, the weights file, the device,
an installed tracker, the images to predict), run once before anything is written.

The schema (helpers/params) checks values alone; this module looks at the machine. The runner calls `check`
for every notebook it will run, and every notebook's first cell calls it through `session.start`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from helpers.data.dataset import check_dataset_arg
from helpers.evaluation.predict import input_path
from helpers.params.schema import ParameterError, validate
from helpers.training.distributed import resolve_devices
from helpers.training.tracking import check_available
from helpers.utils.devices import resolve_device


def _weights_file(value: str) -> None:
    if value not in ("imagenet", "none") and not Path(value).expanduser().is_file():
        raise ParameterError(f"weights={value!r}: no such file; give imagenet, none, or the path of a "
                             "state-dict file.")


def _images(value: str) -> None:
    if value:
        input_path(value)


# parameter → the check of the world its value needs; a check returns a resolved value or None
WORLD: dict[str, Callable[[Any], Any]] = {
    "dataset": check_dataset_arg,
    "weights": _weights_file,
    "device": resolve_device,
    "tracking": check_available,
    "images": _images,
}


def check(params: dict[str, Any]) -> dict[str, Any]:
    """Check `params`' values (the schema), then the world they name; return resolved values (device, devices).

    Every failure is a ParameterError with one sentence naming the parameter and what to do.
    """
    typed = validate(params)
    resolved: dict[str, Any] = {}
    try:
        for name, world in WORLD.items():
            if name in typed:
                out = world(typed[name])
                if out is not None:
                    resolved[name] = out
        if "devices" in typed:  # how many processes depends on the device: checked once both are known
            device = resolved.get("device") or resolve_device("auto")
            resolved["devices"] = resolve_devices(str(typed["devices"]), device)
    except ParameterError:
        raise
    except ValueError as exc:  # DataError, DeviceError, TrackingError, PredictError: already one sentence
        raise ParameterError(str(exc)) from None
    return resolved

