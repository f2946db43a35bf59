"""Online inference: StreamClassifier, the threaded engine, live sources, the stream command.

Everything is real: index-coded videos encoded with OpenCV, decord/FFmpeg decoding, the
offline efficientnet_lite0 backbone (at 64 px to keep it fast) with a tiny BiLSTM
trained in the fixture, a real sleep inside a backbone for the lag test, and a real
HTTP MJPEG server on 127.0.0.1 for the network-stream test.
"""
from __future__ import annotations

import contextlib
import http.server
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from faults import SHARED, VIDEOACT_WITH_CTRL_C, run_main, run_main_into_closed_pipe
from torch import nn

from videoact.backbones import create_backbone
from videoact.checkpoint import save_checkpoint
from videoact.cli import main
from videoact.cnn_lstm import BACKBONE_ATTRIBUTES, CNNLSTM
from videoact.decode import open_video
from videoact.inference import VideoClassifier
from videoact.overlay import AtomicVideoWriter, draw_overlay
from videoact.stream import (
    CameraSource,
    FileSource,
    IterableSource,
    LatestSlot,
    SourceError,
    StreamClassifier,
    StreamEngine,
    URLSource,
    open_source,
    benchmark_stream,
    stream_predictions,
)
from videoact.temporal import create_temporal_model
from videoact.testing import coded_frame, read_frame_index, write_coded_video, write_timed_video

