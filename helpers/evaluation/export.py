"""Export a run's model as a self-contained bundle (ONNX or TorchScript) and prove it answers like PyTorch.

Usage: python -m helpers.export --run-id ID --format onnx|torchscript [--cycle N]

The bundle under runs/<id>/export/ holds the network with its normalisation and softmax inside (input:
uint8 RGB NCHW at the model's size; output: probabilities), preprocessing.json (the resize, size, classes,
mean/std, all derived from the checkpoint) and classes.txt. Parity is measured on the run's test split:
the largest absolute probability difference, the share of identical top-1 answers and both accuracies go
to export/parity.json; a difference above the tolerance is an error, and then no model file is kept.
"""

from __future__ import annotations

import argparse
import copy
import logging
import sys
import warnings
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
from torch import nn

from helpers.data.dataset import load_split
from helpers.data.imagecache import split_arrays
from helpers.evaluation import preprocess, trained
from helpers.models import inference
from helpers.params.schema import check
from helpers.training import checkpoints
from helpers.utils import files, lock, paths

FORMATS = {"onnx": "model.onnx", "torchscript": "model.pt"}
TOLERANCE = 1e-4  # largest allowed |p_exported - p_pytorch| over every image and class of the test split
OPSET = 18


class ExportError(ValueError):
    """The export cannot be made or does not answer like the trained model; the message says which."""


class ExportedNet(nn.Module):
    """The deployable network: uint8 RGB NCHW in, normalised inside, softmax probabilities out."""

    def __init__(self, model: nn.Module, norm: nn.Module) -> None:
        super().__init__()
        self.model, self.norm = model, norm

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.model(self.norm(image)).softmax(1)


def exportable(model: nn.Module, norm: nn.Module) -> ExportedNet:
    """A CPU float32 eval-mode copy of `model` with `norm`, with efficientnet-pytorch's swish made exportable."""
    model = copy.deepcopy(model).cpu().float().eval().to(memory_format=torch.contiguous_format)
    # MemoryEfficientSwish is a custom autograd Function that neither exporter can trace; the plain Swish
    # computes the same numbers. Lite0 has ReLU6 instead and no such module: set_swish would put Swish back.
    from efficientnet_pytorch.utils import MemoryEfficientSwish
    if hasattr(model, "set_swish") and any(isinstance(m, MemoryEfficientSwish) for m in model.modules()):
        model.set_swish(memory_efficient=False)
    return ExportedNet(model, copy.deepcopy(norm).cpu()).eval()


def write_model(net: ExportedNet, fmt: str, path: Path, image_size: int) -> None:
    """Write `net` as ONNX (torch.export-based exporter, dynamic batch) or TorchScript (traced) to `path`."""
    example = torch.randint(0, 256, (2, 3, image_size, image_size), dtype=torch.uint8)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporters' advice to their own developers, not to our user
        if fmt == "onnx":
            logging.getLogger("torch.onnx").setLevel(logging.ERROR)
            torch.onnx.export(net, (example,), str(path), dynamo=True, input_names=["image"],
                              output_names=["probs"], dynamic_shapes=({0: torch.export.Dim("batch")},),
                              opset_version=OPSET, external_data=False, verbose=False)
        elif fmt == "torchscript":
            torch.jit.save(torch.jit.trace(net, (example,)), str(path))
        else:
            raise ExportError(f"format={fmt!r}: use onnx or torchscript.")


def run_exported(path: Path, fmt: str, images: np.ndarray, batch_size: int = 32) -> np.ndarray:
    """Probabilities of an exported model over a uint8 (n, 3, H, W) array: onnxruntime on CPU, or torch.jit."""
    out = []
    if fmt == "onnx":
        import onnxruntime as ort
        options = ort.SessionOptions()
        options.log_severity_level = 3
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        for start in range(0, len(images), batch_size):
            out.append(session.run(["probs"], {"image": np.ascontiguousarray(images[start:start + batch_size])})[0])
    else:
        with warnings.catch_warnings():
            # TorchScript is deprecated upstream but still the format a deployment may ask for.
            warnings.simplefilter("ignore", FutureWarning)
            module = torch.jit.load(str(path), map_location="cpu").eval()
        with torch.no_grad():
            for start in range(0, len(images), batch_size):
                out.append(module(torch.from_numpy(np.array(images[start:start + batch_size]))).numpy())
    return np.concatenate(out).astype(np.float64) if out else np.zeros((0, 0))


