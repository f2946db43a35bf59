"""decode-frames end to end on real encoded videos: output, failures, resume, read-back."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from videoact.atomic import temporary_prefix
from videoact.decode import FrameFolderReader, VideoDecodeError, open_video
from videoact.frames import decode_folder, decode_to_frames, is_complete
from videoact.sampling import fps_indices
from videoact.testing import read_frame_index, write_coded_video

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture()
def src(tmp_path) -> Path:
    root = tmp_path / "videos"
    write_coded_video(root / "a.mp4", 40, fps=25)
    write_coded_video(root / "sub" / "b.avi", 30, fps=30)
    write_coded_video(root / "sub" / "deeper" / "c.mkv", 12, fps=25)
    (root / "sub" / "bad.mp4").write_text("not a video\n")
    return root


def codes(reader) -> list[int]:
    return [read_frame_index(f) for _, _, f in reader]


def test_decode_frames_cli_end_to_end(src, tmp_path):
    out = tmp_path / "frames"
    # The tools/ front, with worker processes: exit status 1 because of bad.mp4.
    proc = subprocess.run(
        [sys.executable, str(REPO / "tools" / "decode_frames.py"), str(src), str(out),
         "--fps", "10", "--short-side", "48", "--workers", "2", "--quiet"],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "bad.mp4" in proc.stderr and "decoded 3 videos" in proc.stdout

    failures = [json.loads(line) for line in (out / "failures.jsonl").read_text().splitlines()]
    assert [Path(f["video"]).name for f in failures] == ["bad.mp4"]
    assert str(src / "sub" / "bad.mp4") in failures[0]["error"]
    assert not (out / "sub" / "bad").exists()

    for rel, n, fps in [("a", 40, 25), ("sub/b", 30, 30), ("sub/deeper/c", 12, 25)]:
        folder = out / rel
        meta = json.loads((folder / "meta.json").read_text())
        expected = fps_indices(n, fps, 10)
        assert meta["indices"] == expected and meta["num_frames"] == len(expected)
        with open_video(folder) as reader:
            assert isinstance(reader, FrameFolderReader) and reader.backend == "frames"
            assert len(reader) == len(expected) and reader.fps == pytest.approx(10)
            assert reader.source_indices == expected
            assert min(reader.height, reader.width) == 48 and (reader.width, reader.height) == (64, 48)
            assert codes(reader) == expected  # frame k of the folder is source frame indices[k]
            clip = reader.get([len(expected) - 1, 0])
            assert [read_frame_index(f) for f in clip.frames.numpy()] == [expected[-1], 0]
            np.testing.assert_allclose(
                clip.timestamps.numpy(), [expected[-1] / fps, 0.0], atol=1e-3
            )
    # nothing half-written left behind
    assert not [p for p in out.rglob(".*") if p.name != "failures.jsonl"]


def test_rerun_skips_complete_folders_and_redoes_partial_ones(src, tmp_path):
    out = tmp_path / "frames"
    first = decode_folder(src, out, fps=10, workers=2)
    assert len(first.decoded) == 3 and len(first.failed) == 1
    a_frame = out / "a" / "img_00001.jpg"
    stamp = a_frame.stat().st_mtime_ns

    # Simulate a run killed while writing sub/b: its folder is gone, a temporary remains
    # (from a dead process id), with some frames in it.
    import shutil

    shutil.rmtree(out / "sub" / "b")
    stale = out / "sub" / ".b.tmp-999999999-0"
    stale.mkdir()
    (stale / "img_00001.jpg").write_bytes(b"partial")

    second = decode_folder(src, out, fps=10, workers=1)
    status = {Path(r.video).name: r.status for r in second.results}
    assert status == {"a.mp4": "skipped", "c.mkv": "skipped", "b.avi": "decoded", "bad.mp4": "failed"}
    assert a_frame.stat().st_mtime_ns == stamp
    assert not stale.exists()
    with open_video(out / "sub" / "b") as reader:
        assert codes(reader) == fps_indices(30, 30, 10)

    # Different options make a folder outdated: it is redone, not skipped.
    third = decode_folder(src / "a.mp4", out, fps=5, timeout=0)  # 0: no limit, as check_videos takes it
    assert [r.status for r in third.results] == ["decoded"]
    # -1: every video 'timed out within -1 s'; inf: an OverflowError; "5": a TypeError; True: 1 s
    for bad in (-1, float("inf"), "5", True):
        with pytest.raises(ValueError, match="timeout must be a finite number of seconds >= 0"):
            decode_folder(src / "a.mp4", out, timeout=bad)
    assert json.loads((out / "a" / "meta.json").read_text())["indices"] == fps_indices(40, 25, 5)
    # this run had no failures; the first run's failure of bad.mp4, not touched since, stays listed
    assert [json.loads(line)["video"] for line in (out / "failures.jsonl").read_text().splitlines()] == [
        str(src / "sub" / "bad.mp4")]


def test_decode_to_frames_all_frames_and_failure_leaves_nothing(tmp_path):
    video = write_coded_video(tmp_path / "v.avi", 20, fps=20)
    result = decode_to_frames(video, tmp_path / "out" / "v", quality=90)
    assert result.status == "decoded" and result.num_frames == 20
    assert is_complete(tmp_path / "out" / "v", video, {"fps": None, "short_side": None, "quality": 90})
    with open_video(tmp_path / "out" / "v") as reader:
        assert codes(reader) == list(range(20)) and (reader.width, reader.height) == (128, 96)
        assert reader.fps == pytest.approx(20)
    assert decode_to_frames(video, tmp_path / "out" / "v", quality=90).status == "skipped"

    bad = tmp_path / "empty.mp4"
    bad.write_bytes(b"")
    with pytest.raises(VideoDecodeError, match="empty"):
        decode_to_frames(bad, tmp_path / "out" / "empty")
    assert sorted(os.listdir(tmp_path / "out")) == ["v"]


def test_videos_named_near_the_file_system_limit_are_decoded(tmp_path):
    """The temporary folder .<name>.tmp-<pid>-<n> of a frame folder named after a 251-byte
    video name could not be created ('File name too long'); a dead run's temporary is
    removed, also for a name with glob characters (a glob pattern missed 'clip[1]')."""
    names = ["视频" * 40 + "x" * 11, "clip[1]"]  # 251 bytes, and a glob pattern
    for name in names:
        video = write_coded_video(tmp_path / (name + ".mp4"), 5)
        out_dir = tmp_path / "out" / name
        dead = out_dir.parent / (temporary_prefix(out_dir) + "999999999-0")  # no such pid
        dead.mkdir(parents=True)
        result = decode_to_frames(video, out_dir)
        assert result.status == "decoded" and result.num_frames == 5
        with open_video(out_dir) as reader:
            assert codes(reader) == list(range(5))
    assert sorted(os.listdir(tmp_path / "out")) == sorted(names)


def test_colliding_outputs_and_broken_frame_folders(tmp_path):
    root = tmp_path / "videos"
    write_coded_video(root / "clip.mp4", 5)
    write_coded_video(root / "clip.avi", 5)
    report = decode_folder(root, tmp_path / "out")
    assert [r.status for r in report.results] == ["decoded", "failed"]
    assert "already used" in report.failed[0].error

    folder = tmp_path / "out" / "clip"
    (folder / "img_00003.jpg").unlink()  # a gap in the numbering
    with pytest.raises(VideoDecodeError, match="contiguous"):
        open_video(folder)
    (folder / "img_00003.jpg").write_bytes(b"not a jpeg")
    with open_video(folder) as reader:
        assert len(reader) == 5
        with pytest.raises(VideoDecodeError) as info:
            reader.get([2])
        assert "img_00003.jpg" in str(info.value)
    (folder / "img_00005.jpg").unlink()
    with pytest.raises(VideoDecodeError, match="incomplete"):
        open_video(folder)  # meta.json lists 5 frames
    empty = tmp_path / "empty_folder"
    empty.mkdir()
    with pytest.raises(VideoDecodeError, match="no frames"):
        open_video(empty)


@pytest.mark.parametrize("workers", [1, 2])
def test_nested_output_folders_are_refused(tmp_path, workers):
    """x.mp4 -> OUT/x and x/y.mp4 -> OUT/x/y: committing OUT/x replaced the whole folder,
    deleting y's frames after y had been reported decoded."""
    root = tmp_path / "videos"
    write_coded_video(root / "x.mp4", 40)
    write_coded_video(root / "x" / "y.mp4", 3)
    write_coded_video(root / "z" / "w.mp4", 3)
    report = decode_folder(root, tmp_path / "out", workers=workers)
    status = {Path(r.video).relative_to(root).as_posix(): r for r in report.results}
    assert status["x.mp4"].status == status["z/w.mp4"].status == "decoded"
    assert status["x/y.mp4"].status == "failed" and "lies inside" in status["x/y.mp4"].error
    assert is_complete(tmp_path / "out" / "x") and is_complete(tmp_path / "out" / "z" / "w")
    for r in report.results:  # whatever is reported decoded is there
        assert r.status != "decoded" or is_complete(Path(r.out_dir)), r


