"""User-facing input/output handling of `videoact infer`, `test` and `stream`, on real
small videos and a real tiny checkpoint: outputs that would overwrite an input, list
problems, frame folders and empty folders, bad numbers, flipped numpy frames, and the
shape of `infer --timeline --out`."""
from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import os
import re
from pathlib import Path

import numpy as np
import torch
import pytest

from faults import run_main as run_cli  # videoact in this process: these checks run it many times
from faults import run_main_into_closed_pipe, write_tiny_checkpoint, write_two_class_folder
from videoact.backbones import create_backbone
from videoact.testing import coded_frame, write_coded_video


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("inputs")
    return {"ckpt": write_tiny_checkpoint(root / "tiny.pt"),
            "data": write_two_class_folder(root / "data"),
            "clip": write_coded_video(root / "clip.mp4", 30)}


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ------------------------------------------------------------------ 1. outputs that are inputs


def test_outputs_that_are_inputs_are_refused_before_any_work(setup, tmp_path, capsys):
    ckpt, clip = setup["ckpt"], tmp_path / "clip.mp4"
    clip.write_bytes(setup["clip"].read_bytes())
    os.link(clip, tmp_path / "same.json")  # another name for the same file
    os.symlink(clip, tmp_path / "link.mp4")
    listing = tmp_path / "list.txt"
    listing.write_text(f"{setup['data'] / 'a' / 'v0.mp4'} a\n")
    before = {p: digest(p) for p in (clip, listing, ckpt)}
    cases = [
        (["infer", ckpt, clip, "--out", clip], f"--out {clip}: unsupported file type '.mp4'"),
        (["infer", ckpt, clip, "--out", tmp_path / "same.json"],
         f"--out {tmp_path / 'same.json'} is the input {clip}"),
        (["infer", ckpt, clip, "--timeline", "--annotate", tmp_path / "sub" / ".." / "clip.mp4"],
         f"--annotate {tmp_path / 'sub' / '..' / 'clip.mp4'} is the input {clip}"),
        (["infer", ckpt, clip, "--timeline", "--out", tmp_path / "t.json", "--annotate", tmp_path / "t.json"],
         "--out and --annotate are the same file"),
        (["stream", ckpt, "--source", clip, "--record", clip, "--no-window"], f"--record {clip} is the input {clip}"),
        (["stream", ckpt, "--source", clip, "--record", tmp_path / "link.mp4", "--no-window"],
         f"--record {tmp_path / 'link.mp4'} is the input {clip}"),
        (["test", ckpt, listing, "--out", listing], f"--out {listing} is the input {listing}"),
        (["test", ckpt, listing, "--confusion", ckpt], f"--confusion {ckpt} is the input {ckpt}"),
        # an image name: OpenCV wrote one still picture (and a file per frame beside it), "saved"
        (["stream", ckpt, "--source", clip, "--record", tmp_path / "out.gif", "--no-window"],
         f"--record {tmp_path / 'out.gif'}: an image file name (.gif), not a video: use .avi, "),
        (["infer", ckpt, clip, "--timeline", "--annotate", tmp_path / "a.png"],
         f"--annotate {tmp_path / 'a.png'}: an image file name (.png), not a video"),
        # a video OpenCV cannot write, or a folder it cannot be in: said before any work, as the
        # output's problem (was, at the first frame: "clip.mp4: [Errno 2] ...", as if the source's)
        (["stream", ckpt, "--source", clip, "--record", tmp_path / "out.webm", "--no-window"],
         f"--record {tmp_path / 'out.webm'}: OpenCV cannot write 'mp4v' video as .webm (use .mp4 or .avi)"),
        (["stream", ckpt, "--source", clip, "--record", clip / "out.mp4", "--no-window"],
         f"--record {clip / 'out.mp4'}: {clip}: a file, not a folder for the video"),
        (["infer", ckpt, clip, "--timeline", "--annotate", "/proc/videoact-none/a.mp4"],
         "--annotate /proc/videoact-none/a.mp4: /proc/videoact-none: cannot write the video there"),
        (["infer", ckpt, clip, "--out", clip / "r.json"],
         f"--out {clip / 'r.json'}: {clip}: a file, not a folder for the results"),
    ]
    for args, message in cases:
        proc = run_cli(capsys, *args, "--device", "cpu")
        assert proc.returncode == 2, (args, proc.stderr[-2000:])
        assert f"videoact {args[0]}: {message}" in proc.stderr, (args, proc.stderr[-2000:])
        assert proc.stdout == "" and "Traceback" not in proc.stderr
    assert {p: digest(p) for p in before} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4", "link.mp4", "list.txt", "same.json"]

    # Other names for the outputs work.
    ok = run_cli(capsys, "infer", ckpt, clip, "--out", tmp_path / "r.csv", "--device", "cpu")
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert [r["source"] for r in csv.DictReader((tmp_path / "r.csv").open())] == [str(clip), str(clip)]
    assert digest(clip) == before[clip]


def test_a_video_or_a_model_given_as_the_dataset_is_named_as_such(setup, tmp_path, capsys):
    """`videoact test best.pt clip.mp4` (infer's arguments) said "malformed: not UTF-8 text
    (invalid start byte at byte 39)"."""
    ckpt, clip = setup["ckpt"], setup["clip"]
    for args, given, what in [(["test", ckpt, clip, "--device", "cpu"], clip, "a video file"),
                              (["train", "--data", clip, "--work-dir", tmp_path / "w"], clip, "a video file"),
                              (["train", "--data", ckpt, "--work-dir", tmp_path / "w"], ckpt, "a model or feature file")]:
        proc = run_cli(capsys, *args)
        assert proc.returncode == 2, (args, proc.stderr[-2000:])
        assert f"videoact {args[0]}: {given}: {what}, not a dataset" in proc.stderr, proc.stderr[-2000:]
        assert ("use `videoact infer`" in proc.stderr) == (what == "a video file")
    assert not (tmp_path / "w").exists()
    binary = tmp_path / "list.txt"
    binary.write_bytes(setup["clip"].read_bytes()[:2000])
    proc = run_cli(capsys, "test", ckpt, binary, "--device", "cpu")
    assert proc.returncode == 2 and "not UTF-8 text" in proc.stderr and "is this a video or a model?" in proc.stderr

    # The other way round: a list given to infer. FFmpeg's tty demuxer drew its text as a
    # 40-frame video, and infer printed a prediction for it, exit 0.
    listing = tmp_path / "test_split1.txt"
    listing.write_text("".join(f"ApplyEyeMakeup/v_ApplyEyeMakeup_g{i:02d}_c01.avi 1\n" for i in range(200)))
    proc = run_cli(capsys, "infer", ckpt, listing, "--device", "cpu")
    assert proc.returncode == 1 and proc.stdout == "", proc.stdout
    assert (f"failed: {listing}: a text file (.txt), not a video: an annotation list is the DATA of "
            "videoact train, test or extract") in proc.stderr