def parity(reference: np.ndarray, exported: np.ndarray, labels: list[int] | None = None,
           tolerance: float = TOLERANCE) -> dict:
    """Exported vs PyTorch probabilities: max absolute difference, top-1 agreement, both accuracies, pass/fail."""
    reference, exported = np.asarray(reference, dtype=np.float64), np.asarray(exported, dtype=np.float64)
    if reference.shape != exported.shape:
        raise ExportError(f"the exported model gives {exported.shape} probabilities where PyTorch gives "
                          f"{reference.shape}; the export is broken.")
    diff = float(np.abs(reference - exported).max()) if reference.size else 0.0
    out = {"n": int(len(reference)), "max_abs_diff": diff, "tolerance": tolerance,
           "top1_agreement": float((reference.argmax(1) == exported.argmax(1)).mean()) if len(reference) else 1.0,
           "passed": bool(np.isfinite(diff) and diff <= tolerance)}
    if labels is not None and len(labels):
        y = np.asarray(labels)
        out["accuracy_pytorch"] = float((reference.argmax(1) == y).mean())
        out["accuracy_exported"] = float((exported.argmax(1) == y).mean())
    return out


def _bundle_readme(formats: list[str], spec: dict) -> str:
    """How to use the bundle without this project (a few lines)."""
    size = spec["image_size"]
    usage = {"onnx": "import onnxruntime as ort\n"
                     "session = ort.InferenceSession('model.onnx', providers=['CPUExecutionProvider'])\n"
                     "probs = session.run(['probs'], {'image': x})[0]",
             "torchscript": "import torch\nmodel = torch.jit.load('model.pt')\n"
                            "probs = model(torch.from_numpy(x)).numpy()"}
    blocks = "".join(f"\n{fmt} (`{FORMATS[fmt]}`):\n\n```python\n{usage[fmt]}\n```\n" for fmt in formats)
    return (f"# Exported {spec['arch']} ({', '.join(spec['classes'])})\n\n"
            f"Input `image`: uint8 RGB, shape (batch, 3, {size}, {size}), prepared as preprocessing.json says: "
            f"{spec['resize']}. Normalisation and softmax are inside the network; the output `probs` has one "
            "column per class, in the order of classes.txt. parity.json shows how closely it answers like the "
            f"trained model on the test split.\n{blocks}")


BUNDLE_FILES = ("preprocessing.json", "classes.txt", "README.md")
IDENTITY = ("checkpoint", "checkpoint_sha256", "temperature")  # what makes two exports the same model


def export_run(run_dir: Path, fmt: str, cycle: int = 0, batch_size: int = 32, tolerance: float = TOLERANCE) -> dict:
    """Export a run's best (or `cycle`'s) model to runs/<id>/export/ and prove parity on its test split.

    The folder holds one model's bundle: files of another checkpoint (another cycle, a newer best.pt, another
    temperature) are moved to export/superseded/<time>/ when this one lands, and a failed parity check leaves
    no model file of its format (an older one is moved aside too).
    """
    run_dir = Path(run_dir)
    if fmt not in FORMATS:
        raise ExportError(f"format={fmt!r}: use onnx or torchscript.")
    ckpt_path = checkpoints.resolve(run_dir, int(cycle))
    cpu = torch.device("cpu")  # the bundle runs on the CPU; its reference must too
    model, norm, config = trained.load_trained(ckpt_path, cpu)
    spec = preprocess.spec_from_config(config)
    frame, _ = load_split(run_dir)
    if not (frame["split"] == "test").any():
        raise ExportError(f"run {run_dir.name!r} has no test split to prove parity on; rerun 02 with test_ratio > 0.")
    images, labels = split_arrays(frame, spec["classes"], "test", spec["image_size"])
    folder = run_dir / "export"
    target, parity_path = folder / FORMATS[fmt], folder / "parity.json"
    record = files.read_json(parity_path) if parity_path.exists() else {}
    identity = {"checkpoint": ckpt_path.relative_to(run_dir).as_posix(),
                "checkpoint_sha256": files.sha256_file(ckpt_path), "temperature": config.get("temperature", 1.0)}
    with files.atomic_path(target) as tmp:  # the model file lands only when parity holds
        _write(model, norm, fmt, tmp, spec, config, ckpt_path)
        result = parity(inference.predict_proba(model, norm, images, cpu, batch_size),
                        run_exported(tmp, fmt, images, batch_size), labels, tolerance)
        result.update(format=fmt, file=target.name, **identity, cycle=config["cycle"], arch=config["arch"],
                      image_size=spec["image_size"], size_mb=round(tmp.stat().st_size / 2**20, 2), split="test",
                      exported_at=datetime.now(timezone.utc).isoformat(timespec="seconds"), torch=torch.__version__)
        if fmt == "onnx":
            import onnxruntime
            result.update(onnxruntime=onnxruntime.__version__, opset=OPSET)
        stale = [f for f, r in record.items() if f != fmt and {k: r.get(k) for k in IDENTITY} != identity]
        if not result["passed"]:
            stale = [fmt] if target.exists() else []  # no model file of this format may outlive a failed check
        moved = set_aside(folder, record, stale, with_bundle=bool(stale) and result["passed"])
        record[fmt] = result
        files.write_json(parity_path, record)
        if not result["passed"]:
            raise ExportError(f"{fmt} export of {ckpt_path.name} differs from PyTorch by up to "
                              f"{result['max_abs_diff']:.3g} in probability on the test split (tolerance "
                              f"{tolerance:g}; top-1 agreement {result['top1_agreement']:.4f}); no {target.name} "
                              f"was kept{f' (the earlier one is in {moved})' if moved else ''} — see {parity_path}.")
    files.write_json(folder / "preprocessing.json", spec)
    files.write_text(folder / "classes.txt", "\n".join(spec["classes"]) + "\n")
    files.write_text(folder / "README.md", _bundle_readme([f for f in FORMATS if (folder / FORMATS[f]).exists()], spec))
    return {**result, "superseded": moved}


