"""Checkpoint format and safe loading.

A checkpoint is one ``torch.save`` file holding a dict of tensors and plain Python
values only (dict/list/tuple/str/int/float/bool/None), so that it loads with
``torch.load(weights_only=True)``: a file that would run code when unpickled is refused.

Keys::

    format            "videoact-checkpoint"
    format_version    1
    videoact_version  version that wrote it
    model_state       temporal model state_dict
    model_config      create_temporal_model kwargs: name, in_dim, num_classes, ... (model.config)
    classes           class names, index = label
    class_ids         None, or a classInd.txt's ids, one per class (lists labelled with them)
    feature           how features were made (what inference must reproduce): backbone,
                      weights, weights_id, layer, pooling, image_size, resize, mean, std,
                      feature_dim, sampling, num_segments, precision (written by
                      videoact.training.feature_settings)
    metrics           the saved epoch's metrics.jsonl record: {"epoch": 12, "val_acc": 0.93,
                      "train_loss": ..., ...}
    train_state       None, or optimizer/scheduler/epoch/step/best metric/rng states (resume)
    config            None, or a config dict its writer passes: train() passes the run's
                      whole config (Config.to_dict()) as it was when this file was written

Errors are :class:`CheckpointError` (a ValueError) naming the file.
"""
from __future__ import annotations

import os
import pickle
import random
import re
import warnings
import zipfile
from collections import OrderedDict
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from .atomic import atomic_save_torch
from .version import __version__

FORMAT = "videoact-checkpoint"
FORMAT_VERSION = 1
REQUIRED_KEYS = ("format", "format_version", "model_state", "model_config", "classes", "feature", "metrics")


class CheckpointError(ValueError):
    """A checkpoint that cannot be written or loaded; the message names the file."""


def _to_safe(obj: Any, where: str) -> Any:
    """Return ``obj`` with only weights_only-loadable types; convert numpy and paths."""
    if obj is None or isinstance(obj, (bool, str)) or type(obj) in (int, float):
        return obj
    if isinstance(obj, torch.Tensor):
        return obj.detach()
    if isinstance(obj, np.generic):  # np.float64 pickles as a numpy global: make it plain
        return obj.item()
    if isinstance(obj, (int, float)):  # subclasses (IntEnum, ...) -> plain
        return float(obj) if isinstance(obj, float) else int(obj)
    if isinstance(obj, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(obj))
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if isinstance(obj, torch.Size):
        return obj
    if isinstance(obj, Mapping):
        out = OrderedDict() if isinstance(obj, OrderedDict) else {}
        for key, value in obj.items():
            if not isinstance(key, (str, int)) or isinstance(key, bool):
                raise CheckpointError(f"{where}: dict key {key!r} must be str or int")
            out[key] = _to_safe(value, f"{where}.{key}")
        return out
    if isinstance(obj, (list, tuple)):
        items = [_to_safe(v, f"{where}[{i}]") for i, v in enumerate(obj)]
        return items if isinstance(obj, list) else tuple(items)
    raise CheckpointError(
        f"{where}: {type(obj).__module__}.{type(obj).__qualname__} cannot go in a checkpoint "
        "(only tensors, dict/list/tuple, str, int, float, bool, None load with weights_only=True)"
    )