T = 4  # ring size (num_segments)
FPS = 25.0
CLASSES = ["first", "second", "third", "fourth"]  # which second of the 4 s training video


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """Single-frame passes on 2 shared cores: one intra-op thread is 10x faster than two
    fighting with the capture thread and other processes (measured 14 vs 150-200 ms)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A checkpoint (efficientnet_lite0 @ 64 px + tiny BiLSTM trained for a few steps), its
    classifier loaded back from the file, and a 4 s index-coded video."""
    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("stream")
    backbone = create_backbone("efficientnet_lite0", pretrained=True)
    backbone.input_size = 64
    feature = {"backbone": backbone.name, "weights": None, "weights_id": backbone.weights_id,
               "pooling": backbone.pooling, "image_size": 64, "mean": list(backbone.mean),
               "std": list(backbone.std), "feature_dim": backbone.feature_dim,
               "sampling": {"mode": "uniform", "num_segments": T}, "num_segments": T}
    temporal = create_temporal_model("bilstm", backbone.feature_dim, len(CLASSES), hidden=16, proj_dim=16,
                                     dropout=0.0, input_dropout=0.0)
    clf = VideoClassifier(CNNLSTM(backbone, temporal), CLASSES, feature, torch.device("cpu"))
    video = write_coded_video(root / "coded.mp4", 100, fps=FPS)
    with open_video(video) as reader:
        feats = clf.frame_features(reader.get(list(range(100))).frames)  # [100, D]
    # Windows of T frames 3 apart (~8 Hz), labelled by the second their newest frame is in,
    # so that predictions change along the video.
    ends = list(range(3 * (T - 1), 100))
    x = torch.stack([feats[e - 3 * (T - 1): e + 1: 3] for e in ends])
    y = torch.tensor([e // 25 for e in ends])
    opt = torch.optim.Adam(temporal.parameters(), lr=1e-2)
    temporal.train()
    for _ in range(120):
        loss = nn.functional.cross_entropy(temporal(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    temporal.eval()
    ckpt = save_checkpoint(root / "tiny.pt", model_state=temporal.state_dict(), model_config=temporal.config,
                           classes=CLASSES, feature=feature)
    return {"clf": VideoClassifier.from_checkpoint(ckpt, device="cpu"), "ckpt": ckpt, "video": video,
            "root": root}


def offline_probs(clf: VideoClassifier, video: Path, indices: list[int]) -> torch.Tensor:
    with open_video(video) as reader:
        frames = reader.get(indices).frames
    return clf.predict_features(clf.frame_features(frames))


# ------------------------------------------------------------------- StreamClassifier


def test_push_without_threads_ring_ema_threshold(setup):
    clf = setup["clf"]
    with open_video(setup["video"]) as reader:
        frames = [(i, ts, f) for i, ts, f in reader]
    sc = StreamClassifier(clf, feature_rate=FPS / 3, ema=0.6, threshold=0.0, top_k=2)
    assert sc.num_segments == T and sc.window_seconds == pytest.approx(T * 3 / FPS)
    results = [r for r in (sc.push(f, ts, index=i) for i, ts, f in frames) if r is not None]
    # Features every 3rd frame; the first prediction once the ring holds T of them.
    assert sc.features_computed == 34
    assert results[0].frame_indices == [0, 3, 6, 9]
    assert all(np.all(np.diff(r.frame_indices) == 3) for r in results)
    assert len(results) == sc.features_computed - T + 1
    # Exponential moving average of the raw probabilities.
    smoothed = results[0].raw_probs
    for r in results[1:]:
        smoothed = 0.6 * smoothed + 0.4 * r.raw_probs
        torch.testing.assert_close(r.probs, smoothed)
    # The trained model follows the video: every second gets its own label.
    assert {r.raw_probs.argmax().item() for r in results} == {0, 1, 2, 3}

    # Threshold: label None exactly when the smoothed top probability is below it.
    cut = float(np.median([r.top[0][1] for r in results]))
    sc2 = StreamClassifier(clf, feature_rate=FPS / 3, ema=0.6, threshold=cut)
    out = [r for r in (sc2.push(f, ts) for _, ts, f in frames) if r is not None]
    assert any(r.label is None for r in out) and any(r.label is not None for r in out)
    assert all((r.label is None) == (r.top[0][1] < cut) for r in out)

    # A jump in time (reconnect, seek) clears the ring: T new features before a result.
    sc3 = StreamClassifier(clf, feature_rate=FPS / 3, ema=0.0, threshold=0.0)
    got = [sc3.push(f, ts) for _, ts, f in frames[:30]]
    assert any(g is not None for g in got)
    after = [sc3.push(f, ts + 100.0) for _, ts, f in frames[:12]]
    assert sc3.resets == 1 and after[:9] == [None] * 9 and after[9] is not None

    # A reconnect shorter than the gap limit: the frame's connection starts a new window
    # (in your own loop over a source's frames, as the engine does)
    sc4 = StreamClassifier(clf, feature_rate=FPS / 3, ema=0.0, threshold=0.0)
    got = [sc4.push(f, ts, connection=0) for _, ts, f in frames[:30]]
    assert any(g is not None for g in got) and sc4.resets == 0
    step = frames[1][1] - frames[0][1]
    after = [sc4.push(f, frames[29][1] + (k + 1) * step, connection=1) for k, (_, _, f) in enumerate(frames[:12])]
    assert sc4.resets == 1 and after[:9] == [None] * 9 and after[9] is not None


class EqualScores(nn.Module):
    """A temporal model that scores every class the same: ``[B, T, D] -> [B, C]`` zeros."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.num_classes = num_classes

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        return x.new_zeros(x.shape[0], self.num_classes)


def test_tied_scores_name_the_lowest_class_everywhere(setup):
    """Equal probabilities: infer, the stream and the timeline name the classes in index
    order, as test's metrics count them (topk ordered ties as it liked: 4, 7, 6, ... of 8)."""
    from videoact.evaluation import classification_metrics
    from videoact.timeline import classify_timeline

    clf = setup["clf"]
    classes = [f"c{i}" for i in range(8)]
    flat = VideoClassifier(CNNLSTM(clf.backbone, EqualScores(8)), classes, clf.feature, torch.device("cpu"))
    order = [(c, pytest.approx(1 / 8)) for c in classes[:5]]
    assert flat.predict(setup["video"], top_k=5).top == order
    with open_video(setup["video"]) as reader:
        frames = [(ts, f) for _, ts, f in reader][:12]
    sc = StreamClassifier(flat, feature_rate=FPS / 3, ema=0.0, threshold=0.0, top_k=5)
    results = [r for r in (sc.push(f, ts) for ts, f in frames) if r is not None]
    assert results and all(r.top == order and r.label == "c0" for r in results)
    timeline = classify_timeline(flat, setup["video"], window=1.0, stride=1.0, top_k=5)
    assert timeline.windows and all(w.top == order for w in timeline.windows)
    assert classification_metrics(torch.full((1, 8), 1 / 8), torch.tensor([0]), classes)["top1"] == 1.0


def test_stream_classifier_rejects_bad_input(setup):
    clf = setup["clf"]
    with pytest.raises(ValueError, match="ema"):
        StreamClassifier(clf, ema=1.0)
    with pytest.raises(ValueError, match="feature_rate"):
        StreamClassifier(clf, feature_rate=0)
    sc = StreamClassifier(clf)
    with pytest.raises(ValueError, match=r"uint8 RGB frame \[H, W, 3\]"):
        sc.push(np.zeros((8, 8), np.uint8), 0.0)
    # a NaN timestamp stopped the feature schedule for good, silently (no result ever after)
    with pytest.raises(ValueError, match="timestamp must be a finite number"):
        sc.push(coded_frame(0), float("nan"))
    with pytest.raises(ValueError, match="num_segments must be a positive integer"):
        StreamClassifier(clf, num_segments=0)  # was the checkpoint's 4, silently


def test_a_refused_frame_changes_nothing(setup):
    """push() updated its counters, gap clock and feature schedule before checking the frame:
    a bad frame at a due time took the slot of the good one after it; one at a time that was
    not due was not checked at all."""
    sc = StreamClassifier(setup["clf"], num_segments=1, ema=0.0, threshold=0.0)
    with pytest.raises(ValueError, match=r"uint8 RGB frame \[H, W, 3\]"):
        sc.push(coded_frame(0).astype(np.float32), 0.0)
    assert (sc.frames_pushed, sc.features_computed) == (0, 0)
    assert sc.push(coded_frame(0), 0.0) is not None and sc.features_computed == 1
    for bad in (np.zeros((3, 64, 64), np.uint8), np.zeros((64, 64, 4), np.uint8)):  # not due at 0.01 s
        with pytest.raises(ValueError, match=r"uint8 RGB frame"):
            sc.push(bad, 0.01)
    assert sc.frames_pushed == 1
    # an empty picture passed the shape check and was refused by the model's preprocessing,
    # after the counters and the schedule had taken it: the good frame after it was not due
    sc = StreamClassifier(setup["clf"], feature_rate=8.0)
    sc.push(coded_frame(0), 0.0)
    with pytest.raises(ValueError, match=r"uint8 RGB frame \[H, W, 3\] with a picture, got uint8 \(0, 64, 3\)"):
        sc.push(np.zeros((0, 64, 3), np.uint8), 0.125)
    assert (sc.frames_pushed, sc.features_computed) == (1, 1)
    sc.push(coded_frame(1), 0.125)
    assert (sc.frames_pushed, sc.features_computed) == (2, 2)


def test_frames_slower_than_the_gap_limit_still_make_a_window(setup):
    """A 1-frame-a-second source (or a caller pushing only what its slow model keeps up with):
    every frame was more than max_gap (1 s) after the last and cleared the ring: no prediction
    ever. The gap limit follows the source's own interval; a real break still clears it."""
    frames = [coded_frame(i) for i in range(12)]
    sc = StreamClassifier(setup["clf"], ema=0.0, threshold=0.0)
    results = [sc.push(f, 1.1 * i) for i, f in enumerate(frames)]
    assert sc.resets == 1  # the first interval, before any was known
    assert sum(r is not None for r in results) == len(frames) - 1 - (T - 1)
    assert sc.push(frames[0], 1.1 * 12 + 30.0) is None and sc.resets == 2  # 30 s without a frame
    fixed = StreamClassifier(setup["clf"], ema=0.0, threshold=0.0, max_gap=1.0)  # given: kept as given
    assert [fixed.push(f, 1.1 * i) for i, f in enumerate(frames)] == [None] * 12 and fixed.resets == 11


@pytest.mark.parametrize("display", [False, True])
def test_a_model_slower_than_the_gap_limit_predicts_on_a_live_source(setup, display):
    """The engine pushes the newest frame after each CNN pass: with a pass longer than
    max_gap, each pushed frame looked like a break in the source and cleared the ring (0
    predictions). Frames the engine skipped are no gap: the source's own interval counts;
    a real break (2 s of source time missing) still clears it once. With a display slot
    too (a window, --record), the gaps it dropped must not reach inference."""
    clf = setup["clf"]
    slow = VideoClassifier(CNNLSTM(SlowBackbone(clf.backbone, 0.25), clf.temporal), clf.classes, clf.feature,
                           torch.device("cpu"))
    sc = StreamClassifier(slow, feature_rate=FPS, ema=0.0, threshold=0.0, max_gap=0.15)

    def camera():
        start = time.monotonic()
        for i in range(75):  # 3 s at 25 frames/s, in real time
            time.sleep(max(0.0, start + i / FPS - time.monotonic()))
            yield coded_frame(i), i / FPS + (2.0 if i >= 25 else 0.0)

    with StreamEngine(IterableSource(camera(), live=True), sc, display=display) as engine:
        results = list(engine.results())
        stats = engine.stats()
    assert stats["dropped"] > 40 and sc.resets == 1, stats
    assert len(results) >= 3 and results[0].frame_indices[-1] - results[0].frame_indices[0] > 2 * T  # frames skipped
    assert results[-1].frame_indices[0] >= 25  # after the break, a window of its own


def test_a_generator_that_refills_one_buffer_is_read_as_it_was(setup):
    """`buf[:] = frame; yield buf`: the engine read the buffer in its own thread while the
    generator refilled it, classifying later frames than the results said (probabilities
    off by up to 0.99)."""
    clf = setup["clf"]
    with open_video(setup["video"]) as reader:
        frames = [(f.copy(), ts) for _, ts, f in reader]
    opts = dict(feature_rate=FPS / 3, ema=0.0, threshold=0.0)
    expected = list(stream_predictions(iter(frames), clf, **opts))

    def refilled():
        buf = np.empty_like(frames[0][0])
        for f, ts in frames:
            buf[...] = f
            yield buf, ts

    got = list(stream_predictions(refilled(), clf, **opts))
    assert [r.frame_indices for r in got] == [r.frame_indices for r in expected]
    for a, b in zip(got, expected):
        torch.testing.assert_close(a.probs, b.probs)


def test_frames_from_user_code_stream_as_the_file_does(setup):
    """stream_predictions over the user's own frames (a generator of (frame, timestamp), or
    plain frames at a rate) gives what the file gives; before, anything but a path, a
    camera index or a FrameSource subclass was a TypeError from os.fspath."""
    clf, video = setup["clf"], setup["video"]
    with open_video(video) as reader:
        frames = [(f, ts) for _, ts, f in reader]
    opts = dict(feature_rate=FPS / 3, ema=0.0, threshold=0.0)
    engine = StreamEngine(video, clf, **opts)
    with engine:
        from_file = list(engine.results())
    assert len(from_file) == 31
    with pytest.raises(RuntimeError, match="has run and stopped; make a new one"):
        engine.start()  # it returned at once and gave no results
    from_code = list(stream_predictions((pair for pair in frames), clf, **opts))
    plain = list(stream_predictions(IterableSource([f for f, _ in frames], fps=FPS), clf, **opts))
    for got in (from_code, plain):
        assert [r.frame_indices for r in got] == [r.frame_indices for r in from_file]
        for a, b in zip(got, from_file):
            torch.testing.assert_close(a.probs, b.probs)
    with pytest.raises(SourceError, match=r"item 2: expected a uint8 RGB frame"):
        list(stream_predictions([frames[0][0], frames[1][0], np.zeros((4, 4), np.uint8)], clf, **opts))
    # items numpy cannot make one array of: named, not numpy's "inhomogeneous shape"
    for item, got in (((frames[0][0], 0.0, "extra"), "a tuple of 3 items"), ([frames[0][0], 0.0], "a list of 2 items")):
        with pytest.raises(SourceError, match=rf"item 1: expected a uint8 RGB frame \[H, W, 3\] or a \(frame, "
                                              rf"timestamp\) tuple, got {got}$"):
            list(stream_predictions([frames[0], item], clf, **opts))
    with pytest.raises(SourceError, match="not a camera index.*iterable of frames"):
        open_source(object())


def test_latest_slot_keeps_only_newest_and_counts_drops():
    slot = LatestSlot()
    for i in range(5):
        slot.put(i)
    assert slot.get(timeout=0) == 4 and slot.dropped == 4
    assert slot.get(timeout=0.01) is None
    slot.put(7)
    slot.close()
    assert slot.get() == 7 and slot.get() is None  # drained, then closed
    # Lossless: the producer waits for the consumer instead of dropping.
    lossless = LatestSlot(lossless=True)
    got = []
    consumer = threading.Thread(target=lambda: [got.append(lossless.get(timeout=2)) for _ in range(20)])
    consumer.start()
    for i in range(20):
        lossless.put(i)
    consumer.join(5)
    assert got == list(range(20)) and lossless.dropped == 0


# -------------------------------------------------------------------------- engine


def test_realtime_file_matches_offline_predictions(setup):
    clf, video = setup["clf"], setup["video"]
    t0 = time.monotonic()
    results = list(stream_predictions(video, clf, realtime=True, feature_rate=FPS / 3, ema=0.0, threshold=0.0))
    wall = time.monotonic() - t0
    assert wall >= 0.9 * 100 / FPS  # played at its own frame rate, not as fast as possible
    assert len(results) >= 20
    labels = set()
    for r in results:
        expected = offline_probs(clf, video, r.frame_indices)
        assert clf.classes[int(expected.argmax())] == r.top[0][0] == r.label
        torch.testing.assert_close(r.probs, expected, atol=2e-3, rtol=0)
        labels.add(r.label)
        with open_video(video) as reader:
            assert r.timestamp == pytest.approx(float(reader.timestamps([r.frame_indices[-1]])[0]))
        assert 0 <= r.latency < 1.0
    assert len(labels) >= 3  # the predictions really follow the content


class SlowBackbone(nn.Module):
    """A real backbone that really sleeps ``delay`` seconds per call (a slow model)."""

    def __init__(self, inner: nn.Module, delay: float) -> None:
        super().__init__()
        self.inner = inner
        self.delay = delay
        for name in BACKBONE_ATTRIBUTES:
            setattr(self, name, getattr(inner, name))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        time.sleep(self.delay)
        return self.inner(x)


def test_a_display_loop_waiting_for_the_last_results_does_not_spin(setup):
    """Once capture ended, next_frame() returned at once without waiting its timeout: a
    display loop (a window, --record) spun through next_frame() and poll() on a core until
    the inference thread made its last results (388,942 turns for 6 frames at 0.5 s each)."""
    clf = setup["clf"]
    slow = VideoClassifier(CNNLSTM(SlowBackbone(clf.backbone, 0.3), clf.temporal), clf.classes, clf.feature,
                           torch.device("cpu"))
    sc = StreamClassifier(slow, feature_rate=FPS, ema=0.0, threshold=0.0)
    frames = [coded_frame(i) for i in range(8)]
    turns_after_capture, results = 0, []
    with StreamEngine(IterableSource(frames, fps=FPS), sc, display=True) as engine:
        while not engine.finished:
            if engine.next_frame(timeout=0.1) is None and engine.frames_captured == len(frames):
                turns_after_capture += 1
            results += engine.poll()
    assert len(results) == len(frames) - T + 1
    # Inference of the frames left after capture takes up to 8 x 0.3 s: at one turn per
    # 0.1 s timeout that is at most about 24 turns, not hundreds of thousands.
    assert turns_after_capture <= 60, turns_after_capture


def test_latency_stays_bounded_with_slow_model(setup):
    clf = setup["clf"]
    slow = VideoClassifier(CNNLSTM(SlowBackbone(clf.backbone, 0.08), clf.temporal), clf.classes, clf.feature,
                           torch.device("cpu"))
    video = write_coded_video(setup["root"] / "six_seconds.mp4", 150, fps=FPS)
    sc = StreamClassifier(slow, feature_rate=FPS, ema=0.0, threshold=0.0)  # wants every frame
    with StreamEngine(video, sc, realtime=True) as engine:
        results = list(engine.results())
        stats = engine.stats()
    assert stats["frames_captured"] == 150
    # The model manages ~11 frames/s of 25: the rest are dropped and counted, not queued.
    assert stats["dropped"] > 40
    assert sc.frames_pushed + stats["dropped"] == 150
    assert results[-1].dropped <= stats["dropped"]
    # Every result: at most one frame interval waiting in the 1-slot buffer plus the model's
    # own time (plus scheduling slack); a queue would instead have grown to seconds.
    for r in results:
        assert r.latency <= 1 / FPS + r.cnn_seconds + r.temporal_seconds + 0.25, r
    lat = np.array([r.latency for r in results])
    third = len(lat) // 3
    assert np.median(lat[-third:]) <= np.median(lat[:third]) + 0.1  # does not grow with run length
    assert lat.max() < 1.0


def test_file_as_fast_as_possible_loses_nothing(setup):
    clf, video = setup["clf"], setup["video"]
    sc = StreamClassifier(clf, feature_rate=FPS, ema=0.0, threshold=0.0)
    shown, results = [], []
    with StreamEngine(video, sc, display=True) as engine:
        while True:
            frame = engine.next_frame(timeout=0.2)
            results.extend(engine.poll())
            if frame is not None:
                shown.append(frame.index)
            elif engine.finished:
                break
    assert shown == list(range(100))
    assert engine.dropped == 0 and sc.features_computed == 100
    assert [r.frame_indices[-1] for r in results] == list(range(T - 1, 100))


def _consume_results(engine: StreamEngine, seconds: float) -> tuple[list, list, bool]:
    """Iterate ``engine.results()`` in a thread for at most ``seconds``: (results, errors, finished)."""
    got, errors = [], []

    def run() -> None:
        try:
            got.extend(engine.results())
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    return got, errors, not thread.is_alive()


def test_display_slot_never_blocks_a_results_only_consumer(setup):
    """display=True on a file read as fast as possible, and nobody calls next_frame(): the
    capture thread used to wait for ever on the display slot, so results() gave nothing."""
    sc = StreamClassifier(setup["clf"], feature_rate=FPS, ema=0.0, threshold=0.0)
    engine = StreamEngine(setup["video"], sc, display=True, display_wait=600)  # only results() may unblock it
    engine.start()
    try:
        results, errors, finished = _consume_results(engine, 60)
    finally:
        stopped = engine.stop(timeout=10)
    assert finished and not errors, (engine.stats(), errors)
    # The inference side stays lossless: every frame, every result.
    assert [r.frame_indices[-1] for r in results] == list(range(T - 1, 100))
    assert engine.frames_captured == 100 and engine.dropped == 0
    assert stopped


def test_display_consumer_that_stops_taking_frames_is_not_waited_for(setup):
    """A display loop that took frames and then went away holds the capture thread up for
    ``display_wait`` at most; stop() ends a capture thread that is waiting on the display."""
    messages: list[str] = []
    sc = StreamClassifier(setup["clf"], feature_rate=FPS, ema=0.0, threshold=0.0)
    engine = StreamEngine(setup["video"], sc, display=True, display_wait=0.5, log=messages.append)
    engine.start()
    try:
        shown = [engine.next_frame(timeout=10).index for _ in range(5)]
        results, errors, finished = _consume_results(engine, 60)
    finally:
        stopped = engine.stop(timeout=10)
    assert shown == [0, 1, 2, 3, 4]  # while it took frames, it got every one
    assert finished and not errors, (engine.stats(), errors, messages)
    assert [r.frame_indices[-1] for r in results] == list(range(T - 1, 100))
    assert engine.display_dropped > 0 and any("display took no frame" in m for m in messages)
    assert stopped

    # Nobody takes anything, the display wait is long: stop() still ends the threads at once.
    engine = StreamEngine(setup["video"], StreamClassifier(setup["clf"], feature_rate=FPS), display=True,
                          display_wait=600)
    engine.start()
    engine.next_frame(timeout=10)  # a display consumer exists, so the capture thread waits for it
    deadline = time.monotonic() + 30
    while engine.frames_captured < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)
    assert engine.frames_captured < 100  # held up by the untaken display frame, not finished
    started = time.monotonic()
    assert engine.stop(timeout=10)
    assert time.monotonic() - started < 5


# ---------------------------------------------------------------------- live sources


class MJPEGServer:
    """multipart/x-mixed-replace JPEG stream of index-coded frames on 127.0.0.1."""

    def __init__(self, port: int = 0, first_index: int = 0, fps: float = FPS, frames: int | None = None,
                 down_after: int | None = None) -> None:
        """``frames``: send that many frames, then hold the connection open, silent (a stall).
        ``down_after``: send that many frames, then go down for good (connections refused)."""
        self.first_index, self.fps = first_index, fps
        self.stopping = threading.Event()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                i = 0
                try:
                    while not outer.stopping.is_set():
                        if frames is not None and i >= frames:
                            outer.stopping.wait()
                            break
                        if down_after is not None and i >= down_after:
                            threading.Thread(target=outer.stop, daemon=True).start()
                            break
                        image = coded_frame((outer.first_index + i) % 1024, 96, 128)
                        ok, jpg = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
                        data = jpg.tobytes()
                        self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: "
                                         + str(len(data)).encode() + b"\r\n\r\n" + data + b"\r\n")
                        i += 1
                        time.sleep(1.0 / outer.fps)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def log_message(self, *args) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.stopping.set()
        self.httpd.shutdown()
        self.httpd.server_close()


def test_mjpeg_stream_reconnects_after_server_restart(setup):
    server = MJPEGServer(first_index=0)
    port = server.port
    url = f"http://127.0.0.1:{port}/stream.mjpg"
    messages: list[str] = []
    source = URLSource(url, open_timeout=5, read_timeout=2, backoff=0.2, max_backoff=0.5, log=messages.append)
    # max_gap: a gap in time alone never clears the window here (the reconnect must)
    engine = StreamEngine(source, setup["clf"], display=True, feature_rate=8, ema=0.0, threshold=0.0,
                          max_gap=60, log=messages.append)

    def run_until(cond, seconds: float) -> tuple[list, list]:
        frames, results = [], []
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not cond(frames, results):
            frame = engine.next_frame(timeout=0.05)
            if frame is not None:
                frames.append((read_frame_index(frame.image), frame.capture_time))
            results.extend(engine.poll())
        return frames, results

    try:
        engine.start()
        frames1, results1 = run_until(lambda f, r: len(r) >= 3, 20)
        assert len(results1) >= 3, messages
        assert all(i < 600 for i, _ in frames1)
        server.stop()
        run_until(lambda f, r: False, 0.6)  # the engine notices the drop
        server = MJPEGServer(port=port, first_index=600)
        restarted = time.monotonic()
        frames2, results2 = run_until(
            lambda f, r: sum(x.capture_time > restarted for x in r) >= 3 and any(i >= 600 for i, _ in f), 25)
    finally:
        stopped = engine.stop()
        server.stop()
    assert stopped  # threads joined
    assert any(i >= 600 for i, _ in frames2), messages  # frames of the restarted server
    assert sum(r.capture_time > restarted for r in results2) >= 3, messages
    assert source.reconnects >= 1
    assert any("lost" in m for m in messages) and any("reconnected" in m for m in messages)
    # each reconnect starts a new window (a quick one too: a gap under max_gap did not clear it)
    assert engine.classifier.resets >= source.reconnects


def test_url_that_never_answers_times_out():
    quiet = socket.socket()
    quiet.bind(("127.0.0.1", 0))
    quiet.listen(1)  # accepts connections, never says a word
    url = f"http://127.0.0.1:{quiet.getsockname()[1]}/live"
    try:
        t0 = time.monotonic()
        with pytest.raises(SourceError) as info:
            URLSource(url, open_timeout=1.0, read_timeout=1.0).open()
        assert time.monotonic() - t0 < 5.0
        assert url in str(info.value)
    finally:
        quiet.close()


class VideoFileServer:
    """Serves bytes over HTTP on 127.0.0.1; ``payloads(n)`` gives the bytes for the n-th
    connection (from 0), or ``(content_type, bytes)``: a camera that can open and then send
    frames, or none at all, or a video file."""

    def __init__(self, payloads, name: str = "video.mjpg") -> None:
        self.connections = 0
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                data = payloads(outer.connections)
                kind, data = data if isinstance(data, tuple) else ("video/x-msvideo", data)
                outer.connections += 1
                self.send_response(200)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                try:
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def log_message(self, *args) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/{name}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _empty_avi(path: Path) -> bytes:
    """A valid AVI with a video track and no frame: FFmpeg opens it, every read fails."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), FPS, (128, 96))
    assert writer.isOpened()
    writer.release()
    return path.read_bytes()


def _mjpeg(indices) -> tuple[str, bytes]:
    """A multipart MJPEG stream of these index-coded frames, as a camera sends it (no end announced)."""
    parts = []
    for i in indices:
        ok, jpg = cv2.imencode(".jpg", cv2.cvtColor(coded_frame(i, 96, 128), cv2.COLOR_RGB2BGR))
        data = jpg.tobytes()
        parts.append(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: " + str(len(data)).encode()
                     + b"\r\n\r\n" + data + b"\r\n")
    return "multipart/x-mixed-replace; boundary=frame", b"".join(parts)


def _drain(source, seconds: float) -> tuple[list[int], BaseException | None, float]:
    """Run ``source.frames`` in a thread for at most ``seconds``: (frame indices, error, elapsed)."""
    stop, got, errors = threading.Event(), [], []

    def run() -> None:
        try:
            for frame in source.frames(stop):
                got.append(read_frame_index(frame.image))
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    started = time.monotonic()
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    stop.set()  # the old code never gave up: end it here
    thread.join(10)
    assert not thread.is_alive()
    source.close()
    return got, (errors[0] if errors else None), time.monotonic() - started


def test_source_that_opens_but_sends_no_frames_backs_off_and_gives_up(setup, tmp_path):
    """An HTTP camera that delivers 3 frames on each of its first 3 connections, then opens
    fine but sends nothing: only frames count as reconnected, the back-off grows, the
    attempts are counted, and give_up_after is measured from the last frame."""
    three = _mjpeg(range(3))
    empty = _empty_avi(tmp_path / "empty.avi")
    server = VideoFileServer(lambda n: three if n < 3 else empty)
    messages: list[str] = []
    source = URLSource(server.url, open_timeout=5, read_timeout=2, backoff=0.05, max_backoff=0.4,
                       give_up_after=2.0, log=messages.append)
    try:
        got, error, elapsed = _drain(source, 30)
    finally:
        server.stop()
    assert got == [0, 1, 2] * 3, messages
    assert source.reconnects == 2, messages  # connections 2 and 3 gave frames; later opens did not
    assert isinstance(error, SourceError), messages  # it gave up, instead of looping until stopped
    assert "lost and not back after" in str(error) and "opened but no frame could be read" in str(error)
    assert 2.0 <= elapsed < 15  # the limit after the last frame, plus slack for a loaded machine
    # After the last frame: the attempt counter grows and the back-off doubles up to its cap.
    last = max(i for i, m in enumerate(messages) if "reconnected" in m)
    lost = [m for m in messages[last + 1:] if "reconnecting in" in m]
    attempts = [int(m.split("(attempt ")[1].rstrip(")")) for m in lost]
    delays = [float(m.split("reconnecting in ")[1].split(" s")[0]) for m in lost]
    assert attempts == list(range(1, len(attempts) + 1)) and len(attempts) >= 4, messages
    assert max(delays) == pytest.approx(0.4) and delays[:3] == sorted(delays[:3]), messages
    assert server.connections >= 3 + len(attempts)  # each attempt really re-opened the stream
    # Before it, every loss was mended at the first attempt (a frame resets the count).
    before = [m for m in messages[:last + 1] if "reconnecting in" in m]
    assert before and all(m.endswith("(attempt 1)") for m in before), messages
    assert "giving up" in messages[-1]


def _run_to_the_end(server: VideoFileServer, clf, feature_rate: float, seconds: float) -> tuple[StreamEngine, list]:
    """A stream engine on ``server``'s URL, run to its end (and the server stopped): the
    engine and its results, after checking it ended by itself, with no error or log line."""
    messages: list[str] = []
    engine = StreamEngine(server.url, clf, feature_rate=feature_rate, ema=0.0, threshold=0.0, log=messages.append)
    engine.start()
    try:
        results, errors, finished = _consume_results(engine, seconds)
    finally:
        engine.stop()
        server.stop()
    assert finished and not errors and not messages, (errors, messages, engine.stats())
    return engine, results


def test_a_video_file_over_http_is_read_as_a_file(setup, tmp_path):
    """A URL of a file (FFmpeg knows its length) was read as a live stream: arrival times as
    timestamps, and at its end a reconnect that played it again, for ever."""
    video = write_coded_video(tmp_path / "clip.mp4", 40, fps=FPS)
    server = VideoFileServer(lambda n: ("video/mp4", video.read_bytes()), name="clip.mp4")
    engine, results = _run_to_the_end(server, setup["clf"], FPS, 30)
    assert not engine.source.live and engine.source.length == 40 and engine.lossless
    assert engine.frames_captured == 40 and engine.dropped == 0 and engine.reconnects == 0
    assert server.connections == 1
    # The file's own frames and times, as the same file read from disk gives them
    with StreamEngine(video, setup["clf"], feature_rate=FPS, ema=0.0, threshold=0.0) as local:
        expected = list(local.results())
    assert [r.frame_indices for r in results] == [r.frame_indices for r in expected]
    assert [r.timestamp for r in results] == pytest.approx([r.timestamp for r in expected])
    assert results[-1].timestamp == pytest.approx(39 / FPS)


def test_a_source_opened_again_lets_go_of_its_first_capture(setup, tmp_path):
    """A source the caller opened and then gave to an engine (which opens it) held a second
    capture and left the first open: a camera is then busy to the second."""
    video = write_coded_video(tmp_path / "clip.mp4", 10, fps=FPS)
    server = VideoFileServer(lambda n: ("video/mp4", video.read_bytes()), name="clip.mp4")
    try:
        url = URLSource(server.url)
        url.open()
        first = url._cap
        url.open()
        assert url._cap is not first and url._cap.isOpened() and not first.isOpened()
        url.close()
    finally:
        server.stop()
    file = FileSource(video)
    file.open()
    first = file._reader
    file.open()
    assert file._reader is not first
    closed = first._inner  # the decoder's own reader: decord's or OpenCV's handle let go
    assert getattr(closed, "_vr", None) is None and getattr(closed, "_cap", None) is None
    file.close()


@pytest.mark.skipif(not (SHARED / "demo.mp4").is_file(), reason="needs ../shared/testvideos")
def test_a_video_file_url_of_which_no_frame_can_be_read_is_an_error(setup):
    """The corpus demo.mp4 over a plain server without range requests: FFmpeg opens it (280
    frames announced) but reads no frame; the run ended with 0 frames, 0 predictions, exit 0."""
    import functools

    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(SHARED))
    handler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/demo.mp4"
        with pytest.raises(SourceError, match=r"demo.mp4: the stream announced 280 frames but none could be read"):
            list(stream_predictions(url, setup["clf"], ema=0.0, threshold=0.0))
    finally:
        server.shutdown()


def test_a_video_file_url_cut_off_midway_exits_1(setup, tmp_path, capsys):
    """A transfer that ends early (here the server sends half the file) was said on the log
    and the run exited 0, as if the video had been read whole."""
    data = write_coded_video(tmp_path / "clip.avi", 40, fps=FPS).read_bytes()
    server = VideoFileServer(lambda n: data[: len(data) // 2], name="clip.avi")
    try:
        assert main(["stream", str(setup["ckpt"]), "--source", server.url, "--no-window"]) == 1
    finally:
        server.stop()
    err = capsys.readouterr().err
    assert "clip.avi: reading ended after " in err and " of the 40 frames the stream announced" in err, err


@pytest.mark.skipif(not (SHARED / "no_duration.webm").is_file(), reason="needs ../shared/testvideos")
def test_a_webm_without_a_length_over_http_is_read_as_a_file(setup):
    """A browser's MediaRecorder WebM records no length (OpenCV's count: -1.4e17): over HTTP
    it was taken for a live camera, timed by arrival and replayed for ever by reconnects."""
    data = (SHARED / "no_duration.webm").read_bytes()
    server = VideoFileServer(lambda n: ("video/webm", data), name="no_duration.webm")
    engine, results = _run_to_the_end(server, setup["clf"], 8, 60)
    # one connection for its headers (this server refuses HEAD: a GET closed after them), one for the video
    assert not engine.source.live and engine.source.length == 0 and server.connections == 2
    with StreamEngine(SHARED / "no_duration.webm", setup["clf"], feature_rate=8, ema=0.0, threshold=0.0) as local:
        expected = list(local.results())
    assert engine.frames_captured == local.frames_captured and engine.dropped == 0
    assert [r.timestamp for r in results] == pytest.approx([r.timestamp for r in expected], abs=1e-3)
    assert len(results) == len(expected) > 0
    # a camera's multipart MJPEG stays live, even under a file's name (the server says which)
    camera = VideoFileServer(lambda n: _mjpeg(range(3)), name="videostream.avi")
    source = URLSource(camera.url, open_timeout=5, read_timeout=2)
    try:
        source.open()
        assert source.live and source.length is None
    finally:
        source.close()
        camera.stop()


def test_a_whole_variable_rate_file_over_http_is_not_cut_off(setup, tmp_path, capsys):
    """A variable-rate MKV announces duration x nominal rate as its count (300 for these 35
    frames): read whole over HTTP it was said to have ended short, exit 1, and its
    recording was not saved."""
    times = [i * 0.04 for i in range(25)] + [1.0 + i * 0.5 for i in range(10)]
    video = write_timed_video(tmp_path / "screen.mkv", [coded_frame(i, 96, 128) for i in range(35)], times)
    server = VideoFileServer(lambda n: ("video/x-matroska", video.read_bytes()), name="screen.mkv")
    try:
        code = main(["stream", str(setup["ckpt"]), "--source", server.url, "--no-window",
                     "--record", str(tmp_path / "rec.mp4")])
    finally:
        server.stop()
    err = capsys.readouterr().err
    assert code == 0 and "reading ended after" not in err and "recording saved" in err, err
    # half of it is still cut off (its last frame at 1.0 s of the 6 s)
    half = write_timed_video(tmp_path / "half.mkv", [coded_frame(i, 96, 128) for i in range(35)], times)
    data = half.read_bytes()
    server = VideoFileServer(lambda n: ("video/x-matroska", data[: len(data) // 2]), name="half.mkv")
    try:
        assert main(["stream", str(setup["ckpt"]), "--source", server.url, "--no-window"]) == 1
    finally:
        server.stop()
    assert "half.mkv: reading ended after " in capsys.readouterr().err


def test_the_recording_of_a_variable_rate_file_keeps_its_timing(setup, tmp_path, capsys):
    """2 s of video, a 3 s pause, 2 s more: --record wrote one frame per source frame, a
    4 s file; with --realtime the pause was cut as a lost stream. 7 s in both now, as
    --annotate of the timeline writes it."""
    times = [i * 0.04 for i in range(50)] + [5.0 + i * 0.04 for i in range(50)]
    video = write_timed_video(tmp_path / "vfr.mkv", [coded_frame(i, 96, 128) for i in range(100)], times)
    for extra in ([], ["--realtime"]):
        out = tmp_path / f"rec{len(extra)}.mp4"
        assert main(["stream", str(setup["ckpt"]), "--source", str(video), "--no-window", "--record", str(out),
                     *extra]) == 0
        err = capsys.readouterr().err
        timing = "in real time" if extra else "the file's timing"  # --realtime: recorded as live
        assert f"left out to keep {timing} at 25 frames/s" in err, err
        with open_video(out) as rec:
            assert len(rec) == pytest.approx(7.0 * rec.fps, abs=2), extra
            # the frame before the pause is repeated through it (the overlay covers the
            # frames' index codes: compared as pictures), and the video goes on after it
            paused, later = (rec.get([int(t * rec.fps) for t in (2.5, 4.5)]).frames.float(),
                             rec.get([int(t * rec.fps) for t in (5.5, 6.5)]).frames.float())
            assert (paused[0] - paused[1]).abs().mean() < 1.0 < (later[0] - later[1]).abs().mean(), extra


def test_a_slow_consumer_of_a_live_source_gets_recent_results(setup):
    """Results of a live source waited in a queue of 256: a consumer taking 0.25 s a result
    fell seconds behind the camera, while each result said 'latency 8 ms'."""
    def camera():
        for i in range(100):  # 4 s, in real time
            time.sleep(1 / FPS)
            yield coded_frame(i, 96, 128), i / FPS

    engine = StreamEngine(IterableSource(camera(), live=True), setup["clf"], feature_rate=8, ema=0.0,
                          threshold=0.0)
    ages = []
    with engine:
        for r in engine.results():
            ages.append(time.monotonic() - r.capture_time)  # how old the newest frame it saw is
            time.sleep(0.25)
    stats = engine.stats()
    assert stats["results_dropped"] > 0, stats  # the oldest untaken ones, counted
    assert max(ages[-3:]) < 1.5, ages  # with the queue: 2 s and growing by the end


def test_a_lost_stream_ends_at_max_seconds_and_gives_up_when_asked(setup):
    server = MJPEGServer()
    url = f"http://127.0.0.1:{server.port}/s.mjpg"
    messages: list[str] = []
    engine = StreamEngine(url, setup["clf"], feature_rate=8, max_seconds=4, read_timeout=1, log=messages.append)
    engine.start()
    try:
        deadline = time.monotonic() + 20
        while engine.frames_captured < 10 and time.monotonic() < deadline:
            time.sleep(0.05)
        server.stop()  # down for good: the engine reconnects until max_seconds, then ends
        results, errors, finished = _consume_results(engine, 20)
    finally:
        engine.stop()
    assert finished and not errors, (errors, messages)
    assert time.monotonic() - engine.started_at < 4 + 5, messages
    assert any("reconnecting in" in m and "(read failed)" in m for m in messages), messages  # says why
    assert "time limit passed" in messages[-1], messages

    # give_up_after from the library's one-call loop (it was a TypeError there)
    server = MJPEGServer()
    url = f"http://127.0.0.1:{server.port}/s.mjpg"
    got = []
    try:
        with pytest.raises(SourceError, match="lost and not back after"):
            for r in stream_predictions(url, setup["clf"], give_up_after=1.0, read_timeout=1, feature_rate=8,
                                        log=lambda m: None):
                got.append(r)
                if len(got) == 2:
                    server.stop()
    finally:
        server.stop()
    assert len(got) >= 2


def test_a_display_loop_that_takes_no_results_is_not_held_up(setup, tmp_path):
    """A display loop drawing engine.latest and never calling poll(): once 256 results were
    waiting, a file's inference and capture threads waited for ever."""
    video = write_coded_video(tmp_path / "long.mp4", 300, fps=FPS)
    messages: list[str] = []
    engine = StreamEngine(video, setup["clf"], display=True, feature_rate=FPS, log=messages.append)
    with pytest.raises(RuntimeError, match="not started"):
        list(engine.results())  # waited for ever on threads never started
    shown = 0
    with engine:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            frame = engine.next_frame(timeout=0.2)
            if frame is not None:
                shown += 1
            elif engine.ended.is_set():
                break
    assert shown == 300 and engine.frames_captured == 300, (shown, engine.stats(), messages)
    assert engine.stats()["results_dropped"] > 0  # more than 256 results made, the newest kept
    assert any("no results taken" in m for m in messages)

    # A caller that takes results, only later than 256 were made (it was getting ready): all of them
    late = StreamEngine(video, setup["clf"], feature_rate=FPS, log=messages.append)
    with late:
        deadline = time.monotonic() + 60
        while late.classifier.predictions < 256 and time.monotonic() < deadline:  # the buffer is full
            time.sleep(0.05)
        time.sleep(0.5)  # the next results are made (or wait for room)
        got = list(late.results())
    assert [r.frame_indices[-1] for r in got] == list(range(T - 1, 300)) and late.stats()["results_dropped"] == 0


def test_open_source_kinds(setup, tmp_path):
    assert isinstance(open_source("0"), CameraSource)
    assert isinstance(open_source(2), CameraSource)
    camera = open_source("/dev/video3")  # Linux's name for camera 3 (was opened as a file: "not a regular file")
    assert isinstance(camera, CameraSource) and camera.index == 3
    assert isinstance(open_source("rtsp://127.0.0.1:1/cam"), URLSource)
    assert isinstance(open_source(setup["video"], realtime=True), FileSource)
    with pytest.raises(SourceError, match="camera 99: cannot open the camera"):
        CameraSource(99, open_timeout=3).open()
    with pytest.raises(SourceError, match="nope.mp4.*not a camera index"):
        open_source(str(tmp_path / "nope.mp4"))
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"this is not a video" * 10)
    with pytest.raises(SourceError, match="bad.mp4"):
        FileSource(bad).open()


