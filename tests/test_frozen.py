"""freeze_early: the frozen stem's cached output trains the rest of the network exactly as running it would."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from helpers.models.inference import normalizer_for
from helpers.models.zoo import build_model
from helpers.training import frozen
from helpers.training.config import TrainConfig
from helpers.training.cycle import run_cycle

ARCHS = ["efficientnet-lite0", "efficientnet-b0", "resnet50", "mobilenet_v3_large", "mobilenet_v3_small"]


def _images(n: int, size: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (n, 3, size, size), dtype=np.uint8)


@pytest.mark.parametrize("arch", ARCHS)
def test_rest_on_cached_output_is_the_network(arch):
    torch.manual_seed(0)
    model = build_model(arch, 5, "none").eval()
    size = 64
    k = frozen.early_units(model, arch, size)
    norm = normalizer_for(arch)
    imgs = _images(4, size)
    cached = frozen.early_features(model, arch, k, norm, imgs, torch.device("cpu"))
    mirrored = frozen.early_features(model, arch, k, norm, imgs, torch.device("cpu"), flip=True)
    x = norm(torch.from_numpy(imgs))
    with torch.no_grad():
        whole = model(x)
        assert torch.allclose(frozen.Rest(model, arch, k).eval()(cached), whole, atol=1e-4)
        assert torch.allclose(frozen.Rest(model, arch, k, cached=False).eval()(x), whole, atol=1e-4)
        assert torch.allclose(frozen.Rest(model, arch, k).eval()(mirrored), model(x.flip(-1)), atol=1e-4)
    # the frozen part ends at stride 4: its output is a quarter of the input's side
    assert cached.shape[-1] == size // 4


def test_early_units_stop_at_stride_four_whatever_the_size():
    model = build_model("efficientnet-lite0", 3, "none")
    # stem (/2), block 0 (/2), blocks 1-2 (/4); block 3 goes to /8 and is not frozen
    assert [frozen.early_units(model, "efficientnet-lite0", s) for s in (64, 80, 97, 224)] == [4, 4, 4, 4]
    assert frozen.early_units(build_model("resnet50", 3, "none"), "resnet50", 80) == 2  # stem + layer1


def test_frozen_units_keep_their_weights_and_eval_mode_while_the_rest_learns():
    torch.manual_seed(0)
    arch = "mobilenet_v3_small"
    model = build_model(arch, 3, "none")
    k = frozen.early_units(model, arch, 32)
    frozen.freeze(model, arch, k)
    rest = frozen.Rest(model, arch, k, cached=False).train()
    early = [m for m in frozen.backbone_blocks(model, arch)[:k]]
    assert all(not m.training for e in early for m in e.modules())
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    loss = torch.nn.functional.cross_entropy(rest(torch.randn(4, 3, 32, 32)), torch.tensor([0, 1, 2, 0]))
    loss.backward()
    opt.step()
    early_names = {n for n, _ in model.named_parameters() if n.startswith(("features.0.", "features.1."))}
    assert k == 2 and early_names
    assert all(torch.equal(p, before[n]) for n, p in model.named_parameters() if n in early_names)
    assert any(not torch.equal(p, before[n]) for n, p in model.named_parameters() if n not in early_names)


def test_feature_set_draws_the_mirror_half_the_time_as_random_flip_does():
    plain, mirrored = torch.zeros(400, 1), torch.ones(400, 1)
    ds = frozen.EarlyFeatureSet(plain, [0] * 400, mirrored)
    torch.manual_seed(3)
    draws = [float(ds[i][0]) for i in range(400)]
    torch.manual_seed(3)
    from torchvision.transforms import v2
    flip = v2.RandomHorizontalFlip()
    marker = torch.tensor([[[0.0, 1.0]]])
    flips = [float(flip(marker)[0, 0, 0] == 1.0) for _ in range(400)]
    assert draws == flips  # the very same draws, in the same order, as the uncached path's transform
    torch.manual_seed(3)
    from helpers.data.imagecache import whole_batch
    loader = torch.utils.data.DataLoader(ds, batch_size=64, collate_fn=whole_batch,  # as 03 reads it: whole batches
                                         generator=torch.Generator())
    assert torch.cat([x for x, _ in loader]).flatten().tolist() == draws
    assert 150 < sum(draws) < 250
    assert all(float(frozen.EarlyFeatureSet(plain, [0] * 400)[i][0]) == 0.0 for i in range(10))


def _cycle(tmp_path, monkeypatch, cached: bool, freeze_early: bool = True, **kw) -> dict:
    monkeypatch.setattr(frozen, "fits", lambda nbytes: cached)
    x = _images(24, 32, seed=1)
    y = [i % 3 for i in range(24)]
    cfg = TrainConfig(arch="mobilenet_v3_small", classes=["a", "b", "c"], image_size=32, batch_size=8,
                      **{"epochs": 2, "head_epochs": 1, "weights": "none", "freeze_early": freeze_early, "seed": 5,
                         **kw})
    run_cycle(cfg, tmp_path, x, y, x[:9], y[:9], torch.device("cpu"), progress=False)
    return torch.load(tmp_path / "checkpoints" / "cycle-1" / "last.pt", weights_only=False)["model"]


def test_cached_cycle_trains_the_same_network_as_running_the_frozen_layers(tmp_path, monkeypatch):
    cached = _cycle(tmp_path / "cached", monkeypatch, cached=True)
    live = _cycle(tmp_path / "live", monkeypatch, cached=False)
    diff = max(float((cached[n].float() - live[n].float()).abs().max()) for n in cached)
    assert diff < 1e-3
    unfrozen = _cycle(tmp_path / "unfrozen", monkeypatch, cached=False, freeze_early=False)
    stem = "features.0.0.weight"
    assert torch.equal(cached[stem], live[stem])  # frozen in both paths
    assert not torch.equal(unfrozen[stem], cached[stem])  # freeze_early=False trains the stem too


def test_freeze_stride_freezes_and_caches_the_deeper_stages_too(tmp_path):
    model = build_model("efficientnet-lite0", 3, "none")
    # units: the stem, the 16 blocks, the head convolution; stride 16 ends after block 10 at 80 px and at 32 px
    assert [frozen.early_units(model, "efficientnet-lite0", 80, s) for s in (2, 4, 8, 16)] == [2, 4, 6, 12]
    assert frozen.early_units(model, "efficientnet-lite0", 32, 16) == 12
    torch.save(model.state_dict(), tmp_path / "start.pt")
    x, y = _images(24, 32), [i % 3 for i in range(24)]
    cfg = TrainConfig(arch="efficientnet-lite0", classes=["a", "b", "c"], image_size=32, batch_size=8, epochs=1,
                      head_epochs=0, weights=str(tmp_path / "start.pt"), freeze_stride=16, seed=3)
    run_cycle(cfg, tmp_path / "run", x, y, x[:6], y[:6], torch.device("cpu"), progress=False)
    trained = torch.load(tmp_path / "run" / "checkpoints" / "cycle-1" / "last.pt", weights_only=False)["model"]
    start = model.state_dict()
    frozen_names = [n for n in start if n.startswith(("_conv_stem.", "_bn0."))
                    or (n.startswith("_blocks.") and int(n.split(".")[1]) <= 10)]
    assert frozen_names and all(torch.equal(trained[n], start[n]) for n in frozen_names)
    assert not torch.equal(trained["_blocks.11._project_conv.weight"], start["_blocks.11._project_conv.weight"])


def test_late_freeze_trains_the_next_stage_until_the_last_epochs_then_only_the_deepest_layers(tmp_path, monkeypatch):
    from helpers.training import loop
    arch = "efficientnet-lite0"
    model = build_model(arch, 3, "none")
    # at 32 px stride 8 ends after block 4, stride 16 after block 10 (the test above)
    torch.save(model.state_dict(), tmp_path / "start.pt")
    after: list[dict] = []
    fit = loop.fit_epoch

    def recording(c, *args):
        out = fit(c, *args)
        after.append({n: t.detach().clone() for n, t in c.model.state_dict().items()})
        return out
    monkeypatch.setattr(loop, "fit_epoch", recording)
    x, y = _images(24, 32), [i % 3 for i in range(24)]
    cfg = TrainConfig(arch=arch, classes=["a", "b", "c"], image_size=32, batch_size=8, epochs=3, head_epochs=0,
                      weights=str(tmp_path / "start.pt"), freeze_stride=8, late_freeze=0.34, seed=3)
    run_cycle(cfg, tmp_path / "run", x, y, x[:6], y[:6], torch.device("cpu"), progress=False)
    start = model.state_dict()

    def block(name: str) -> int:
        return int(name.split(".")[1]) if name.startswith("_blocks.") else (-1 if "stem" in name or "_bn0" in name
                                                                             else 99)
    weights = [n for n in start if n.endswith(".weight")]
    early = [n for n in weights if block(n) <= 4]
    next_stage = [n for n in weights if 5 <= block(n) <= 10]
    deepest = [n for n in weights if block(n) >= 11]
    assert len(after) == 3 and early and next_stage and deepest
    assert all(torch.equal(a[n], start[n]) for a in after for n in early)  # frozen throughout
    assert any(not torch.equal(after[1][n], after[0][n]) for n in next_stage)  # trains in epochs 1-2
    assert all(torch.equal(after[2][n], after[1][n]) for n in next_stage)  # frozen in the last epoch
    assert any(not torch.equal(after[2][n], after[1][n]) for n in deepest)  # which trains the rest


def test_late_freeze_on_the_cached_output_trains_as_running_the_layers(tmp_path, monkeypatch):
    cached = _cycle(tmp_path / "cached", monkeypatch, cached=True, epochs=3, late_freeze=2 / 3)
    live = _cycle(tmp_path / "live", monkeypatch, cached=False, epochs=3, late_freeze=2 / 3)
    plain = _cycle(tmp_path / "plain", monkeypatch, cached=True, epochs=3, late_freeze=0.0)
    assert max(float((cached[n].float() - live[n].float()).abs().max()) for n in cached) < 1e-3
    assert any(not torch.equal(cached[n], plain[n]) for n in cached)  # it changed what trained