def save_checkpoint(
    path: str | os.PathLike,
    *,
    model_state: Mapping[str, torch.Tensor],
    model_config: Mapping[str, Any],
    classes: list[str],
    feature: Mapping[str, Any],
    metrics: Mapping[str, Any] | None = None,
    train_state: Mapping[str, Any] | None = None,
    config: Mapping[str, Any] | None = None,
    class_ids: Sequence[int] | None = None,
) -> Path:
    """Write a checkpoint atomically (a crash leaves the previous file intact).

    Everything is checked before writing: a value that ``weights_only`` loading would
    refuse raises :class:`CheckpointError` naming its key, instead of producing a
    checkpoint nobody can load.
    """
    path = Path(path)
    classes = list(classes)
    if not classes or not all(isinstance(c, str) for c in classes):
        raise CheckpointError(f"{path}: classes must be a non-empty list of str, got {classes!r}")
    if "name" not in model_config:
        raise CheckpointError(f"{path}: model_config needs 'name' (use model.config)")
    if class_ids is not None:  # a classInd.txt's ids, for lists labelled with them
        class_ids = [int(i) for i in class_ids]
        if len(class_ids) != len(classes) or len(set(class_ids)) != len(class_ids):
            raise CheckpointError(f"{path}: class_ids must be {len(classes)} distinct ids, got {class_ids!r}")
    num_classes = model_config.get("num_classes")
    if num_classes is not None and int(num_classes) != len(classes):
        raise CheckpointError(
            f"{path}: model_config has num_classes={num_classes} but {len(classes)} class names were given"
        )
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "videoact_version": __version__,
        "model_state": model_state,
        "model_config": dict(model_config),
        "classes": classes,
        "class_ids": class_ids,
        "feature": dict(feature),
        "metrics": dict(metrics or {}),
        "train_state": None if train_state is None else dict(train_state),
        "config": None if config is None else dict(config),
    }
    try:
        payload = _to_safe(payload, "checkpoint")
    except CheckpointError as exc:
        raise CheckpointError(f"{path}: {exc}") from None
    try:
        atomic_save_torch(payload, path)
    except (OSError, RuntimeError) as exc:
        # torch reports a full disk as "unexpected pos ..." from its zip writer: say what it is.
        import shutil

        try:
            free = shutil.disk_usage(path.parent).free
        except OSError:
            free = None
        hint = f"; {free} bytes free on that disk (full?)" if free is not None and free < 64 * 2**20 else ""
        from .atomic import error_text

        first = error_text(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CheckpointError(f"{path}: could not write the checkpoint ({first}{hint}); "
                              "the previous file, if any, is unchanged") from None
    return path


def load_checkpoint(path: str | os.PathLike, map_location: Any = "cpu") -> dict[str, Any]:
    """Load and check a checkpoint with ``torch.load(weights_only=True)``.

    Raises :class:`CheckpointError` for a missing file, a truncated or corrupt file, a
    file that would run code when unpickled, or a file that is not a videoact checkpoint.
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: checkpoint file not found")
    if path.is_dir():
        raise CheckpointError(f"{path}: is a directory, expected a checkpoint file")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: checkpoint file is empty (an interrupted copy?)")
    _check_zip_integrity(path)
    if not zipfile.is_zipfile(path):
        with open(path, "rb") as f:
            head = f.read(8)
        # torch's zip archive (PK...: here a damaged one, torch.load says how) or the legacy
        # format, a pickle of protocol >= 2; anything else is some other kind of file
        if not head.startswith((b"PK", b"\x80")):
            raise CheckpointError(f"{path}: not a checkpoint file (neither a torch zip archive nor a pickle; "
                                  f"it starts with {head!r})")
    try:
        with warnings.catch_warnings():
            # torch asks to "file an issue" for bare pickles; the load fails clearly below anyway
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        message = str(exc)
        if "Weights only load failed" in message or "Unsupported" in message:
            match = re.search(r"(unsupported (global|operand)[^\n]*)", message, re.IGNORECASE)
            detail = match.group(1).strip() if match else ""
            raise CheckpointError(
                f"{path}: refused to load: it is not plain data (tensors, dicts, lists, numbers, "
                f"strings), so unpickling it could run arbitrary code; a videoact checkpoint never "
                f"needs that. Only load it with torch.load(weights_only=False) if you trust its "
                f"source. ({detail or message.splitlines()[0]})"
            ) from None
        raise CheckpointError(f"{path}: corrupt checkpoint ({message.splitlines()[0] if message else exc!r})") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError, KeyError, IndexError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CheckpointError(f"{path}: truncated or corrupt checkpoint ({first})") from None
    check_checkpoint(ckpt, path)
    return ckpt


def _check_zip_integrity(path: Path) -> None:
    """torch's zip reader does not verify CRCs: check them, so flipped bytes are caught."""
    if not zipfile.is_zipfile(path):
        return  # legacy (pre-zip) format or garbage: torch.load decides
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        raise CheckpointError(f"{path}: truncated or corrupt checkpoint ({exc})") from None
    if bad is not None:
        raise CheckpointError(f"{path}: corrupt checkpoint (checksum mismatch in {bad})")


def check_checkpoint(ckpt: Any, path: str | os.PathLike = "<checkpoint>") -> None:
    """Raise :class:`CheckpointError` if ``ckpt`` is not a well-formed videoact checkpoint dict."""
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"{path}: not a videoact checkpoint (holds a {type(ckpt).__name__}, not a dict)")
    missing = [k for k in REQUIRED_KEYS if k not in ckpt]
    if missing:
        raise CheckpointError(f"{path}: not a videoact checkpoint: missing keys {missing}")
    if ckpt["format"] != FORMAT:
        raise CheckpointError(f"{path}: not a videoact checkpoint (format {ckpt['format']!r})")
    version = ckpt["format_version"]
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format version {version!r} is newer than this videoact "
            f"({__version__}) reads ({FORMAT_VERSION}); upgrade videoact"
        )
    for key, kind in (("model_state", dict), ("model_config", dict), ("classes", list),
                      ("feature", dict), ("metrics", dict)):
        if not isinstance(ckpt[key], kind):
            raise CheckpointError(f"{path}: {key} should be a {kind.__name__}, got {type(ckpt[key]).__name__}")
    if "name" not in ckpt["model_config"]:
        raise CheckpointError(f"{path}: model_config has no model 'name'")
    ids = ckpt.get("class_ids")
    if ids is not None and (not isinstance(ids, list) or len(ids) != len(ckpt["classes"])
                            or not all(isinstance(i, int) for i in ids)):
        raise CheckpointError(f"{path}: class_ids should be {len(ckpt['classes'])} integer ids, got {ids!r}")


