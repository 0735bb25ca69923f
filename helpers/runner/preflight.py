"""The preflight: checks of the world (the dataset is there, Kaggle credentials, the weights file, the device,
an installed tracker, the images to predict), run once before anything is written.

The schema (helpers/params) checks values alone; this module looks at the machine. The runner calls `check`
for every notebook it will run, and every notebook's first cell calls it through `session.start`. Each check
imports what it needs when it runs, so the runner, which only asks whether the values can work, never loads
torch (1.4 s of its start here) for values that cannot fail (device=auto, devices=1).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from helpers.params.schema import ParameterError, validate


def _dataset(value: str) -> Any:
    from helpers.data.dataset import check_dataset_arg
    return check_dataset_arg(value)


def _weights_file(value: str) -> None:
    if value not in ("imagenet", "none") and not Path(value).expanduser().is_file():
        raise ParameterError(f"weights={value!r}: no such file; give imagenet, none, or the path of a "
                             "state-dict file.")


def _device(value: str) -> Any:
    from helpers.utils.devices import resolve_device
    return resolve_device(value)


def _tracking(value: str) -> None:
    from helpers.training.tracking import check_available
    check_available(value)


def _images(value: str) -> None:
    if value:
        from helpers.evaluation.predict import input_path
        input_path(value)


def _devices(value: str, device: Any) -> int:
    from helpers.training.distributed import resolve_devices
    return resolve_devices(value, device if device is not None else _device("auto"))


# parameter → the check of the world its value needs; a check returns a resolved value or None
WORLD: dict[str, Callable[[Any], Any]] = {
    "dataset": _dataset,
    "weights": _weights_file,
    "device": _device,
    "tracking": _tracking,
    "images": _images,
}
# values whose check cannot fail: `check(..., resolve=False)` leaves them unresolved
CANNOT_FAIL = {"device": "auto", "devices": "1"}


def check(params: dict[str, Any], resolve: bool = True) -> dict[str, Any]:
    """Check `params`' values (the schema), then the world they name; return resolved values (device, devices).

    Every failure is a ParameterError with one sentence naming the parameter and what to do. With
    `resolve=False` values that cannot fail are not resolved (nor returned).
    """
    typed = validate(params)
    resolved: dict[str, Any] = {}
    try:
        for name, world in WORLD.items():
            if name in typed and (resolve or str(typed[name]).strip().lower() != CANNOT_FAIL.get(name)):
                out = world(typed[name])
                if out is not None:
                    resolved[name] = out
        # how many processes depends on the device: checked once both are known
        if "devices" in typed and (resolve or str(typed["devices"]).strip().lower() != CANNOT_FAIL["devices"]):
            resolved["devices"] = _devices(str(typed["devices"]), resolved.get("device"))
    except ParameterError:
        raise
    except ValueError as exc:  # DataError, DeviceError, TrackingError, PredictError: already one sentence
        raise ParameterError(str(exc)) from None
    return resolved