def test_videos_shared_by_training_validation_and_test_are_said(setup, tmp_path, capsys):
    """`--val` a part of `--data`, `--test` the training data again: trained without a word,
    validation and test accuracy over training videos. (The run is then refused for a
    reverse pair that names no class: checked just after, before any extraction.)"""
    data = setup["data"]
    val = tmp_path / "val.txt"
    val.write_text("a/v0.mp4 a\nb/v1.mp4 b\n")
    proc = run_cli(capsys, "train", "--data", data, "--val", val, "--root", data, "--test", data,
                   "--work-dir", tmp_path / "w", "--set", "train.reverse_pairs=[a:zebra]")
    assert proc.returncode == 2 and "train.reverse_pairs: 'a:zebra' names 'zebra'" in proc.stderr, proc.stderr
    assert "reverse_pairs=[...]" in proc.stderr  # and how to leave the pair out
    warned = [line.split("warning: ", 1)[1] for line in proc.stderr.splitlines() if "warning: " in line]
    assert warned == [
        f"2 of the 2 validation videos ({val}) are also training videos ({data}), e.g. {data / 'a' / 'v0.mp4'}: "
        "validation accuracy counts them",
        f"8 of the 8 test videos ({data}) are also training videos ({data}), e.g. {data / 'a' / 'v0.mp4'}: "
        "test accuracy counts them",
        f"2 of the 8 test videos ({data}) are also validation videos ({val}), e.g. {data / 'a' / 'v0.mp4'}: "
        "test accuracy counts them"]


def test_a_list_whose_videos_are_all_elsewhere_is_summed_up_with_the_remedy(tmp_path, capsys):
    """UCF101's trainlist01.txt without --root: 9,537 warning lines, one per entry, then only
    "no training videos found"."""
    listing = tmp_path / "lists" / "trainlist.txt"
    listing.parent.mkdir()
    listing.write_text("".join(f"Walk/v_{i}.avi 1\n" for i in range(25)))
    (tmp_path / "lists" / "classInd.txt").write_text("1 Walk\n2 Run\n")
    proc = run_cli(capsys, "train", "--data", listing, "--classes", tmp_path / "lists" / "classInd.txt",
                   "--work-dir", tmp_path / "w")
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.count("missing: video not found") == 10 and "... and 15 more" in proc.stderr
    assert f"warning: {listing}: 25 entries left out: 25 missing" in proc.stderr
    assert (f"{listing}: no training videos found: none of its 25 videos is there, looked for under "
            f"{tmp_path / 'lists'}; --root (data.root)") in proc.stderr
    assert not (tmp_path / "w").exists()


def test_a_validation_or_test_list_with_no_usable_video_stops_training_before_it_starts(tmp_path, capsys):
    """UCF101's testlist01.txt (paths without labels) as --test gave only a warning: the run
    trained, and ended without the test figure it was for. An empty --val failed only after
    the extraction, as "no validation video has usable features"."""
    for name in ("a/v0.mp4", "a/v1.mp4", "b/v2.mp4", "b/v3.mp4"):
        write_coded_video(tmp_path / "data" / name, 4)
    testlist = tmp_path / "testlist01.txt"
    testlist.write_text("a/v0.mp4\r\nb/v2.mp4\r\n")
    proc = run_cli(capsys, "train", "--data", tmp_path / "data", "--test", testlist, "--root", tmp_path / "data",
                   "--work-dir", tmp_path / "w")
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert (f"{testlist}:1: malformed: expected 'relative/path label', got 'a/v0.mp4', a path without a label "
            "(UCF101's testlist files have none: datasets/ucf101_to_list.py writes labelled lists)") in proc.stderr
    assert f"videoact train: {testlist}: no test videos found\n" in proc.stderr
    vallist = tmp_path / "val.txt"
    vallist.write_text("a/gone.mp4 a\n")
    proc = run_cli(capsys, "train", "--data", tmp_path / "data", "--val", vallist, "--work-dir", tmp_path / "w")
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert (f"videoact train: {vallist}: no validation videos found: its one video is not there, looked for "
            f"under {tmp_path}; --root (data.root) names the folder") in proc.stderr
    assert not (tmp_path / "w").exists()


# ------------------------------------------------------------------ 2. list problems in `videoact test`


