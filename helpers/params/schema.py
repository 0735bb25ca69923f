"""The one parameter schema: every name, type, default, allowed values, notebooks and help line.

The runner's validation, each notebook's setup call (`session.start`), `python -m helpers.pipeline --help`
and the README's table are all derived from `SCHEMA`; a test checks every notebook's `parameters` cell
against it. Print the README table with `python -m helpers.params`.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Callable, Iterable

from helpers.params.archs import ARCHS, arch_spec

NOTEBOOKS = ["01_research", "02_data", "03_train", "04_evaluate", "05_predict"]
DEFAULT_RESEARCH_ARCHS = ("efficientnet-lite0,efficientnet-b0,efficientnet-b1,efficientnet-b2,efficientnet-b3,"
                          "efficientnet-b4,resnet50,mobilenet_v3_large,mobilenet_v3_small")


class ParameterError(ValueError):
    """A parameter value that cannot work; the message names it and says what to give instead."""


@dataclass(frozen=True)
class Param:
    """One parameter: its type and default, the notebooks that declare it, and how a value is checked."""

    name: str
    type: type
    default: Any
    notebooks: tuple[str, ...]
    help: str
    choices: tuple[Any, ...] = ()
    minimum: float | None = None
    check: Callable[[Any], None] | None = None  # a pure check of the value; raises ParameterError
    values: str = ""  # how the README describes the allowed values, when `choices` does not
    words: tuple[str, ...] = ()  # words accepted besides a value of `type` (lr: auto)

    def describe_values(self) -> str:
        """The allowed values in a few words."""
        if self.values:
            return self.values
        if self.choices:
            return ", ".join(f"`{c}`" for c in self.choices)
        kind = {int: "integer", float: "number", bool: "`True`/`False`", str: "text"}[self.type]
        if self.minimum is not None:
            return f"{kind} ≥ {self.minimum:g}"
        return kind


# ---------------------------------------------------------------- checks of single values

def _check_run_id(value: str) -> None:
    if not value or "/" in value or "\\" in value or value.startswith("."):
        raise ParameterError(f"run_id={value!r}: must be a plain folder name (no slashes, not hidden).")


def _check_dataset(value: str) -> None:
    kind, _, rest = value.partition(":")
    if not value.strip():
        raise ParameterError("dataset is empty; give sample, a folder or archive, kaggle:<owner>/<dataset> or "
                             "kaggle-competition:<name>.")
    if kind == "kaggle" and not re.fullmatch(r"[\w.-]+/[\w.-]+", rest):
        raise ParameterError(f"dataset={value!r}: a Kaggle dataset is kaggle:<owner>/<dataset>, like "
                             "kaggle:zalando-research/fashionmnist.")
    if kind == "kaggle-competition" and not re.fullmatch(r"[\w.-]+", rest):
        raise ParameterError(f"dataset={value!r}: a Kaggle competition is kaggle-competition:<name>.")


def _check_arch(value: str) -> None:
    try:
        arch_spec(value)
    except ValueError as exc:
        raise ParameterError(str(exc)) from None


def _check_research_archs(value: str) -> None:
    unknown = [a for a in parse_list(value) if a not in ARCHS]
    if unknown:
        raise ParameterError(f"research_archs has unknown {unknown}; choose from: {', '.join(ARCHS)}.")
    if not parse_list(value):
        raise ParameterError("research_archs is empty; name at least one architecture.")


def _check_memory_batches(value: str) -> None:
    bad = [b for b in parse_list(value) if not (b.isdigit() and int(b) >= 1)]
    if bad:
        raise ParameterError(f"research_memory_batches has {bad}; give comma-separated batch sizes ≥ 1, "
                             "like 8,16, or leave it empty.")


def _check_weights(value: str) -> None:
    if not value.strip():
        raise ParameterError("weights is empty; give imagenet, none, or the path of a state-dict file.")


def _check_device(value: str) -> None:
    if not re.fullmatch(r"auto|cpu|cuda|cuda:\d+|mps", value.strip().lower()):
        raise ParameterError(f"device={value!r} is not a device; use auto, cpu, cuda, cuda:N or mps.")


def _check_image_size(value: int) -> None:
    if value not in (0,) and value < 32:
        raise ParameterError(f"image_size={value}: use 0 (automatic) or at least 32 pixels.")


def _check_ratio(name: str) -> Callable[[float], None]:
    def check(value: float) -> None:
        if not 0 < value < 0.5:
            raise ParameterError(f"{name}={value!r}: must be between 0 and 0.5.")
    return check


def _check_positive(name: str) -> Callable[[float], None]:
    def check(value: float) -> None:
        if not (value > 0 and math.isfinite(value)):
            raise ParameterError(f"{name}={value!r}: must be a positive number.")
    return check


def _check_init(value: str) -> None:
    if value not in ("weights", "best", "last") and not re.fullmatch(r"cycle:[1-9]\d*", value):
        raise ParameterError(f"init={value!r}: use weights, best, last or cycle:<N> (N = a finished cycle).")


def _check_unfreeze(value: str) -> None:
    if not (value == "all" or value.isdigit()):
        raise ParameterError(f"unfreeze={value!r}: use all, or the number of top backbone blocks to train.")


def _check_devices(value: str) -> None:
    if not (value == "all" or (value.isdigit() and int(value) >= 1)):
        raise ParameterError(f"devices={value!r}: use 1, a number of processes N, or all.")


def _check_label_smoothing(value: float) -> None:
    if not 0 <= value < 1:
        raise ParameterError(f"label_smoothing={value!r}: must be at least 0 and below 1.")


def late_epochs(share: float, epochs: int) -> int:
    """How many of the network stage's last epochs `late_freeze=share` freezes deeper: the share, rounded down."""
    return math.floor(share * epochs + 1e-9)


