"""A frozen backbone made fast for inference, as extraction and :class:`VideoClassifier` run it.

* :func:`fold_batchnorm`: each eval-mode BatchNorm folded into the convolution before it.
* :func:`fuse_conv_activations`: on the CPU, ReLU/ReLU6/SiLU/Hardswish applied inside
  oneDNN's convolution.
* :func:`inference_model`: both, channels_last, optionally ``torch.compile``.
* :func:`keep_freed_memory`: glibc keeps freed memory in the process, so large
  activation maps are not mapped and faulted in again at every batch.

Each transformed copy is checked against the plain model on a probe batch and dropped
if it differs. Measurements: docs/benchmarks.md ("Where the time goes").
"""
from __future__ import annotations

import sys
import threading
import types
from collections import defaultdict

import torch


class _ConvOutputs:
    """What each ``Conv2d`` produced on one traced forward pass, and how often each
    module ran: a fold or fusion may join a convolution and the module its output reaches
    untouched (the same tensor, no in-place operation since)."""

    def __init__(self) -> None:
        # id(conv output) -> (conv name, the tensor kept alive, its version: an in-place op
        # in between, like ResNet's `out += identity` before its ReLU, changes it)
        self.produced: dict[int, tuple[str, torch.Tensor, int]] = {}
        self.calls: dict[str, int] = defaultdict(int)

    def conv_hook(self, name: str):
        """Forward hook of the convolution ``name``."""
        def hook(_module, _inputs, output):
            self.calls[name] += 1
            self.produced[id(output)] = (name, output, output._version)
        return hook

    def source(self, x: torch.Tensor) -> str | None:
        """The convolution whose untouched output ``x`` is, or None."""
        found = self.produced.get(id(x))
        return found[0] if found is not None and found[1] is x and found[2] == x._version else None

    def run(self, model: torch.nn.Module, example: torch.Tensor, hooks: list) -> torch.Tensor:
        """``model(example)`` without autograd, the hooks ``(module, "forward" | "pre", fn)``
        in place for this pass only; the recorded tensors are let go after it."""
        handles = [m.register_forward_hook(fn) if kind == "forward" else m.register_forward_pre_hook(fn)
                   for m, kind, fn in hooks]
        try:
            with torch.no_grad():
                return model(example)
        finally:
            for h in handles:
                h.remove()
            self.produced.clear()


def fold_batchnorm(model: torch.nn.Module, example: torch.Tensor) -> torch.nn.Module:
    """An inference copy of ``model`` with each eval-mode ``BatchNorm2d`` that directly
    follows a ``Conv2d`` folded into that convolution's weights and bias.

    Pairs are found by running ``example`` (``[B, 3, H, W]``) once and matching each
    BatchNorm's input to a convolution's output. The folded copy is checked against the
    original on ``example``; if it differs by more than float rounding (e.g. a
    convolution's output was also used elsewhere) the unfolded copy is returned. Saves
    one full pass over every activation per pair (measured about 1.3x on
    EfficientNet-Lite0 on CPU). ``model`` itself is not changed.
    """
    import copy

    from torch.nn.utils.fusion import fuse_conv_bn_eval

    model = copy.deepcopy(model).eval()
    modules = dict(model.named_modules())
    convs = _ConvOutputs()
    calls = convs.calls
    pairs: list[tuple[str, str]] = []

    def bn_hook(name):
        def hook(_module, inputs):
            calls[name] += 1
            conv = convs.source(inputs[0])
            if conv is not None:
                pairs.append((conv, name))
        return hook

    hooks = [(m, "forward", convs.conv_hook(name)) if isinstance(m, torch.nn.Conv2d) else (m, "pre", bn_hook(name))
             for name, m in modules.items() if isinstance(m, (torch.nn.Conv2d, torch.nn.BatchNorm2d))]
    reference = convs.run(model, example, hooks)
    # A module called more than once (shared) cannot be folded for one of its uses only.
    pairs = [(c, b) for c, b in pairs if calls[c] == 1 and calls[b] == 1 and modules[b].track_running_stats]
    if not pairs:
        return model
    folded = copy.deepcopy(model)
    fmods = dict(folded.named_modules())

    def replace(name: str, new: torch.nn.Module) -> None:
        parent, _, attr = name.rpartition(".")
        setattr(fmods[parent] if parent else folded, attr, new)

    for conv_name, bn_name in pairs:
        replace(conv_name, fuse_conv_bn_eval(fmods[conv_name], fmods[bn_name]))
        replace(bn_name, torch.nn.Identity())
    with torch.no_grad():
        out = folded(example)
    tolerance = 1e-3 * float(reference.abs().max()) + 1e-5
    if out.shape != reference.shape or float((out - reference).abs().max()) > tolerance:
        return model
    return folded