def test_test_command_reports_the_list_entries_it_leaves_out(setup, tmp_path, capsys):
    data = setup["data"]
    listing = data / "problems.txt"
    listing.write_text("a/v0.mp4 a\nb/v1.mp4 b\na/gone.mp4 a\nb/v2.mp4\na/v3.mp4 zebra\n")
    try:
        proc = run_cli(capsys, "test", setup["ckpt"], listing, "--device", "cpu", "--no-progress",
                       "--out", tmp_path / "m.json")
        # exit 1: the metrics are those of part of the list, as with videos that cannot be read
        assert proc.returncode == 1, proc.stderr[-2000:]
        warnings = [line for line in proc.stderr.splitlines() if line.startswith("videoact test: warning: ")]
        assert [w.split(": ")[2] for w in warnings] == [f"{listing}:3", f"{listing}:4", f"{listing}:5"]
        assert "gone.mp4" in warnings[0] and "'b/v2.mp4'" in warnings[1] and "'zebra'" in warnings[2]
        assert "left out of the metrics: 3 entries with problems" in proc.stdout
        metrics = json.loads((tmp_path / "m.json").read_text())
        assert metrics["num_samples"] == 2 and len(metrics["problems"]) == 3

        # Many: the first ten and a count, as training says them (not a line each)
        listing.write_text("a/v0.mp4 a\nb/v1.mp4 b\n" + "".join(f"a/gone{i}.mp4 a\n" for i in range(25)))
        many = run_cli(capsys, "test", setup["ckpt"], listing, "--device", "cpu", "--no-progress",
                       "--out", tmp_path / "many.json")
        assert many.returncode == 1, many.stderr[-2000:]
        # the problems come as text in the metrics, without kinds to count: no empty count line
        assert f"warning: {listing}: 25 entries left out:\n  {listing}:3: missing: video not found" in many.stderr
        assert "... and 15 more" in many.stderr
        assert many.stderr.count("missing: video not found") == 10
        assert "left out of the metrics: 25 entries with problems" in many.stdout

        # Nothing usable: the error, and in it each reason.
        listing.write_text("a/gone.mp4 a\nb/v2.mp4\n")
        none = run_cli(capsys, "test", setup["ckpt"], listing, "--device", "cpu", "--no-progress")
        assert none.returncode == 2
        assert "no video could be evaluated (0 failed, 2 entries with problems):" in none.stderr
        assert f"\n  {listing}:1: missing" in none.stderr and f"\n  {listing}:2: malformed" in none.stderr

        # Every entry missing (a list made for --root, given without it): the remedy
        elsewhere = tmp_path / "elsewhere.txt"
        elsewhere.write_text("a/v0.mp4 a\nb/v1.mp4 b\n")
        lost = run_cli(capsys, "test", setup["ckpt"], elsewhere, "--device", "cpu", "--no-progress")
        assert lost.returncode == 2 and (f"{elsewhere}: no video could be evaluated: none of its 2 videos is there, "
                                         f"looked for under {tmp_path}; --root names the folder") in lost.stderr
        assert f"(the first: {elsewhere}:1: missing" in lost.stderr
        found = run_cli(capsys, "test", setup["ckpt"], elsewhere, "--root", data, "--device", "cpu", "--no-progress",
                        "--out", tmp_path / "found.json")
        assert found.returncode == 0, found.stderr[-2000:]

        # A folder without videos: said so (was "no video could be evaluated (0 failed,
        # 0 entries with problems):" and nothing after it)
        lists = tmp_path / "lists"  # a folder of lists given for a list
        lists.mkdir()
        (lists / "test.txt").write_text("a/v0.mp4 a\n")
        flat = run_cli(capsys, "test", setup["ckpt"], lists, "--device", "cpu", "--no-progress")
        assert flat.returncode == 2 and f"videoact test: {lists}: no videos found (videoact test reads a folder " \
            "of class sub-folders, or an annotation list; videoact infer classifies videos without labels)" in flat.stderr
    finally:
        listing.unlink()


# ------------------------------------------------------------------ 3. frame folders, empty folders


def test_infer_reads_frame_folders_and_reports_folders_without_videos(setup, tmp_path, capsys):
    ckpt, data = setup["ckpt"], setup["data"]
    frames = tmp_path / "frames"
    decoded = run_cli(capsys, "decode-frames", data, frames, "--workers", "1", "--quiet")
    assert decoded.returncode == 0, decoded.stderr[-2000:]
    proc = run_cli(capsys, "infer", ckpt, frames, "--out", tmp_path / "f.json", "--device", "cpu")
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = json.loads((tmp_path / "f.json").read_text())
    assert [Path(r["source"]).relative_to(frames).as_posix() for r in rows] == \
        [f"{c}/v{i}" for c in "ab" for i in range(4)]
    # A video named on its own and in its folder (in another spelling too) is classified once
    twice = run_cli(capsys, "infer", ckpt, frames / "b", frames / "b" / "v2", f"{frames}/b/./v2", "--out",
                    tmp_path / "t.json", "--device", "cpu")
    assert twice.returncode == 0, twice.stderr[-2000:]
    assert [Path(r["source"]).name for r in json.loads((tmp_path / "t.json").read_text())] == [f"v{i}" for i in range(4)]
    one = run_cli(capsys, "infer", ckpt, frames / "b" / "v2", "--timeline", "--device", "cpu")
    assert one.returncode == 0 and f"{frames / 'b' / 'v2'}  (" in one.stdout, one.stderr[-2000:]

    empty = tmp_path / "empty"
    (empty / "sub").mkdir(parents=True)
    (empty / "notes.txt").write_text("no videos here\n")
    for mode in ([], ["--timeline"]):
        nothing = run_cli(capsys, "infer", ckpt, empty, *mode, "--out", tmp_path / "e.json", "--device", "cpu")
        assert nothing.returncode == 1 and f"videoact infer: no videos found in {empty}\n" in nothing.stderr
        assert nothing.stdout == "" and not (tmp_path / "e.json").exists()
    mixed = run_cli(capsys, "infer", ckpt, empty, setup["clip"], "--device", "cpu")
    assert mixed.returncode == 1
    assert f"{setup['clip']}\n" in mixed.stdout and f"failed: no videos found in {empty}" in mixed.stderr
    # check and decode-frames said "checked 0 files" / "decoded 0 videos" with exit 0
    for command in (["check", empty], ["decode-frames", empty, tmp_path / "none"]):
        nothing = run_cli(capsys, *command)
        assert nothing.returncode == 1 and f"videoact {command[0]}: no videos found in {empty}\n" in nothing.stderr
    assert not (tmp_path / "none").exists()


def test_decode_frames_names_a_dangling_symlink_as_the_others_do(tmp_path, capsys):
    """It said "[Errno 2] No such file or directory: '...'" where every other command says
    "file not found"."""
    (tmp_path / "v").mkdir()
    (tmp_path / "v" / "gone.mp4").symlink_to(tmp_path / "nowhere.mp4")
    proc = run_cli(capsys, "decode-frames", tmp_path / "v", tmp_path / "frames", "--quiet")
    assert proc.returncode == 1 and f"{tmp_path / 'v' / 'gone.mp4'}: file not found" in proc.stderr


def test_decode_frames_says_what_a_pipe_or_device_given_as_src_is(tmp_path, capsys):
    """A FIFO (a shell's <(...)) or /dev/null as SRC was a traceback,
    `FileNotFoundError: ...: no such directory`, exit 1."""
    os.mkfifo(tmp_path / "pipe.mp4")
    for src, kind in ((tmp_path / "pipe.mp4", "a named pipe"), ("/dev/null", "a device or socket")):
        proc = run_cli(capsys, "decode-frames", src, tmp_path / "frames", "--quiet")
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
        assert f"videoact decode-frames: {src}: not a folder or a video file ({kind})\n" in proc.stderr
    assert not (tmp_path / "frames").exists()


# ------------------------------------------------------------------ 4. bad numbers


