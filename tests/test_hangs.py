"""No command hangs on a decoder that never returns, and unreadable files are reported.

The hanging input is real: a valid AVI followed by 200 GB of zeros (a sparse file, no
disk used). decord's open and OpenCV's frame scan walk the whole tail, about 11 s per
GB here, so they do not return for about half an hour.
"""
from __future__ import annotations

import contextlib
import json
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from faults import open_files, run_cli, unreadable_prefix, write_hanging_avi, write_tiny_checkpoint

from videoact.testing import write_coded_video


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory) -> Path:
    return write_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pt")


LIMIT = "10"  # seconds


def test_a_decoder_that_never_returns_costs_one_file(tmp_path, tiny_checkpoint):
    """A valid AVI followed by 200 GB of zeros (sparse): decord's open and OpenCV's scan
    would take about half an hour. Each command gives up on it after its time limit,
    reports it, and goes on with the next file."""
    src = tmp_path / "v"
    hang = write_hanging_avi(src / "hang.avi")
    write_coded_video(src / "next.mp4", 12)
    listing = tmp_path / "list.txt"
    listing.write_text(f"{src / 'hang.avi'} a\n{src / 'next.mp4'} b\n")
    commands = {
        "extract": ["extract", src, tmp_path / "f", "--timeout", LIMIT, "--image-size", "32", "--workers", "1",
                    "--no-progress"],
        # decoding in the main process, two videos side by side (the CPU default on 2 cores)
        "extract-inline": ["extract", src, tmp_path / "g", "--timeout", LIMIT, "--image-size", "32", "--workers", "0",
                           "--no-progress"],
        "decode-frames": ["decode-frames", src, tmp_path / "j", "--timeout", LIMIT, "--quiet"],
        "infer": ["infer", tiny_checkpoint, src, "--timeout", LIMIT, "--device", "cpu"],
        "test": ["test", tiny_checkpoint, listing, "--timeout", LIMIT, "--device", "cpu", "--no-progress",
                 "--out", tmp_path / "m.json"],
        "timeline": ["infer", tiny_checkpoint, src, "--timeline", "--timeout", LIMIT, "--device", "cpu"],
        "stream": ["stream", tiny_checkpoint, "--source", hang, "--file-timeout", LIMIT, "--no-window",
                   "--device", "cpu"],
    }
    # All seven side by side: each mostly waits out its limit (against the half hour the
    # hanging open would take, any limit of seconds shows the same). 3 s was too short for
    # the good file on a Zen 3: seven processes starting on two cores starved its open.
    try:
        with ThreadPoolExecutor(max_workers=len(commands)) as pool:
            futures = {name: pool.submit(run_cli, *args, timeout=150) for name, args in commands.items()}
            runs = {name: future.result() for name, future in futures.items()}
    finally:
        hang.unlink()
    for name, proc in runs.items():
        assert proc.returncode == (2 if name == "stream" else 1), (name, proc.stderr[-2000:])
        assert "hang.avi" in proc.stderr, name
    assert f"hang.avi: opening did not finish within {LIMIT} s (decoder hung)" in runs["extract"].stderr
    assert f"hang.avi: opening did not finish within {LIMIT} s (decoder hung)" in runs["extract-inline"].stderr
    assert (tmp_path / "g" / "next.mp4.safetensors").exists(), runs["extract-inline"].stderr[-3000:]
    assert f"hang.avi: timed out: no progress within {LIMIT} s" in runs["decode-frames"].stderr
    assert f"hang.avi: opening did not finish within {LIMIT} s (decoder hung)" in runs["infer"].stderr
    assert f"hang.avi: opening did not finish within {LIMIT} s (decoder hung)" in runs["test"].stderr
    assert f"failed: {hang}: opening did not finish within {LIMIT} s (decoder hung)" in runs["timeline"].stderr
    assert f"{src / 'next.mp4'}  (" in runs["timeline"].stdout
    assert (f"videoact stream: {hang}: opening did not finish within {LIMIT} s (decoder hung); "
            "the file is not readable in time") in runs["stream"].stderr
    assert (tmp_path / "f" / "next.mp4.safetensors").exists()
    assert (tmp_path / "j" / "next" / "meta.json").exists()
    assert f"{src / 'next.mp4'}\n" in runs["infer"].stdout
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert metrics["num_samples"] == 1 and [Path(f["path"]).name for f in metrics["failures"]] == ["hang.avi"]


