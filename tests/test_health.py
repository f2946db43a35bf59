"""`videoact check`: every awkward file sorted into readable / fallback / partial /
unreadable with its reason, in killable worker processes (real files, real decoders)."""
from __future__ import annotations

import contextlib
import json
import multiprocessing as mp
import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from faults import (SHARED, SHARED_EXPECTED, run_cli, run_main, shared_videos, unreadable_prefix, write_awkward_folder,
                    write_hanging_avi)

from videoact.feature_cache import load_features
from videoact.health import (FileHealth, check_file, check_videos, exclude_paths, read_exclude_list,
                             write_quarantine)
from videoact.testing import coded_frame, write_coded_video, write_timed_video


@pytest.fixture(scope="module")
def awkward(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("awkward") / "videos"
    return root, write_awkward_folder(root)


def by_name(report) -> dict[str, FileHealth]:
    return {Path(f.path).name: f for f in report.files}


def test_every_awkward_file_gets_its_status_and_reason(awkward):
    root, expected = awkward
    report = check_videos(root, workers=2, timeout=60)
    found = by_name(report)
    assert sorted(found) == sorted(expected)
    for name, (status, frames) in expected.items():
        assert found[name].status == status, (name, found[name])
        if frames is not None:
            assert found[name].frames == frames, (name, found[name])
    assert found["wide_4000.mp4"].width == 4000 and found["wide_4000.mp4"].height == 2250
    assert found["animated.gif"].claimed == 12
    assert found["empty.mp4"].reason == "file is empty (0 bytes)"
    assert found["pipe.mp4"].reason.startswith("not a regular file (a named pipe")
    assert found["dangling.mp4"].reason.startswith("broken symbolic link")
    for name in ("notes.mkv", "random.mov"):
        assert found[name].reason.startswith("not a readable video (decord: ")
        assert "OpenCV: cannot open it" in found[name].reason
    damaged = found["damaged.mp4"]
    assert (damaged.backend, damaged.frames, damaged.claimed) == ("opencv", 22, 60)
    assert damaged.reason.startswith("22 of 60 claimed frames decode; decord cannot read it: decord failed")
    counts = report.counts()
    assert counts == {"readable": 7, "fallback": 0, "partial": 1, "unreadable": 5}
    assert not report.ok and report.worker_restarts == 0
    assert not mp.active_children()  # every worker process was shut down


@pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/testvideos not present")
def test_third_party_corpus():
    report = check_videos(SHARED, workers=2, timeout=120)
    found = by_name(report)
    for name, (status, frames) in SHARED_EXPECTED.items():
        if name not in found:
            continue
        assert found[name].status == status, found[name]
        if frames is not None:
            assert found[name].frames == frames, found[name]
    corrupted = found["corrupted.mp4"]
    # decord's decoder thread meets the damage at a moment that depends on timing (25-28
    # frames, more often fewer under load): the file was counted differently from run to
    # run. OpenCV, decoding in the calling thread, reads 28 every time.
    assert (corrupted.backend, corrupted.frames, corrupted.claimed, corrupted.claimed_by) == ("opencv", 28, 50, "opencv")
    assert corrupted.reason.startswith("28 of 50 claimed frames decode; decord cannot read it: decord stops at "
                                       "damaged data, at a frame that can vary from run to run"), corrupted.reason
    webm = found["no_duration.webm"]
    assert webm.backend == "opencv" and webm.claimed is None  # OpenCV's count is garbage (-1.4e17)
    assert "Failed to measure duration/frame-count" in webm.reason
    av1 = found["av1_video.mkv"]  # depends on decord's build having an AV1 decoder
    assert (av1.status, av1.frames) == ("readable", 125) or (av1.status == "unreadable" and av1.reason)
    assert found["video_90.mov"].width == 320 and found["video_90.mov"].height == 568  # rotation applied
    assert len(report.files) == len(shared_videos())


def test_time_limit_kills_a_decoder_that_never_returns(tmp_path):
    hang = write_hanging_avi(tmp_path / "v" / "hang.avi")
    write_coded_video(tmp_path / "v" / "after.mp4", 10)
    try:
        started = time.monotonic()
        report = check_videos(tmp_path / "v", workers=1, timeout=4)
        elapsed = time.monotonic() - started
    finally:
        hang.unlink()
    found = by_name(report)
    assert found["hang.avi"].status == "unreadable"
    assert found["hang.avi"].reason == ("timed out: no progress within 4 s (the decoder did not return; "
                                        "its worker process was killed)")
    assert found["after.mp4"].status == "readable" and found["after.mp4"].frames == 10
    assert report.worker_restarts == 1
    assert elapsed < 4 + 2 * 60  # the limit plus two worker start-ups, not half an hour
    assert not mp.active_children()


def test_a_worker_that_dies_is_reported_and_replaced(tmp_path):
    """A decoder crash (segfault, out-of-memory kill) takes its worker down: the file is
    reported with the signal and the scan goes on. A real SIGKILL stands in for the OOM killer."""
    hang = write_hanging_avi(tmp_path / "v" / "a_hang.avi")
    write_coded_video(tmp_path / "v" / "b_after.mp4", 10)
    box = {}
    thread = threading.Thread(target=lambda: box.update(report=check_videos(tmp_path / "v", workers=1,
                                                                             timeout=None)))
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not mp.active_children():
            time.sleep(0.05)
        victim = mp.active_children()[0]
        time.sleep(3)  # let it get into the file
        os.kill(victim.pid, 9)
        thread.join(120)
    finally:
        hang.unlink()
    assert not thread.is_alive()
    found = by_name(box["report"])
    assert found["a_hang.avi"].status == "unreadable"
    assert found["a_hang.avi"].reason == ("the decoder crashed: its worker process died with SIGKILL "
                                          "(out of memory?)")
    assert found["b_after.mp4"].status == "readable"


def test_deep_check_finds_damage_in_the_middle(tmp_path):
    # MJPEG AVI with garbage a third of the way in: OpenCV stops at frame 13; decord skips
    # the damaged frames and counts 53, and its reads of the damaged file are not even
    # repeatable (the first, middle and last frame decode in most runs, not all).
    data = bytearray(write_coded_video(tmp_path / "full.avi", 60).read_bytes())
    third = len(data) // 3
    data[third:third + 3000] = np.random.default_rng(0).integers(0, 256, 3000, dtype=np.uint8).tobytes()
    damaged = tmp_path / "damaged.avi"
    damaged.write_bytes(bytes(data))
    quick = check_file(damaged)  # decord indexes 53 frames, the header says 60
    assert (quick.status, quick.frames, quick.claimed) in (("partial", 53, 60), ("partial", 13, 60)), quick
    deep = check_file(damaged, deep=True)
    assert (deep.status, deep.frames, deep.claimed) == ("partial", 13, 60), deep
    assert deep.reason.startswith("13 of 60 claimed frames decode; decord cannot read it: decord failed while reading")
    good = check_file(tmp_path / "full.avi", deep=True)
    assert (good.status, good.frames) == ("readable", 60)


def test_a_deep_check_reports_progress_so_the_time_limit_spares_long_files(tmp_path):
    """The time limit counts time without progress; check's worker task never passed its
    beat on, so `check --deep --timeout 1.5` killed a healthy 500-frame 1080p file (7 s
    to decode) as "timed out: no progress" and quarantined it. The worker's own task is
    run here with a counting beat (no timing: a beat every few frames of the decode)."""
    from videoact.health import _check_task

    video = write_coded_video(tmp_path / "long.mp4", 40)
    beats = []
    result = _check_task(str(video), lambda: beats.append(1), deep=True, backend="auto")
    assert (result["status"], result["frames"]) == ("readable", 40)
    assert len(beats) >= 5  # through the decode, not only before and after it
    beats.clear()
    assert check_file(video, beat=lambda: beats.append(1)).status == "readable" and beats  # the quick check too


def test_frames_counted_by_opencv_are_progress_of_the_quick_check(tmp_path):
    """A file OpenCV reads (MPEG-1: decord returns the wrong frames of it) is counted by
    decoding it all before its first frame; each frame counted is a beat, so a long one
    is not killed as hung while being counted (it beat 3 times: opened, sampled, done)."""
    video = write_coded_video(tmp_path / "long.mpg", 120, fourcc="PIM1")
    beats = []
    health = check_file(video, beat=lambda: beats.append(1))
    assert (health.status, health.backend, health.frames) == ("fallback", "opencv", 120)
    assert len(beats) >= 120


def test_a_file_cut_short_is_partial(tmp_path):
    """An AVI whose second half is missing: decord indexes the 104 frames there and both
    decoders read them, so `check` (deep too) said readable; the header still says 200."""
    data = write_coded_video(tmp_path / "full.avi", 200).read_bytes()
    cut = tmp_path / "cut.avi"
    cut.write_bytes(data[: len(data) // 2])
    for deep in (False, True):
        health = check_file(cut, deep=deep)
        assert (health.status, health.claimed, health.claimed_by) == ("partial", 200, "opencv"), health
        assert health.reason == f"{health.frames} of 200 claimed frames decode"
    assert check_file(tmp_path / "full.avi").status == "readable"


def test_memory_stays_bounded_over_many_files(tmp_path):
    src = tmp_path / "many"
    one = write_coded_video(tmp_path / "one.mp4", 8).read_bytes()
    for i in range(180):
        (src / f"d{i % 12}").mkdir(parents=True, exist_ok=True)
        (src / f"d{i % 12}" / f"clip{i:04d}.mp4").write_bytes(one)
    # One worker reads them all (no replacement): a leak of 0.15 MB a file would show.
    few = check_videos(src / "d0", workers=1, timeout=60, max_files_per_worker=1000)
    many = check_videos(src, workers=1, timeout=60, max_files_per_worker=1000)
    assert many.counts()["readable"] == 180 and few.counts()["readable"] == 15
    # The peak includes the shared decoder and torch libraries (about 1.4 GB here); what
    # matters is that twelve times the files do not raise it.
    assert few.max_worker_rss_mb > 100  # a real reading of the worker
    assert many.max_worker_rss_mb - few.max_worker_rss_mb < 25, (few.max_worker_rss_mb, many.max_worker_rss_mb)
    # Workers replaced every 6 files (the bound on memory whatever a decoder leaks) lose no file
    replaced = check_videos(src / "d0", workers=1, timeout=60, max_files_per_worker=6)
    assert [f.path for f in replaced.files] == [f.path for f in few.files]
    assert replaced.counts()["readable"] == 15 and replaced.worker_restarts == 0


def test_cli_report_quarantine_and_extract_exclude(awkward, tmp_path, capsys):
    root, expected = awkward
    report_file, quarantine = tmp_path / "report.json", tmp_path / "quarantine.txt"
    proc = run_main(capsys, "check", root, "--json", report_file, "--quarantine", quarantine, "--workers", "2", "--quiet")
    assert proc.returncode == 1, proc.stderr  # some files are unreadable
    assert "partially readable                  1" in proc.stdout
    assert f"{root / 'empty.mp4'}: file is empty (0 bytes)" in proc.stdout
    data = json.loads(report_file.read_text())
    assert data["counts"] == {"readable": 7, "fallback": 0, "partial": 1, "unreadable": 5}
    statuses = {Path(f["path"]).name: f["status"] for f in data["files"]}
    assert statuses == {name: status for name, (status, _) in expected.items()}
    listed = [line for line in quarantine.read_text().splitlines() if line and not line.startswith("#")]
    unreadable = sorted(str((root / n).absolute()) for n, (s, _) in expected.items() if s == "unreadable")
    assert sorted(listed) == unreadable
    assert len(read_exclude_list(quarantine)) == 5

    # extract skips the quarantined files and reads everything else (the partial one too)
    out = tmp_path / "features"
    proc = run_main(capsys, "extract", root, out, "--exclude", quarantine, "--image-size", "32", "--sampling", "uniform",
                   "--num-segments", "2", "--workers", "1", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    assert f"excluded 5 videos listed in {quarantine}" in proc.stdout  # as `videoact train` says it
    written = sorted(p.name for p in out.glob("*.safetensors"))
    assert written == sorted(f"{n}.safetensors" for n, (s, _) in expected.items() if s != "unreadable")
    assert load_features(out / "damaged.mp4.safetensors").features.shape[0] == 2

    missing = run_main(capsys, "extract", root, out, "--exclude", tmp_path / "nope.txt")
    assert missing.returncode == 2 and "nope.txt: exclusion list not found" in missing.stderr


def test_check_writes_its_files_before_the_summary_meets_a_closed_pipe(tmp_path):
    """`videoact check SRC --json R --quarantine Q | head -1`: the summary was printed
    first, the pipe's reader was gone, and the run ended (exit 141) with neither file."""
    from faults import run_main_into_closed_pipe

    for i in range(3):
        (tmp_path / "v" / f"empty{i}.mp4").parent.mkdir(exist_ok=True)
        (tmp_path / "v" / f"empty{i}.mp4").write_bytes(b"")
    report_file, quarantine = tmp_path / "r.json", tmp_path / "q.txt"
    assert run_main_into_closed_pipe("check", tmp_path / "v", "--json", report_file, "--quarantine", quarantine,
                                     "--workers", "0", "--quiet") == 141
    assert json.loads(report_file.read_text())["counts"]["unreadable"] == 3
    assert len(read_exclude_list(quarantine)) == 3


def test_annotation_list_reports_listed_files_and_bad_lines(tmp_path):
    root = tmp_path / "data"
    write_coded_video(root / "a" / "ok.mp4", 12)
    (root / "a" / "empty.mp4").write_bytes(b"")
    write_coded_video(tmp_path / "outside.mp4", 5)
    listing = root / "list.txt"
    listing.write_text("a/ok.mp4 walk\na/empty.mp4 walk\na/missing.mp4 run\n../outside.mp4 run\njustonetoken\n")
    report = check_videos(listing, workers=1, timeout=60)
    found = by_name(report)
    assert found["ok.mp4"].status == "readable"
    assert found["empty.mp4"].reason == "file is empty (0 bytes)"
    assert found["missing.mp4"].reason == "file not found"
    assert "outside.mp4" not in found  # escaping paths are refused, not opened
    assert any(":4: outside_root:" in p for p in report.problems)
    assert found["justonetoken"].reason == "file not found"  # a bare path is checked like any other
    assert "annotation problem:" in report.summary()


def test_a_mistyped_root_of_a_list_is_refused(tmp_path, capsys):
    """`check LIST --root TYPO` reported every listed file as "file not found" (exit 1) and
    quarantined them all; the other commands refuse such a root."""
    write_coded_video(tmp_path / "data" / "a.mp4", 8)
    listing = tmp_path / "data" / "list.txt"
    listing.write_text("a.mp4 walk\n")
    quarantine = tmp_path / "q.txt"
    proc = run_main(capsys, "check", listing, "--root", tmp_path / "dta", "--quarantine", quarantine, "--workers", "0")
    assert proc.returncode == 2
    assert proc.stderr == f"videoact check: {tmp_path / 'dta'}: dataset root of {listing} not found\n"
    assert proc.stdout == "" and not quarantine.exists()
    assert run_main(capsys, "check", listing, "--root", tmp_path / "data", "--workers", "0").returncode == 0


def test_lists_without_usable_labels_are_checked_too(tmp_path):
    """A health check needs paths, not labels: a bare path list (UCF101's testlist01.txt)
    and ids without their classInd.txt were read as 0 files, and the check passed."""
    root = tmp_path / "data"
    write_coded_video(root / "Walk" / "v_Walk_g01_c01.avi", 8)
    (root / "Run").mkdir()
    (root / "Run" / "v_Run_g01_c01.avi").write_bytes(b"not a video")
    bare = root / "testlist01.txt"
    bare.write_text("Walk/v_Walk_g01_c01.avi\nRun/v_Run_g01_c01.avi\n")
    ids = root / "trainlist01.txt"
    ids.write_text("Walk/v_Walk_g01_c01.avi 2\nRun/v_Run_g01_c01.avi 1\n")
    for listing in (bare, ids):
        report = check_videos(listing, workers=0)
        assert [(Path(f.path).name, f.status) for f in report.files] == [
            ("v_Walk_g01_c01.avi", "readable"), ("v_Run_g01_c01.avi", "unreadable")], listing
        assert report.problems == []
    one = check_videos(root / "Walk" / "v_Walk_g01_c01.avi", workers=0).summary()
    assert one.startswith("checked 1 file from ") and report.summary().startswith("checked 2 files from ")
    from videoact.cli import main

    # a Kinetics CSV: clips found in the layout the downloader used (here class folders with "_")
    write_coded_video(root / "k400" / "air_drumming" / "abcdefghijk_000001_000011.mp4", 8)
    csv_file = root / "k400.csv"
    csv_file.write_text("label,youtube_id,time_start,time_end,split\nair drumming,abcdefghijk,1,11,train\n")
    report = check_videos(csv_file, root=root / "k400", workers=0)
    assert [(Path(f.path).parent.name, f.status) for f in report.files] == [("air_drumming", "readable")]
    # and its unlabelled test CSV, whose clips lie flat
    write_coded_video(root / "k400test" / "zyxwvutsrqp_000003_000013.mp4", 8)
    (root / "k400test.csv").write_text("youtube_id,time_start,time_end,split\nzyxwvutsrqp,3,13,test\n")
    report = check_videos(root / "k400test.csv", root=root / "k400test", workers=0)
    assert [(Path(f.path).name, f.status) for f in report.files] == [("zyxwvutsrqp_000003_000013.mp4", "readable")]

    broken = root / "broken.txt"
    broken.write_text("# nothing but\n../../outside.avi walk\n")
    assert main(["check", str(broken), "--workers", "0", "--quiet"]) == 1  # nothing checked: not a pass


def test_unreadable_permissions(tmp_path):
    prefix, why = unreadable_prefix()
    if prefix is None:
        pytest.skip(why)
    src = tmp_path / "v"
    write_coded_video(src / "open.mp4", 8)
    secret = write_coded_video(src / "secret.mp4", 8)
    secret.chmod(0)
    proc = run_cli("check", src, "--workers", "1", "--quiet", prefix=prefix)
    assert proc.returncode == 1, proc.stderr
    assert f"unreadable  {secret}: permission denied" in proc.stdout
    assert "readable                            1" in proc.stdout


def test_exclusion_list_matching(tmp_path):
    a, b = tmp_path / "a.mp4", tmp_path / "sub" / "b.mp4"
    listing = tmp_path / "list.txt"
    listing.write_text("# comment\n\na.mp4\n" + str(tmp_path / "sub" / ".." / "sub" / "b.mp4") + "\n")
    excluded = read_exclude_list(listing)
    kept, dropped = exclude_paths([a, b, tmp_path / "c.mp4"], excluded)
    assert dropped == [a, b] and kept == [tmp_path / "c.mp4"]
    report = check_videos([a], workers=0)
    with pytest.raises(ValueError, match="unknown statuses"):
        write_quarantine(report, tmp_path / "q.txt", statuses=("broken",))


def test_quarantine_of_a_file_name_that_is_not_utf8(tmp_path):
    """A name with undecodable bytes (Linux allows any bytes) made the whole list fail to write."""
    odd = Path(os.fsdecode(os.fsencode(str(tmp_path)) + b"/caf\xe9.mp4"))
    odd.write_bytes(b"")  # empty: refused before any decoder opens it
    good = tmp_path / "plain.mp4"
    good.write_bytes(b"")
    report = check_videos([odd, good], workers=0)
    listed = write_quarantine(report, tmp_path / "q.txt")
    assert sorted(f.path for f in listed) == sorted([str(odd), str(good)])
    assert os.fsencode(str(odd)) in (tmp_path / "q.txt").read_bytes()  # the name's own bytes
    kept, dropped = exclude_paths([odd, good, tmp_path / "other.mp4"], read_exclude_list(tmp_path / "q.txt"))
    assert sorted(dropped) == sorted([odd, good]) and kept == [tmp_path / "other.mp4"]


def test_quarantine_of_names_with_unicode_line_separators(tmp_path):
    """U+2028, U+0085 and form feed are legal in file names; str.splitlines() split the
    list's lines there, so such a file was quarantined and never excluded."""
    odd = [tmp_path / name for name in ("song\u2028lyrics.mp4", "bad\x85.mp4", "page\x0cbreak.mp4")]
    for path in odd:
        path.write_bytes(b"")
    listed = write_quarantine(check_videos(odd, workers=0), tmp_path / "q.txt")
    assert sorted(f.path for f in listed) == sorted(map(str, odd))
    kept, dropped = exclude_paths([*odd, tmp_path / "other.mp4"], read_exclude_list(tmp_path / "q.txt"))
    assert sorted(dropped) == sorted(odd) and kept == [tmp_path / "other.mp4"]


def test_a_name_with_a_line_break_is_said_to_be_left_out_of_the_quarantine(tmp_path):
    """It was counted as listed ("quarantine list (1 files)", "# ... 1 files") but, rightly, not
    written: a line-based list cannot hold it. Now the count is what was written, and a
    warning names the file."""
    odd, bad = tmp_path / "bad\nname.mp4", tmp_path / "empty.mp4"
    odd.write_bytes(b"junk")
    bad.write_bytes(b"")
    with pytest.warns(UserWarning, match=r"1 file left out of the quarantine list, a line break in the name"):
        listed = write_quarantine(check_videos([odd, bad], workers=0), tmp_path / "q.txt")
    assert [f.path for f in listed] == [str(bad)]
    text = (tmp_path / "q.txt").read_text()
    assert ": 1 files\n" in text and str(bad) in text and "name.mp4" not in text


def test_check_refuses_to_write_its_report_onto_its_input(tmp_path):
    from videoact.cli import main

    write_coded_video(tmp_path / "v" / "a.mp4", 8)
    listing = tmp_path / "list.txt"
    listing.write_text("v/a.mp4 walk\n")
    before = listing.read_bytes(), (tmp_path / "v" / "a.mp4").read_bytes()
    assert main(["check", str(listing), "--quarantine", str(listing), "--workers", "0", "--quiet"]) == 2
    assert main(["check", str(tmp_path / "v"), "--json", str(tmp_path / "v" / "a.mp4"), "--workers", "0",
                 "--quiet"]) == 2
    assert main(["check", str(tmp_path / "v"), "--json", str(tmp_path / "r"), "--quarantine", str(tmp_path / "r"),
                 "--workers", "0", "--quiet"]) == 2
    assert (listing.read_bytes(), (tmp_path / "v" / "a.mp4").read_bytes()) == before
    assert not (tmp_path / "r").exists()


def test_check_refuses_output_paths_it_cannot_write_before_the_scan(tmp_path, capsys):
    """`--json afile/r.json` (afile a file) was found out after every video was checked."""
    write_coded_video(tmp_path / "v" / "a.mp4", 8)
    (tmp_path / "afile").write_text("")
    for option, what in (("--json", "the report"), ("--quarantine", "the quarantine list")):
        proc = run_main(capsys, "check", tmp_path / "v", option, tmp_path / "afile" / "out", "--workers", "0")
        assert proc.returncode == 2 and proc.stderr == (f"videoact check: {option} {tmp_path / 'afile' / 'out'}: "
                                                        f"{tmp_path / 'afile'}: a file, not a folder for {what}\n")
        assert proc.stdout == ""  # no scan, no summary


def test_the_summary_says_where_the_files_it_leaves_out_are(tmp_path, capsys):
    """Past its first 50 problem files the summary said `... and N more (see the JSON
    report)`, also when no --json was given."""
    for i in range(52):
        (tmp_path / "v" / f"e{i:02d}.mp4").parent.mkdir(exist_ok=True)
        (tmp_path / "v" / f"e{i:02d}.mp4").write_bytes(b"")
    proc = run_main(capsys, "check", tmp_path / "v", "--workers", "0", "--quiet")
    assert proc.returncode == 1 and "\n... and 2 more (rerun with --json FILE to list them)\n" in proc.stdout
    proc = run_main(capsys, "check", tmp_path / "v", "--workers", "0", "--quiet", "--json", tmp_path / "r.json")
    assert proc.returncode == 1 and f"\n... and 2 more (see {tmp_path / 'r.json'})\n" in proc.stdout


def test_a_whole_file_whose_timestamps_start_late_is_not_partial(tmp_path):
    """A Matroska file whose first frame is at 10 s (a cut that kept its timestamps): its
    duration runs from 0, so OpenCV's estimate claimed 300 frames for 50 and `check`
    called the complete file partial."""
    import cv2

    if not hasattr(cv2, "CAP_PROP_PTS"):
        pytest.skip("this OpenCV gives no PTS: the start cannot be known")
    frames = [coded_frame(i) for i in range(50)]
    write_timed_video(tmp_path / "late.mkv", frames, [10 + i / 25 for i in range(50)])
    health = check_file(tmp_path / "late.mkv")
    assert health.status in ("readable", "fallback") and (health.frames, health.claimed) == (50, 50), health
    # A file cut short still is partial when it starts late: the claim counts from its start.
    write_timed_video(tmp_path / "late_cut.mkv", frames, [10 + i / 25 for i in range(50)])
    data = (tmp_path / "late_cut.mkv").read_bytes()
    (tmp_path / "late_cut.mkv").write_bytes(data[: len(data) // 2])
    cut = check_file(tmp_path / "late_cut.mkv")
    assert cut.status == "partial" and cut.claimed == 50 and cut.frames < 40, cut
    # An AVI's header counts its frames: not lowered by a first PTS of 1 (corpus test.avi)
    if (SHARED / "test.avi").is_file():
        avi = check_file(SHARED / "test.avi", backend="opencv")
        assert (avi.claimed, avi.claimed_by) == (164, "opencv"), avi


def test_decoder_log_lines_are_kept_off_the_terminal(tmp_path):
    """FFmpeg's own lines (decord's and OpenCV's: "[mpeg4 @ 0x...] ...") were printed beside
    videoact's report of the same file; VIDEOACT_QUIET_DECODERS=0 keeps them for debugging."""
    folder = tmp_path / "v"
    folder.mkdir()
    data = bytearray(write_coded_video(tmp_path / "good.mp4", 40).read_bytes())
    for i in range(len(data) // 3, len(data) // 3 + 400, 7):  # damage in the middle
        data[i] ^= 0xFF
    (folder / "damaged.mp4").write_bytes(bytes(data))
    quiet = run_cli("check", folder, "--workers", "1")  # a worker process: it inherits the setting
    assert "partial     " in quiet.stdout and "damaged.mp4" in quiet.stdout
    assert " @ 0x" not in quiet.stderr, quiet.stderr
    env = {k: v for k, v in os.environ.items() if k != "OPENCV_FFMPEG_LOGLEVEL"}  # set by in-process runs
    loud = run_cli("check", folder, "--workers", "0", env={**env, "VIDEOACT_QUIET_DECODERS": "0"})
    assert "partial     " in loud.stdout and " @ 0x" in loud.stderr


def test_every_per_file_time_limit_refuses_what_is_no_number_of_seconds(tmp_path):
    """Only decode_folder checked its limit: extract_features(file_timeout=-1),
    check_videos(timeout=-1) and the others reported every file as hung, "5" failed every file with a
    TypeError, check_videos(timeout=inf) an OverflowError (now no limit, as elsewhere),
    and True ran with 1 s. So did decode_loader and the stream's file sources."""
    from faults import write_tiny_checkpoint

    from videoact.evaluation import evaluate
    from videoact.extract import SamplingSpec, decode_loader, extract_features
    from videoact.stream import StreamEngine, open_source
    from videoact.frames import decode_folder
    from videoact.inference import VideoClassifier
    from videoact.timeline import classify_timeline

    video = write_coded_video(tmp_path / "v" / "a.mp4", 8)
    write_coded_video(tmp_path / "labelled" / "a" / "a.mp4", 8)
    checkpoint = write_tiny_checkpoint(tmp_path / "tiny.pt")
    clf = VideoClassifier.from_checkpoint(checkpoint, device="cpu")
    calls = {
        "extract_features": ("file_timeout", lambda t: extract_features([video], tmp_path / "f", root=tmp_path / "v",
                                                                        image_size=32, num_workers=0, progress=False,
                                                                        file_timeout=t)),
        "check_videos": ("timeout", lambda t: check_videos(tmp_path / "v", workers=1, timeout=t)),
        "decode_folder": ("timeout", lambda t: decode_folder(video, tmp_path / "frames", timeout=t)),
        "predict": ("file_timeout", lambda t: clf.predict(video, file_timeout=t)),
        "predict_many": ("file_timeout", lambda t: clf.predict_many([video], file_timeout=t)),
        "evaluate": ("file_timeout", lambda t: evaluate(checkpoint, tmp_path / "labelled", device="cpu", progress=False,
                                                        file_timeout=t)),
        "classify_timeline": ("file_timeout", lambda t: classify_timeline(clf, video, file_timeout=t)),
        "decode_loader": ("file_timeout", lambda t: decoded(decode_loader([video], SamplingSpec("uniform", 4),
                                                                          num_workers=0, file_timeout=t))),
        "open_source": ("file_timeout", lambda t: open_source(video, file_timeout=t).open()),
        "StreamEngine": ("file_timeout", lambda t: streamed(StreamEngine(video, clf, file_timeout=t))),
    }

    def streamed(engine) -> None:
        with engine:
            list(engine.results())  # re-raises a source error
        assert engine.stats()["frames_captured"] == 8

    def decoded(loader) -> None:
        items = list(loader)
        assert items and not any("error" in item for item in items), items

    for name, (argument, call) in calls.items():
        for bad in (-1, "5", True, float("nan")):
            with pytest.raises(ValueError, match=f"^{argument} must be a (finite )?number of seconds >= 0 "):
                call(bad)
        # None and 0: no limit. Once each where every call starts worker processes (time).
        for fine in (0, 2.5) if name in ("check_videos", "decode_folder") else (None, 0, 30, 2.5):
            call(fine)
        if name == "decode_folder":  # refused there (tests/test_frames.py)
            with pytest.raises(ValueError, match="^timeout must be a finite number of seconds >= 0 "):
                call(float("inf"))
        else:  # no limit, as predict() already took it
            call(float("inf"))
    assert (tmp_path / "f" / "a.mp4.safetensors").is_file() and (tmp_path / "frames" / "a" / "meta.json").is_file()


def test_run_killable_takes_a_function_of_the_script_run(tmp_path):
    """`python job.py`, job.py defining `work` and calling run_killable under its
    `if __name__ == "__main__":`: a PicklingError ("attribute lookup work on __main__
    failed"), as the workers were started with the script hidden from them."""
    import subprocess
    import sys

    script = tmp_path / "job.py"
    script.write_text("from videoact.health import run_killable\n\n\n"
                      "def work(item, beat):\n    beat()\n    return item * 2\n\n\n"
                      "if __name__ == '__main__':\n"
                      "    run = run_killable(work, [1, 2], workers=1, preload=())\n"
                      "    print(run.results, run.failures)\n")
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout == "[2, 4] [None, None]\n", proc.stderr[-2000:]


def test_run_killable_workers_load_the_decoders_before_their_first_item(tmp_path):
    """decord was imported inside a worker's first item, on that item's time limit (0.3 s,
    2.4 s from a cold disk cache): under load the good file after a hung one, in a fresh
    worker, timed out. A preload that is not installed, or fails to import (a broken
    install: OSError from a missing shared library), is skipped, not a dead worker."""
    import subprocess
    import sys

    (tmp_path / "broken_lib.py").write_text("raise OSError('libsomething.so: cannot open shared object file')\n")
    script = tmp_path / "job.py"
    script.write_text("import sys\n\nfrom videoact.health import run_killable\n\n\n"
                      "def loaded(item, beat):\n    return [m for m in ('torch', 'decord') if m in sys.modules]\n\n\n"
                      "if __name__ == '__main__':\n"
                      "    run = run_killable(loaded, [1], workers=1)\n"
                      "    print(run.results, run.failures)\n"
                      "    run = run_killable(loaded, [1], workers=1, preload=('no_such_module_videoact', 'broken_lib'))\n"
                      "    print(run.results, run.failures)\n")
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout == "[['torch', 'decord']] [None]\n[[]] [None]\n", proc.stderr[-2000:]


def test_an_interrupted_check_carries_its_report_and_copies_whole():
    """CheckInterrupted is a KeyboardInterrupt with the report so far; copy and pickle
    rebuilt it from its message (AttributeError: 'str' object has no attribute 'files')."""
    import copy
    import pickle

    from videoact.health import CheckInterrupted, FileHealth, HealthReport

    report = HealthReport(source="d", files=[FileHealth(path="d/a.mp4", status="readable")], interrupted=True,
                          unchecked=["d/b.mp4"])
    exc = CheckInterrupted(report)
    assert isinstance(exc, KeyboardInterrupt) and str(exc) == "interrupted after 1 of 2 files"
    assert not report.ok and report.to_dict()["unchecked"] == ["d/b.mp4"]
    for again in (copy.copy(exc), pickle.loads(pickle.dumps(exc))):
        assert isinstance(again, CheckInterrupted) and str(again) == str(exc)
        assert again.report.unchecked == ["d/b.mp4"] and again.report.files[0].path == "d/a.mp4"


@pytest.mark.parametrize("workers", [0, 1])
def test_a_check_interrupted_at_its_last_file_or_while_stopping_says_so(tmp_path, monkeypatch, workers):
    """A Ctrl-C that came with the last file's progress line, or while the workers were
    being stopped at the end, gave a report that looked complete (a run that was never
    interrupted: earlier outputs replaced, exit 0 or 1), and the workers' figures were 0."""
    from videoact import health
    from videoact.health import CheckInterrupted, check_videos

    for name in "ab":
        write_coded_video(tmp_path / "v" / f"{name}.mp4", 8)

    def interrupt_at(last: int):
        seen = []

        def progress(result) -> None:
            seen.append(result)
            if len(seen) == last:
                raise KeyboardInterrupt
        return progress

    with pytest.raises(CheckInterrupted) as caught:  # with the last file's progress line
        check_videos(tmp_path / "v", workers=workers, progress=interrupt_at(2))
    report = caught.value.report
    assert report.interrupted and report.unchecked == [] and len(report.files) == 2 and not report.ok
    assert report.max_worker_rss_mb > 0 and "interrupted: 0 of 2 files not checked" in report.summary()
    if not workers:  # in this process (cheap): the first file, and no interrupt at all
        with pytest.raises(CheckInterrupted) as caught:  # with the first: the second is not checked
            check_videos(tmp_path / "v", workers=workers, progress=interrupt_at(1))
        report = caught.value.report
        assert report.interrupted and [os.path.basename(p) for p in report.unchecked] == ["b.mp4"]
        assert report.max_worker_rss_mb > 0 and report.to_dict()["interrupted"] is True
        assert check_videos(tmp_path / "v", workers=workers).interrupted is False
        return
    stop = health._Worker.stop  # while the idle worker is asked to stop at the end

    def stop_then_interrupt(self) -> None:
        stop(self)
        raise KeyboardInterrupt

    monkeypatch.setattr(health._Worker, "stop", stop_then_interrupt)
    with pytest.raises(CheckInterrupted) as caught:
        check_videos(tmp_path / "v", workers=workers)
    report = caught.value.report
    assert report.interrupted and len(report.files) == 2 and report.max_worker_rss_mb > 0


def _ignores_sigint(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/status") as f:
            mask = next(line for line in f if line.startswith("SigIgn:"))
    except (OSError, StopIteration):
        return False
    return bool(int(mask.split()[1], 16) & (1 << 1))  # bit n-1 for signal n


def test_ctrl_c_while_workers_start_prints_no_worker_tracebacks(tmp_path):
    """Ctrl-C reaches the terminal's whole process group; workers still importing torch
    printed a KeyboardInterrupt traceback each (two for --workers 2) above the one-line
    "interrupted"."""
    import signal
    import subprocess

    if not os.path.isdir("/proc/self"):
        pytest.skip("needs Linux /proc to see the workers start")
    for i in range(3):
        write_coded_video(tmp_path / "v" / f"c{i}.mp4", 6)
    args = ["extract", tmp_path / "v", tmp_path / "out", "--image-size", "32", "--device", "cpu", "--no-progress"]
    from faults import VIDEOACT_WITH_CTRL_C, child_pids

    proc = subprocess.Popen([*VIDEOACT_WITH_CTRL_C, *map(str, args), "--workers", "2"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.monotonic() + 120
    def workers() -> list[int]:  # not multiprocessing's resource tracker, which ignores SIGINT anyway
        found = []
        for pid in child_pids(proc.pid):
            with contextlib.suppress(OSError):
                if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes():
                    found.append(pid)
        return found

    while len(workers()) < 2 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.01)
    # The workers spend their first seconds importing torch. Once each ignores SIGINT (or
    # after 1 s, the old code's workers never do), the terminal's Ctrl-C:
    settled = time.monotonic() + 1
    while time.monotonic() < settled and not all(_ignores_sigint(pid) for pid in workers()):
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "interrupted" in err, err[-3000:]
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err[-3000:]



def test_ctrl_c_while_workers_are_started_takes_effect_after():
    """A KeyboardInterrupt inside DataLoader's iter() left a half-made iterator (its __del__
    printed an AttributeError traceback): a Ctrl-C while workers start is raised after."""
    import signal

    from videoact.spawn import main_script_hidden

    # Python's own handler, as in a terminal (a suite run as a background job ignores SIGINT)
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        reached = False
        with pytest.raises(KeyboardInterrupt):
            with main_script_hidden(deaf_to_ctrl_c=True):
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(0.2)  # its handler runs meanwhile
                reached = True
        assert reached and signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGINT, before)


def test_workers_of_a_parent_that_ignores_ctrl_c_keep_ignoring_it():
    """A run started as a background job ignores SIGINT, and its workers inherited that;
    hear_ctrl_c made them hear it, so a Ctrl-C meant for the foreground job ended the
    background run's workers."""
    import signal

    from faults import sigint_after_hearing

    from videoact.spawn import main_script_hidden

    ctx = mp.get_context("spawn")
    before = signal.getsignal(signal.SIGINT)
    try:
        for disposition in (signal.SIG_IGN, signal.default_int_handler):
            signal.signal(signal.SIGINT, disposition)
            queue = ctx.Queue()
            with main_script_hidden(deaf_to_ctrl_c=True):
                worker = ctx.Process(target=sigint_after_hearing, args=(queue,))
                worker.start()
            assert queue.get(timeout=120) == str(disposition)
            worker.join(60)
    finally:
        signal.signal(signal.SIGINT, before)
