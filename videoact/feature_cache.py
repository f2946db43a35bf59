"""The on-disk feature cache: one safetensors file per video.

``OUT/<relative path of the video>.safetensors`` holds

- ``features``      float16 ``[T, D]``: one backbone feature vector per sampled frame
- ``frame_indices`` int64 ``[T]``: which decoded frames they came from

and string metadata (safetensors only stores strings; every value is JSON):
the extraction settings (backbone, weights, layer, pooling, image size, normalization,
precision, sampling), the source file's size and mtime, and the videoact version.

A cache file is *current* when its settings equal the requested ones and the source
file has not changed size or mtime since. Files are written atomically, so a file
that exists is complete.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save as safetensors_save

from .atomic import NAME_MAX, atomic_write_bytes, fit_name
from .version import __version__

SUFFIX = ".safetensors"
FAILURES_FILE = "failures.jsonl"
VIDEO_CHANGED = "the video changed"  # a staleness reason: its size or mtime differ from the cached ones


class FeatureCacheError(RuntimeError):
    """A cache file that is missing, unreadable or not a videoact feature file."""

    def __init__(self, path: str | os.PathLike, reason: str | None = None):
        if reason is None:
            # Re-raised from a DataLoader worker, torch rebuilds the error from its message
            # alone, the worker's traceback included; keep the type and the original message.
            text = str(path).rstrip()
            if "Traceback" in text:
                last = text.splitlines()[-1]
                text = last.split(f"{type(self).__name__}: ", 1)[-1]
            super().__init__(text)
            self.path, _, self.reason = text.partition(": ")
            return
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


@dataclass
class FeatureFile:
    """Cached features of one video."""

    features: torch.Tensor  # [T, D] float16
    frame_indices: torch.Tensor  # [T] int64
    metadata: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.features.shape[0])


def cache_path(out_dir: str | os.PathLike, relative_video_path: str | os.PathLike) -> Path:
    """Where the features of ``relative_video_path`` live: ``OUT/<rel path>.safetensors``."""
    rel = Path(relative_video_path)
    if rel.is_absolute() or ".." in rel.parts:
        raise ValueError(f"{rel}: cache paths must be relative and stay inside the cache")
    # A name near the file system's limit is shortened (with a hash of it) to leave room for the suffix.
    return Path(out_dir) / rel.parent / (fit_name(rel.name, NAME_MAX - len(SUFFIX)) + SUFFIX)


def source_stat(path: str | os.PathLike) -> dict[str, int]:
    """Size and mtime of a source video; a change in either makes its cache stale."""
    st = os.stat(path)
    return {"source_size": int(st.st_size), "source_mtime_ns": int(st.st_mtime_ns)}


def save_features(
    path: str | os.PathLike,
    features: torch.Tensor,
    frame_indices: torch.Tensor,
    metadata: Mapping[str, Any],
) -> Path:
    """Write ``features`` ``[T, D]`` (stored as float16) and ``frame_indices`` ``[T]`` atomically."""
    if features.ndim != 2 or frame_indices.ndim != 1 or len(features) != len(frame_indices):
        raise ValueError(
            f"{path}: features must be [T, D] and frame_indices [T], "
            f"got {tuple(features.shape)} and {tuple(frame_indices.shape)}"
        )
    tensors = {
        "features": features.detach().to("cpu", torch.float16).contiguous(),
        "frame_indices": frame_indices.detach().to("cpu", torch.int64).contiguous(),
    }
    meta = {key: json.dumps(value, sort_keys=True) for key, value in metadata.items()}
    meta.setdefault("videoact_version", json.dumps(__version__))
    path = Path(path)
    atomic_write_bytes(path, safetensors_save(tensors, metadata=meta))
    return path


def read_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """Read only the metadata header of a cache file (cheap: no tensor data is loaded)."""
    try:
        with safe_open(str(path), framework="pt") as f:
            raw = f.metadata() or {}
    except FileNotFoundError:
        raise FeatureCacheError(path, "no such feature file") from None
    except (SafetensorError, OSError, ValueError) as exc:
        raise FeatureCacheError(path, f"not a readable safetensors file ({exc})") from None
    try:
        return {key: json.loads(value) for key, value in raw.items()}
    except json.JSONDecodeError as exc:
        raise FeatureCacheError(path, f"metadata is not videoact's ({exc})") from None


def load_features(path: str | os.PathLike) -> FeatureFile:
    """Load one cached video: ``features`` ``[T, D]`` float16, ``frame_indices`` ``[T]``."""
    metadata = read_metadata(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            keys = set(f.keys())
            if not {"features", "frame_indices"} <= keys:
                raise FeatureCacheError(path, f"missing tensors: expected features and frame_indices, found {sorted(keys)}")
            features = f.get_tensor("features")
            frame_indices = f.get_tensor("frame_indices")
    except (SafetensorError, OSError) as exc:
        raise FeatureCacheError(path, f"not a readable safetensors file ({exc})") from None
    return FeatureFile(features=features, frame_indices=frame_indices, metadata=metadata)


# Settings that caches written before they were recorded were made with.
_SETTINGS_BEFORE_RECORDED = {"precision": "float32", "normalization": "default"}


# The sampling fields that choose the frames in each mode (besides mode and max_frames): a
# cache of fps-sampled frames serves any num_segments, which training draws from it.
_SAMPLING_FIELDS = {"all": (), "uniform": ("num_segments", "segment_frames", "centres"), "dense": ("stride",),
                    "fps": ("target_fps", "times")}
_SAMPLING_BEFORE_RECORDED = {"segment_frames": 1}  # caches made before the field existed


def _compared(key: str, value: Any) -> Any:
    if key != "sampling" or not isinstance(value, dict) or value.get("mode") not in _SAMPLING_FIELDS:
        return value
    fields = ("mode", "max_frames", *_SAMPLING_FIELDS[value["mode"]])
    return {name: value.get(name, _SAMPLING_BEFORE_RECORDED.get(name)) for name in fields}


def settings_differences(metadata: Mapping[str, Any], settings: Mapping[str, Any],
                         feature_dim: int | None = None) -> list[str]:
    """How the settings a cache file was made with (its ``metadata``) differ from
    ``settings``: ``[]`` when they match, else ``["image_size: 224 -> 448", ...]``.
    ``feature_dim``: the file's ``D``, for files made before it was recorded."""
    # JSON round trip so tuples compare equal to the lists read back.
    from .backbones import same_weights

    wanted = json.loads(json.dumps(dict(settings), sort_keys=True))
    made = {**_SETTINGS_BEFORE_RECORDED, **metadata}
    made.setdefault("feature_dim", feature_dim)

    def differs(key: str, old: Any, new: Any) -> bool:
        if key == "weights" and isinstance(old, str) and isinstance(new, str):
            return not same_weights(old, new)  # the Lite0 package in another version: the same weights
        return _compared(key, old) != _compared(key, new)

    return [f"{key}: {made.get(key)!r} -> {value!r}" for key, value in wanted.items()
            if differs(key, made.get(key), value)]