def test_unreadable_permissions_are_reported(tmp_path, tiny_checkpoint):
    prefix, why = unreadable_prefix()
    if prefix is None:
        pytest.skip(why)
    src = tmp_path / "v"
    write_coded_video(src / "open.mp4", 8)
    secret = write_coded_video(src / "secret.mp4", 8)
    secret.chmod(0)
    # A folder that cannot be listed: its videos were left out in silence, exit 0, by every command.
    locked = src / "locked"
    write_coded_video(locked / "inside.mp4", 8)
    locked.chmod(0)
    folder = f"{locked}: a folder that cannot be read (permission denied)"
    read_only = tmp_path / "read_only"
    read_only.mkdir(mode=0o555)
    # Independent runs (own outputs, the same read-only inputs), started side by side: each
    # mostly pays its interpreter and torch start-up.
    commands = {
        "extract": ["extract", src, tmp_path / "f", "--image-size", "32", "--workers", "1", "--no-progress"],
        "infer": ["infer", tiny_checkpoint, src, "--device", "cpu"],
        "check": ["check", src, "--workers", "1", "--quiet"],
        "frames": ["decode-frames", src, tmp_path / "frames", "--quiet"],
        "read_only": ["decode-frames", src / "open.mp4", read_only],  # extract: the same check
    }
    with ThreadPoolExecutor(max_workers=len(commands)) as pool:
        futures = {name: pool.submit(run_cli, *args, prefix=prefix) for name, args in commands.items()}
        extract, infer, check, frames, proc = (futures[name].result() for name in commands)
    assert extract.returncode == 1 and f"{secret}: permission denied" in extract.stderr
    assert folder in extract.stderr
    assert (tmp_path / "f" / "open.mp4.safetensors").exists()
    assert infer.returncode == 1 and f"failed: {secret}: permission denied" in infer.stderr
    assert f"failed: {folder}" in infer.stderr
    assert check.returncode == 1 and f"unreadable  {folder}" in check.stdout
    assert frames.returncode == 1 and folder in frames.stdout + frames.stderr
    assert (tmp_path / "frames" / "open" / "img_00001.jpg").exists()
    # An OUT without write permission: one line naming it, before any work (was a traceback
    # about an internal temporary, '.failures.jsonl.tmp-...').
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert f"{read_only}: cannot write the frame folders (OUT) there (Permission denied)" in proc.stderr
    # ... but outputs that are all current may be read-only: nothing to write, nothing refused,
    # even with a failure log that names a video current now, and a killed run's temporary
    import json

    for log, key in ((tmp_path / "f" / "failures.jsonl", "path"), (tmp_path / "frames" / "failures.jsonl", "video")):
        with open(log, "a") as f:
            f.write(json.dumps({key: str(src / "open.mp4"), "reason": "an earlier failure"}) + "\n")
    (tmp_path / "f" / ".open.mp4.safetensors.tmp-4999999-0").write_bytes(b"")
    for out in (tmp_path / "f", tmp_path / "frames"):
        for folder in (out, *(p for p in out.rglob("*") if p.is_dir())):
            folder.chmod(0o555)
    with ThreadPoolExecutor(max_workers=2) as pool:
        again = pool.submit(run_cli, "extract", src / "open.mp4", tmp_path / "f", "--image-size", "32",
                            "--no-progress", prefix=prefix)
        frames_again = pool.submit(run_cli, "decode-frames", src / "open.mp4", tmp_path / "frames", "--quiet",
                                   prefix=prefix)
        again, frames_again = again.result(), frames_again.result()
    assert again.returncode == 0 and "skipped 1 up to date" in again.stdout, again.stderr
    assert "failures.jsonl: cannot be brought up to date (Permission denied)" in again.stderr
    assert frames_again.returncode == 0 and "skipped 1 already complete" in frames_again.stdout, frames_again.stderr


