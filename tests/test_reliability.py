"""Every command that reads videos, on every awkward file (generated ones and the
third-party corpus): processed, or reported with a clear reason naming the file.
Real files, real decoders, the real backbone, the real command line.

Related: test_hangs.py (decoders that never return, permissions), test_untrusted.py,
test_numerical_health.py, test_crash_safety.py (kill -9, disk full), test_health.py.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from faults import SHARED, SHARED_EXPECTED, run_cli, run_main, write_awkward_folder, write_tiny_checkpoint

from videoact.feature_cache import load_features
from videoact.health import check_file

UNREADABLE = {"empty.mp4", "notes.mkv", "random.mov", "pipe.mp4", "dangling.mp4"}


@pytest.fixture(scope="module")
def awkward(tmp_path_factory) -> tuple[Path, set[str]]:
    """Generated awkward files, plus the third-party corpus linked in as ``shared/`` (not copied).

    Returns the folder and the names that can be read (relative paths).
    """
    root = tmp_path_factory.mktemp("rel") / "videos"
    expected = write_awkward_folder(root)
    usable = {name for name, (status, _) in expected.items() if status != "unreadable"}
    assert UNREADABLE == set(expected) - usable
    if SHARED.is_dir():
        os.symlink(SHARED, root / "shared")
        usable |= {f"shared/{name}" for name in SHARED_EXPECTED}
        # AV1 decodes only where decord was built with an AV1 decoder (decord2 3.4 is)
        if check_file(SHARED / "av1_video.mkv").status != "unreadable":
            usable.add("shared/av1_video.mkv")
    return root, usable


def unreadable(root: Path, usable: set[str]) -> set[str]:
    """The names under ``root`` that no command can read."""
    from videoact.decode import list_videos

    return {p.relative_to(root).as_posix() for p in list_videos(root)} - usable


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory) -> Path:
    return write_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pt")


def failed_names(stderr: str, root: Path) -> set[str]:
    """Relative names of the files a command reported as failed (``failed: <path>: ...`` lines)."""
    out = set()
    for line in stderr.splitlines():
        line = line.strip()
        if line.startswith("failed: "):
            line = line[len("failed: "):]
        if line.startswith(str(root) + "/"):
            out.add(line[len(str(root)) + 1:].split(": ", 1)[0])
    return out


# ---------------------------------------------------------------- every command, every awkward file


def test_extract_processes_or_reports_every_file(awkward, tmp_path, capsys):
    root, usable = awkward
    out = tmp_path / "features"
    proc = run_main(capsys, "extract", root, out, "--image-size", "32", "--sampling", "uniform", "--num-segments", "4",
                    "--workers", "2", "--timeout", "120", "--no-progress")
    assert proc.returncode == 1, proc.stderr[-3000:]
    failures = [json.loads(line) for line in (out / "failures.jsonl").read_text().splitlines()]
    assert {Path(f["path"]).relative_to(root).as_posix() for f in failures} == unreadable(root, usable)
    for f in failures:
        assert f["reason"].startswith(f["path"] + ": ")
    reasons = {Path(f["path"]).name: f["reason"].split(": ", 1)[1] for f in failures}
    assert reasons["empty.mp4"] == "file is empty (0 bytes)"
    assert reasons["pipe.mp4"] == "not a regular file"
    assert reasons["dangling.mp4"] == "file not found"
    written = {p.relative_to(out).as_posix()[:-len(".safetensors")] for p in out.rglob("*.safetensors")}
    assert written == usable  # the damaged (partial) file, the GIF, 4000 px, one-frame files, the corpus
    for name in usable:
        cached = load_features(out / f"{name}.safetensors")
        assert cached.features.shape == (4, 1280) and torch.isfinite(cached.features.float()).all(), name
    # damaged.mp4: decord counts 60 frames but fails reading; frames are chosen among the 22 OpenCV decodes
    damaged = load_features(out / "damaged.mp4.safetensors")
    assert damaged.metadata["decoder"] == "opencv" and max(damaged.frame_indices.tolist()) < 22


def test_decode_frames_processes_or_reports_every_file(awkward, tmp_path, capsys):
    root, usable = awkward
    out = tmp_path / "frames"
    proc = run_main(capsys, "decode-frames", root, out, "--short-side", "24", "--workers", "2", "--timeout", "120",
                    "--quiet")
    assert proc.returncode == 1, proc.stderr[-3000:]
    failures = {Path(json.loads(line)["video"]).relative_to(root).as_posix(): json.loads(line)["error"]
                for line in (out / "failures.jsonl").read_text().splitlines()}
    # clip.mp4 and clip.avi would share the folder OUT/clip: the second is refused, by name
    clashes = {"good.mp4", "one_frame.mkv", "one_frame.mp4"}
    assert set(failures) == unreadable(root, usable) | clashes
    for name in clashes:
        assert "is already used by" in failures[name]
    for name in unreadable(root, usable):
        assert name in failures[name]
    folders = {p.parent.relative_to(out).as_posix() for p in out.rglob("meta.json")}
    assert folders == {str(Path(n).with_suffix("")) for n in usable if Path(n).name not in clashes}
    meta = json.loads((out / "damaged" / "meta.json").read_text())
    assert meta["num_frames"] == 22 and meta["backend"] == "opencv"
    assert json.loads((out / "animated" / "meta.json").read_text())["num_frames"] == 12


def test_infer_and_timeline_process_or_report_every_file(awkward, tiny_checkpoint, tmp_path, capsys):
    root, usable = awkward
    proc = run_main(capsys, "infer", tiny_checkpoint, root, "--device", "cpu", "--timeout", "120",
                    "--out", tmp_path / "r.json")
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert failed_names(proc.stderr, root) == unreadable(root, usable)
    rows = json.loads((tmp_path / "r.json").read_text())
    done = [r for r in rows if "error" not in r]
    assert {Path(r["source"]).relative_to(root).as_posix() for r in done} == usable
    assert all(abs(sum(t["prob"] for t in r["top"]) - 1) < 1e-4 for r in done)
    # the failed ones are in the file too, each with its reason
    failed = {Path(r["source"]).relative_to(root).as_posix(): r["error"] for r in rows if "error" in r}
    assert set(failed) == unreadable(root, usable)
    assert all(f"failed: {reason}\n" in proc.stderr for reason in failed.values())

    timeline = run_main(capsys, "infer", tiny_checkpoint, root, "--timeline", "--device", "cpu")
    assert timeline.returncode == 1, timeline.stderr[-3000:]
    # The timeline reads the frames decord counted; on damaged.mp4 it reports, by name,
    # that OpenCV (the fallback) decodes fewer (see docs/reliability.md).
    assert failed_names(timeline.stderr, root) == unreadable(root, usable) | {"damaged.mp4"}
    assert f"{root / 'damaged.mp4'}: decord failed while reading frame" in timeline.stderr
    assert "OpenCV decodes only 22 frames" in timeline.stderr
    for name in ("one_frame.mp4", "animated.gif", "wide_4000.mp4", "shared/no_duration.webm"):
        if (root / name).exists():
            assert f"{root / name}  (" in timeline.stdout  # a timeline was printed for it
    # a one-frame video is one window over all of it (was: "1 windows of 2 s")
    assert f"{root / 'one_frame.mp4'}  (0.04 s; one window over all of it (--window 2 s); " in timeline.stdout


@pytest.mark.parametrize("name,status", [("one_frame.mp4", 0), ("animated.gif", 0), ("damaged.mp4", 0),
                                         ("empty.mp4", 2), ("pipe.mp4", 2)])
def test_stream_file_source(awkward, tiny_checkpoint, name, status, capsys):
    root, _ = awkward
    proc = run_main(capsys, "stream", tiny_checkpoint, "--source", root / name, "--no-window", "--device", "cpu")
    assert proc.returncode == status, proc.stderr[-2000:]
    if status:
        assert f"videoact stream: {root / name}: " in proc.stderr
    else:
        assert "videoact stream: done: " in proc.stderr
    if name == "one_frame.mp4":  # shorter than the window: say why nothing was predicted
        assert "videoact stream: no prediction: the model needs a full window of 4 frames" in proc.stderr


def test_a_file_name_that_is_not_utf8_is_reported_not_fatal(tiny_checkpoint, tmp_path):
    """A Latin-1 file name (from an old archive) reaches Python with surrogates; decord
    refuses it and OpenCV crashed the whole process on it (exit -11, no output for the good
    files). It is reported by name like any unreadable file."""
    from videoact.decode import VideoDecodeError, open_video
    from videoact.testing import write_coded_video

    folder = tmp_path / "v"
    write_coded_video(folder / "good.mp4", 12)
    write_coded_video(folder / "latin1.mp4", 12)
    os.rename(folder / "latin1.mp4", os.path.join(os.fsencode(folder), b"caf\xe9.mp4"))
    bad = folder / os.fsdecode(b"caf\xe9.mp4")
    with pytest.raises(VideoDecodeError, match="not valid UTF-8"):
        open_video(bad)
    check = check_file(bad)
    assert check.status == "unreadable" and "not valid UTF-8" in check.reason
    proc = run_cli("infer", tiny_checkpoint, folder, "--device", "cpu", "--out", tmp_path / "r.csv")
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "caf" in proc.stderr and "the file name is not valid UTF-8" in proc.stderr
    # The results file names it as its own bytes, as `ls` shows it (a UnicodeEncodeError before).
    rows = [line.split(b",") for line in (tmp_path / "r.csv").read_bytes().splitlines()[1:]]
    assert [(Path(os.fsdecode(r[0])).name, r[1]) for r in rows if r[1] in (b"1", b"")] == \
        [("good.mp4", b"1"), (os.fsdecode(b"caf\xe9.mp4"), b"")]
