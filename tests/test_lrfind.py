"""lr=auto: the range test lands inside a learning-rate range known good by brute force (at two scales of the
features), leaves the weights as they were, and runs through notebook 03 into the ledger and a figure."""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import papermill
import pytest
import torch
from torch import nn

from helpers import pipeline
from helpers.data import dataset as data
from helpers.models import zoo
from helpers.training import lrfind
from helpers.training.config import TrainConfig
from helpers.training.optim import make_optimizer
from helpers.utils import paths


ARCH = "efficientnet-lite0"


def _problem(scale: float, n=600, dims=1280, classes=4, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 1, size=(classes, dims))
    y = rng.integers(0, classes, n)
    x = scale * (centres[y] + rng.normal(0, 3, size=(n, dims)))
    return torch.tensor(x, dtype=torch.float32), torch.tensor(y)


def _final_loss(model, cfg, x, y, lr: float, steps: int = 150) -> float:
    """Train the head alone at a fixed rate for `steps` batches; the training loss at the end."""
    model = copy.deepcopy(model)
    head = zoo.head_of(model, ARCH)
    optimizer = make_optimizer(model, cfg, True, lr)
    g = torch.Generator().manual_seed(0)
    for s in range(steps):
        idx = torch.randint(0, len(y), (cfg.batch_size,), generator=g)
        loss = nn.functional.cross_entropy(head(x[idx]), y[idx])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        return float(nn.functional.cross_entropy(head(x), y))


@pytest.mark.parametrize("scale", [1.0, 100.0])
def test_the_suggestion_lies_in_the_range_brute_force_finds_good(scale):
    """Good = a final loss within 20 % of the way from the best final loss to the untrained one."""
    x, y = _problem(scale)
    cfg = TrainConfig(arch=ARCH, classes=list("abcd"), image_size=32, batch_size=32, lr="auto", weight_decay=0.0,
                      label_smoothing=0.0)
    model = zoo.build_model(ARCH, 4, "none")
    grid = np.logspace(-6, 0, 13)
    finals = np.array([_final_loss(model, cfg, x, y, lr) for lr in grid])
    untrained = float(nn.functional.cross_entropy(zoo.head_of(model, ARCH)(x), y).detach())
    good = grid[finals <= finals.min() + 0.2 * (min(untrained, finals.max()) - finals.min())]
    before = copy.deepcopy(zoo.head_of(model, ARCH).state_dict())
    test = lrfind.head_test(model, cfg, x, y, lambda: make_optimizer(model, cfg, True, 1.0), nn.CrossEntropyLoss(),
                            seed=1, device=torch.device("cpu"))
    assert good.min() <= test["suggestion"] <= good.max(), (test["suggestion"], good)
    assert test["steps"] <= lrfind.STEPS and test["lrs"][0] == pytest.approx(lrfind.START)
    for k, v in zoo.head_of(model, ARCH).state_dict().items():
        assert torch.equal(v, before[k])  # the test trained a copy of nothing: the head is as it was


def test_valley_picks_inside_the_longest_fall():
    lrs = list(np.logspace(-7, 1, 81))
    loss = [2.0] * 30 + list(np.linspace(2.0, 0.5, 30)) + list(np.linspace(0.5, 8, 21))
    pick = lrfind.valley(lrs, loss)
    assert lrs[30] < pick < lrs[59]


def test_notebook_03_with_lr_auto_records_both_suggestions_and_draws_them(make_dataset, study_home):
    run = paths.run_dir("auto")
    data.split_for(run, str(make_dataset(per_class=10)), 42)
    papermill.execute_notebook(str(paths.NOTEBOOKS_DIR / "03_train.ipynb"), str(run / "03-out.ipynb"),
                               parameters={"run_id": "auto", "arch": "mobilenet_v3_small", "weights": "none",
                                           "image_size": 32, "batch_size": 8,
                                           "epochs": 1, "head_epochs": 1, "device": "cpu", "lr": "auto",
                                           "lr_find": "both"},
                               cwd=str(paths.NOTEBOOKS_DIR), kernel_name=pipeline._kernel_name(), progress_bar=False)
    row = pd.read_csv(run / "cycles.csv").iloc[-1]
    head, network = (float(part.split()[1]) for part in row["lr_found"].split("; "))
    assert row["lr_found"].startswith("head ") and "; full " in row["lr_found"]
    assert float(row["lr"]) == pytest.approx(head, rel=5e-3) and lrfind.START < network < lrfind.END  # 3 digits
    assert (run / "figures" / "lr_range_cycle-1.png").stat().st_size > 0
    history = pd.read_csv(run / "history.csv")
    assert float(history["lr"].iloc[-1]) < network  # the network stage decays from its own suggestion
    from helpers.reporting import report
    written = report.render("auto", "en")
    assert f"Cycle 1: lr found by a range test (lr=auto): {row['lr_found']}." in written
    assert "(lr_range_cycle-1.png)" in written


def test_lr_auto_in_a_bad_spelling_is_one_sentence():
    from helpers.params.schema import ParameterError, check
    with pytest.raises(ParameterError, match=r"lr='fast': expected a number or auto"):
        check("lr", "fast")
    assert check("lr", "auto") == "auto" and check("lr", "0.01") == 0.01
