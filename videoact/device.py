"""Which torch device a run uses: ``"auto"`` and explicit names, checked up front."""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


class DeviceError(ValueError):
    """A device name torch does not know, or a device this machine does not have."""


def parse_device(device: "str | torch.device") -> "torch.device":
    """``torch.device(device)``, with :class:`DeviceError` for a name torch does not know."""
    import torch

    try:
        return torch.device(device)
    except (RuntimeError, TypeError):
        raise DeviceError(f"device {str(device)!r}: not a device name "
                          "(expected auto, cpu, cuda, cuda:N or mps)") from None


def resolve_device(device: "str | torch.device | None" = "auto") -> "torch.device":
    """``"auto"`` -> CUDA when available, else CPU. Under torchrun with several ranks,
    ``"auto"``/``"cuda"`` mean this rank's GPU, ``cuda:LOCAL_RANK``. Raises
    :class:`DeviceError` for an unknown name or a device that is not there (checked now,
    not at the first tensor moved, deep inside a run)."""
    import torch  # here, not at the top: the CLI imports DeviceError without loading torch

    from .distributed import launched_distributed, local_device

    if launched_distributed():
        resolved = local_device(device)
    elif device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        resolved = parse_device(device)
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(f"device {str(device)!r}: CUDA is not available here (torch {torch.__version__} "
                              "finds no GPU); use cpu or auto")
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise DeviceError(f"device {str(device)!r}: this machine has {torch.cuda.device_count()} CUDA "
                              f"device(s), numbered from 0")
    elif resolved.type == "mps" and not torch.backends.mps.is_available():
        raise DeviceError(f"device {str(device)!r}: MPS is not available here; use cpu or auto")
    return resolved


def native_bf16(device: "torch.device") -> bool:
    """Whether ``device`` computes in bfloat16 natively: a CUDA GPU with bf16, or a CPU
    with AVX512-BF16 or AMX (oneDNN's bf16 kernels). Elsewhere bf16 is emulated and
    slower than float32, so mixed precision falls back to float32 there."""
    import torch

    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type != "cpu" or not torch.backends.mkldnn.is_available():
        return False
    # Private but long-standing helpers of torch.cpu; absent in some builds: then no.
    checks = [getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    return any(check() for check in checks if check is not None)


def autocast_dtype(device: "torch.device", amp: bool) -> "torch.dtype | None":
    """The autocast dtype for mixed precision on ``device``, or ``None`` for float32.

    ``amp`` on CUDA: bfloat16 where the GPU has it, else float16 (with loss scaling in
    training). ``amp`` on a CPU: bfloat16 where :func:`native_bf16` (measured on 2 Zen 4
    cores: the stride-8 Lite0 backbone at 448 px 1.9x, the benchmark's conv-head BiLSTM
    training step 1.6x faster); float32 on other CPUs and devices."""
    import torch

    if not amp:
        return None
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "cpu" and native_bf16(device):
        return torch.bfloat16
    return None


def precision_name(dtype: "torch.dtype | None") -> str:
    """``None`` -> ``"float32"``, ``torch.bfloat16`` -> ``"bfloat16"``: what caches and checkpoints record."""
    return "float32" if dtype is None else str(dtype).removeprefix("torch.")
