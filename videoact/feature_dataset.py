"""What the temporal model trains on: cached per-frame features of labelled videos.

:class:`FeatureDataset` reads each video's cached features ``[T, D]`` and samples
``num_segments`` rows (TSN segments) per item, with training-time temporal jitter and
time reversal of paired classes; :class:`EpochSampler` carries the epoch to DataLoader
workers; :func:`collate_features` pads variable lengths into ``[B, T, D]`` with
``lengths [B]``. The videos and labels come from :mod:`videoact.datasets`.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Mapping, Sequence

import numpy as np
import torch

from .feature_cache import FeatureCacheError, cache_path, load_features, settings_differences

if TYPE_CHECKING:  # no import at run time: videoact.datasets imports this module
    from .datasets import VideoSample

PathLike = str | os.PathLike


class FeatureDataset(torch.utils.data.Dataset):
    """Cached per-frame features of labelled videos, sampled into fixed-length sequences.

    Item ``i`` is ``(features, label)``: float32 ``[num_segments, D]`` taken from the cached
    ``[T, D]`` of ``samples[i]`` with TSN segments (:func:`videoact.sampling.uniform_segments`):
    one random row per segment when ``train`` and ``temporal_jitter``, segment centres
    otherwise. ``num_segments=None`` keeps all ``T`` rows (pad with :func:`collate_features`).

    ``reverse_labels`` (training only) maps a class to the class its clips become when
    played backwards (``move_left -> move_right``); each training item of such a class is
    time-reversed, with that label, with probability 1/2. Only for classes where this is
    true of the data: it doubles what the model sees of each direction.

    Files are opened per item and closed again, so the dataset pickles into DataLoader
    workers. ``preload``: keep each file's features in memory (float16, as cached) once read,
    so later epochs skip the file and its checks (0.6 s an epoch for the demo's 1,000
    clips, a fifth of an epoch); for sets that fit in RAM (each DataLoader worker holds
    its own copy). Training jitter and reversal depend on ``(seed, epoch, index)``: call
    :meth:`set_epoch` every epoch before iterating. ``persistent_workers`` keep the copy
    of the dataset they were started with, so with them sample through
    :class:`EpochSampler`, whose ``(epoch, index)`` items carry the epoch to the workers.
    ``settings`` (``ExtractResult.settings``): each file must have been made with them (a
    file replaced by a run with other settings raises :class:`FeatureCacheError`).
    """

    def __init__(
        self,
        samples: Sequence[VideoSample],
        cache_dir: PathLike,
        num_segments: int | None = 16,
        train: bool = False,
        temporal_jitter: bool = True,
        seed: int = 0,
        reverse_labels: Mapping[int, int] | None = None,
        preload: bool = False,
        settings: Mapping[str, Any] | None = None,
    ) -> None:
        if num_segments is not None and num_segments < 1:
            raise ValueError(f"num_segments must be >= 1 or None, got {num_segments}")
        self.reverse_labels = dict(reverse_labels or {})
        self.samples = list(samples)
        self.cache_dir = Path(cache_dir)
        self.num_segments = num_segments
        self.train = train
        self.temporal_jitter = temporal_jitter
        self.seed = seed
        self.epoch = 0
        self.preload = preload
        self.settings = None if settings is None else dict(settings)
        self._memory: dict[int, torch.Tensor] = {}  # index -> float16 [T, D], checked

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def labels(self) -> list[int]:
        return [s.label for s in self.samples]

    def set_epoch(self, epoch: int) -> None:
        """Choose the training jitter of this epoch (no effect in eval mode)."""
        self.epoch = int(epoch)

    def cache_file(self, index: int) -> Path:
        return cache_path(self.cache_dir, self.samples[index].rel)

    def load(self, index: int) -> torch.Tensor:
        """All cached features of sample ``index``: float32 ``[T, D]``, checked."""
        if index in self._memory:
            return self._memory[index].to(torch.float32, copy=True)  # a copy: callers may change it
        sample = self.samples[index]
        file = self.cache_file(index)
        try:
            cached = load_features(file)
        except FeatureCacheError as exc:
            raise FeatureCacheError(
                file, f"features of video {sample.path} unusable: {exc.reason} (run `videoact extract` for it)"
            ) from None
        stored = features = cached.features
        if features.ndim != 2 or features.shape[0] == 0:
            raise FeatureCacheError(
                file, f"features of video {sample.path} have shape {tuple(features.shape)}, expected [T>0, D]"
            )
        if self.settings is not None:
            # Another run sharing the cache folder may have re-extracted this video with
            # other settings since training began: same shape maybe, other features.
            differ = settings_differences(cached.metadata, self.settings, int(features.shape[1]))
            if differ:
                raise FeatureCacheError(
                    file, f"features of video {sample.path} were made with other settings ({'; '.join(differ)}): "
                    "replaced by another run that shares this cache folder? Give each feature setting its own "
                    "feature.cache_dir")
        features = features.float()
        if not torch.isfinite(features).all():
            raise FeatureCacheError(
                file, f"features of video {sample.path} contain NaN or inf (delete this file to extract it again)"
            )
        if self.preload:
            self._memory[index] = stored
        return features

    def __getitem__(self, index: int | tuple[int, int]) -> tuple[torch.Tensor, int]:
        """Item ``index`` of the epoch set by :meth:`set_epoch`, or ``(epoch, index)``."""
        from .sampling import uniform_segments

        epoch, index = index if isinstance(index, tuple) else (self.epoch, index)
        features = self.load(index)
        label = self.samples[index].label
        if self.train and label in self.reverse_labels:
            # Its own stream (the 1 at the end), so turning reversal on leaves the jitter as it was.
            if np.random.default_rng([self.seed, epoch, index, 1]).random() < 0.5:
                # The whole cached clip reversed, then sampled as any clip: segments of a
                # clip whose length N does not divide are not mirror images, so reversing
                # the sampled frames gave frames outside the reversed clip's segments.
                features, label = features.flip(0), self.reverse_labels[label]
        if self.num_segments is not None:
            jitter = self.train and self.temporal_jitter
            rng = np.random.default_rng([self.seed, epoch, index]) if jitter else None
            rows = uniform_segments(int(features.shape[0]), self.num_segments, train=jitter, rng=rng)
            features = features[torch.as_tensor(rows, dtype=torch.long)]
        return features, label


class EpochSampler(torch.utils.data.Sampler):
    """Wraps a sampler of indices into one of ``(epoch, index)`` pairs for
    :class:`FeatureDataset`: DataLoader workers get their items through the sampler, so
    the epoch reaches them even when they persist across epochs (they keep the dataset
    copy they started with, and a ``set_epoch`` on the main process's copy would not).
    """

    def __init__(self, sampler: torch.utils.data.Sampler) -> None:
        self.sampler = sampler
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """The epoch of the next iteration; passed on to the wrapped sampler if it has one."""
        self.epoch = int(epoch)
        if hasattr(self.sampler, "set_epoch"):
            self.sampler.set_epoch(epoch)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch = self.epoch
        return ((epoch, int(i)) for i in self.sampler)

    def __len__(self) -> int:
        return len(self.sampler)


def collate_features(
    batch: Sequence[tuple[torch.Tensor, int]],
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Stack ``(features [T_i, D], label)`` items into ``features [B, T_max, D]`` (zero-padded),
    ``lengths [B]`` int64 and ``labels [B]`` int64."""
    if not batch:
        raise ValueError("cannot collate an empty batch")
    feats = [f for f, _ in batch]
    if any(f.ndim != 2 for f in feats) or len({int(f.shape[1]) for f in feats}) != 1:
        raise ValueError(f"items must all be [T, D] with one D, got shapes {[tuple(f.shape) for f in feats]}")
    lengths = torch.tensor([int(f.shape[0]) for f in feats], dtype=torch.int64)
    out = feats[0].new_zeros((len(feats), int(lengths.max()), int(feats[0].shape[1])))
    for i, f in enumerate(feats):
        out[i, : f.shape[0]] = f
    labels = torch.tensor([int(label) for _, label in batch], dtype=torch.int64)
    return out, lengths, labels
