"""Write the four study notebooks from the cell texts below (run after editing them: python scripts/build_notebooks.py).

The notebooks are committed without outputs; this script keeps their structure uniform: a markdown
header, one cell tagged `parameters` of literals, a setup cell, then short cells that call helpers.
"""

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

OUT = Path(__file__).resolve().parents[1] / "notebooks"
KERNEL = {"name": "image-study-kit", "display_name": "Image study kit (.venv)", "language": "python"}

NOTEBOOKS = {
    "01_research": [
        ("md", """# 1. Исследование архитектур · Architecture study

**Purpose.** Compare the candidate families of the write-up (EfficientNet, ResNet-50, MobileNetV3): the
quoted advantages and drawbacks, beside figures measured on *this* machine — parameters, FLOPs, latency,
throughput, a training step, peak memory — and the published ImageNet top-1.

**Inputs:** none (no weights are needed for measurements). **Outputs:** `runs/<run_id>/research.csv`,
`figures/research_latency_accuracy.png`."""),
        ("params", """run_id = "default"  # folder under runs/ and reports/
arch = "efficientnet-lite0"  # the architecture 03 fine-tunes
research_archs = "efficientnet-lite0,efficientnet-b0,efficientnet-b1,efficientnet-b2,efficientnet-b3,efficientnet-b4,resnet50,mobilenet_v3_large,mobilenet_v3_small"  # candidates, comma-separated
image_size = 0  # input pixels for the measurements (0: the chosen arch's native size)
device = "auto"  # auto, cpu, cuda, cuda:N, mps
batch_size = 8  # batch for the throughput and training-step measurements
lang = "ru"  # ru or en, for the quoted table
bakeoff_epochs = 0  # above 0: also fine-tune every candidate with available weights for this many epochs
dataset = "sample"  # data for the bake-off (the run's split when 02 already made one)
seed = 42  # seed of the bake-off's split and training"""),
        ("code", """from IPython.display import display

from helpers import data, io, plots, research, session
from helpers.models import arch_spec
from helpers.params import auto_image_size, parse_list

ctx = session.start("01_research", run_id=run_id, arch=arch, research_archs=research_archs,
                    image_size=image_size, device=device, batch_size=batch_size, lang=lang,
                    bakeoff_epochs=bakeoff_epochs, dataset=dataset, seed=seed)
size = image_size or arch_spec(arch).native_size
print(f"measuring at {size}px on {ctx.device}")"""),
        ("md", "## Что пишут источники · What the sources say"),
        ("code", "research.qualitative_table(lang)"),
        ("md", "## Что измерено здесь · What this machine measures"),
        ("code", """table = research.study(parse_list(research_archs), size, ctx.device, batch_size)
io.write_csv(ctx.run_dir / "research.csv", table)
table"""),
        ("code", "research.claim_checks(table, lang)"),
        ("code", """fig = plots.research_scatter(table)
io.save_figure(fig, ctx.figures / "research_latency_accuracy.png")"""),
        ("md", """## Соревнование на своих данных · Bake-off on this dataset

With `bakeoff_epochs > 0` every candidate whose ImageNet weights are available is fine-tuned on the same
split with the same budget and seed; its best validation accuracy joins `research.csv`."""),
        ("code", """if bakeoff_epochs > 0:
    frame, report = data.split_for(ctx.run_dir, dataset, seed)
    bake = research.bakeoff(parse_list(research_archs), frame, report["classes"],
                            auto_image_size(arch, data.median_side(report)), ctx.device, bakeoff_epochs,
                            32, seed, ctx.run_dir / "bakeoff")
    table = table.merge(bake, on="arch", how="left")
    io.write_csv(ctx.run_dir / "research.csv", table)
    display(bake)"""),
    ],
    "02_data": [
        ("md", """# 2. Подготовка данных · Data preparation

**Purpose.** Take the dataset (the committed Fashion-MNIST sample, a local folder or archive, or Kaggle),
decode and hash every file, skip and name the broken ones, group duplicates, and split it 70/15/15 —
stratified, seeded, and with no duplicate group across two splits.

**Inputs:** `dataset`. **Outputs:** `runs/<run_id>/split.csv`, `data_report.json`, `figures/class_balance.png`."""),
        ("params", """run_id = "default"  # folder under runs/ and reports/
dataset = "sample"  # sample, a folder or .zip/.tar.gz, kaggle:<owner>/<dataset>, kaggle-competition:<name>
seed = 42  # seed of the split
val_ratio = 0.15  # validation share of every class
test_ratio = 0.15  # test share of every class
keep_given_split = False  # for train/val/test folders: keep them instead of re-splitting"""),
        ("code", """import pandas as pd
from IPython.display import display

from helpers import data, io, plots, session

ctx = session.start("02_data", run_id=run_id, dataset=dataset, seed=seed, val_ratio=val_ratio,
                    test_ratio=test_ratio, keep_given_split=keep_given_split)
root = data.resolve_dataset(dataset)
print(root)"""),
        ("code", """frame, report = data.prepare_split(root, seed, (1 - val_ratio - test_ratio, val_ratio, test_ratio),
                                   keep_given_split, progress=True)
data.save_split(ctx.run_dir, frame, report)
print(f"layout: {report['layout']}, images: {report['n_images']}, classes: {len(report['classes'])}")
pd.DataFrame(report["counts"]).T"""),
        ("code", """io.save_figure(plots.class_balance(report), ctx.figures / "class_balance.png")"""),
        ("md", "### Примеры по классам · Samples per class"),
        ("code", """grid = data.sample_grid(frame, root, per_class=6, seed=seed)
plots.image_grid(*grid, cols=6)"""),
        ("md", "### Размеры, пропуски, дубликаты · Sizes, skipped files, duplicates"),
        ("code", """plots.size_distribution(report)"""),
        ("code", """display(pd.DataFrame(report["image_sizes"][:10], columns=["size", "images"]))
display(pd.DataFrame(report["skipped"], columns=["path", "reason"]))
pd.DataFrame(report["duplicate_groups"])"""),
    ],
    "03_train": [
        ("md", """# 3. Модель и обучение · Model and training

**Purpose.** One training cycle of the chosen network: the head on cached backbone features, then the whole
network with a lower backbone learning rate. A checkpoint after every epoch; an interrupted cycle resumes
when run again with the same parameters; `init=best`/`last` continues from this run's checkpoint (дообучение).

**Inputs:** `split.csv` from 02. **Outputs:** a row in `cycles.csv`, `history.csv`, `checkpoints/{best,last}.pt`,
`figures/training_metrics.png`."""),
        ("params", """run_id = "default"  # folder under runs/ and reports/
arch = "efficientnet-lite0"  # efficientnet-b0…b7, efficientnet-lite0, resnet50, mobilenet_v3_large, mobilenet_v3_small
weights = "imagenet"  # imagenet, none, or a path to a state-dict file
device = "auto"  # auto, cpu, cuda, cuda:N, mps
batch_size = 32  # images per step
epochs = 7  # whole-network epochs in this cycle
head_epochs = 5  # head-only epochs on cached features before them (cheap)
image_size = 0  # network input pixels (0: chosen from the arch and the images)
init = "weights"  # weights (start from `weights`), best or last (continue this run's checkpoint)
seed = 42  # seed of the cycle
lr = 0.002  # head learning rate (AdamW)
backbone_lr_scale = 0.5  # backbone learning rate is lr times this
label_smoothing = 0.1  # cross-entropy label smoothing
augment = "flip"  # none, flip, crop
freeze_bn = True  # keep BatchNorm statistics frozen (stable at small batches)
patience = 0  # stop after this many epochs without a better val accuracy (0: never)
unfreeze = "all"  # stage 2 trains all blocks, or only this many top blocks ("3")
schedule = "cosine"  # cosine (after warmup) or onecycle
deterministic = False  # deterministic algorithms (slower; identical reruns on one machine)
workers = -1  # DataLoader worker processes (-1: none on CPU, cores-1 on GPU)"""),
        ("code", """from helpers import data, imagecache, io, plots, session, train
from helpers.params import auto_image_size

ctx = session.start("03_train", run_id=run_id, arch=arch, weights=weights, device=device, batch_size=batch_size,
                    epochs=epochs, head_epochs=head_epochs, image_size=image_size, init=init, seed=seed, lr=lr,
                    backbone_lr_scale=backbone_lr_scale, label_smoothing=label_smoothing, augment=augment,
                    freeze_bn=freeze_bn, patience=patience, unfreeze=unfreeze, schedule=schedule,
                    deterministic=deterministic, workers=workers)
frame, report = data.load_split(ctx.run_dir)
size = image_size or auto_image_size(arch, data.median_side(report))
config = train.TrainConfig(arch=arch, classes=report["classes"], image_size=size, batch_size=batch_size,
                           epochs=epochs, head_epochs=head_epochs, weights=weights, init=init, lr=lr,
                           backbone_lr_scale=backbone_lr_scale, label_smoothing=label_smoothing,
                           freeze_bn=freeze_bn, augment=augment, patience=patience, unfreeze=str(unfreeze),
                           schedule=schedule, deterministic=deterministic, seed=seed, device=str(ctx.device),
                           workers=workers)
train.validate_config(config)
print(f"{arch} at {size}px on {ctx.device}, {len(report['classes'])} classes")"""),
        ("code", """train_images, train_labels = imagecache.split_arrays(frame, report["classes"], "train", size, progress=True)
val_images, val_labels = imagecache.split_arrays(frame, report["classes"], "val", size, progress=True)"""),
        ("code", """row = train.run_cycle(config, ctx.run_dir, train_images, train_labels, val_images, val_labels, ctx.device)
train.read_cycles(ctx.run_dir)"""),
        ("code", """fig = plots.training_metrics(train.read_history(ctx.run_dir))
io.save_figure(fig, ctx.figures / "training_metrics.png")"""),
    ],
    "04_evaluate": [
        ("md", """# 4. Результаты · Evaluation and report

**Purpose.** Evaluate the best checkpoint on the test split, honestly: accuracy with a 95 % Wilson interval,
per-class scores, a ROC built from probabilities (one-vs-rest, micro and macro), the confusion matrix,
calibration, the most confident mistakes; then write the report.

**Inputs:** `checkpoints/best.pt`, `split.csv`. **Outputs:** `predictions.csv`, `metrics.json`, figures,
the test accuracy in `cycles.csv`, and `reports/<run_id>/REPORT.md`."""),
        ("params", """run_id = "default"  # folder under runs/ and reports/
device = "auto"  # auto, cpu, cuda, cuda:N, mps
batch_size = 32  # images per inference batch
lang = "ru"  # report language: ru or en"""),
        ("code", """from IPython.display import Markdown, display

from helpers import evaluate, io, plots, report, session, train

ctx = session.start("04_evaluate", run_id=run_id, device=device, batch_size=batch_size, lang=lang)"""),
        ("code", """result = evaluate.evaluate_run(ctx.run_dir, ctx.device, batch_size)
metrics = result["metrics"]
print(f"cycle {metrics['cycle']}: test accuracy {metrics['test_accuracy']:.4f} "
      f"(95% CI {metrics['test_accuracy_ci95'][0]:.4f}–{metrics['test_accuracy_ci95'][1]:.4f}, n={metrics['n_test']})")
metrics["roc_auc"]"""),
        ("code", """io.save_figure(plots.roc_figure(result["curves"]), ctx.figures / "test_roc_curve.png")"""),
        ("code", """io.save_figure(plots.confusion_figure(metrics["confusion_matrix"], metrics["classes"]),
               ctx.figures / "confusion_matrix.png")"""),
        ("code", """io.save_figure(plots.reliability_diagram(result["calibration"], metrics["ece"]),
               ctx.figures / "reliability_diagram.png")"""),
        ("code", """io.save_figure(plots.image_grid(*result["errors"], cols=8), ctx.figures / "confident_errors.png")"""),
        ("code", """io.save_figure(plots.gradcam_grid(*result["gradcam"]), ctx.figures / "gradcam.png")"""),
        ("md", "## Отчет · Report"),
        ("code", """path = report.write_report(run_id, lang)
display(Markdown(path.read_text(encoding="utf-8").split("## 4.", 1)[-1][:3000]))
print(path)"""),
    ],
}


def build() -> None:
    """Write every notebook of NOTEBOOKS into notebooks/."""
    OUT.mkdir(exist_ok=True)
    for name, cells in NOTEBOOKS.items():
        nb = new_notebook()
        nb.metadata["kernelspec"] = KERNEL
        nb.metadata["language_info"] = {"name": "python"}
        nb.metadata["execution"] = {"timeout": 1800}
        for kind, text in cells:
            if kind == "md":
                nb.cells.append(new_markdown_cell(text))
            else:
                cell = new_code_cell(text)
                if kind == "params":
                    cell.metadata["tags"] = ["parameters"]
                nb.cells.append(cell)
        for i, cell in enumerate(nb.cells):
            cell["id"] = f"{name}-{i:02d}"
        nbformat.write(nb, OUT / f"{name}.ipynb")


if __name__ == "__main__":
    build()