def test_a_folder_decode_frames_did_not_write_is_never_replaced(tmp_path):
    """OUT = SRC: walk.mp4's frames would go to walk/, the user's folder of videos; it was
    renamed away and deleted (walk/take2.mp4 and notes.txt lost). Now walk.mp4 fails by name."""
    root = tmp_path / "videos"
    write_coded_video(root / "walk.mp4", 5)
    write_coded_video(root / "walk" / "take2.mp4", 5)
    (root / "walk" / "notes.txt").write_text("mine\n")
    (root / "run").write_text("a file where run.mp4's folder would go\n")
    write_coded_video(root / "run.mp4", 5)
    before = {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}
    report = decode_folder(root, root)
    status = {Path(r.video).relative_to(root).as_posix(): r for r in report.results}
    assert status["walk.mp4"].status == "failed" and "did not write" in status["walk.mp4"].error
    assert status["run.mp4"].status == "failed" and "is not a frame folder" in status["run.mp4"].error
    for name, data in before.items():
        assert (root / name).read_bytes() == data, name
    # its own frame folder is replaced on a rerun with other options, as before
    decode_to_frames(root / "walk.mp4", tmp_path / "frames")
    decode_to_frames(root / "walk.mp4", tmp_path / "frames", short_side=32, overwrite=True)
    assert is_complete(tmp_path / "frames")


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="zombie state is read from /proc (Linux)")
def test_temporaries_of_a_killed_but_unreaped_writer_are_removed(src, tmp_path):
    """A writer killed and not yet reaped is a zombie, and os.kill(pid, 0) still answers for
    it: its temporaries were kept as a running writer's (in a container whose first
    process never reaps, for ever). Found by a review of decode-frames after SIGKILL."""
    import time

    from videoact.atomic import pid_alive
    from videoact.extract import extract_features

    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        assert pid_alive(child.pid)
        child.kill()
        for _ in range(200):  # until it has exited: a zombie, as nobody waits for it yet
            if Path(f"/proc/{child.pid}/stat").read_bytes().rpartition(b")")[2].split()[0] == b"Z":
                break
            time.sleep(0.05)
        assert not pid_alive(child.pid)
        frames, cache = tmp_path / "frames", tmp_path / "cache"
        frame_tmp = frames / f".a.tmp-{child.pid}-0"
        frame_tmp.mkdir(parents=True)
        cache_tmp = cache / f".a.mp4.safetensors.tmp-{child.pid}-0"
        cache_tmp.parent.mkdir()
        cache_tmp.write_bytes(b"half a file")
        decode_folder(src / "a.mp4", frames, fps=10)
        extract_features([src / "a.mp4"], cache, root=src, image_size=32, progress=False)
        assert not frame_tmp.exists() and not cache_tmp.exists()
    finally:
        child.wait()