def test_sampling_options_of_another_mode_are_refused(setup, tmp_path, capsys):
    """extract --num-segments without --sampling uniform was silently ignored (every frame extracted)."""
    for args, message in ((["--num-segments", "8"], "--num-segments is for --sampling uniform, and the sampling "
                                                      "is all (the default: every frame)"),
                          (["--sampling", "uniform", "--fps", "4"], "--fps is for --sampling fps, and the "
                                                                    "sampling is uniform"),
                          (["--sampling", "fps", "--segment-frames", "3"], "--segment-frames is for --sampling "
                                                                           "uniform, and the sampling is fps")):
        proc = run_cli(capsys, "extract", setup["data"], tmp_path / "out", *args)
        assert proc.returncode == 2 and f"videoact extract: {message}" in proc.stderr, proc.stderr[-2000:]
        assert not (tmp_path / "out").exists()
    proc = run_cli(capsys, "extract", tmp_path / "nowhere", tmp_path / "out")  # exit 1 before, unlike check's 2
    assert proc.returncode == 2 and proc.stderr == f"videoact extract: {tmp_path / 'nowhere'}: no such folder, " \
                                                   "video or list file\n", proc.stderr
    (tmp_path / "model.pt").touch()  # a model given for the videos: was a ValueError traceback, exit 1
    proc = run_cli(capsys, "extract", tmp_path / "model.pt", tmp_path / "out")
    assert proc.returncode == 2 and proc.stderr.startswith(f"videoact extract: {tmp_path / 'model.pt'}: a model or "
                                                           "feature file, not a dataset"), proc.stderr[-2000:]


@pytest.mark.parametrize("command,args,message", [
    ("infer", ["--top-k", "-1"], "argument --top-k: must be a whole number >= 1, got -1"),
    ("infer", ["--top-k", "0"], "argument --top-k: must be a whole number >= 1, got 0"),
    ("infer", ["--num-clips", "0"], "argument --num-clips: must be a whole number >= 1, got 0"),
    ("infer", ["--timeout", "-5"], "argument --timeout: must be a number of seconds >= 0 (0 = no limit), got -5"),
    ("infer", ["--timeline", "--threshold", "1.5"], "argument --threshold: must be a probability in [0, 1], got 1.5"),
    ("test", ["--num-clips", "0"], "argument --num-clips: must be a whole number >= 1, got 0"),
    ("test", ["--timeout", "-1"], "argument --timeout: must be a number of seconds >= 0"),
    ("stream", ["--threshold", "-0.1"], "argument --threshold: must be a probability in [0, 1], got -0.1"),
    ("stream", ["--top-k", "0"], "argument --top-k: must be a whole number >= 1, got 0"),
    ("stream", ["--threads", "0"], "argument --threads: must be a whole number >= 1, got 0"),
    ("stream", ["--feature-rate", "nan"], "argument --feature-rate: must be a number > 0, got nan"),
])
def test_bad_numbers_are_refused_up_front(setup, command, args, message, capsys):
    target = ["--source", setup["clip"], "--no-window"] if command == "stream" else [setup["clip"]]
    proc = run_cli(capsys, command, setup["ckpt"], *target, *args)
    assert proc.returncode == 2 and f"videoact {command}: error: {message}" in proc.stderr, proc.stderr[-2000:]
    assert proc.stdout == ""


@pytest.mark.parametrize("command,args,message", [
    ("decode-frames", ["--timeout", "-1"], "argument --timeout: must be a number of seconds >= 0"),  # every video
    ("decode-frames", ["--fps", "nan"], "argument --fps: must be a number > 0, got nan"),  # "timed out" before
    ("decode-frames", ["--workers", "-1"], "argument --workers: must be a whole number >= 0, got -1"),
    ("check", ["--timeout", "nan"], "argument --timeout: must be a number of seconds >= 0"),  # taken before
    ("extract", ["--workers", "-2"], "argument --workers: must be a whole number >= 0, got -2"),
])
def test_bad_numbers_of_the_folder_tools_are_refused_up_front(setup, tmp_path, command, args, message, capsys):
    out = [] if command == "check" else [tmp_path / "out"]
    proc = run_cli(capsys, command, setup["clip"], *out, *args)
    assert proc.returncode == 2 and f"videoact {command}: error: {message}" in proc.stderr, proc.stderr[-2000:]
    assert proc.stdout == "" and not (tmp_path / "out").exists()


# ------------------------------------------------------------------ 5. flipped numpy frames


@pytest.fixture(scope="module")
def classifier(setup):
    from videoact.inference import VideoClassifier

    return VideoClassifier.from_checkpoint(setup["ckpt"], device="cpu")


def test_a_classifier_pickles_and_copies(classifier):
    """Backbones hold their architecture's table of lambdas, and the fused inference copy
    per-thread state: pickling a Backbone, a CNNLSTM or a VideoClassifier (to hand it to a
    spawned process) failed ("Can't pickle <function <lambda>>")."""
    import copy
    import pickle

    frames = np.stack([coded_frame(i) for i in range(12)])
    expected = classifier.predict(frames, top_k=2)
    for other in (pickle.loads(pickle.dumps(classifier)), copy.deepcopy(classifier)):
        got = other.predict(frames, top_k=2)
        assert got.top == expected.top and torch.equal(got.probs, expected.probs)
    backbone = pickle.loads(pickle.dumps(create_backbone("resnet18", pretrained=False, layer="stride16")))
    assert backbone.layer == "stride16" and backbone.embed(frames[:2]).shape == (2, backbone.feature_dim)


def test_predict_accepts_a_flipped_numpy_array(classifier):
    bgr = np.stack([coded_frame(i) for i in range(12)])[..., ::-1].copy()
    rgb = bgr[..., ::-1]  # a view with a negative stride, the usual BGR -> RGB flip
    assert rgb.strides[-1] < 0
    expected = classifier.predict(np.ascontiguousarray(rgb), top_k=2)
    got = classifier.predict(rgb, top_k=2)
    assert got.top == expected.top and np.array_equal(got.probs.numpy(), expected.probs.numpy())
    assert np.array_equal(classifier.frame_features(rgb[:3]).numpy(),
                          classifier.frame_features(np.ascontiguousarray(rgb[:3])).numpy())