def _write(model: nn.Module, norm: nn.Module, fmt: str, tmp: Path, spec: dict, config: dict, ckpt: Path) -> None:
    """Write the exported network to `tmp`; any exporter failure is one sentence naming arch, format and cause."""
    try:
        write_model(exportable(model, norm), fmt, tmp, spec["image_size"])
    except Exception as exc:  # the exporters raise many types; the user needs the arch, format and cause
        cause = (str(exc).strip().splitlines() or ["no message"])[0][:200]
        raise ExportError(f"{fmt} export of {config['arch']} ({ckpt.name}) failed: {type(exc).__name__}: "
                          f"{cause}; try the other format.") from exc


def set_aside(folder: Path, record: dict, formats: list[str], with_bundle: bool) -> str:
    """Move these formats' model files (and their parity records) to export/superseded/<time>/; '' if none.

    With `with_bundle` the bundle's shared files go along: they describe the model being replaced.
    """
    present = [f for f in formats if (folder / FORMATS[f]).exists() or f in record]
    if not present:
        return ""
    aside = folder / "superseded" / datetime.now().strftime("%Y%m%d-%H%M%S")
    while aside.exists():
        aside = aside.with_name(aside.name + "+")
    files.make_folder(aside)
    names = [FORMATS[f] for f in present] + (list(BUNDLE_FILES) if with_bundle else [])
    for name in names:
        if (folder / name).exists():
            (folder / name).rename(aside / name)
    files.write_json(aside / "parity.json", {f: record.pop(f) for f in present if f in record})
    files.fsync_folder(folder)
    return aside.relative_to(folder.parent).as_posix()


def describe(result: dict) -> str:
    """One line of parity figures."""
    line = (f"{result['format']}: max |Δp| {result['max_abs_diff']:.2e} (tolerance {result['tolerance']:g}), "
            f"top-1 agreement {result['top1_agreement']:.4f} on {result['n']} test images")
    if "accuracy_pytorch" in result:
        line += f", accuracy PyTorch {result['accuracy_pytorch']:.4f} / exported {result['accuracy_exported']:.4f}"
    return line


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    ap = argparse.ArgumentParser(prog="python -m helpers.export", description=__doc__.splitlines()[0])
    ap.add_argument("--run-id", default="default", help="the run whose model is exported")
    ap.add_argument("--format", required=True, choices=sorted(FORMATS), help="onnx (onnxruntime) or torchscript")
    ap.add_argument("--cycle", type=int, default=0, help="which cycle's best (0: the run's best)")
    ap.add_argument("--batch-size", type=int, default=32, help="images per parity step")
    args = ap.parse_args(argv)
    try:
        for name in ("run_id", "cycle", "batch_size"):
            check(name, getattr(args, name))
        with lock.hold(paths.run_dir(args.run_id), f"python -m helpers.export --format {args.format}"):
            result = export_run(paths.run_dir(args.run_id), args.format, args.cycle, args.batch_size)
    except ValueError as exc:  # our errors are ValueErrors with a user-facing sentence
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(describe(result))
    if result.get("superseded"):
        print(f"another checkpoint's export moved aside: runs/{args.run_id}/{result['superseded']}")
    print(f"written: {paths.run_dir(args.run_id) / 'export'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