def _check_late_freeze(value: float) -> None:
    if not 0 <= value <= 1:
        raise ParameterError(f"late_freeze={value!r}: must be a share of the network stage's epochs, 0 to 1.")


ALL = tuple(NOTEBOOKS)
P = Param
SCHEMA: list[Param] = [
    P("run_id", str, "default", ALL, "folder name under runs/ and reports/", check=_check_run_id,
      values="a plain folder name"),
    P("dataset", str, "sample", ("01_research", "02_data"),
      "the images: the committed sample, a local folder or archive, or a Kaggle download", check=_check_dataset,
      values="`sample`, a folder or `.zip`/`.tar.gz`, `kaggle:<owner>/<dataset>`, `kaggle-competition:<name>`"),
    P("arch", str, "efficientnet-lite0", ("01_research", "02_data", "03_train"),
      "the network 03 fine-tunes (02: its pooled ImageNet features look for wrong labels)",
      check=_check_arch, values="`efficientnet-b0` … `b7`, `efficientnet-lite0`, `resnet50`, `mobilenet_v3_large`, "
                                "`mobilenet_v3_small`"),
    P("research_archs", str, DEFAULT_RESEARCH_ARCHS, ("01_research",), "01's candidates, comma-separated",
      check=_check_research_archs, values="comma-separated archs (default: all nine)"),
    P("research_batch_size", int, 8, ("01_research",), "batch of 01's throughput and training-step measurements",
      minimum=1),
    P("research_repeats", int, 5, ("01_research",),
      "01 times each figure up to this many runs after a warm-up (fewer when they would take over about 1.5 s "
      "in all)", minimum=1),
    P("research_reuse", bool, True, ("01_research",),
      "01 reuses figures measured earlier on this machine with the same torch, device, threads and settings"),
    P("research_memory_batches", str, "8,16", ("01_research",),
      "batches at which 01 measures a training step's peak memory of its largest EfficientNet (empty: none)",
      check=_check_memory_batches, values="comma-separated integers ≥ 1, or empty"),
    P("bakeoff_epochs", int, 0, ("01_research",),
      "above 0, 01 also fine-tunes each candidate whose weights are available for this many epochs", minimum=0),
    P("image_size", int, 0, ("01_research", "02_data", "03_train"),
      "pixels of the square network input; 0 picks the arch's native size, or about 3× the side of small images",
      minimum=0, check=_check_image_size),
    P("device", str, "auto", ("01_research", "02_data", "03_train", "04_evaluate", "05_predict"),
      "where the network runs",
      check=_check_device, values="`auto`, `cpu`, `cuda`, `cuda:N`, `mps`"),
    P("lang", str, "ru", ("01_research", "02_data", "03_train", "04_evaluate"),
      "language of the report, the study's tables and the figures",
      choices=("ru", "en")),
    P("seed", int, 42, ("01_research", "02_data", "03_train"), "seed of the split and of training"),
    # 02: the data
    P("layout", str, "auto", ("02_data",), "how the dataset is organised (auto: detected and explained)",
      choices=("auto", "class_folders", "presplit", "csv", "filenames")),
    P("label_column", str, "", ("02_data",), "CSV layouts: the column holding labels (empty: detect)"),
    P("path_column", str, "", ("02_data",), "CSV layouts: the column naming image files (empty: detect)"),
    P("group_column", str, "", ("02_data",),
      "CSV layouts: images with equal values (patient, lesion) stay in one split (empty: none)"),
    P("val_ratio", float, 0.15, ("02_data",), "validation share of every class", check=_check_ratio("val_ratio"),
      values="between 0 and 0.5"),
    P("test_ratio", float, 0.15, ("02_data",), "test share of every class", check=_check_ratio("test_ratio"),
      values="between 0 and 0.5"),
    P("keep_given_split", bool, False, ("02_data",), "keep a dataset's own train/val/test folders"),
    P("move_leaks", bool, False, ("02_data",),
      "with keep_given_split: move each duplicate or `group_column` group that spans the given splits whole into "
      "the most held-out split it touches (default: list them as leaks)"),
    P("restart_training", bool, False, ("02_data",),
      "a trained run whose split would change: move its checkpoints and ledger aside (`runs/<id>/superseded/`) and "
      "start its training over (default: refuse the change)"),
    P("label_issues", str, "report", ("02_data",),
      "`report` lists likely wrong labels (cleanlab); `exclude_train` also leaves the flagged training images "
      "out of training (never validation or test)", choices=("report", "exclude_train")),
    # 03: a training cycle
    P("weights", str, "imagenet", ("03_train",), "the starting weights of a new cycle", check=_check_weights,
      values="`imagenet`, `none`, or a state-dict file"),
    P("init", str, "weights", ("03_train",),
      "`weights` starts from `weights`; `best`, `last` or `cycle:<N>` continue this run (дообучение)",
      check=_check_init, values="`weights`, `best`, `last`, `cycle:<N>`"),
    P("batch_size", int, 32, ("02_data", "03_train", "04_evaluate", "05_predict"), "images per step on the device",
      minimum=1),
    P("epochs", int, 8, ("03_train",), "epochs of the network stage of this cycle, after the head-only ones",
      minimum=0),
    P("head_epochs", int, 5, ("03_train",), "head-only epochs on cached backbone features, run first (cheap)",
      minimum=0),
    P("lr", float, 0.002, ("03_train",),
      "head learning rate (AdamW); `auto`: a learning-rate range test on the head's cached features chooses it",
      check=_check_positive("lr"), values="number > 0, or `auto`", words=("auto",)),
    P("lr_find", str, "head", ("03_train",),
      "when lr is `auto`: `head` tests on the head stage and uses its rate in both stages; `both` also tests the "
      "network stage (a few hundred training steps)", choices=("head", "both")),
    P("backbone_lr_scale", float, 0.5, ("03_train",), "the backbone's learning rate is `lr` times this",
      check=_check_positive("backbone_lr_scale"), values="number > 0"),
    P("weight_decay", float, 0.01, ("03_train",), "AdamW's decoupled weight decay, both stages (AdamW's own default)",
      minimum=0.0),
    P("warmup_epochs", float, 1.0, ("03_train",),
      "the network stage's linear learning-rate warm-up, in epochs (at most half the stage), before the cosine decay",
      minimum=0.0),
    P("label_smoothing", float, 0.1, ("03_train",), "cross-entropy label smoothing",
      check=_check_label_smoothing, values="0 ≤ x < 1"),
    P("augment", str, "flip", ("03_train",), "train-time augmentation", choices=("none", "flip", "crop")),
    P("class_weights", str, "none", ("03_train",),
      "`balanced`: inverse-frequency weights of the classes in the loss, head and network stages", choices=("none", "balanced")),
    P("sampler", str, "shuffle", ("03_train",),
      "`balanced`: all classes drawn equally often (with replacement) instead of each image once an epoch",
      choices=("shuffle", "balanced")),
    P("select_metric", str, "accuracy", ("03_train", "04_evaluate"),
      "the validation figure that picks each cycle's best epoch and the run's best model across cycles",
      choices=("accuracy", "balanced_accuracy", "macro_f1")),
    P("freeze_bn", bool, True, ("03_train",), "keep BatchNorm statistics frozen (stable at small batches)"),
    P("freeze_early", bool, True, ("03_train",), "keep the stem and the early layers (`freeze_stride`) frozen at "
      "their pretrained weights and train the rest on their cached output (faster epochs)"),
    P("freeze_stride", int, 8, ("03_train",), "with `freeze_early`: the frozen layers are those whose output is at "
      "least 1/N of the input's side (2 or 4 train more of the network, 16 freezes and caches more)",
      choices=(2, 4, 8, 16)),
    P("late_freeze", float, 0.5, ("03_train",), "with `freeze_early`: this share of the network stage's epochs, at "
      "its end, also freezes the next stage (up to stride 2 × `freeze_stride`), whose output is computed once from "
      "its trained weights, and trains only the deepest layers (cheaper epochs; 0: never)",
      check=_check_late_freeze, values="0 ≤ x ≤ 1"),
    P("patience", int, 0, ("03_train",), "stop after this many epochs without a better val accuracy (0: never)",
      minimum=0),
    P("unfreeze", str, "all", ("03_train",), "stage 2 trains `all` blocks, or only this many top blocks",
      check=_check_unfreeze, values="`all` or a number"),
    P("schedule", str, "cosine", ("03_train",), "learning-rate schedule (cosine after the `warmup_epochs` warm-up)",
      choices=("cosine", "onecycle")),
    P("deterministic", bool, False, ("03_train",), "deterministic algorithms (slower; identical reruns)"),
    P("workers", int, -1, ("03_train",), "DataLoader workers (-1: none on CPU, cores-1 on GPU)", minimum=-1),
    P("keep_last", int, 2, ("03_train",),
      "keep `last.pt` of only the newest K cycles (0: all); every cycle's `best.pt` is always kept", minimum=0),
    P("devices", str, "1", ("03_train",), "data-parallel processes through torchrun (gloo on CPU, NCCL on CUDA)",
      check=_check_devices, values="`1`, `N` or `all`"),
    P("compile", bool, False, ("03_train",), "torch.compile the network where it speeds training up"),
    P("cache", str, "auto", ("03_train",),
      "resized-image cache: `auto` uses it within `cache_gb`, `off` decodes images on the fly",
      choices=("auto", "on", "off")),
    P("cache_gb", float, 8.0, ("03_train",), "disk budget of the resized-image cache",
      check=_check_positive("cache_gb"), values="number > 0"),
    P("tracking", str, "none", ("03_train",), "also log each cycle to an installed tracker",
      choices=("none", "mlflow", "tensorboard")),
    # 04 and 05: using the model
    P("cycle", int, 0, ("04_evaluate", "05_predict"), "which cycle's best to use (0: the run's best by validation)",
      minimum=0),
    P("tta", str, "none", ("04_evaluate", "05_predict"), "test-time augmentation",
      choices=("none", "flip", "flip+crops")),
    P("images", str, "", ("05_predict",), "what to predict (empty: the run's test split)",
      values="a folder, an archive, an image file, a CSV of paths"),
    P("top_k", int, 3, ("05_predict",), "how many classes per image", minimum=1),
    P("export", str, "none", ("05_predict",), "also export the model and prove parity",
      choices=("none", "onnx", "torchscript")),
]
BY_NAME: dict[str, Param] = {p.name: p for p in SCHEMA}