_ALLOCATOR_TUNED = False


def keep_freed_memory() -> bool:
    """Let glibc's malloc serve every allocation from the heap and keep freed memory in
    the process (``mallopt(M_MMAP_MAX, 0)``, ``mallopt(M_TRIM_THRESHOLD, 2**31 - 1)``).

    Why: by default glibc maps each allocation above 32 MiB freshly from the kernel and
    unmaps it on free, so every CPU batch pays page faults on first touch of every large
    activation map (measured: allocating and zeroing a 300 MB tensor 228 ms, zeroing a
    reused one 22 ms; EfficientNet-Lite0 at batch 64 ran 1.7-2.2x faster with this).
    This is what the usual advice (preloading jemalloc or tcmalloc) achieves, without a
    dependency. Process-wide and permanent: the process keeps its peak heap until exit
    (peak RSS measured unchanged, 1.7 GB at batch 64). Linux with glibc only; returns
    whether it is in effect.
    """
    global _ALLOCATOR_TUNED
    if _ALLOCATOR_TUNED:
        return True
    if not sys.platform.startswith("linux"):
        return False
    import ctypes

    try:
        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_mmap_max = -1, -4  # from <malloc.h>
        _ALLOCATOR_TUNED = libc.mallopt(m_mmap_max, 0) == 1 and libc.mallopt(m_trim_threshold, 2**31 - 1) == 1
    except (OSError, AttributeError):  # not glibc (e.g. musl): nothing to tune
        return False
    return _ALLOCATOR_TUNED


# Activations oneDNN can apply inside a convolution: module type -> (name, scalars).
def _fusable_activation(m: torch.nn.Module) -> tuple[str, list[float]] | None:
    if type(m) is torch.nn.ReLU:
        return "relu", []
    if type(m) in (torch.nn.ReLU6, torch.nn.Hardtanh):
        return "hardtanh", [float(m.min_val), float(m.max_val)]
    if type(m) is torch.nn.SiLU:
        return "swish", []
    if type(m) is torch.nn.Hardswish:
        return "hardswish", []
    return None


class _FusedMark(threading.local):
    """The output of the last fused convolution, so the activation after it is skipped.

    Per thread: threads sharing one model must not take each other's outputs for their
    own (measured: 32 of 1,600 calls from four threads wrong by up to 0.7 with one shared
    mark). A deepcopy of the model gets a mark of its own (the copy's convolutions and
    activations share it)."""

    last: torch.Tensor | None = None

    def __deepcopy__(self, memo: dict) -> "_FusedMark":
        return _FusedMark()


class _SkipIfFused(torch.nn.Module):
    """An activation whose work may already be done by the convolution before it."""

    def __init__(self, act: torch.nn.Module, mark: _FusedMark) -> None:
        super().__init__()
        self.act = act
        self.mark = mark

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x is self.mark.last:
            self.mark.last = None
            return x
        return self.act(x)


def _fused_conv_forward(conv: torch.nn.Conv2d, x: torch.Tensor, weight: torch.Tensor,
                        bias: torch.Tensor | None) -> torch.Tensor:
    """``Conv2d._conv_forward`` with the activation applied by oneDNN. Bound to ``conv``
    as a method (not a closure), so that a deepcopy of the model binds it to the copy and
    its mark, not to the original's."""
    name, scalars = conv._fused_activation
    out = torch.ops.mkldnn._convolution_pointwise(
        x, weight, bias, list(conv.padding), list(conv.stride), list(conv.dilation), conv.groups,
        name, scalars, "")
    conv._fused_mark.last = out
    return out