def test_a_later_run_into_the_same_folder_keeps_the_failures_of_videos_it_did_not_touch(tmp_path):
    """decode-frames of a second source folder into the same OUT removed the first run's
    record of its failures (failures.jsonl held the latest run's only)."""
    first, second, out = tmp_path / "first", tmp_path / "second", tmp_path / "frames"
    write_coded_video(first / "good.mp4", 6)
    (first / "broken.mp4").write_bytes(b"not a video at all" * 10)
    write_coded_video(second / "other.mp4", 6)
    assert len(decode_folder(first, out, fps=10).failed) == 1
    assert not decode_folder(second, out, fps=10).failed
    entries = [json.loads(line) for line in (out / "failures.jsonl").read_text().splitlines()]
    assert [Path(e["video"]).name for e in entries] == ["broken.mp4"]


def test_another_run_committing_the_same_folder_in_between_is_not_a_failure(src, tmp_path, monkeypatch):
    """Two decode-frames runs into one OUT finishing the same video at the same moment: the
    other run's folder appeared between this run's check and its rename (ENOTEMPTY), and the
    video was reported failed while a complete folder was there (3 in 300 commits in a
    review's stress test). Here the other run's rename is made to land in that gap."""
    import videoact.frames as frames

    out = tmp_path / "frames"
    reference = decode_to_frames(src / "a.mp4", tmp_path / "reference" / "a", fps=10)
    rename = os.rename
    landed = []

    def the_other_run_lands_first(a, b):
        if Path(b) == out / "a" and not landed:
            shutil.copytree(tmp_path / "reference" / "a", out / "a")  # its complete folder, just now
            landed.append(b)
        return rename(a, b)

    import shutil

    monkeypatch.setattr(frames.os, "rename", the_other_run_lands_first)
    result = decode_to_frames(src / "a.mp4", out / "a", fps=10)
    monkeypatch.undo()
    assert result.status == "decoded" and is_complete(out / "a")
    assert sorted(p.name for p in (out / "a").iterdir()) == sorted(p.name for p in (tmp_path / "reference" / "a").iterdir())
    assert not [p for p in out.iterdir() if ".tmp-" in p.name]  # no temporary or trash left
    assert reference.status == "decoded"