def test_ctrl_c_during_infer_keeps_what_was_done(tmp_path, tiny_checkpoint):
    """`videoact infer` on a folder printed nothing before its last video was done, and a
    Ctrl-C lost every result (hours, for a large folder). Now each video's labels are
    printed as soon as it is done, through a pipe too, and after a Ctrl-C --out holds them
    with the videos not reached listed as not classified, in both modes; an earlier --out
    file (maybe a complete run's) is kept as it was instead. The hanging AVI holds each run
    at its third video until the signal."""
    import signal
    import subprocess
    import threading
    import time

    from faults import VIDEOACT_WITH_CTRL_C

    a, b, c = (write_coded_video(tmp_path / f"{name}.mp4", 12) for name in "abc")
    hang = write_hanging_avi(tmp_path / "hang.avi")
    earlier = tmp_path / "earlier.json"
    earlier.write_text('[{"source": "a complete run"}]\n')
    runs = {}
    try:
        for mode, out, extra in (("plain", tmp_path / "plain.json", []),
                                 ("timeline", tmp_path / "timeline.json", ["--timeline"]),
                                 ("over an earlier file", earlier, [])):
            proc = subprocess.Popen([*VIDEOACT_WITH_CTRL_C, "infer", str(tiny_checkpoint), str(a), str(b), str(hang),
                                     str(c), "--out", str(out), "--timeout", "300", "--device", "cpu", *extra],
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            lines: list[str] = []  # stdout, as it comes
            reader = threading.Thread(target=lambda p=proc, seen=lines: seen.extend(p.stdout), daemon=True)
            reader.start()
            runs[mode] = proc, lines, out, reader
        for mode, (proc, lines, out, reader) in runs.items():
            deadline = time.monotonic() + 120
            while not any(line.startswith(str(b)) for line in lines) and time.monotonic() < deadline:
                time.sleep(0.1)
            printed = list(lines)
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=60)
            err = proc.stderr.read()  # a few lines: no pipe filled up
            reader.join(10)
            assert any(line.startswith(str(b)) for line in printed), (mode, printed, err[-2000:])
            assert any(line.startswith(str(a)) for line in printed), mode
            assert proc.returncode == 130, (mode, err[-2000:])
            assert "interrupted after 2 of 4 videos" in err, (mode, err[-2000:])
            if out == earlier:
                assert earlier.read_text() == '[{"source": "a complete run"}]\n'
                assert (f"videoact infer: --out {earlier} not written: the run was interrupted, and the earlier "
                        "file there is kept as it was") in err
                continue
            rows = json.loads(out.read_text())
            assert [row["source"] for row in rows] == [str(a), str(b), str(hang), str(c)], mode
            assert "error" not in rows[0] and "error" not in rows[1], mode
            assert [row["error"] for row in rows[2:]] == [f"{v}: not classified (the run was interrupted)"
                                                          for v in (hang, c)], mode
    finally:
        for proc, *_ in runs.values():
            proc.kill()
        hang.unlink()