def test_stream_times_and_bounds_that_are_no_number_are_refused_up_front(setup):
    """In library use they went unchecked (the command checks its own options):
    open_timeout=-1 gave up on every URL after 1 s, give_up_after=-1 without a back-off,
    max_seconds=-1 read a file to no result without a word, and max_pending=0 hung
    results() for ever on a file."""
    url = "rtsp://127.0.0.1:1/cam"
    for name in ("open_timeout", "read_timeout", "backoff", "max_backoff", "give_up_after"):
        for bad in (-1, 0, "5", True, float("nan")):
            with pytest.raises(ValueError, match=f"^{name} must be a number of seconds > 0"):
                URLSource(url, **{name: bad})
    for bad in (-1, "5"):
        with pytest.raises(ValueError, match="^open_timeout must be a number of seconds > 0"):
            CameraSource(0, open_timeout=bad)
        with pytest.raises(ValueError, match="^give_up_after must be a number of seconds > 0"):
            StreamEngine(url, setup["clf"], give_up_after=bad)
        with pytest.raises(ValueError, match="^max_seconds must be a number of seconds > 0"):
            StreamEngine(setup["video"], setup["clf"], max_seconds=bad)
        with pytest.raises(ValueError, match="^display_wait must be a number of seconds > 0"):
            StreamEngine(setup["video"], setup["clf"], display=True, display_wait=bad)
    for bad in (0, -1, 2.5, "4", True):
        with pytest.raises(ValueError, match="^max_pending must be an integer >= 1"):
            StreamEngine(setup["video"], setup["clf"], max_pending=bad)
    # None and infinity: no limit
    assert URLSource(url, give_up_after=float("inf")).give_up_after is None
    assert URLSource(url, give_up_after=None).give_up_after is None
    assert StreamEngine(setup["video"], setup["clf"], max_pending=np.int64(2), max_seconds=np.float32(3)).max_pending == 2
    engine = StreamEngine(setup["video"], setup["clf"], max_seconds=float("inf"), max_pending=1)
    assert engine.max_seconds is None
    with engine:
        assert len(list(engine.results())) > 0