def test_stream_push_accepts_a_flipped_frame(classifier):
    from videoact.stream import StreamClassifier

    sc = StreamClassifier(classifier, feature_rate=8, threshold=0.0)
    frame = coded_frame(3)[..., ::-1].copy()[..., ::-1]
    assert frame.strides[-1] < 0
    sc.push(frame, 0.0)
    assert sc.frames_pushed == 1 and sc.features_computed == 1  # its features were computed, not skipped
    expected = classifier.frame_features(np.ascontiguousarray(frame)[None])[0]
    assert torch.equal(sc.ring.ordered()[-1], expected)


# ------------------------------------------------------------------ 6. the shape of --timeline --out


def test_out_is_always_a_list_and_names_the_failed_inputs(setup, tmp_path, capsys):
    ckpt, clip, other = setup["ckpt"], setup["clip"], setup["data"] / "b" / "v3.mp4"
    out = tmp_path / "t.json"
    for inputs in ([clip], [clip, other]):
        proc = run_cli(capsys, "infer", ckpt, *inputs, "--timeline", "--out", out, "--device", "cpu")
        assert proc.returncode == 0, proc.stderr[-2000:]
        data = json.loads(out.read_text())
        assert isinstance(data, list) and [d["source"] for d in data] == [str(p) for p in inputs]
        assert all(d["windows"] and {"segments", "duration"} <= set(d) for d in data)

    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00" * 1000)
    for mode, name in (([], "plain.json"), (["--timeline"], "timeline.json"), (["--timeline"], "timeline.csv"),
                       ([], "plain.csv")):
        stale = tmp_path / name
        stale.write_text("results of an earlier run\n")
        proc = run_cli(capsys, "infer", ckpt, broken, clip, *mode, "--out", stale, "--device", "cpu")
        assert proc.returncode == 1 and f"failed: {broken}: " in proc.stderr, proc.stderr[-2000:]
        reason = proc.stderr.split("failed: ", 1)[1].rstrip("\n")
        # The file accounts for every input: the failed one after the results, with the reason.
        if name.endswith(".json"):
            data = json.loads(stale.read_text())
            assert [d["source"] for d in data] == [str(clip), str(broken)]
            assert "error" not in data[0] and data[1] == {"source": str(broken), "error": reason}
        else:
            rows = list(csv.DictReader(stale.open(newline="")))
            assert {r["source"] for r in rows[:-1]} == {str(clip)} and not any(r["error"] for r in rows[:-1])
            assert (rows[-1]["source"], rows[-1]["error"]) == (str(broken), reason)
            assert rows[-1].get("kind", "failed") == "failed" and rows[-1]["label"] == ""
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporaries left


# ------------------------------------------------------------------ 6. bad names, a reader that leaves


def test_unknown_backbones_and_missing_weights_are_one_line_errors(setup, tmp_path, capsys):
    (tmp_path / "dangling").symlink_to(tmp_path / "gone")
    for args, message in (
        (["extract", setup["data"], tmp_path / "f", "--backbone", "nosuch"], "videoact extract: unknown backbone 'nosuch'"),
        (["extract", setup["data"], tmp_path / "f", "--weights", tmp_path / "nope.pth"], "nope.pth: weights file not found"),
        (["train", "--data", setup["data"], "--work-dir", tmp_path / "w", "--set", "feature.backbone=nosuch"],
         "videoact train: feature.backbone: unknown backbone 'nosuch'"),
        (["demo", "--out", tmp_path / "demo", "--set", "train.lr=oops"], "videoact demo: override 'train.lr=oops'"),
        # files where folders go and the other way round: said so, not "[Errno 17] File exists"
        (["extract", setup["data"], setup["clip"]], f"videoact extract: {setup['clip']}: a file, not a folder"),
        (["train", "--data", setup["data"], "--classes", setup["data"], "--work-dir", tmp_path / "w"],
         f"videoact train: {setup['data']}: a folder, not a classes file"),
        (["train", "--data", setup["data"], "--classes", tmp_path / "no.txt", "--work-dir", tmp_path / "w"],
         f"videoact train: {tmp_path / 'no.txt'}: classes file not found"),
        (["decode-frames", tmp_path / "nothere", tmp_path / "o"], f"videoact decode-frames: {tmp_path / 'nothere'}: no "),
        (["decode-frames", setup["data"], setup["clip"]],  # was a traceback (FileExistsError) at the end
         f"videoact decode-frames: {setup['clip']}: a file, not a folder for the frame folders (OUT)"),
        (["extract", setup["data"], tmp_path / "dangling"],  # was "a file is in its place (a parent folder)"
         f"videoact extract: {tmp_path / 'dangling'}: a broken symbolic link (to {tmp_path / 'gone'}), not a folder"),
    ):
        proc = run_cli(capsys, *args)
        assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert not (tmp_path / "demo").exists()  # the demo refused its --set before writing any clip


def test_a_mistyped_flag_shows_the_sub_command_usage(capsys):
    """`videoact train --wrok-dir x` printed the top level's usage (`videoact [-h] [--version]
    COMMAND ...`), which does not list the flag meant."""
    proc = run_cli(capsys, "train", "--wrok-dir", "x")
    assert proc.returncode == 2 and "videoact train: error: unrecognized arguments: --wrok-dir" in proc.stderr
    assert "usage: videoact train" in proc.stderr and "--work-dir" in proc.stderr
    for args in (["--bogus"], ["--bogus", "train"]):  # before the command: the top level's
        proc = run_cli(capsys, *args)
        assert proc.returncode == 2 and "videoact: error: unrecognized arguments: --bogus" in proc.stderr
    # a negative --max-seconds ended the stream at once, exit 0
    proc = run_cli(capsys, "stream", "x.pt", "--source", "0", "--max-seconds", "-3")
    assert proc.returncode == 2 and "argument --max-seconds: must be a number > 0, got -3" in proc.stderr