def for_notebook(notebook: str) -> list[Param]:
    """The parameters a notebook declares, in schema order."""
    return [p for p in SCHEMA if notebook in p.notebooks]


def coerce(name: str, value: Any) -> Any:
    """Give `value` its schema type (a CLI string '16' → 16), or say in one sentence why it cannot be."""
    p = BY_NAME[name]
    if p.words and isinstance(value, str) and value.strip().lower() in p.words:
        return value.strip().lower()
    try:
        if p.type is bool:
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in ("true", "1", "yes"):
                return True
            if text in ("false", "0", "no"):
                return False
            raise ValueError
        if p.type is int:
            if isinstance(value, bool) or float(value) != int(float(value)):
                raise ValueError
            return int(float(value))
        if p.type is float:
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        return "" if value is None else str(value)
    except (TypeError, ValueError, OverflowError):
        kind = {bool: "True or False", int: "an integer", float: "a number"}[p.type]
        also = "".join(f" or {w}" for w in p.words)
        raise ParameterError(f"{name}={value!r}: expected {kind}{also}, like the default {p.default!r}.") from None


def check(name: str, value: Any) -> Any:
    """Type, range, choices and the parameter's own pure check; return the typed value.

    Nothing here looks at the world (files, devices, credentials, packages): that is the preflight's
    (helpers/runner/preflight.py), run once by the runner and by every notebook's first cell."""
    if name not in BY_NAME:
        raise ParameterError(f"unknown parameter {name!r}; valid names are {', '.join(sorted(BY_NAME))}.")
    p = BY_NAME[name]
    value = coerce(name, value)
    if p.words and value in p.words:
        return value
    if p.choices and value not in p.choices:
        raise ParameterError(f"{name}={value!r}: use {', '.join(map(str, p.choices))}.")
    if p.minimum is not None and value < p.minimum:
        raise ParameterError(f"{name}={value!r}: must be an integer ≥ {p.minimum:g}." if p.type is int
                             else f"{name}={value!r}: must be at least {p.minimum:g}.")
    if p.check:
        p.check(value)
    return value