def test_a_file_named_like_a_camera_index(setup, tmp_path, monkeypatch):
    """A video named ``1`` in the working directory: "1" opened camera 1 without a word."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "1").write_bytes(Path(setup["video"]).read_bytes())
    messages = []
    camera = open_source("1", log=messages.append)
    assert isinstance(camera, CameraSource) and camera.index == 1
    assert messages == ["'1' is taken as camera 1; to read the file of that name in the working directory, give ./1"]
    assert isinstance(open_source("./1"), FileSource)
    assert isinstance(open_source(Path("1")), FileSource)  # a Path names a file
    messages.clear()
    assert isinstance(open_source("2", log=messages.append), CameraSource) and messages == []
    (tmp_path / "3").mkdir()  # an ordinary folder (a class folder "3"): nothing to read instead, nothing said
    assert isinstance(open_source("3", log=messages.append), CameraSource) and messages == []
    (tmp_path / "3" / "img_00001.jpg").write_bytes(b"")  # a frame folder is read as a file is: said
    assert isinstance(open_source("3", log=messages.append), CameraSource)
    assert messages == ["'3' is taken as camera 3; to read the frame folder of that name in the working directory, "
                        "give ./3"]
    with pytest.raises(SourceError, match="7: no such video file"):
        open_source(Path("7"))  # a Path that is not there: not camera 7
    assert isinstance(open_source(Path("/dev/video5")), CameraSource)  # as the text "/dev/video5" is
    with pytest.raises(SourceError, match="\u00b2: not a camera index"):  # was int()'s ValueError
        open_source("\u00b2")


# -------------------------------------------------------------- overlay and recording


def test_overlay_and_atomic_writer(tmp_path):
    frame = coded_frame(5, 240, 320)
    before = frame.copy()
    out = draw_overlay(frame, [("walk", 0.8), ("run", 0.1)], label="walk", status=["latency 12 ms"])
    assert out.shape == frame.shape and np.array_equal(frame, before)  # input untouched
    assert not np.array_equal(out[:60, :100], frame[:60, :100])  # the panel is drawn
    assert np.array_equal(out[-20:, -20:], frame[-20:, -20:])  # the rest of the picture is not

    target = tmp_path / "clip.mp4"
    with pytest.raises(RuntimeError):
        with AtomicVideoWriter(target, 25) as w:
            w.write(out)
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []  # nothing half-written left behind
    with AtomicVideoWriter(target, 25) as w:
        for i in range(10):
            w.write(coded_frame(i, 96, 128))
    with open_video(target) as reader:
        assert len(reader) == 10 and read_frame_index(reader.get([7]).frames[0].numpy()) == 7
    assert [p.name for p in tmp_path.iterdir()] == ["clip.mp4"]
    # An image name is refused (one still picture, "saved"); other video containers are written.
    with pytest.raises(ValueError, match=r"out.gif: an image file name \(.gif\), not a video"):
        AtomicVideoWriter(tmp_path / "out.gif", 25)
    with AtomicVideoWriter(tmp_path / "clip.mpg", 25) as w:
        for i in range(10):
            w.write(coded_frame(i, 96, 128))
    with open_video(tmp_path / "clip.mpg") as reader:
        assert len(reader) == 10


def test_timestamped_writes_keep_a_recording_in_real_time(tmp_path):
    """Frames of a live source go on the file's clock: a gap repeats the last frame, a frame
    whose slot is taken is left out, and a lost stream's long gap is cut to one frame."""
    target = tmp_path / "live.mp4"
    # (index, seconds): a slow display loop (5.1 -> 5.4), a fast source (5.42), a reconnect (5.5 -> 14.5)
    arrivals = [(1, 5.0), (2, 5.1), (3, 5.4), (4, 5.42), (5, 5.5), (6, 14.5), (7, 14.6)]
    with AtomicVideoWriter(target, 10, max_gap=2.0) as w:
        for index, seconds in arrivals:
            w.write(coded_frame(index, 96, 128), timestamp=seconds)
    with open_video(target) as reader:
        got = [read_frame_index(f.numpy()) for f in reader.get(list(range(len(reader)))).frames]
    assert got == [1, 2, 2, 2, 3, 5, 6, 7]
    assert (w.frames, w.repeated, w.skipped) == (8, 2, 1)
    # an untimed frame in between is the one a later gap repeats
    with AtomicVideoWriter(target, 10) as w:
        w.write(coded_frame(10, 96, 128), timestamp=0.0)
        w.write(coded_frame(50, 96, 128))
        w.write(coded_frame(90, 96, 128), timestamp=0.4)
    with open_video(target) as reader:
        assert [read_frame_index(f.numpy()) for f in reader.get(list(range(len(reader)))).frames] == [10, 50, 50, 50, 90]