def cache_staleness(
    path: str | os.PathLike,
    settings: Mapping[str, Any],
    source: str | os.PathLike | None = None,
) -> list[str] | None:
    """Why the cache file ``path`` is out of date: ``None`` when it is missing or unreadable,
    ``[]`` when it was made with ``settings`` from ``source`` as it is now, else the reasons
    (``["sampling: 'all' -> 'uniform'"]``, ``["the video changed"]``)."""
    try:
        meta = read_metadata(path)
    except FeatureCacheError:
        return None
    feature_dim = None
    if "feature_dim" in settings and "feature_dim" not in meta:  # made before it was recorded: the header says
        try:
            with safe_open(str(path), framework="pt") as f:
                feature_dim = int(f.get_slice("features").get_shape()[-1])
        except Exception:  # noqa: BLE001 - unreadable tensors: out of date, and rewritten
            pass
    reasons = settings_differences(meta, settings, feature_dim)
    if source is not None:
        try:
            stat = source_stat(source)
        except OSError:
            return reasons + ["the video is unreadable"]
        if any(meta.get(key) != value for key, value in stat.items()):
            reasons.append(VIDEO_CHANGED)
        from .decode import DECORD_WRONG_CONTAINERS

        # Read before 2026-12-01 by decord, which returns other frames than those asked for
        # in such files (MPEG program/transport streams, ASF): features of the wrong frames.
        # (MPEG-1/2 in other containers would need the codec, an open of every video.)
        if meta.get("decoder") == "decord" and Path(source).suffix.lower() in DECORD_WRONG_CONTAINERS:
            reasons.append("read by decord, which returns the wrong frames of such files")
    return reasons


def is_cache_current(
    path: str | os.PathLike,
    settings: Mapping[str, Any],
    source: str | os.PathLike | None = None,
) -> bool:
    """True when ``path`` exists, is readable, was made with ``settings`` and ``source`` is unchanged."""
    return cache_staleness(path, settings, source) == []