def test_ctrl_c_during_test_reports_the_videos_evaluated(tmp_path, tiny_checkpoint):
    """`videoact test` lost everything on Ctrl-C (a long evaluation: all of it). Now it
    reports the metrics of the videos evaluated before it, says they are of those only
    (the JSON too), and exits 130; an earlier output file is kept as it was. The hanging
    AVI holds the run at its third video until the signal."""
    import signal
    import subprocess
    import time

    from faults import VIDEOACT_WITH_CTRL_C

    if not os.path.isdir("/proc/self/fd"):
        pytest.skip("needs Linux /proc to see the run reach the hanging file")
    a, b, c = (write_coded_video(tmp_path / f"{name}.mp4", 12) for name in "abc")
    hang = write_hanging_avi(tmp_path / "hang.avi")
    out, earlier = tmp_path / "m.json", tmp_path / "earlier.png"
    earlier.write_bytes(b"an earlier run's PNG")

    def interrupted_at_the_hanging_file(*videos: str) -> tuple[subprocess.Popen, str, str]:
        listing = tmp_path / "list.txt"
        listing.write_text("".join(f"{video}\n" for video in videos))
        proc = subprocess.Popen([*VIDEOACT_WITH_CTRL_C, "test", str(tiny_checkpoint), str(listing), "--out", str(out),
                                 "--confusion", str(earlier), "--timeout", "300", "--device", "cpu", "--no-progress"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 120
        while str(hang) not in open_files(proc.pid) and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        return (proc, *proc.communicate(timeout=60))

    try:
        # every video before the Ctrl-C failed: those failures were not said, only "interrupted"
        bad = tmp_path / "bad.mp4"
        bad.write_bytes(b"not a video")
        proc, stdout, err = interrupted_at_the_hanging_file(f"{bad} a", f"{hang} a", f"{c} b")
        assert proc.returncode == 130 and stdout == "", err[-2000:]
        assert f"failed: {bad}: not a readable video" in err, err[-2000:]
        assert "videoact test: interrupted after 1 of 3 videos, none of which could be evaluated" in err
        assert not out.exists() and earlier.read_bytes() == b"an earlier run's PNG"
        proc, stdout, err = interrupted_at_the_hanging_file(f"{a} a", f"{b} b", f"{hang} a", f"{c} b")
    finally:
        hang.unlink()
    assert proc.returncode == 130, err[-2000:]
    assert "videoact test: interrupted after 2 of 4 videos: the metrics above are of those only" in err
    assert "samples: 2" in stdout and "top-1:" in stdout, stdout
    metrics = json.loads(out.read_text())
    assert metrics["interrupted"] is True and metrics["not_evaluated"] == 2
    assert metrics["num_samples"] == 2 and metrics["failures"] == []
    assert earlier.read_bytes() == b"an earlier run's PNG"  # maybe a complete run's: kept
    assert f"--confusion {earlier} not written: the run was interrupted" in err


def test_ctrl_c_or_sigterm_during_check_keeps_what_was_found(tmp_path):
    """A Ctrl-C during `videoact check` (hours, with --deep on a large collection) lost the
    report: no summary, no --json, no --quarantine. Now they hold the files checked, the
    rest listed as unchecked, and the exit status is 130; earlier --json and --quarantine
    files (maybe a complete check's) are kept as they were instead. A SIGTERM to the process
    group (as `timeout` and SLURM send it, the worker included) lost it all too: now the
    same, exit 143. The hanging AVI holds each check at its third file (in a worker) until
    the signal."""
    import signal
    import subprocess
    import threading
    import time

    from faults import VIDEOACT_WITH_CTRL_C

    src = tmp_path / "d"
    write_coded_video(src / "a.mp4", 12)
    (src / "a_bad.mp4").write_text("these are meeting notes, not a video\n" * 30)
    hang = write_hanging_avi(src / "b_hang.avi")
    write_coded_video(src / "c.mp4", 12)
    (tmp_path / "earlier").mkdir()
    for name in ("r.json", "q.txt"):
        (tmp_path / "earlier" / name).write_text("a complete check's\n")
    runs = {}
    try:
        for folder in ("new", "earlier"):
            report, quarantine = tmp_path / folder / "r.json", tmp_path / folder / "q.txt"
            proc = subprocess.Popen([*VIDEOACT_WITH_CTRL_C, "check", str(src), "--json", str(report), "--quarantine",
                                     str(quarantine), "--workers", "1", "--timeout", "300"],
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                    start_new_session=True)  # a group of its own, its worker included
            progress: list[str] = []  # stderr, as it comes: a line per file done
            reader = threading.Thread(target=lambda p=proc, seen=progress: seen.extend(p.stderr), daemon=True)
            reader.start()
            runs[folder] = proc, progress, reader
        for folder, (proc, progress, reader) in runs.items():
            deadline = time.monotonic() + 120
            while not any(line.endswith("a_bad.mp4\n") for line in progress) and time.monotonic() < deadline:
                time.sleep(0.1)
            if folder == "new":  # its worker too, which must leave the stopping to the check
                os.killpg(proc.pid, signal.SIGTERM)
            else:
                proc.send_signal(signal.SIGINT)
            proc.wait(timeout=60)
            out = proc.stdout.read()  # the summary: no pipe filled up
            reader.join(10)
            err = "".join(progress)
            assert any(line.startswith("unreadable  ") and line.endswith("a_bad.mp4\n") for line in progress), err
            assert proc.returncode == (143 if folder == "new" else 130), err[-2000:]
            assert "videoact check: interrupted after 2 of 4 files" + (" (SIGTERM)" if folder == "new" else "") in err
            assert "checked 2 files from" in out and "interrupted: 2 of 4 files not checked" in out
    finally:
        for proc, *_ in runs.values():
            if proc.poll() is None:  # a failed assertion above: its worker, still decoding, goes too
                os.killpg(proc.pid, signal.SIGKILL)
        hang.unlink()
    report, quarantine = tmp_path / "new" / "r.json", tmp_path / "new" / "q.txt"
    data = json.loads(report.read_text())
    assert [Path(f["path"]).name for f in data["files"]] == ["a.mp4", "a_bad.mp4"]
    assert [Path(p).name for p in data["unchecked"]] == ["b_hang.avi", "c.mp4"]
    assert data["counts"]["unreadable"] == 1
    assert data["max_worker_rss_mb"] > 0  # the worker's figures until the Ctrl-C (were zero)
    listed = [line for line in quarantine.read_text().splitlines() if not line.startswith("#")]
    assert listed == [str(src / "a_bad.mp4")]
    assert "# the check was interrupted: 2 files were not checked" in quarantine.read_text()
    for name in ("r.json", "q.txt"):
        assert (tmp_path / "earlier" / name).read_text() == "a complete check's\n"
    err = "".join(runs["earlier"][1])
    assert f"--json {tmp_path / 'earlier' / 'r.json'} not written: the run was interrupted" in err
    assert f"--quarantine {tmp_path / 'earlier' / 'q.txt'} not written: the run was interrupted" in err


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the kernel's parent-death signal is Linux's")
def test_a_killed_check_leaves_no_worker_decoding(tmp_path):
    """`kill -9` of `videoact check` (or the out-of-memory killer) left its worker, stuck
    in the hanging file's decoder, running on its own for half an hour on a core."""
    import signal
    import subprocess
    import time

    src = tmp_path / "d"
    hang = write_hanging_avi(src / "hang.avi")
    proc = subprocess.Popen([sys.executable, "-m", "videoact", "check", str(src), "--workers", "1", "--timeout", "300"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)

    def workers() -> list[int]:
        found = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rpartition(")")[2].split()
            except OSError:
                continue
            if int(fields[1]) == proc.pid:  # its parent
                found.append(int(stat.parent.name))
        return found

    try:
        deadline = time.monotonic() + 120
        while not any(Path(f"/proc/{pid}/fd").is_dir() and any(
                link.name.isdigit() and os.path.realpath(link) == str(hang)
                for link in Path(f"/proc/{pid}/fd").iterdir()) for pid in workers()):
            assert time.monotonic() < deadline, "the worker never opened the file"
            time.sleep(0.2)
        worker = next(pid for pid in workers())
        proc.kill()
        proc.wait(timeout=30)
        deadline = time.monotonic() + 10
        while Path(f"/proc/{worker}").exists() and Path(f"/proc/{worker}/stat").read_text().split()[2] != "Z":
            assert time.monotonic() < deadline, "the worker outlived its parent"
            time.sleep(0.1)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        hang.unlink()