def test_a_reader_that_goes_away_ends_the_command_quietly(setup):
    """`videoact infer ... | head -0`: a BrokenPipeError traceback before; now exit 141, as for SIGPIPE."""
    import subprocess
    import sys

    for command in (["infer", str(setup["ckpt"]), str(setup["data"])],
                    ["stream", str(setup["ckpt"]), "--source", str(setup["clip"]), "--no-window"]):
        proc = subprocess.Popen([sys.executable, "-m", "videoact", *command, "--device", "cpu"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        proc.stdout.close()  # the reader leaves before the first line
        err = proc.stderr.read().decode()
        # stream: "videoact stream: [Errno 32] Broken pipe" and exit 1 before
        assert proc.wait(timeout=120) == 141 and "Traceback" not in err and "Broken" not in err, (command, err)


def test_train_says_a_full_stdout_as_such(setup, tmp_path, capsys):
    """`videoact train ... > log.txt` on a full disk: "videoact train: [Errno 28] No space left
    on device", as if the data or the work directory had failed."""
    import sys

    from videoact.cli import main

    import subprocess

    from faults import small_filesystem

    def train_into_a_full_stdout(work: Path, pending: str = "", data: Path = setup["data"]) -> int:
        saved, sys.stdout = sys.stdout, open("/dev/full", "w", buffering=1)  # line-buffered: fails at once
        sys.stdout.write(pending)  # kept in the buffer, as by an earlier print that failed
        try:
            return main(["train", "--data", str(data), "--work-dir", str(work),
                         "--set", "feature.image_size=32", "--set", "feature.num_segments=4",
                         "--set", "train.progress=false", "--set", "train.device=cpu"])
        finally:
            full, sys.stdout = sys.stdout, saved
            with contextlib.suppress(OSError):
                full.close()

    assert train_into_a_full_stdout(tmp_path / "w") == 1
    assert capsys.readouterr().err.endswith("videoact train: cannot write to stdout: No space left on device\n")
    # a file's own error, while stdout fails too, is the file's (was said as stdout's)
    with small_filesystem(tmp_path / "ro", "64k") as ro:
        subprocess.run(["mount", "-o", "remount,ro", str(ro)], check=True)
        assert train_into_a_full_stdout(ro / "w", pending="a line not yet written") == 2
        err = capsys.readouterr().err
        assert f"videoact train: [Errno 30] Read-only file system: '{ro / 'w'}'" in err, err
    # ... and one that names no file but is not stdout's errno (a traceback before)
    assert train_into_a_full_stdout(tmp_path / "w2", pending="...", data=tmp_path / "nowhere") == 2
    err = capsys.readouterr().err
    assert f"videoact train: {tmp_path / 'nowhere'}: no such dataset folder" in err and "Traceback" not in err, err


def test_output_folders_are_checked_up_front_without_making_any(setup, tmp_path, capsys, monkeypatch):
    """The check made before the work creates nothing (a run refused for its checkpoint left
    the --out folders behind), follows the path as the write does (``link/..`` through the
    link), and refuses a folder on a read-only file system."""
    import subprocess

    from faults import small_filesystem

    monkeypatch.chdir(tmp_path)
    proc = run_cli(capsys, "infer", tmp_path / "nope.pt", setup["clip"], "--out", "new/dir/r.json")
    assert proc.returncode == 2 and "checkpoint file not found" in proc.stderr
    assert not (tmp_path / "new").exists()
    (tmp_path / "elsewhere" / "deep").mkdir(parents=True)
    os.symlink(tmp_path / "elsewhere" / "deep", "link")
    proc = run_cli(capsys, "infer", setup["ckpt"], setup["clip"], "--out", "link/../r.json", "--device", "cpu")
    assert proc.returncode == 0 and (tmp_path / "elsewhere" / "r.json").exists(), proc.stderr
    os.symlink("/nonexistent/x", "dangling")
    long_name = "d" * 300
    for out, message in (("dangling/r.json", "dangling: a broken symbolic link (to /nonexistent/x), not a folder"),
                         (f"{long_name}/r.json", f"{long_name}: File name too long"),  # was: after the work
                         (f"{long_name}.json", "the file name is too long (at most 255 bytes here)")):
        proc = run_cli(capsys, "infer", setup["ckpt"], setup["clip"], "--out", out, "--device", "cpu")
        assert proc.returncode == 2 and f"videoact infer: --out {out}: {message}" in proc.stderr, proc.stderr
    with small_filesystem(tmp_path / "ro", "64k") as ro:
        subprocess.run(["mount", "-o", "remount,ro", str(ro)], check=True)
        proc = run_cli(capsys, "infer", setup["ckpt"], setup["clip"], "--out", ro / "sub" / "r.json")
        assert proc.returncode == 2 and proc.stderr == (
            f"videoact infer: --out {ro / 'sub' / 'r.json'}: {ro}: cannot write the results there (permission "
            "denied or read-only)\n"), proc.stderr
        # the default ./confusion.png, not asked for, is not checked: the report still comes
        monkeypatch.chdir(ro)
        proc = run_cli(capsys, "test", setup["ckpt"], setup["data"], "--no-progress", "--device", "cpu")
        assert proc.returncode == 1 and "top-1:" in proc.stdout, proc.stderr
        assert "videoact test: cannot write confusion.png: Read-only file system" in proc.stderr
        monkeypatch.chdir(tmp_path)


# ------------------------------------------------------------------ 8. the library, called from user code


def test_library_calls_take_what_users_pass_and_refuse_bad_arguments_up_front(setup, classifier, tmp_path):
    """Found by using videoact as a library: each of these was a wrong result, a raw torch
    error deep inside, or one 'failed video' per file for a bad argument."""
    import warnings

    import torch

    import videoact
    from videoact.evaluation import evaluate
    from videoact.extract import SamplingSpec, extract_features
    from videoact.inference import VideoClassifier
    from videoact.timeline import classify_timeline

    clip = setup["clip"]
    # one path, not a sequence of its characters (each was tried as a file, '.' as a frame folder)
    results, failures = classifier.predict_many(str(clip), top_k=1)
    assert [r.source for r in results] == [str(clip)] and failures == []
    # an infinite time limit is none (was an OverflowError from Thread.join)
    assert torch.equal(classifier.predict(clip, file_timeout=float("inf")).probs, classifier.predict(clip).probs)
    # the limit is the file's, not each stage's: each had at least 1 s (a file opened within
    # a limit of a microsecond was read whole)
    with pytest.raises(TimeoutError, match=rf"{re.escape(str(clip))}: opening did not finish within 0 s"):
        classifier.predict(clip, file_timeout=1e-6)
    # a folder of videos where one video goes: said so, not only "no frames (img_00001.jpg not found)"
    with pytest.raises(videoact.VideoDecodeError, match=r"it holds videos \(v\d\.mp4, \.\.\.\), not frames"):
        classifier.predict(setup["data"] / "a")
    frames = np.stack([coded_frame(i) for i in range(8)])
    for kw in ({"top_k": 0}, {"top_k": -1}, {"num_clips": 0}):
        with pytest.raises(ValueError, match="must be a positive integer"):
            classifier.predict(frames, **kw)
        with pytest.raises(ValueError, match="must be a positive integer"):
            classifier.predict_many([clip], **kw)  # not one "failure" per video
        with pytest.raises(ValueError, match="must be a positive integer"):
            classifier.predict_each([clip], **kw)  # when called, not at the first result
    # one result at a time, as each is made; a bad file is reported and the rest go on
    each = classifier.predict_each([clip, tmp_path / "missing.mp4", clip], top_k=1)
    video, prediction, reason = next(each)
    assert (video, reason) == (str(clip), None) and torch.equal(prediction.probs, classifier.predict(clip).probs)
    video, prediction, reason = next(each)
    assert video == str(tmp_path / "missing.mp4") and prediction is None and "missing.mp4" in reason
    assert [r for _, _, r in each] == [None]
    with pytest.raises(ValueError, match="num_clips must be a positive integer"):
        evaluate(setup["ckpt"], setup["data"], num_clips=0, device="cpu", progress=False)
    # decord's own batch (an NDArray, not a numpy array) is read as its asnumpy() is: it
    # was "expected uint8 frames [T, H, W, 3], got shape ()"
    from videoact.decode import load_decord

    decord = load_decord()
    batch = decord.VideoReader(str(clip), ctx=decord.cpu(0)).get_batch([0, 1, 2, 3])
    assert torch.equal(classifier.predict(batch).probs, classifier.predict(batch.asnumpy()).probs)
    # float frames are named by the dtype given (was torch's for a numpy array); no frames
    # are said to be none (was "num_frames must be positive (the video has no frames)")
    with pytest.raises(TypeError, match=r"got dtype float32$"):
        classifier.predict(frames.astype(np.float32))
    with pytest.raises(ValueError, match=r"^no frames: an empty \[0, H, W, 3\] array$"):
        classifier.predict(frames[:0])
    # zero frames give zero features; a read-only array (a decoder's buffer) gives no warning
    assert tuple(classifier.frame_features(frames[:0]).shape) == (0, classifier.backbone.feature_dim)
    read_only = frames.copy()
    read_only.flags.writeable = False
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert torch.equal(classifier.frame_features(read_only[:2]), classifier.frame_features(frames[:2]))
    # a device given by name, and class names that do not fit the model
    same = VideoClassifier(classifier.model, classifier.classes, classifier.feature, "cpu")
    assert same.device == torch.device("cpu") and same.predict(frames).top == classifier.predict(frames).top
    with pytest.raises(ValueError, match="3 class names for a model with 2 outputs"):
        VideoClassifier(classifier.model, ["a", "b", "c"], classifier.feature, "auto")
    assert videoact.create_backbone("efficientnet_lite0", pretrained=False, device="auto").device.type in ("cpu", "cuda")
    # sampling and sizes refused once, before any video is opened
    for bad in ({"mode": "unifrom"}, {"num_segments": 0}, {"target_fps": float("nan")}):
        with pytest.raises(ValueError, match="sampling"):
            SamplingSpec(**bad)
    kw = dict(root=setup["data"], num_workers=0, progress=False, device="cpu")
    with pytest.raises(ValueError, match="image_size must be a positive integer"):
        extract_features([clip], tmp_path / "f", image_size=0, **kw)
    as_dict = extract_features([setup["data"] / "a" / "v0.mp4"], tmp_path / "f", image_size=32,
                               sampling={"mode": "uniform", "num_segments": 3}, **kw)
    assert as_dict.ok and as_dict.written
    for bad in ({"window": 0}, {"window": float("nan")}, {"stride": -1}, {"feature_rate": 0}, {"window": True}):
        with pytest.raises(ValueError, match="must be a positive number"):
            classify_timeline(classifier, clip, **bad)
    for bad in ({"top_k": 0}, {"top_k": True}, {"batch_size": 0}, {"batch_size": 2.5}):
        with pytest.raises(ValueError, match=f"{next(iter(bad))} must be a positive integer"):
            classify_timeline(classifier, clip, **bad)
    for bad in (-0.1, 1.5, float("nan"), "0.5"):
        with pytest.raises(ValueError, match="threshold must be a probability"):
            classify_timeline(classifier, clip, threshold=bad)
    assert {"VideoClassifier", "train", "IterableSource", "Config"} <= set(dir(videoact))


def test_several_clips_look_at_other_frames_of_a_uniformly_sampled_video(classifier, tmp_path):
    """The cache of uniform sampling holds just the num_segments centres: clips shifted
    among those were all the same clip, so --num-clips averaged one clip K times."""
    import torch

    video = write_coded_video(tmp_path / "long.mp4", 100)
    picks = [classifier.select_frames(100, 25.0, k, 4) for k in range(4)]
    assert len({tuple(p) for p in picks}) == 4  # 4 segments of 25 frames, 4 offsets in each
    assert [p[0] for p in picks] == [3, 9, 15, 21] and [p[3] for p in picks] == [78, 84, 90, 96]
    assert classifier.select_frames(100, 25.0) == [12, 37, 62, 87]  # one clip: the centres, as cached
    one, four = classifier.predict(video, num_clips=1), classifier.predict(video, num_clips=4)
    assert one.frame_indices == [12, 37, 62, 87] and four.frame_indices == picks[0]
    assert not torch.equal(one.probs, four.probs)
    # a cache of 3 frames a segment (feature.segment_frames): one clip sees the centres, 3 clips its 3 frames
    from videoact.inference import VideoClassifier

    feature = {**classifier.feature, "sampling": {"mode": "uniform", "num_segments": 4, "segment_frames": 3}}
    three = VideoClassifier(classifier.model, classifier.classes, feature, "cpu")
    assert three.select_frames(100, 25.0) == [12, 37, 62, 87]
    assert [three.select_frames(100, 25.0, k, 3) for k in range(3)] == [[4, 29, 54, 79], [12, 37, 62, 87],
                                                                         [20, 45, 70, 95]]


def test_train_validates_a_config_made_in_code_before_any_work(setup, tmp_path):
    import videoact
    from videoact.config import Config, ConfigError

    cfg = Config()
    cfg.data.train, cfg.work_dir = str(setup["data"]), str(tmp_path / "run")
    cfg.model.name = "lstm"
    with pytest.raises(ConfigError, match="model.name: must be one of"):
        videoact.train(cfg)
    with pytest.raises(ConfigError, match="feature.num_segments"):
        videoact.train({"data": {"train": str(setup["data"])}, "work_dir": str(tmp_path / "run"),
                        "feature": {"num_segments": 0}})
    assert not (tmp_path / "run").exists()  # nothing extracted, no config.yaml
    with pytest.raises(TypeError, match="not int"):
        videoact.train(3)


def test_warning_lines_name_other_libraries_categories(capsys):
    """videoact's own warnings print as "videoact CMD: warning: ..."; another library's
    UserWarning raised at a videoact line (torch's) printed the same, as if it were ours."""
    import warnings

    import videoact.cli
    from videoact import VideoactWarning
    from videoact.cli import _warnings_as_lines

    here = videoact.cli.__file__
    with _warnings_as_lines("extract"):
        warnings.warn_explicit("a video was skipped", VideoactWarning, here, 1)
        warnings.warn_explicit("torch says something", UserWarning, here, 2)
    err = capsys.readouterr().err.splitlines()
    assert err == ["videoact extract: warning: a video was skipped",
                   "videoact extract: warning (UserWarning): torch says something"]


# ------------------------------------------------------------------ 7. a reader that has gone


def test_results_are_written_before_the_report_meets_a_closed_pipe(setup, tmp_path):
    """`videoact test ... --out m.json | head -2`: the report was printed first, the pipe's
    reader was gone by then, and the run ended (exit 141) without m.json or the PNG; `infer
    --out` the same. The files are written first (--timeline: the run goes on in silence)."""
    ckpt, data = setup["ckpt"], setup["data"]
    assert run_main_into_closed_pipe("test", ckpt, data, "--out", tmp_path / "m.json", "--no-progress", "--device", "cpu") == 141
    assert json.loads((tmp_path / "m.json").read_text())["top1"] >= 0
    assert (tmp_path / "m.confusion.png").stat().st_size > 0
    assert run_main_into_closed_pipe("infer", ckpt, data, "--out", tmp_path / "r.csv", "--device", "cpu") == 141
    assert len(list(csv.DictReader((tmp_path / "r.csv").open(newline="")))) == 8 * 2  # 8 videos, top-2 of 2 classes
    # --timeline prints each video's timeline as it is done: it goes on in silence, and writes
    # --out (was: ended at the first video, nothing written)
    two = [data / "a" / "v0.mp4", data / "b" / "v1.mp4"]
    assert run_main_into_closed_pipe("infer", ckpt, *two, "--timeline", "--out", tmp_path / "t.json",
                                     "--device", "cpu") == 141
    assert [t["source"] for t in json.loads((tmp_path / "t.json").read_text())] == [str(v) for v in two]
    # ... and when that file cannot be written (a full disk), the exit status says so, not 141
    # (block-buffered too, where the gone reader shows only at the end)
    from faults import small_filesystem

    with small_filesystem(tmp_path / "full", "4k") as full:
        (full / "filler").write_bytes(b"x" * 4096)
        for buffering in (1, -1):
            assert run_main_into_closed_pipe("infer", ckpt, two[0], "--timeline", "--out", full / "t.json",
                                             "--device", "cpu", buffering=buffering) == 1


def test_summary_lines_of_main_in_two_threads_are_printed_once_each(monkeypatch, capsys):
    """main() in two threads at once printed each thread's training summary lines twice (one
    handler each on the shared logger) and left the logger at INFO, not propagating, so a
    program's own logging set-up never saw videoact.train again. A main() inside main()
    printed its lines twice; lines of a thread not in main() must reach only the program."""
    import logging
    import threading
    import time

    import videoact.commands.train as train_command
    from videoact.cli import main

    log = logging.getLogger("videoact.train")
    before = (log.level, log.propagate, list(log.handlers))
    both_in = threading.Barrier(3)
    local = threading.local()
    seen: list[str] = []  # what the program's own handler (on the root logger) got

    class Program(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record.getMessage())

    def run(args):  # what training logs, without the training
        name, depth = threading.current_thread().name, getattr(local, "depth", 0)
        local.depth = depth + 1
        if depth == 0:
            both_in.wait()
        log.info(f"{name}: 2 classes" + (" (inner)" if depth else ""))
        if name == "A" and depth == 0:
            assert main(["train", "--data", "x"]) == 0
        if depth == 0:
            time.sleep(0.2 if name == "A" else 0.5)  # A ends first
        local.depth = depth
        return 0

    def program_thread():  # videoact.train() called from a program's own thread meanwhile
        both_in.wait()
        log.info("C: 2 classes")

    program = Program()
    logging.getLogger().addHandler(program)
    monkeypatch.setattr(train_command, "run", run)
    monkeypatch.setattr(logging, "logThreads", False)  # record.thread is None then
    try:
        threads = [threading.Thread(target=main, args=(["train", "--data", "x"],), name=name) for name in "AB"]
        threads.append(threading.Thread(target=program_thread, name="C"))
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        logging.getLogger().removeHandler(program)
    assert sorted(capsys.readouterr().out.splitlines()) == ["A: 2 classes", "A: 2 classes (inner)", "B: 2 classes"]
    assert sorted(seen) == ["A: 2 classes", "A: 2 classes (inner)", "B: 2 classes", "C: 2 classes"]
    assert (log.level, log.propagate, list(log.handlers)) == before


def test_an_interrupted_run_keeps_only_an_earlier_file_that_is_there(tmp_path, capsys):
    """After a Ctrl-C an earlier output is kept (it may be a complete run's); a broken
    symbolic link in its place was taken for one, and the results so far were thrown away
    (a complete run writes over such a link)."""
    from videoact.commands import keep_earlier_output

    (tmp_path / "file.json").write_text("[]\n")
    os.symlink(tmp_path / "file.json", tmp_path / "link.json")
    os.symlink(tmp_path / "gone" / "x.json", tmp_path / "dangling.json")
    kept = {name: keep_earlier_output("infer", "--out", str(tmp_path / name))
            for name in ("file.json", "link.json", "dangling.json", "new.json")}
    assert kept == {"file.json": True, "link.json": True, "dangling.json": False, "new.json": False}
    err = capsys.readouterr().err
    assert err.count("not written: the run was interrupted, and the earlier file there is kept as it was") == 2
    assert f"videoact infer: --out {tmp_path / 'file.json'} not written" in err