# ------------------------------------------------------------------------- command


def test_stream_command_no_window_writes_json_lines(setup, tmp_path, capsys):
    record = tmp_path / "annotated.mp4"
    proc = run_main(capsys, "stream", setup["ckpt"], "--source", setup["video"], "--no-window", "--ema", "0",
                    "--threshold", "0", "--top-k", "2", "--record", record)
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(lines) >= 25
    for line in lines:
        assert set(line) >= {"timestamp", "label", "top", "latency_ms", "dropped"}
        assert len(line["top"]) == 2 and line["label"] == line["top"][0]["label"]
        assert line["latency_ms"] >= 0 and line["dropped"] == 0
    assert [l["timestamp"] for l in lines] == sorted(l["timestamp"] for l in lines)
    assert len({l["label"] for l in lines}) >= 3
    # The recording has every frame (a file read as fast as possible drops nothing), annotated.
    with open_video(record) as reader:
        assert len(reader) == 100
    assert [p.name for p in tmp_path.iterdir()] == ["annotated.mp4"]

    # Again, into a pipe whose reader has gone (`| head`): the run ends at its first line, and
    # the copy cut short no longer replaces the complete one (a file can be read again; a
    # live session's recording is kept however it ends).
    complete = record.read_bytes()
    capsys.readouterr()
    assert run_main_into_closed_pipe("stream", setup["ckpt"], "--source", setup["video"], "--no-window",
                                     "--record", record, "--device", "cpu") == 141
    assert record.read_bytes() == complete and [p.name for p in tmp_path.iterdir()] == ["annotated.mp4"]
    assert (f"recording not saved: the run stopped before the end of {setup['video']}, and a file's "
            f"recording is kept only whole (--realtime records it as live); the earlier {record} is unchanged"
            ) in capsys.readouterr().err


