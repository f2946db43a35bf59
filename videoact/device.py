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