def validate(params: dict[str, Any]) -> dict[str, Any]:
    """Check every parameter in `params` (unknown names are errors); return them typed."""
    return {name: check(name, value) for name, value in params.items()}


def defaults(notebook: str | None = None) -> dict[str, Any]:
    """Default values of one notebook's parameters (or of all)."""
    return {p.name: p.default for p in (for_notebook(notebook) if notebook else SCHEMA)}


def parse_list(value: str | Iterable[str]) -> list[str]:
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
    # (28 px Fashion-MNIST: 64 px reached 0.89-0.90 validation accuracy, 80 px 0.90-0.91, 128 px no better).
    return int(min(native, max(64, round(3 * median_side / 16) * 16)))


def _short(nb: str) -> str:
    return nb.split("_")[0]


def markdown_table() -> str:
    """The README's parameter table: name, values, default, notebooks, help."""
    lines = ["| name | values | default | notebooks | what it does |", "|---|---|---|---|---|"]
    for p in SCHEMA:
        default = "`\"\"`" if p.default == "" else f"`{p.default}`"
        if p.name == "research_archs":
            default = "all nine"
        nbs = "all" if p.notebooks == ALL else ", ".join(_short(n) for n in p.notebooks)
        lines.append(f"| `{p.name}` | {p.describe_values()} | {default} | {nbs} | {p.help} |")
    return "\n".join(lines)


def help_text() -> str:
    """Every parameter grouped by notebook, for the runner's --help."""
    out = ["parameters (-p NAME VALUE), grouped by the notebook that declares them:"]
    for nb in NOTEBOOKS:
        out.append(f"\n  {nb}:")
        for p in for_notebook(nb):
            out.append(f"    {p.name:<20} {p.describe_values().replace('`', '')} (default {p.default!r}): {p.help}")
    return "\n".join(out)