def test_a_feature_rate_above_the_sources_is_said_and_the_window_is_the_real_one(setup, tmp_path, capsys):
    """--feature-rate 100 on a 25 frames/s file announced "window 0.04 s (4 frames at 100/s)"
    and its no-prediction hint said a higher rate would help."""
    short = write_coded_video(tmp_path / "short.mp4", T - 1, fps=FPS)
    proc = run_main(capsys, "stream", setup["ckpt"], "--source", short, "--no-window", "--feature-rate", "100",
                    "--device", "cpu")
    assert proc.returncode == 0, proc.stderr
    assert f"--feature-rate 100 is above the 25 frames/s of {short}: every frame is used" in proc.stderr
    assert f"{short}: window {T / FPS:.2f} s ({T} frames at 25/s)" in proc.stderr
    assert (f"no prediction: the model needs a full window of {T} frames ({T / FPS:.2f} s of source at 25 frames/s), "
            f"and the source gave {T - 1}; it has no more frames a second, so the window cannot be shorter"
            ) in proc.stderr
    slow = write_coded_video(tmp_path / "slow.mp4", T - 1, fps=5)  # the default rate, 8/s: not an option given
    proc = run_main(capsys, "stream", setup["ckpt"], "--source", slow, "--no-window", "--device", "cpu")
    assert f"the feature rate, 8/s, is above the 5 frames/s of {slow}: every frame is used" in proc.stderr