def test_ctrl_c_leaves_no_half_written_frame_folders(tmp_path):
    """Ctrl-C stopped the worker processes mid-video and left their hidden temporary folders
    (``.clip.tmp-<pid>-<n>``, 174 JPEGs in one) until a later run decoded the same video."""
    import signal
    import time

    from faults import VIDEOACT_WITH_CTRL_C

    src, out = tmp_path / "v", tmp_path / "out"
    for i in range(3):
        write_coded_video(src / f"clip{i}.mp4", 1000, height=240, width=320)
    proc = subprocess.Popen([*VIDEOACT_WITH_CTRL_C, "decode-frames", str(src), str(out), "--quiet", "--workers", "2"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while proc.poll() is None and time.monotonic() < deadline and not list(out.glob(".clip*.tmp-*")):
            time.sleep(0.01)
        assert list(out.glob(".clip*.tmp-*")), "no video was being decoded"
        os.killpg(proc.pid, signal.SIGINT)  # as a terminal's Ctrl-C reaches the whole job
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130 and "interrupted" in err, err
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == []


def write_damaged_in_the_middle(path: Path) -> Path:
    """decord counts 60 frames and fails reading frame 5; OpenCV decodes the first 22."""
    data = bytearray(write_coded_video(path.with_name(".full.mp4"), 60).read_bytes())
    path.with_name(".full.mp4").unlink()
    data[len(data) // 3:len(data) // 3 + 2000] = bytes(2000)
    path.write_bytes(bytes(data))
    return path


def test_fps_sampling_after_a_fallback_uses_the_frames_opencv_decodes(tmp_path):
    """--fps chose the frames from decord's count (60) and failed the video when OpenCV,
    after decord failed part-way, decoded only 22 (`frame 55 was requested`), where
    decoding every frame wrote those 22."""
    video = write_damaged_in_the_middle(tmp_path / "damaged.mp4")
    result = decode_to_frames(video, tmp_path / "out", fps=5)
    assert result.status == "decoded"
    meta = json.loads((tmp_path / "out" / "meta.json").read_text())
    assert meta["backend"] == "opencv" and meta["indices"] == fps_indices(22, 25, 5) == [0, 5, 10, 15, 20]
    with open_video(tmp_path / "out") as reader:
        assert codes(reader) == [0, 5, 10, 15, 20]


def test_a_rerun_with_another_backend_redoes_the_folder(tmp_path):
    """--backend was not among the options a folder is kept for: a rerun with another
    decoder skipped every folder ("already complete"), though decord and OpenCV can give
    other frames (corpus nasa_13013.mp4: 390 frames at 480x270 against 325 at 320x180)."""
    video = write_coded_video(tmp_path / "v.mp4", 10)
    out = tmp_path / "out"
    assert decode_to_frames(video, out).status == "decoded"
    assert json.loads((out / "meta.json").read_text())["backend"] == "decord"
    assert decode_to_frames(video, out, backend="opencv").status == "decoded"
    assert json.loads((out / "meta.json").read_text())["backend"] == "opencv"
    assert decode_to_frames(video, out, backend="opencv").status == "skipped"
    assert decode_to_frames(video, out, backend="decord").status == "decoded"
    # Folders written with the default (auto) keep their params as before: still current.
    assert decode_to_frames(video, out).status == "decoded"
    assert json.loads((out / "meta.json").read_text())["params"] == {"fps": None, "short_side": None, "quality": 95}
    assert decode_to_frames(video, out, backend="auto").status == "skipped"


def test_frames_counted_before_the_first_one_are_progress(tmp_path):
    """A file whose frames must be counted first (Matroska without its Duration, as browsers'
    MediaRecorder write it) was decoded to its end before the first progress beat, so
    `decode-frames --timeout 3` killed a good 60-s 640x480 video as making no progress."""
    data = bytearray(write_coded_video(tmp_path / "full.mkv", 40, fourcc="MJPG").read_bytes())
    at = data.find(b"\x44\x89\x88")  # the Duration element (8-byte float) -> a Void element
    data[at:at + 11] = b"\xec\x89" + bytes(9)
    (tmp_path / "nodur.mkv").write_bytes(bytes(data))
    out = tmp_path / "out"
    written_at_beat = []
    result = decode_to_frames(tmp_path / "nodur.mkv", out, fps=1, progress=lambda: written_at_beat.append(
        len(list(tmp_path.glob(f"{temporary_prefix(out)}*/img_*.jpg")))))
    assert result.status == "decoded" and result.num_frames == 2
    assert json.loads((out / "meta.json").read_text())["backend"] == "opencv"  # decord cannot open it
    assert written_at_beat.count(0) >= 40  # a beat for each frame counted before the first is written


def test_a_read_only_folder_replaced_leaves_no_old_copy(tmp_path):
    """A read-only frame folder (`chmod -R a-w`) replaced by a rerun stayed behind under its
    hidden temporary name, every frame, without a word (rmtree with ignore_errors)."""
    from faults import unreadable_prefix

    prefix, why = unreadable_prefix()  # as root, file modes bind only without CAP_DAC_OVERRIDE
    if prefix is None:
        pytest.skip(why)
    video = write_coded_video(tmp_path / "v.mp4", 5)
    out = tmp_path / "out"
    decode_to_frames(video, out / "v", backend="opencv")
    for path in [out / "v", *(out / "v").iterdir()]:
        path.chmod(0o555 if path.is_dir() else 0o444)
    proc = subprocess.run([*prefix, sys.executable, "-c", "import sys; from videoact.frames import decode_to_frames; "
                           "print(decode_to_frames(sys.argv[1], sys.argv[2], quality=80, backend='opencv').status)",
                           str(video), str(out / "v")], capture_output=True, text=True, timeout=120)
    assert proc.stdout == "decoded\n", proc.stderr[-2000:]
    assert sorted(os.listdir(out)) == ["v"] and is_complete(out / "v", video, {"fps": None, "short_side": None,
                                                                            "quality": 80, "backend": "opencv"})


def test_a_frame_folder_keeps_a_rate_below_a_frame_in_ten_seconds(tmp_path):
    """--fps 0.05 (a frame every 20 s, for hours of footage): the folder read back at 25 fps,
    as a container's claim below 0.1 fps is not believed."""
    from videoact.decode import open_video
    from videoact.frames import decode_to_frames

    video = write_coded_video(tmp_path / "long.mp4", 125, fps=5.0, height=48, width=64)  # 25 s
    assert decode_to_frames(video, tmp_path / "f", fps=0.05).status == "decoded"
    with open_video(tmp_path / "f") as reader:
        assert reader.fps == pytest.approx(0.05) and len(reader) == 2
        assert list(reader.timestamps()) == pytest.approx([0.0, 20.0])
