"""Long-video timelines: sliding windows over once-per-frame features, merged segments, output.

The model is real: efficientnet_lite0 (offline weights, 64 px) features and a tiny BiLSTM
trained in the fixture on generated scenes (stripes / checks / smooth two-colour
patterns with a moving disc; colours, scale and angle random per segment), so it really recognizes the classes; the test video
is a different random draw of known segments, encoded and decoded for real.

The temporal-order benchmark classes (move_left, zoom_in, fade_out) are not used here:
a model that separates them needs far more training than a unit test can afford
(measured: 20 rendered 3-segment sequences, ~85 s, 10-55 % window accuracy on new
sequences).
"""
from __future__ import annotations

import csv
import json

import cv2
import numpy as np
import pytest
import torch
from torch import nn

from videoact.backbones import create_backbone
from videoact.checkpoint import save_checkpoint
from videoact.cli import main
from videoact.cnn_lstm import CNNLSTM
from videoact.decode import open_video
from videoact.inference import VideoClassifier
from videoact.sampling import uniform_segments
from videoact.temporal import create_temporal_model
from videoact.testing import write_video
from videoact.timeline import (ActionSegment, Timeline, WindowPrediction, classify_timeline, merge_segments,
                               window_settings, window_starts, write_timeline)

T = 4
FPS = 25.0
WINDOW, STRIDE = 0.8, 0.2  # 20 frames; feature rate T / WINDOW = 5 Hz (every 5th frame)
CLASSES = ["stripes", "checks", "smooth"]


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small models on 2 shared cores: one thread is much faster
    yield
    torch.set_num_threads(threads)


def scene(name: str, n: int, rng: np.random.Generator, height: int = 96, width: int = 128) -> np.ndarray:
    """``n`` RGB frames ``[n, H, W, 3]`` of one class: a two-colour pattern (``stripes``,
    ``checks`` or ``smooth`` blobs; random colours, period and angle) with a moving grey disc."""
    c1, c2 = rng.uniform(0, 255, (2, 3)).astype(np.float32)
    if np.abs(c1 - c2).sum() < 150:  # keep the pattern visible
        c2 = 255 - c1
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    period, theta = rng.uniform(10, 20), rng.uniform(0, np.pi)
    u = xx * np.cos(theta) + yy * np.sin(theta)
    v = -xx * np.sin(theta) + yy * np.cos(theta)
    if name == "stripes":
        mask = (np.sin(2 * np.pi * u / period) > 0).astype(np.float32)
    elif name == "checks":
        mask = ((np.sin(2 * np.pi * u / period) > 0) ^ (np.sin(2 * np.pi * v / period) > 0)).astype(np.float32)
    else:
        mask = np.clip(cv2.resize(rng.uniform(0, 1, (3, 4)).astype(np.float32), (width, height),
                                  interpolation=cv2.INTER_CUBIC), 0, 1)
    base = c1 * mask[..., None] + c2 * (1 - mask[..., None])
    start, end = rng.uniform([10, 10], [width - 10, height - 10], (2, 2))
    grey = (float(rng.uniform(0, 255)),) * 3
    radius = int(rng.integers(6, 14))
    frames = np.empty((n, height, width, 3), np.uint8)
    for i in range(n):
        img = base + rng.normal(0, 4, (height, width, 3)).astype(np.float32)
        x, y = start + (end - start) * i / max(1, n - 1)
        cv2.circle(img, (int(x), int(y)), radius, grey, -1)
        frames[i] = np.clip(img, 0, 255).astype(np.uint8)
    return frames