def test_stream_command_a_second_ctrl_c_while_stopping_keeps_the_recording(setup, tmp_path):
    """The source stalls (no frame, the connection held open), so stopping waits for the
    blocked read; a second Ctrl-C then ended the program there, recording unsaved."""
    server = MJPEGServer(frames=30)
    record = tmp_path / "rec.mp4"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env.pop("DISPLAY", None)
    proc = subprocess.Popen([*VIDEOACT_WITH_CTRL_C, "stream", str(setup["ckpt"]), "--source",
                             f"http://127.0.0.1:{server.port}/s.mjpg", "--no-window", "--record", str(record),
                             "--device", "cpu"],  # the read waits up to 5 s (--read-timeout)
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert json.loads(proc.stdout.readline())["timestamp"] >= 0  # running
        time.sleep(1.5)  # the 30 frames are sent: the read now waits
        proc.send_signal(signal.SIGINT)
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)  # while it stops
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        server.stop()
    assert proc.returncode == 0, err
    assert "stopping" in err and "recording saved" in err, err
    with open_video(record) as reader:
        assert 5 < len(reader) <= 30
    assert [p.name for p in tmp_path.iterdir()] == ["rec.mp4"]  # no unfinished temporary


def test_a_stream_not_up_at_the_start_is_waited_for_with_give_up_after(setup, capfd):
    """An RTSP server or camera still starting: exit 2 at once, even with --give-up-after 30.
    With --give-up-after it is tried again for that long; without, the error is at once.
    (capfd: OpenCV's own lines go to the process's stderr, not through Python.)"""
    capsys = capfd
    probe = MJPEGServer()
    port = probe.port
    probe.stop()
    url = f"http://127.0.0.1:{port}/s.mjpg"
    started = time.monotonic()
    refused = run_main(capsys, "stream", setup["ckpt"], "--source", url, "--no-window", "--device", "cpu")
    assert refused.returncode == 2 and "trying again" not in refused.stderr and time.monotonic() - started < 15
    assert f"videoact stream: {url}: cannot open the stream (refused, not found" in refused.stderr
    # and without OpenCV's own "[ WARN:0@1.6] global cap.cpp:212 open VIDEOIO(FFMPEG): ..." line
    assert "[ WARN" not in refused.stderr, refused.stderr
    servers = []
    later = threading.Timer(1.0, lambda: servers.append(MJPEGServer(port=port)))
    later.start()
    try:
        proc = run_main(capsys, "stream", setup["ckpt"], "--source", url, "--no-window", "--give-up-after", "20",
                        "--max-seconds", "2", "--device", "cpu")
    finally:
        later.join()
        for server in servers:
            server.stop()
    assert proc.returncode == 0, proc.stderr
    # the wait is bounded by --max-seconds too (it went on for --give-up-after)
    assert f"{url}: cannot open the stream" in proc.stderr and "trying again in 0.5 s (for up to 2 s)" in proc.stderr
    assert len(proc.stdout.splitlines()) >= 1  # predictions once it came up
    started = time.monotonic()
    never = run_main(capsys, "stream", setup["ckpt"], "--source", url, "--no-window", "--give-up-after", "20",
                     "--max-seconds", "1", "--device", "cpu")
    assert never.returncode == 2 and "; not up after 1.0 s" in never.stderr and time.monotonic() - started < 10


def test_a_start_that_max_seconds_ended_leaves_the_source_as_it_was(setup):
    """A source given to an engine whose start-up wait --max-seconds ended, or that ran to
    its max_seconds, kept that engine's deadline: the next engine, without max_seconds,
    gave up at once."""
    server = MJPEGServer()
    url = f"http://127.0.0.1:{server.port}/s.mjpg"
    source = URLSource(url, give_up_after=1.0, log=lambda message: None)
    with StreamEngine(source, setup["clf"], max_seconds=0.5) as engine:
        assert source.deadline is not None  # this engine's, while it runs
        assert list(engine.results())
    assert source.deadline is None
    engine = StreamEngine(source, setup["clf"], max_seconds=0.5).start()
    assert list(engine.results()) and source.deadline is None  # given back when capture ends, stop() or not
    engine.stop()
    server.stop()
    for max_seconds, waited in ((0.3, "0.3"), (None, "1.0")):
        with pytest.raises(SourceError, match=rf"; not up after {waited} s"):
            StreamEngine(source, setup["clf"], max_seconds=max_seconds).start()
    assert source.deadline is None


def test_stream_command_gives_up_or_ends_on_a_lost_stream_when_asked(setup, capsys):
    for flags, status, said in ((["--give-up-after", "1"], 1, "lost and not back after"),
                                (["--no-reconnect"], 0, "stream ended (read failed)")):
        # Down for good after 38 frames (1.5 s at 25 fps; not 1.5 s from now: under load the
        # command took longer than that to start, and saw one frame).
        server = MJPEGServer(down_after=38)
        proc = run_main(capsys, "stream", setup["ckpt"], "--source", f"http://127.0.0.1:{server.port}/s.mjpg",
                        "--no-window", "--read-timeout", "1", "--device", "cpu", *flags)
        server.stop()
        assert proc.returncode == status and said in proc.stderr, proc.stderr
        assert len(proc.stdout.splitlines()) >= 1  # predictions before the loss


@pytest.mark.parametrize("sighup", ["delivered", "not delivered"])
def test_stream_command_a_hang_up_finalises_recording(setup, tmp_path, sighup):
    """The terminal (or SSH session) closes under `stream --record`: a real hang-up, in a
    pseudo-terminal that goes away. The process was killed by SIGHUP, leaving a 44-byte
    temporary; then, with SIGHUP handled, the "stopping" line failed on the gone terminal
    (EIO) before the recording was closed. Where no SIGHUP reaches it (a disowned job), the
    next JSON line fails with EIO: that was said as the source's error ("long.mp4: [Errno 5]
    Input/output error", exit 1); it is the same stop. (Ctrl-C: the test above.)"""
    import pty
    import select

    video = write_coded_video(tmp_path / "long.mp4", 250, fps=FPS)  # 10 s in real time
    record = tmp_path / "rec.mp4"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env.pop("DISPLAY", None)
    pid, terminal = pty.fork()
    if pid == 0:  # the child: videoact on the pseudo-terminal
        if sighup == "not delivered":
            signal.signal(signal.SIGHUP, signal.SIG_IGN)
        os.execve(sys.executable, [sys.executable, "-m", "videoact", "stream", str(setup["ckpt"]), "--source",
                                   str(video), "--realtime", "--no-window", "--record", str(record)], env)
    shown, deadline = b"", time.monotonic() + 60
    try:
        while shown.count(b'"timestamp"') < 3 and time.monotonic() < deadline:  # running: predictions
            if select.select([terminal], [], [], 0.2)[0]:
                shown += os.read(terminal, 65536)
    finally:
        os.close(terminal)  # the terminal goes away: the kernel hangs it up
    _, status = os.waitpid(pid, 0)
    assert shown.count(b'"timestamp"') >= 3, shown[-2000:]
    assert os.waitstatus_to_exitcode(status) == 0, status
    with open_video(record) as reader:
        assert 10 < len(reader) < 250  # cut short, yet a valid, finalised video
    assert sorted(p.name for p in tmp_path.iterdir()) == ["long.mp4", "rec.mp4"]


