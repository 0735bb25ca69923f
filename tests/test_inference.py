"""helpers.inference: TTA views and probabilities, and a trained model loaded back from its checkpoint."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from helpers.evaluation import trained
from helpers.models import inference
from helpers.models.zoo import build_model


@pytest.mark.integration
def test_tta_views_and_probabilities():
    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.uint8).view(2, 3, 8, 8)
    assert len(inference.tta_views(x, "none")) == 1
    flip = inference.tta_views(x, "flip")
    assert len(flip) == 2 and torch.equal(flip[1], x.flip(-1))
    crops = inference.tta_views(x, "flip+crops")
    assert len(crops) == 6 and all(v.shape == x.shape for v in crops)
    with pytest.raises(ValueError, match="tta='mirror'"):
        inference.tta_views(x, "mirror")
    model = build_model("mobilenet_v3_small", 3, "none")
    norm = inference.normalizer_for("mobilenet_v3_small")
    images = np.random.default_rng(0).integers(0, 255, (5, 3, 32, 32), dtype=np.uint8)
    for tta in inference.TTA_CHOICES:
        p = inference.predict_proba(model, norm, images, torch.device("cpu"), batch_size=2, tta=tta)
        assert p.shape == (5, 3) and np.allclose(p.sum(1), 1, atol=1e-5)


def test_load_trained_returns_model_normalizer_and_config(tmp_path):
    from helpers.training import checkpoints
    model = build_model("mobilenet_v3_small", 2, "none")
    path = tmp_path / "best.pt"
    checkpoints.save(path, {"config": {"arch": "mobilenet_v3_small", "classes": ["a", "b"], "image_size": 32},
                            "cycle": 3, "epoch": 2, "val_accuracy": 0.75, "model": checkpoints.model_state(model)})
    loaded, norm, cfg = trained.load_trained(path, torch.device("cpu"))
    assert (cfg["cycle"], cfg["epoch"], cfg["val_accuracy"], cfg["classes"]) == (3, 2, 0.75, ["a", "b"])
    images = np.zeros((1, 3, 32, 32), np.uint8)
    np.testing.assert_allclose(inference.predict_proba(loaded, norm, images, torch.device("cpu")),
                               inference.predict_proba(model, norm, images, torch.device("cpu")), atol=1e-6)


def test_load_trained_applies_the_temperature_04_chose(tmp_path):
    from helpers.evaluation import stats
    from helpers.training import checkpoints
    from helpers.utils import files
    model = build_model("mobilenet_v3_small", 2, "none")
    run = tmp_path / "run"
    path = run / "checkpoints" / "cycle-1" / "best.pt"
    checkpoints.save(path, {"config": {"arch": "mobilenet_v3_small", "classes": ["a", "b"], "image_size": 32},
                            "cycle": 1, "epoch": 1, "val_accuracy": 0.5, "model": checkpoints.model_state(model)})
    images = np.random.default_rng(0).integers(0, 255, (4, 3, 32, 32), dtype=np.uint8)
    cpu = torch.device("cpu")
    raw_model, norm, cfg = trained.load_trained(path, cpu)
    raw = inference.predict_proba(raw_model, norm, images, cpu)
    assert cfg["temperature"] == 1.0
    files.write_json(run / "evaluations" / "cycle-1.json", {"cycle": 1, "calibration": {"temperature": 2.0,
                                                                                        "applied": True}})
    tempered, norm, cfg = trained.load_trained(path, cpu)
    assert cfg["temperature"] == 2.0
    np.testing.assert_allclose(inference.predict_proba(tempered, norm, images, cpu), stats.apply_temperature(raw, 2.0),
                               atol=1e-5)
    plain, _, cfg = trained.load_trained(path, cpu, calibrated=False)
    assert cfg["temperature"] == 1.0


@pytest.mark.parametrize("tta", ["flip", "flip+crops"])
def test_the_temperature_is_fitted_on_the_transform_it_is_applied_as(tta):
    """With TTA, a folded temperature divides each view's logits before averaging: fit and figures must agree."""
    from helpers.evaluation import stats
    torch.manual_seed(0)
    model = build_model("mobilenet_v3_small", 3, "none")
    with torch.no_grad():  # a confident, view-sensitive head, so that the two transforms differ
        [m for m in model.classifier.modules() if isinstance(m, torch.nn.Linear)][-1].weight.mul_(40)
    norm = inference.normalizer_for("mobilenet_v3_small")
    cpu = torch.device("cpu")
    images = np.random.default_rng(1).integers(0, 255, (24, 3, 32, 32), dtype=np.uint8)
    y = np.arange(24) % 3
    views = inference.predict_view_probs(model, norm, images, cpu, tta=tta)
    np.testing.assert_allclose(views.mean(0), inference.predict_proba(model, norm, images, cpu, tta=tta), atol=1e-6)
    t = stats.fit_temperature(y, views)
    tempered = copy.deepcopy(model)
    trained.set_temperature(tempered, "mobilenet_v3_small", t)
    applied = inference.predict_proba(tempered, norm, images, cpu, tta=tta)  # what 04, 05 and exports give
    np.testing.assert_allclose(stats.apply_temperature(views, t), applied, atol=1e-5)
    calibration = stats.temperature_scaling(y, views, y, views)
    assert calibration["val_ece_after"] == pytest.approx(stats.expected_calibration_error(y, applied)[0], abs=1e-5)

    def nll(p):
        return -np.log(np.clip(p[np.arange(len(y)), y], 1e-12, 1)).mean()
    for other in (t * 1.2, t / 1.2):  # t is the best temperature for the applied transform itself
        moved = copy.deepcopy(model)
        trained.set_temperature(moved, "mobilenet_v3_small", other)
        assert nll(applied) <= nll(inference.predict_proba(moved, norm, images, cpu, tta=tta)) + 1e-9