def sequence(segments: list[tuple[str, int]], rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    frames = np.concatenate([scene(name, n, rng) for name, n in segments])
    labels = np.concatenate([np.full(n, CLASSES.index(name)) for name, n in segments])
    return frames, labels


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    backbone = create_backbone("efficientnet_lite0", pretrained=True)
    backbone.input_size = 64
    feature = {"backbone": backbone.name, "weights": None, "weights_id": backbone.weights_id,
               "pooling": backbone.pooling, "image_size": 64, "mean": list(backbone.mean),
               "std": list(backbone.std), "feature_dim": backbone.feature_dim,
               "sampling": {"mode": "uniform", "num_segments": T}, "num_segments": T}
    temporal = create_temporal_model("bilstm", backbone.feature_dim, len(CLASSES), hidden=16, proj_dim=16,
                                     dropout=0.0, input_dropout=0.0)
    clf = VideoClassifier(CNNLSTM(backbone, temporal), CLASSES, feature, torch.device("cpu"))
    # Training windows like the timeline's: 20 frames, T segment centres, labelled by the
    # class at the window centre (windows across cuts included).
    xs, ys = [], []
    n = int(WINDOW * FPS)
    offsets = torch.tensor(uniform_segments(n, T))
    for _ in range(16):
        segs = [(CLASSES[int(c)], int(rng.integers(12, 30))) for c in rng.permutation(3)]
        frames, labels = sequence(segs + segs[:1], rng)
        feats = clf.frame_features(frames)
        for s in range(0, len(frames) - n + 1):
            xs.append(feats[s + offsets])
            ys.append(int(labels[s + n // 2]))
    x, y = torch.stack(xs), torch.tensor(ys)
    opt = torch.optim.Adam(temporal.parameters(), lr=1e-2)
    temporal.train()
    for _ in range(150):
        loss = nn.functional.cross_entropy(temporal(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    temporal.eval()
    ckpt = save_checkpoint(tmp_path_factory.mktemp("timeline") / "scenes.pt", model_state=temporal.state_dict(),
                           model_config=temporal.config, classes=CLASSES, feature=feature)
    return VideoClassifier.from_checkpoint(ckpt, device="cpu"), ckpt


@pytest.fixture(scope="module")
def known_video(tmp_path_factory):
    """8 s: stripes 0-2 s, checks 2-4.4 s, smooth 4.4-6 s, stripes 6-8 s (a new random draw)."""
    frames, _ = sequence([("stripes", 50), ("checks", 60), ("smooth", 40), ("stripes", 50)], np.random.default_rng(123))
    path = write_video(tmp_path_factory.mktemp("video") / "known.mp4", frames, fps=FPS)
    return path, [("stripes", 0.0, 2.0), ("checks", 2.0, 4.4), ("smooth", 4.4, 6.0), ("stripes", 6.0, 8.0)]


def test_timeline_recovers_segment_boundaries(model, known_video):
    clf, _ = model
    path, truth = known_video
    tl = classify_timeline(clf, path, window=WINDOW, stride=STRIDE, top_k=2)
    assert tl.duration == pytest.approx(8.0)
    got = [(s.label, s.start, s.end) for s in tl.segments]
    # Within two strides of a cut windows are ambiguous: a segment no longer than that, lying
    # there, is left out (on a Zen 3 the fixture's model named "checks" at 4.5-4.7 s, between
    # "smooth" at 4.3-4.5 and 4.7-5.9 s; the Zen 4 gave no such segment).
    cuts = [t[1] for t in truth[1:]]
    near = 2 * STRIDE + 1e-6

    def ambiguous(start: float, end: float) -> bool:
        return end - start <= near and any(abs(start - c) <= near and abs(end - c) <= near for c in cuts)

    kept = [g for g in got if not ambiguous(g[1], g[2])]
    assert len(got) - len(kept) <= 2, got
    merged: list[tuple[str, float, float]] = []
    for label, start, end in kept:
        if merged and merged[-1][0] == label:
            merged[-1] = (label, merged[-1][1], end)
        else:
            merged.append((label, start, end))
    assert [g[0] for g in merged] == [t[0] for t in truth], got  # stripes again: a new segment
    # Measured over fixture seeds 0-4, with and without BatchNorm folded into the backbone:
    # errors up to 0.3 s (1.5 strides), and which seeds stayed within one stride changed
    # with that 2e-5 feature difference.
    for (_, start, end), (_, true_start, true_end) in zip(merged, truth):
        assert abs(start - true_start) <= 2 * STRIDE + 1e-6, got
        assert abs(end - true_end) <= 2 * STRIDE + 1e-6, got
    for s in tl.segments:
        assert 0.5 < s.score <= 1.0
    # The CNN ran once per sampled frame (5 Hz over 8 s), not once per window.
    assert tl.frames_processed == 40
    assert len(tl.windows) * T > 3 * tl.frames_processed


def test_windows_equal_offline_predictions_on_the_window(model, known_video):
    clf, _ = model
    path, _ = known_video
    tl = classify_timeline(clf, path, window=WINDOW, stride=STRIDE)
    with open_video(path) as reader:
        frames = reader.get(list(range(len(reader)))).frames
    n = int(WINDOW * FPS)
    assert [round(w.start, 6) for w in tl.windows] == [round(k * STRIDE, 6) for k in range(37)]
    for w in tl.windows[::3]:
        first = int(round(w.start * FPS))
        offline = clf.predict(frames[first:first + n], fps=FPS)
        assert w.frame_indices == [first + i for i in offline.frame_indices]
        torch.testing.assert_close(w.probs, offline.probs, atol=2e-3, rtol=0)


def test_a_video_shorter_than_the_window_is_one_offline_prediction(model, known_video, tmp_path):
    """0.48 s (12 frames) under a 0.8 s window: the one window sees the T frames that
    predict() takes on the whole clip (it saw a single frame T times: one grid point)."""
    clf, _ = model
    path, _ = known_video
    with open_video(path) as reader:
        frames = reader.get(list(range(12))).frames
    short = write_video(tmp_path / "short.mp4", frames.numpy(), fps=FPS)
    tl = classify_timeline(clf, short, window=WINDOW, stride=STRIDE)
    offline = clf.predict(short)
    assert len(tl.windows) == 1 and tl.windows[0].frame_indices == offline.frame_indices == [1, 4, 7, 10]
    torch.testing.assert_close(tl.windows[0].probs, offline.probs, atol=2e-3, rtol=0)


def test_every_window_sees_distinct_frames_whatever_the_segment_count(model, tmp_path):
    """T = 6: the default stride (window / 4) put every other window half-way between grid
    points, whose centres then rounded half to even onto points 2, 2, 4, 4, ...: the window
    saw 3 frames twice each. The default stride is now on the grid (each window then sees
    the frames at its exact segment centres) and any stride gives distinct frames."""
    clf, _ = model
    six = VideoClassifier(clf.model, clf.classes, {**clf.feature, "num_segments": 6,
                                                   "sampling": {"mode": "uniform", "num_segments": 6}}, "cpu")
    video = write_video(tmp_path / "v.mp4", [np.full((48, 64, 3), i, np.uint8) for i in range(100)], fps=25.0)
    default = classify_timeline(six, video, window=2.0)
    assert default.stride == pytest.approx(2 / 3)  # 2 grid steps of 1/3 s
    for w in default.windows[:-1]:  # the frame shown at each segment centre
        assert w.frame_indices == [int((w.start + (i + 0.5) * 2.0 / 6) * 25 + 1e-6) for i in range(6)]
    half_way = classify_timeline(six, video, window=2.0, stride=0.5)
    assert half_way.windows[1].frame_indices == [20, 29, 37, 45, 54, 62]  # was [20, 20, 37, 37, 54, 54]
    assert all(len(set(w.frame_indices)) == 6 for w in half_way.windows)


def test_window_starts_and_merging():
    assert window_starts(10.0, 2.0, 0.5)[-1] == (8.0, 10.0)
    assert len(window_starts(10.0, 2.0, 0.5)) == 17
    assert window_starts(10.3, 2.0, 1.0)[-1] == pytest.approx((8.3, 10.3))  # tail aligned to the end
    assert window_starts(1.5, 2.0, 0.5) == [(0.0, 1.5)]  # shorter than a window
    with pytest.raises(ValueError, match="positive"):
        window_starts(5.0, 2.0, 0.0)

    from videoact.timeline import WindowPrediction

    def w(label, p):
        probs = torch.tensor([p, 1 - p]) if label == "a" else torch.tensor([1 - p, p])
        return WindowPrediction(0, 1, [(label or "a", p)], label, probs)

    windows = [w("a", 0.9), w("a", 0.7), w(None, 0.4), w("b", 0.8), w("a", 0.6)]
    segs = merge_segments(windows, [0, 1, 2, 3, 4, 5], ["a", "b"])
    assert [(s.label, s.start, s.end, s.windows) for s in segs] == [("a", 0, 2, 2), ("b", 3, 4, 1), ("a", 4, 5, 1)]
    assert segs[0].score == pytest.approx(0.8)


def test_infer_timeline_command_json_csv_annotated(model, known_video, tmp_path, capsys):
    clf, ckpt = model
    path, _ = known_video
    # what the library gives (the model's accuracy is the test above's; this one is the output)
    expected = [s.label for s in classify_timeline(clf, path, window=WINDOW, stride=STRIDE).segments]
    assert expected[0] == expected[-1] == "stripes" and {"checks", "smooth"} <= set(expected)
    out_json, out_csv, annotated = tmp_path / "t.json", tmp_path / "t.csv", tmp_path / "annotated.mp4"
    args = ["infer", str(ckpt), str(path), "--timeline", "--window", str(WINDOW), "--stride", str(STRIDE)]
    assert main([*args, "--out", str(out_json), "--annotate", str(annotated)]) == 0
    printed = capsys.readouterr().out
    assert "checks" in printed and "40 frames through the CNN" in printed
    [data] = json.loads(out_json.read_text())  # a list, one object per video, even for one
    assert [s["label"] for s in data["segments"]] == expected
    assert data["segments"][-1]["end"] == pytest.approx(8.0) and len(data["windows"]) == 37
    assert set(data["windows"][0]) == {"start", "end", "label", "top"}

    assert main([*args, "--out", str(out_csv), "--top-k", "2"]) == 0
    rows = list(csv.DictReader(out_csv.open()))
    segments = [r for r in rows if r["kind"] == "segment"]
    windows = [r for r in rows if r["kind"] == "window"]
    assert [r["label"] for r in segments] == expected and len(windows) == 37
    assert list(rows[0])[-5:] == ["top1", "prob1", "top2", "prob2", "error"] and "top3" not in rows[0]
    assert not any(r["error"] for r in rows)
    assert all(r["top1"] == r["label"] and float(r["prob1"]) >= float(r["prob2"]) > 0 for r in windows)
    assert all(r["top1"] == r["prob1"] == "" for r in segments)

    with open_video(annotated) as reader, open_video(path) as original:
        assert len(reader) == len(original) == 200
        a, o = reader.get([120]).frames[0].numpy(), original.get([120]).frames[0].numpy()
    assert not np.array_equal(a[:20, :40], o[:20, :40])  # the panel is drawn
    assert sorted(p.name for p in tmp_path.iterdir()) == ["annotated.mp4", "t.csv", "t.json"]


def test_infer_timeline_bad_input(model, tmp_path, capsys):
    _, ckpt = model
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"\x00" * 1000)
    assert main(["infer", str(ckpt), str(bad), "--timeline"]) == 1
    assert "broken.mp4" in capsys.readouterr().err
    assert main(["infer", str(ckpt), str(bad), str(bad), "--timeline", "--annotate", str(tmp_path / "a.mp4")]) == 2
    assert "--annotate" in capsys.readouterr().err
    assert main(["infer", str(ckpt), str(bad), "--stride", "1"]) == 2
    assert "--stride only works with --timeline" in capsys.readouterr().err
    assert main(["infer", str(ckpt), str(bad), "--stride", "1", "--window", "2"]) == 2
    assert "--window, --stride only work with --timeline" in capsys.readouterr().err
    # options that were taken and ignored: refused too
    assert main(["infer", str(ckpt), str(bad), "--threshold", "0.99"]) == 2
    assert "--threshold only works with --timeline" in capsys.readouterr().err
    assert main(["infer", str(ckpt), str(bad), "--timeline", "--num-clips", "5"]) == 2
    assert "--num-clips does not work with --timeline" in capsys.readouterr().err
    # A stride longer than the window (2 s by default) would label time no window saw:
    # refused once, before any video is read, not as a failure of each.
    assert main(["infer", str(ckpt), str(bad), str(bad), "--timeline", "--stride", "5"]) == 2
    err = capsys.readouterr().err
    assert "stride 5 s is longer than the window (2 s)" in err and "broken.mp4" not in err


def test_timeline_follows_a_checkpoint_trained_at_a_frame_rate(model, known_video):
    """A model trained on fps sampling sees its windows at that rate (T frames at 4/s: 1 s),
    as the stream does, not T frames spread over the 2 s default."""
    from videoact.stream import default_feature_rate

    clf, _ = model
    at4 = VideoClassifier(clf.model, clf.classes, {**clf.feature, "sampling": {"mode": "fps", "target_fps": 4.0}},
                          "cpu")
    assert window_settings(at4) == (T / 4.0, 0.25, 4.0) and default_feature_rate(at4) == 4.0
    tl = classify_timeline(at4, known_video[0])
    assert (tl.window, tl.feature_rate) == (T / 4.0, 4.0) and tl.frames_processed == 32  # 8 s at 4/s
    # Given a window, the rate follows it, as for any checkpoint; uniform sampling: 2 s.
    assert window_settings(at4, window=2.0)[2] == T / 2.0
    assert window_settings(clf)[:1] == (2.0,)


def test_write_timeline_single_and_many(model, known_video, tmp_path):
    clf, _ = model
    path, _ = known_video
    tl = classify_timeline(clf, path, window=2.0, stride=1.0)
    assert json.loads(write_timeline(tl, tmp_path / "one.json").read_text())["source"] == str(path)
    many = json.loads(write_timeline([tl, tl], tmp_path / "many.json").read_text())
    assert isinstance(many, list) and len(many) == 2


def test_a_variable_rate_video_keeps_its_timing(model, tmp_path):
    """Phones record at a variable rate. The annotated copy wrote every frame at one
    nominal rate (a 3 s video became 1.4 s, its overlay out of step with the picture), and
    the timeline's last frame lasted 1 / nominal rate (the video ended 80 ms early here)."""
    from videoact.testing import write_timed_video
    from videoact.timeline import annotate_video

    clf, _ = model
    times = [0.02 * i for i in range(50)] + [1.0 + 0.1 * i for i in range(20)]  # 50 fps for 1 s, then 10 fps
    palette = np.array([[40 + 25 * (i % 8), 40 + 25 * (i // 8), 128] for i in range(70)], np.uint8)
    src = write_timed_video(tmp_path / "phone.mkv", [np.broadcast_to(c, (96, 128, 3)).copy() for c in palette], times)
    timeline = classify_timeline(clf, src)
    assert timeline.duration == pytest.approx(3.0)
    out = annotate_video(src, timeline, tmp_path / "annotated.mp4")
    with open_video(out) as reader:
        rate = reader.fps
        shown = [int(np.abs(palette.astype(float) - f[-12:, -12:].reshape(-1, 3).mean(0)).sum(1).argmin())
                 for _, _, f in reader.iter_frames()]
    assert rate == pytest.approx(50.0)
    # Output frame k shows the frame on screen at k / 50 s: the last frame starts at 2.9 s.
    assert shown == [int(np.searchsorted(times, k / rate + 1e-6, side="right")) - 1 for k in range(146)]


def test_timeline_csv_reads_back_class_names_with_separators(tmp_path):
    """The top-k column was ``label:prob|label:prob``: a class named ``a|b: c`` could not be
    read back. A column per rank holds any name; timelines with fewer ranks leave them empty."""
    names = ["a|b: c", 'say "hi", wave']
    window = WindowPrediction(0.0, 1.0, [(names[0], 0.75), (names[1], 0.25)], names[0], torch.tensor([0.75, 0.25]))
    one = Timeline("x.mp4", 1.0, 25.0, 1.0, 1.0, 25.0, 25, [window], [ActionSegment(names[0], 0.0, 1.0, 0.75, 1)])
    short = WindowPrediction(0.0, 1.0, [(names[1], 0.6)], None, torch.tensor([0.4, 0.6]))
    two = Timeline("y.mp4", 1.0, 25.0, 1.0, 1.0, 25.0, 25, [short], [])
    write_timeline([one, two], tmp_path / "t.csv")
    rows = list(csv.DictReader((tmp_path / "t.csv").open(newline="")))
    assert [(r["kind"], r["label"], r["top1"], r["prob1"], r["top2"], r["prob2"]) for r in rows] == [
        ("segment", names[0], "", "", "", ""),
        ("window", names[0], names[0], "0.750000", names[1], "0.250000"),
        ("window", "", names[1], "0.600000", "", ""),
    ]


def test_an_interrupted_annotation_keeps_the_complete_copy_before_it(model, tmp_path):
    """Ctrl-C during ``infer --timeline --annotate`` renamed the copy cut short into place:
    a complete annotated video of 390 frames became one of 37."""
    import signal

    from videoact.timeline import annotate_video

    clf, _ = model
    src = write_video(tmp_path / "long.mp4", [np.full((120, 160, 3), i % 256, np.uint8) for i in range(600)], fps=25)
    timeline = classify_timeline(clf, src)
    out = annotate_video(src, timeline, tmp_path / "annotated.mp4")
    complete = out.read_bytes()

    def in_finalizer(frame) -> bool:
        while frame is not None:
            if frame.f_code.co_name == "__del__":
                return True
            frame = frame.f_back
        return False

    def interrupt_once_writing(_, frame):
        # Python drops an exception raised inside a finalizer: once, in a suite run on two
        # busy cores, the signal came during a decord array's __del__ and the test saw no
        # interrupt. Wait for ordinary code instead.
        if any(tmp_path.glob(".annotated.tmp-*")) and not in_finalizer(frame):
            raise KeyboardInterrupt
        signal.setitimer(signal.ITIMER_REAL, 0.02)

    previous = signal.signal(signal.SIGALRM, interrupt_once_writing)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.02)
        with pytest.raises(KeyboardInterrupt):
            annotate_video(src, timeline, out)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert out.read_bytes() == complete
    assert sorted(p.name for p in tmp_path.iterdir()) == ["annotated.mp4", "long.mp4"]