def test_a_stdout_that_cannot_be_written_is_said_as_such(setup, capsys, tmp_path):
    """`videoact stream ... > results.jsonl` on a full disk: "coded.mp4: [Errno 28] No space
    left on device", as if the source had failed; `videoact infer ... > results.txt`: a
    traceback. `infer --out` must still write its file (it did not, once infer printed each
    video as it was done)."""
    from videoact.cli import main

    def into_a_full_disk(*args: str, buffering: int) -> int:
        saved, sys.stdout = sys.stdout, open("/dev/full", "w", buffering=buffering)
        try:
            return main([*args, "--device", "cpu"])
        finally:
            full, sys.stdout = sys.stdout, saved
            with contextlib.suppress(OSError):
                full.close()

    status = into_a_full_disk("stream", str(setup["ckpt"]), "--source", str(setup["video"]), "--no-window",
                              buffering=1)
    err = capsys.readouterr().err
    assert status == 1 and "videoact stream: cannot write the results to stdout: No space left on device" in err, err
    assert f"{setup['video']}: [Errno" not in err
    # block-buffered (stdout a file) and under its 8 kB buffer, the error shows at the end, when
    # main flushes stdout; line-buffered (or past the buffer), at a print inside the command
    for buffering in (-1, 1):
        assert into_a_full_disk("infer", str(setup["ckpt"]), str(setup["video"]), buffering=buffering) == 1
        assert capsys.readouterr().err.endswith("videoact infer: cannot write to stdout: No space left on device\n")
        for extra in ([], ["--timeline"]):
            out = tmp_path / f"r{buffering}{len(extra)}.json"
            assert into_a_full_disk("infer", str(setup["ckpt"]), str(setup["video"]), "--out", str(out), *extra,
                                    buffering=buffering) == 1
            assert capsys.readouterr().err.endswith("videoact infer: cannot write to stdout: No space left on device\n")
            assert json.loads(out.read_text())[0]["source"] == str(setup["video"])
    saved, sys.stdout = sys.stdout, None  # no console at all (pythonw): main's flush failed on None
    try:
        assert main(["infer", str(setup["ckpt"]), str(setup["video"]), "--device", "cpu"]) == 0
    finally:
        sys.stdout = saved


def test_stream_command_under_nohup_goes_on_after_a_hang_up(setup, tmp_path, capsys):
    """Started with SIGHUP ignored (`nohup videoact stream ...`), a hang-up must not stop it:
    handling SIGHUP had replaced nohup's setting."""
    video = write_coded_video(tmp_path / "long.mp4", 250, fps=FPS)
    previous = signal.signal(signal.SIGHUP, signal.SIG_IGN)  # as nohup leaves it
    hang_up = threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGHUP))  # while the stream runs
    hang_up.start()
    try:
        proc = run_main(capsys, "stream", setup["ckpt"], "--source", video, "--realtime", "--no-window",
                        "--max-seconds", "2", "--device", "cpu")
    finally:
        hang_up.cancel()
        signal.signal(signal.SIGHUP, previous)
    assert proc.returncode == 0 and "videoact stream: done: " in proc.stderr and "stopping" not in proc.stderr, \
        proc.stderr
    assert len(proc.stdout.splitlines()) >= 3  # predictions over the 2 s


def test_stream_command_records_a_live_source_in_real_time(setup, tmp_path, capsys):
    """A network camera at 8 frames/s, recorded for 2 s: the file lasts about 2 s at its own
    rate, not 8 frames' worth of it."""
    server = MJPEGServer(fps=8)
    record = tmp_path / "live.mp4"
    try:
        status = main(["stream", str(setup["ckpt"]), "--source", f"http://127.0.0.1:{server.port}/cam.mjpg",
                       "--no-window", "--record", str(record), "--max-seconds", "2", "--device", "cpu"])
    finally:
        server.stop()
    err = capsys.readouterr().err
    assert status == 0, err
    cap = cv2.VideoCapture(str(record))
    frames, rate = cap.get(cv2.CAP_PROP_FRAME_COUNT), cap.get(cv2.CAP_PROP_FPS)
    cap.release()
    assert rate > 8 and 1.6 <= frames / rate <= 2.6, (frames, rate, err)
    assert "repeated" in err and "in real time" in err


def test_stream_command_records_a_realtime_file_in_real_time(setup, tmp_path, capsys):
    """A 1 s file at 300 frames/s, 640x480, played --realtime: the display loop cannot take
    every frame, and the recording still lasts 1 s (not the frames it got, back to back)."""
    video = write_coded_video(tmp_path / "fast.mp4", 300, fps=300.0, height=480, width=640)
    record = tmp_path / "rec.mp4"
    assert main(["stream", str(setup["ckpt"]), "--source", str(video), "--realtime", "--no-window",
                 "--record", str(record), "--device", "cpu"]) == 0
    err = capsys.readouterr().err
    cap = cv2.VideoCapture(str(record))
    frames, rate = cap.get(cv2.CAP_PROP_FRAME_COUNT), cap.get(cv2.CAP_PROP_FPS)
    ok, bgr = cap.read()
    cap.release()
    assert ok, err
    # The recording starts at the first frame the loop showed: the capture thread is ahead of
    # it by however long the loop took to start (up to 22 frames, 73 ms, on a loaded 2-core
    # machine). Its index is read from the bit blocks of rows 184-231, below the overlay
    # (at most 7 lines at 480p, 164 rows), and checked against the colour of its lower half.
    rgb = bgr[..., ::-1].astype(np.float32)
    edges = np.linspace(0, 640, 11).round().astype(int)
    first = sum(int(rgb[184:232, lo + 16:hi - 16].mean() > 127) << (9 - bit)
                for bit, (lo, hi) in enumerate(zip(edges[:-1], edges[1:])))
    colour = np.abs(coded_frame(first, 480, 640)[-60:-20, -60:-20] - rgb[-60:-20, -60:-20]).reshape(-1, 3).mean(0)
    assert first < 150 and colour.sum() < 30, (first, colour, err)  # codec error: 15
    # From there frame i of the file is slot i - first of the recording, to the last, frame 299.
    assert rate == 300 and frames == 300 - first, (first, err)


def test_poll_returns_every_result_made_before_a_source_error(setup, tmp_path):
    """A display loop (next_frame + poll) on a frame folder whose frame 90 is damaged gets
    every prediction made before the error, then the error (poll dropped the last ones; with
    a slow model, poll raised while the inference thread was still on the frames before it)."""
    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(120):
        cv2.imwrite(str(folder / f"img_{i + 1:05d}.jpg"), cv2.cvtColor(coded_frame(i), cv2.COLOR_RGB2BGR))
    (folder / "img_00091.jpg").write_bytes(b"not a jpeg")
    clf = setup["clf"]
    clf = VideoClassifier(CNNLSTM(SlowBackbone(clf.backbone, 0.03), clf.temporal), clf.classes, clf.feature,
                          torch.device("cpu"))
    engine = StreamEngine(folder, clf, display=True, ema=0.0, threshold=0.0, feature_rate=100.0)  # every frame
    got = []
    engine.start()
    try:
        with pytest.raises(Exception, match="img_00091") as info:
            while not engine.finished:
                engine.next_frame(timeout=0.05)
                got.extend(engine.poll())
            engine.poll()
    finally:
        engine.stop()
    assert got and len(got) == engine.classifier.predictions, info.value
    assert [r.frame_indices[-1] for r in got] == sorted(r.frame_indices[-1] for r in got)


def test_stream_command_bad_source(setup, tmp_path, capsys):
    missing = tmp_path / "missing.mp4"
    assert main(["stream", str(setup["ckpt"]), "--source", str(missing), "--no-window"]) == 2
    assert "missing.mp4" in capsys.readouterr().err


def test_stream_command_names_the_source_of_a_model_error(setup, capsys, monkeypatch):
    """A model failing on a frame (out of GPU memory) was reported as its bare message."""
    def fail(self, frames):
        raise RuntimeError("CUDA out of memory (simulated)")

    monkeypatch.setattr(VideoClassifier, "frame_features", fail)
    assert main(["stream", str(setup["ckpt"]), "--source", str(setup["video"]), "--no-window"]) == 1
    err = capsys.readouterr().err
    assert f"videoact stream: {setup['video']}: CUDA out of memory (simulated)" in err, err


def test_benchmark_stream_reports_consistent_figures(tmp_path):
    """The benchmark runs end to end on the default offline backbone (no speed targets here)."""
    torch.manual_seed(1)
    expected = torch.rand(3)
    torch.manual_seed(1)
    out = benchmark_stream(seconds=2.5, fps=20, width=160, height=120, work_dir=tmp_path)
    assert torch.equal(torch.rand(3), expected)  # it seeded torch's global stream (0) before
    assert out["backbone"] == "efficientnet_lite0" and out["image_size"] == 224
    assert out["frames"] == 50 and out["seconds"] >= 2.0  # real time
    assert out["predictions"] >= 1 and out["display_rate"] > 0
    assert out["latency_p95_ms"] >= out["latency_p50_ms"] > 0
    # every captured frame is either looked at or dropped, by the inference and by the display
    assert out["frames_inferred"] + out["dropped"] == 50 and out["frames_inferred"] >= 1
    assert out["frames_shown"] + out["display_dropped"] == 50 and out["frames_shown"] >= 1
    assert list(tmp_path.iterdir()) == []  # the generated video is cleaned up