def fuse_conv_activations(model: torch.nn.Module, example: torch.Tensor) -> torch.nn.Module:
    """On the CPU: an inference copy of ``model`` in which each ``Conv2d`` directly followed
    by a ReLU, ReLU6/Hardtanh, SiLU or Hardswish module computes the activation inside
    oneDNN's convolution (``torch.ops.mkldnn._convolution_pointwise``), and that module
    then passes the convolution's output through untouched.

    Saves one full read and write of every such activation map (measured 1.2-1.35x on
    EfficientNet-Lite0, 2-core CPU, channels_last). The convolution's own ``forward``
    (e.g. TensorFlow "SAME" padding) is kept; only its final ``conv2d`` call is replaced.
    Pairs are found on ``example`` (``[B, 3, H, W]``) as in :func:`fold_batchnorm` (a
    folded BatchNorm is an ``Identity`` between them); the result is checked against
    ``model`` on ``example`` and ``model`` is returned when they differ or the oneDNN op
    is unavailable. Only for inference (no autograd through the fused op).
    """
    import copy

    if example.device.type != "cpu" or not torch.backends.mkldnn.is_available():
        return model
    if not hasattr(torch.ops.mkldnn, "_convolution_pointwise"):
        return model
    modules = dict(model.named_modules())
    convs = _ConvOutputs()
    calls = convs.calls
    pairs: dict[str, str] = {}

    def pass_hook(_m, inputs, output):  # Identity (a folded BatchNorm) forwards the conv's output
        conv = convs.source(inputs[0])
        if conv is not None:
            convs.produced[id(output)] = (conv, output, output._version)

    def act_hook(name):
        def hook(_m, inputs):
            calls[name] += 1
            conv = convs.source(inputs[0])
            if conv is not None:
                pairs.setdefault(conv, name)
        return hook

    hooks = []
    for name, m in modules.items():
        if isinstance(m, torch.nn.Conv2d):
            hooks.append((m, "forward", convs.conv_hook(name)))
        elif isinstance(m, torch.nn.Identity):
            hooks.append((m, "forward", pass_hook))
        elif _fusable_activation(m) is not None:
            hooks.append((m, "pre", act_hook(name)))
    reference = convs.run(model, example, hooks)
    pairs = {c: a for c, a in pairs.items()
             if calls[c] == 1 and modules[c].padding_mode == "zeros" and not isinstance(modules[c].padding, str)}
    if not pairs:
        return model
    fused = copy.deepcopy(model)
    fmods = dict(fused.named_modules())
    mark = _FusedMark()
    wrapped: set[str] = set()
    for conv_name, act_name in pairs.items():
        conv = fmods[conv_name]
        conv._fused_activation = _fusable_activation(fmods[act_name])
        conv._fused_mark = mark
        conv._conv_forward = types.MethodType(_fused_conv_forward, conv)
        if act_name not in wrapped:
            parent, _, attr = act_name.rpartition(".")
            setattr(fmods[parent] if parent else fused, attr, _SkipIfFused(fmods[act_name], mark))
            wrapped.add(act_name)
    try:
        with torch.no_grad():
            out = fused(example)
    except RuntimeError:
        return model  # e.g. an oneDNN build without this fusion
    mark.last = None
    tolerance = 1e-4 * float(reference.abs().max()) + 1e-6
    if out.shape != reference.shape or float((out - reference).abs().max()) > tolerance:
        return model
    return fused


def inference_model(backbone: torch.nn.Module, device: torch.device, *, channels_last: bool = True,
                    compile: bool = False) -> torch.nn.Module:
    """The module extraction runs: a copy of ``backbone`` on ``device`` with BatchNorm
    folded into the convolutions (:func:`fold_batchnorm`), on the CPU with activations
    fused into them (:func:`fuse_conv_activations`), channels_last, optionally
    ``torch.compile``d. ``[B, 3, S, S] -> [B, D]``. ``backbone`` itself is moved to
    ``device`` too; its train/eval mode is left as it is (the copy is in eval mode).

    Compiling uses Inductor's ``freezing`` (weights become constants, so convolutions
    fuse with their activations; measured about 1.15x over eager on a 2-core CPU, after
    about 30 s of compiling). Extraction feeds fixed-shape batches, so it compiles once."""
    size = int(getattr(backbone, "input_size", 224))
    probe = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(0)).to(device)
    # backbone itself moves to device (a caller fine-tuning it keeps its mode); the folded
    # model is an eval-mode copy of it
    model = fold_batchnorm(backbone.to(device), probe)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        probe = probe.contiguous(memory_format=torch.channels_last)
    if compile:  # Inductor does its own fusions
        return torch.compile(model, dynamic=False, options={"freezing": True})
    return fuse_conv_activations(model, probe)
