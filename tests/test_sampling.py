"""Frame-index sampling rules: TSN segments, dense windows, target fps, short videos."""
from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from videoact.sampling import (
    dense_indices,
    fps_indices,
    sample_indices,
    timestamp_indices,
    uniform_segments,
)


def segment_of(i: int, n: int, segments: int) -> int:
    """Which of ``segments`` equal segments of ``n`` frames holds frame ``i``."""
    return next(k for k in range(segments) if (k * n) // segments <= i < ((k + 1) * n) // segments)


def test_uniform_eval_takes_segment_centres():
    assert uniform_segments(100, 4) == [12, 37, 62, 87]
    assert uniform_segments(8, 8) == list(range(8))
    for n, segments in [(97, 8), (300, 16), (17, 5)]:
        idx = uniform_segments(n, segments)
        assert [segment_of(i, n, segments) for i in idx] == list(range(segments))


def test_uniform_centres_of_a_reversed_video_are_its_own_reversed():
    """The benchmark's promise (a clip played backwards is a clip of its partner, so an
    order-blind model is at chance within a pair) needs the frames taken from a reversed
    video to be the reverse of those taken from it. floor() at every tie gave 16 frames in
    8 segments 1, 3, ..., 15 and their reversal 0, 2, ..., 14: one frame later, so the
    mean opacity of a fade told fade_in from fade_out (AUC 0.65 for 16-frame clips)."""
    assert uniform_segments(16, 8) == [1, 3, 5, 7, 8, 10, 12, 14]
    for segments in (2, 4, 6, 8, 16):
        for n in range(segments, 200):
            idx = uniform_segments(n, segments)
            assert idx == [n - 1 - i for i in reversed(idx)], (n, segments)
            assert all(a < b for a, b in zip(idx, idx[1:]))  # in order, no frame twice
            # each centre frame overlaps its segment [k n / N, (k + 1) n / N)
            assert all(k * n < (i + 1) * segments and i * segments < (k + 1) * n for k, i in enumerate(idx))
    # odd N, even n: the middle segment's centre lies between two frames; the others mirror
    idx = uniform_segments(16, 5)
    mirrored = [16 - 1 - i for i in reversed(idx)]
    assert [k for k in range(5) if idx[k] != mirrored[k]] == [2]


def test_uniform_train_draws_one_frame_per_segment_and_covers_them():
    n, segments = 50, 5
    seen = [set() for _ in range(segments)]
    for seed in range(200):
        idx = uniform_segments(n, segments, train=True, rng=seed)
        assert len(idx) == segments and idx == sorted(idx)
        for k, i in enumerate(idx):
            assert segment_of(i, n, segments) == k
            seen[k].add(i)
    # every frame of every segment gets drawn eventually (uniform within segment)
    assert all(len(s) == n // segments for s in seen)


def test_short_videos_repeat_frames_evenly():
    assert uniform_segments(3, 8) == [0, 0, 0, 1, 1, 2, 2, 2]
    assert uniform_segments(1, 4) == [0, 0, 0, 0]
    for n in range(1, 8):
        for train in (False, True):
            idx = uniform_segments(n, 8, train=train, rng=0)
            assert len(idx) == 8 and idx == sorted(idx) and set(idx) == set(range(n))
    assert dense_indices(10, 4, count=5) == [0, 4, 8, 8, 8]
    assert sample_indices(5, "dense", stride=2, num_frames_out=6) == [0, 2, 4, 4, 4, 4]
    assert sample_indices(3, "uniform", num_segments=4, train=True) == [0, 1, 1, 2]


@pytest.mark.parametrize(
    "make",
    [
        lambda s: s,  # int seed
        lambda s: torch.Generator().manual_seed(s),
        lambda s: np.random.default_rng(s),
        lambda s: random.Random(s),
    ],
    ids=["int", "torch", "numpy", "random"],
)
def test_seeded_generators_are_deterministic(make):
    a = [sample_indices(1000, "uniform", num_segments=8, train=True, generator=make(s)) for s in range(5)]
    b = [sample_indices(1000, "uniform", num_segments=8, train=True, generator=make(s)) for s in range(5)]
    assert a == b
    assert len({tuple(x) for x in a}) > 1  # different seeds, different draws
    d1 = sample_indices(1000, "dense", stride=4, num_frames_out=16, train=True, generator=make(3))
    d2 = sample_indices(1000, "dense", stride=4, num_frames_out=16, train=True, generator=make(3))
    assert d1 == d2


def test_global_torch_rng_is_used_without_generator():
    torch.manual_seed(123)
    a = sample_indices(500, "uniform", num_segments=6, train=True)
    torch.manual_seed(123)
    assert sample_indices(500, "uniform", num_segments=6, train=True) == a


def test_dense_windows():
    assert dense_indices(10, 3) == [0, 3, 6, 9]
    assert dense_indices(10, 3, start=2) == [2, 5, 8]
    assert dense_indices(10, 1, count=4, start=5) == [5, 6, 7, 8]
    # eval: centred window; train: random window that fits
    assert sample_indices(100, "dense", stride=2, num_frames_out=8) == list(range(42, 58, 2))
    starts = set()
    for seed in range(100):
        idx = sample_indices(100, "dense", stride=2, num_frames_out=8, train=True, generator=seed)
        assert len(idx) == 8 and np.all(np.diff(idx) == 2) and 0 <= idx[0] and idx[-1] < 100
        starts.add(idx[0])
    assert min(starts) < 20 and max(starts) > 65
    assert sample_indices(7, "dense") == list(range(7))
    with pytest.raises(ValueError):
        dense_indices(10, 2, start=10)


def test_fps_indices():
    assert fps_indices(30, 30, 10) == list(range(0, 30, 3))
    assert fps_indices(11, 25, 10) == [0, 2, 5, 7, 10]
    assert fps_indices(12, 25, 30) == list(range(12))  # faster than the video: every frame
    # max_frames spreads the kept frames over the video (as extraction's cap does), not the first ones
    assert fps_indices(300, 30, 5, max_frames=4) == [0, 96, 198, 294]
    assert sample_indices(60, "fps", fps=30, target_fps=15) == list(range(0, 60, 2))


def test_timestamp_indices_match_constant_rate_and_follow_variable_rate():
    for n, video_fps, target in [(10, 24, 10), (50, 25, 10), (300, 30, 7), (7, 30, 30)]:
        ts = np.arange(n) / video_fps
        assert timestamp_indices(ts, target) == fps_indices(n, video_fps, target)
    # 1 s at 60 fps, then 1 s at 10 fps: 10 fps output keeps every slow-part frame
    ts = np.concatenate([np.arange(60) / 60, 1 + np.arange(10) / 10])
    idx = timestamp_indices(ts, 10)
    assert idx == list(range(0, 60, 6)) + list(range(60, 70))
    assert np.allclose(np.diff(ts[idx]), 0.1)
    assert sample_indices(len(ts), "fps", target_fps=10, timestamps=ts) == idx


def test_invalid_arguments():
    for mode, kw in [("uniform", {"num_segments": 4}), ("dense", {}), ("fps", {"fps": 25, "target_fps": 5}), ("all", {})]:
        with pytest.raises(ValueError, match="num_frames"):
            sample_indices(0, mode, **kw)
    with pytest.raises(ValueError):
        uniform_segments(0, 8)
    with pytest.raises(ValueError):
        uniform_segments(10, 0)
    with pytest.raises(ValueError):
        fps_indices(10, 0, 5)
    with pytest.raises(ValueError, match="mode"):
        sample_indices(10, "random")
    with pytest.raises(ValueError, match="num_segments"):
        sample_indices(10, "uniform")
    with pytest.raises(ValueError, match="target_fps"):
        sample_indices(10, "fps", fps=25)
    with pytest.raises(ValueError):
        sample_indices(10, "fps", target_fps=5, timestamps=[0.0, 0.1])
    assert sample_indices(10, "all", max_frames=3) == [0, 4, 9]
    assert sample_indices(10, "all", max_frames=30) == list(range(10))


def test_timestamp_indices_keep_the_last_frame():
    """The reported case: 120 frames at 29.97 fps sampled at 60 fps lost frame 119."""
    ts = np.arange(120) / 29.97
    assert timestamp_indices(ts, 60) == fps_indices(120, 29.97, 60) == list(range(120))
    assert timestamp_indices(ts.astype(np.float32), 60) == list(range(120))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("video_fps", [12.5, 23.976, 24000 / 1001, 25, 29.97, 30, 59.94, 60])
def test_timestamp_indices_equal_fps_indices_for_constant_rate(video_fps, dtype):
    """Float32 times (what decord reports) included; targets below, at and above the rate."""
    for n in (1, 2, 3, 31, 120, 301, 1000, 3001):
        ts = (np.arange(n) / video_fps).astype(dtype)
        for target in (1, 5, 7.5, 10, 15, 24, 25, 29.97, 30, 60, 120):
            expected = fps_indices(n, video_fps, target)
            assert timestamp_indices(ts, target) == expected, (n, target)
            if target >= video_fps:
                assert expected == list(range(n)), (n, target)
    # times that do not start at 0 (container start offsets)
    ts = 12.0 + np.arange(300) / video_fps
    assert timestamp_indices(ts.astype(dtype), 60) == list(range(300))


def test_timestamp_indices_last_frame_of_variable_rate_video():
    # ends with a slow part (10 fps): every frame of it is kept at 10 fps, the last too
    ts = np.concatenate([np.arange(60) / 60, 1 + np.arange(10) / 10])
    assert timestamp_indices(ts, 10)[-3:] == [67, 68, 69]
    assert timestamp_indices(ts, 60) == list(range(70))
    # ends with a fast part (60 fps): at 10 fps the last frame is not on the grid, and
    # as one of six frames per grid step it is not kept
    ts = np.concatenate([np.arange(10) / 10, 1 + np.arange(60) / 60])
    assert timestamp_indices(ts, 10) == list(range(10)) + list(range(10, 70, 6))
    assert timestamp_indices(ts, 60) == list(range(70))
    assert timestamp_indices(ts, 60, max_frames=5) == [0, 17, 34, 52, 69]
    assert timestamp_indices([3.5], 10) == [0]


def test_max_frames_means_the_same_in_the_sampler_and_in_extraction():
    """sample_indices(max_frames=8) kept the first 8 frames, while a model trained with
    feature.max_frames saw 8 frames spread over the whole video: a user reproducing
    training's frames with the public sampler got other frames."""
    from videoact.extract import SamplingSpec

    ts = np.cumsum(np.r_[0, np.full(99, 0.04)])
    for mode, kw in (("all", {}), ("fps", {"fps": 25.0, "target_fps": 8.0}),
                     ("fps", {"timestamps": ts, "target_fps": 8.0})):
        spec = SamplingSpec(mode=mode, max_frames=8, **({"target_fps": 8.0} if mode == "fps" else {}))
        expected = spec.indices(100, 25.0, ts if "timestamps" in kw else None)
        assert sample_indices(100, mode, max_frames=8, **kw) == expected
        assert len(expected) == 8 and expected[0] == 0 and expected[-1] >= 90