def build_model_from_checkpoint(ckpt: Mapping[str, Any] | str | os.PathLike,
                                path: str | os.PathLike | None = None) -> nn.Module:
    """The temporal model of a checkpoint (dict or path), weights loaded, in eval mode.
    ``path``: the file a dict came from, for the error messages."""
    from .temporal import create_temporal_model

    path = str(path) if path is not None else "<checkpoint>"
    if not isinstance(ckpt, Mapping):
        path = str(ckpt)
        ckpt = load_checkpoint(ckpt)
    config = dict(ckpt["model_config"])
    config.setdefault("num_classes", len(ckpt["classes"]))
    if int(config["num_classes"]) != len(ckpt["classes"]):
        raise CheckpointError(
            f"{path}: model_config has num_classes={config['num_classes']} but the checkpoint "
            f"lists {len(ckpt['classes'])} classes"
        )
    try:
        model = create_temporal_model(**config)
        model.load_state_dict(ckpt["model_state"])
    except (TypeError, ValueError, RuntimeError, KeyError) as exc:
        raise CheckpointError(f"{path}: cannot rebuild the model from model_config {config}: {exc}") from None
    return model.eval()


# --------------------------------------------------------------------------- RNG states


def capture_rng_state(device: torch.device | None = None) -> dict[str, Any]:
    """RNG states of torch, CUDA, numpy and ``random``, as checkpoint-safe values.

    ``device``: the CUDA device the run uses; its state is also kept on its own, for
    :func:`restore_rng_state` to put into whichever device resumes the run."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {"kind": str(kind), "keys": torch.from_numpy(np.asarray(keys, np.int64)),
                  "pos": int(pos), "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "python": _to_safe(random.getstate(), "python"),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
        if device is not None and device.type == "cuda":
            state["cuda_device"] = torch.cuda.get_rng_state(device)
    return state


def restore_rng_state(state: Mapping[str, Any], device: torch.device | None = None) -> None:
    """Inverse of :func:`capture_rng_state`. ``device``: the CUDA device this process runs
    on gets the state of the device the run was saved from. Why: under torchrun only rank 0
    saves, and in its process the other ranks' GPUs were never used (their states are the
    seed's); every rank's own generator advanced as rank 0's did (same seed, same calls)."""
    torch.set_rng_state(state["torch"].cpu())
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        # One state per GPU of the saving machine; one with fewer GPUs restores what it has
        # (set_rng_state_all would fail on the missing device ordinals).
        for i, s in enumerate(state["cuda"][:torch.cuda.device_count()]):
            torch.cuda.set_rng_state(s.cpu(), i)
        if device is not None and device.type == "cuda" and "cuda_device" in state:
            torch.cuda.set_rng_state(state["cuda_device"].cpu(), device)
